"""The attention viewer's page: one self-contained HTML5 file (no network, no libraries) that draws a
"bertjax-attention-view/1" data dict on canvases.

    html = render_page(data, title="my model")            # write it to a file; open it in Chromium or Firefox
    IPython.display.HTML(render_fragment(data))           # the same page in a notebook cell (an iframe)

The page inlines `assets/viewer.css` and `assets/viewer.js` (package data) and carries the data as
`<script type="application/json" id="bertjax-view-data">`; the script builds the views (head view, model view,
[CLS] summary, masked-LM guesses, neuron view) and exposes `window.bertjaxView`.
"""

from __future__ import annotations

import html
import importlib.resources
import json

_ASSETS = "bertjax.attention_viewer"


def _asset(name: str) -> str:
    return importlib.resources.files(_ASSETS).joinpath("assets", name).read_text(encoding="utf-8")


def _script_safe_json(data: dict) -> str:
    # "</" inside a <script> could close it ("</script>") or start a comment-like state; "<\/" is the same JSON.
    # U+2028/U+2029 are escaped too: valid in JSON, they are line terminators in older JavaScript parsers.
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029")


def render_page(data: dict, title: str = "bertjax attention") -> str:
    """One self-contained HTML5 page showing `data` (format "bertjax-attention-view/1"): inline style, the data as
    a JSON script element, inline viewer script. Works from file:// with the network off."""
    css = _asset("viewer.css")
    script = _asset("viewer.js").replace("</script", "<\\/script")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{css}\n</style>\n</head>\n<body>\n"
        f'<header class="bjv-header"><h1>{html.escape(title)}</h1></header>\n'
        '<main id="bertjax-view" class="bjv"><p class="bjv-loading" id="bjv-status">loading…</p></main>\n'
        f'<script type="application/json" id="bertjax-view-data">{_script_safe_json(data)}</script>\n'
        f"<script>\n{script}\n</script>\n"
        "</body>\n</html>\n"
    )


def render_fragment(data: dict, title: str = "bertjax attention", height: int = 900) -> str:
    """`render_page` wrapped for a notebook cell: an `<iframe srcdoc=...>` (100% wide, `height` px tall), so the
    notebook's CSS and JavaScript cannot clash with the page's. Its window is reachable as
    `iframe.contentWindow.bertjaxView`, or by `postMessage({bertjaxView: method, args: [...]})`."""
    page = html.escape(render_page(data, title), quote=True)
    return (f'<iframe srcdoc="{page}" title="{html.escape(title)}" '
            f'style="width: 100%; height: {int(height)}px; border: 1px solid #ddd; border-radius: 4px;" '
            'loading="eager"></iframe>')
