"""The attention viewer for one checkpoint and its inputs: shown inline in a notebook, saved as one offline page,
and asked again live.

    show("runs/demo", "The cat sat on the mat.", "It was warm.")        # in a notebook: renders inline
    view = attention_view("runs/demo", ["A first text.", "A second."])  # a batch: the page has a selector
    view.save("view.html")                                               # one self-contained file
    view.guesses([3, 5])                                                 # re-run masked LM live, tokens 3 and 5 masked
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from bertjax import paths
from bertjax.attention_viewer import data as view_data_lib
from bertjax.attention_viewer import page
from bertjax.convert import sources
from bertjax.errors import BertjaxError


class AttentionView:
    """A computed view: `data` (the page's JSON), `rows` (what the model read), `html()`, `save(path)`, and
    `guesses(...)`, which re-runs the model. In a notebook it renders itself (`_repr_html_`: the page in an iframe)."""

    def __init__(self, pretrained: sources.Pretrained, data: dict, rows: list[view_data_lib.ViewRow], tokenizer):
        self.pretrained, self.data, self.rows, self.tokenizer = pretrained, data, rows, tokenizer

    def html(self, title: str = "bertjax attention", live: bool = False) -> str:
        """The standalone page: JS, CSS and data inlined; it loads nothing from the network. `live`: the page of a
        live notebook widget (`live.LiveAttentionView`), which asks its kernel for the guesses of picked tokens."""
        return page.render_page({**self.data, "mlm_live": True} if live else self.data, title)

    def save(self, path: str | os.PathLike, title: str = "bertjax attention") -> str:
        """Write the standalone page to `path` (local or gs://), replacing it atomically; returns the path."""
        paths.write_text_atomically(path, self.html(title))
        return str(path)

    def _repr_html_(self) -> str:
        return page.render_fragment(self.data)

    def guesses(self, positions: int | Sequence[int], example: int = 0,
                top_k: int | None = None) -> dict[int, list[list]]:
        """Re-run the masked-LM head live with the tokens at `positions` of row `example` replaced by [MASK], all at
        once: {position: [[token, probability], ...top_k]}, top_k defaulting to the view's. The page's precomputed
        guesses mask one token at a time; here any set of tokens can be masked together."""
        if not -len(self.rows) <= example < len(self.rows):
            raise BertjaxError(f"example={example} does not exist; the view has {len(self.rows)} rows")
        if why := view_data_lib.mlm_unavailable(self.pretrained):
            raise BertjaxError(why)
        row = self.rows[example]
        positions = [positions] if isinstance(positions, (int, np.integer)) else [int(p) for p in positions]
        bad = [p for p in positions if not 0 <= p < len(row.tokens)]
        if not positions or bad:
            raise BertjaxError(f"positions {bad or positions}: pick token indices of 0..{len(row.tokens) - 1} "
                               f"({' '.join(row.tokens[:12])}{' ...' if len(row.tokens) > 12 else ''})")
        top_k = self.data["examples"][example]["mlm"]["top_k"] if top_k is None else top_k
        return view_data_lib.masked_guesses(self.pretrained, row, positions, self.tokenizer, top_k)


def attention_view(checkpoint: str | os.PathLike | sources.Pretrained, text_a: str | Sequence[str],
                   text_b: str | Sequence[str | None] | None = None, **options) -> AttentionView:
    """Compute the view of `checkpoint` (anything `sources.load_pretrained` reads, or its result) on a text, a pair,
    or a batch of them; `options` are `data.compute`'s (packed, max_seq_length, top_k, mlm_positions, log)."""
    pretrained = checkpoint if isinstance(checkpoint, sources.Pretrained) else sources.load_pretrained(
        checkpoint, allow_missing_heads=True)
    data, rows, tokenizer = view_data_lib.compute(pretrained, text_a, text_b, **options)
    return AttentionView(pretrained, data, rows, tokenizer)


def show(checkpoint, text_a, text_b=None, *, live: bool = False, **options) -> None:
    """`attention_view(...)`, displayed inline in a notebook (IPython's display: the page in an iframe, offline).
    With `live`, a widget whose token picks re-run the masked LM in the kernel (`live.LiveAttentionView`; nothing
    precomputed unless `mlm_positions` says so). Keep `attention_view(...)`'s result instead to also call
    `guesses(...)` or `save(...)` on it."""
    from IPython.display import display  # noqa: PLC0415  (there in any notebook; not a dependency elsewhere)

    if not live:
        display(attention_view(checkpoint, text_a, text_b, **options))
        return
    try:
        from bertjax.attention_viewer.live import LiveAttentionView  # noqa: PLC0415  (anywidget: optional)
    except ImportError as e:
        raise BertjaxError("show(..., live=True) needs anywidget, an optional dependency; install it with "
                           "pip install -e '.[notebook]'") from e
    options.setdefault("mlm_positions", "none")
    display(LiveAttentionView(attention_view(checkpoint, text_a, text_b, **options)))
