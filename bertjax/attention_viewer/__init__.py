"""An offline, interactive attention viewer for any BERT checkpoint bertjax reads: one self-contained HTML page.

    from bertjax.attention_viewer import show, attention_view
    show("runs/demo", "The cat sat on the mat.", "It was warm.")         # inline in a notebook
    show("runs/demo", "The cat sat on the mat.", live=True)              # picks re-run the masked LM live
    attention_view("runs/demo", "The cat sat.").save("view.html")       # a standalone page (file://, offline)

`python -m bertjax.visualize --checkpoint runs/demo --text "..." --output view.html` writes the page from the shell.
The views, the data and their error bounds: docs/attention_viewer.md.
"""
from bertjax.attention_viewer.view import AttentionView, attention_view, show

__all__ = ["AttentionView", "attention_view", "show"]
