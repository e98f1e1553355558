"""Attention for notebooks: every layer's attention probabilities, heatmaps of them, where [CLS] looks, and the
interactive viewer. The numbers come from `bertjax.attention_analysis` (re-exported here), the viewer from
`bertjax.attention_viewer`.

    maps = attention_maps(config, params, input_ids, input_mask, segment_ids)     # [L, B, N, T, T]
    show("runs/demo", "The cat sat on the mat.", "It was warm.")                 # the interactive viewer
    fig = plot_attention(maps, tokens, layers=[0, -1], input_mask=input_mask)    # rows: layers, columns: heads
    fig = plot_cls_attention(cls_attention_summary(maps, input_mask, segment_ids))

Plotting needs matplotlib, an optional dependency (`pip install -e '.[notebook]'`); `attention_maps` and
`cls_attention_summary` do not. The figures are `matplotlib.figure.Figure`s made without pyplot, so they work on any
backend (Agg, headless) and are not kept alive by pyplot: `fig.savefig(path)`, or display them in a notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from bertjax.attention_analysis import (  # noqa: F401  (re-exported: the notebook API)
    ATTENTION_INTERNALS, CLS_PARTS, attention_internals, attention_maps, cls_attention_summary, example_row,
    one_example)
from bertjax.attention_viewer import view as attention_viewer
from bertjax.errors import BertjaxError

if TYPE_CHECKING:  # matplotlib is optional: see _figure_class
    from matplotlib.figure import Figure

__all__ = ["ATTENTION_INTERNALS", "CLS_PARTS", "attention_internals", "attention_maps", "cls_attention_summary",
           "plot_attention", "plot_cls_attention", "show"]
CLS_PART_LABELS = {"cls": "[CLS]", "sep": "[SEP]", "segment_a": "segment A", "segment_b": "segment B"}


def show(checkpoint, text_a, text_b=None, **options) -> None:
    """The interactive, offline attention viewer, inline in a notebook: `bertjax.attention_viewer.show` (its
    docstring; docs/attention_viewer.md)."""
    attention_viewer.show(checkpoint, text_a, text_b, **options)


def plot_attention(maps, tokens: Sequence[str], *, layers: Sequence[int] | None = None,
                   heads: Sequence[int] | None = None, example: int = 0, input_mask=None,
                   cmap: str = "viridis") -> Figure:
    """A grid of attention heatmaps: one row per chosen layer, one column per chosen head; returns the Figure.

    `maps` is `attention_maps(...)`'s [L, B, N, T, T] (`example` picks the batch row) or one example's [L, N, T, T].
    `tokens` are the example's tokens: only the real ones (padding is the positions after them), or all T of them
    with `input_mask` ([B, T] or [T]) saying which are real. Padding is left out of the plot. Each panel
    ("layer l, head h") has the query tokens on the y axis (labelled left of the first column) and the key tokens on
    the x axis (labelled below the last row); every panel shares the colour scale 0..1 of the one colorbar, so the
    figure has len(layers) * len(heads) + 1 axes.
    `layers` and `heads` default to all; negative indices count from the end.
    """
    maps_LxNxTxT = one_example(maps, example)
    num_layers, num_heads, seq_len, _ = maps_LxNxTxT.shape
    tokens = list(tokens)
    if input_mask is None:
        if len(tokens) > seq_len:
            raise BertjaxError(f"tokens has {len(tokens)} entries but the maps have {seq_len} positions; pass the "
                               "tokens of the example the maps were computed on")
        keep_T = np.arange(len(tokens))
    else:
        keep_T = np.flatnonzero(example_row(input_mask, "input_mask", example, seq_len))
        if len(tokens) == seq_len:
            tokens = [tokens[i] for i in keep_T]
        elif len(tokens) != len(keep_T):
            raise BertjaxError(f"tokens has {len(tokens)} entries but input_mask marks {len(keep_T)} real tokens of "
                               f"{seq_len}; pass the example's real tokens or all {seq_len} of them")
    layers = _indices("layers", layers, num_layers, "layer")
    heads = _indices("heads", heads, num_heads, "head")
    real_LxNxTxT = maps_LxNxTxT[:, :, keep_T][:, :, :, keep_T]

    figure_class = _figure_class()
    side = float(np.clip(0.16 * len(tokens) + 1.0, 2.2, 6.0))  # inches per panel: room for one label per token
    fontsize = 8 if len(tokens) <= 40 else 6
    fig = figure_class(figsize=(len(heads) * side + 1.4, len(layers) * side + 0.6), layout="constrained")
    axes = fig.subplots(len(layers), len(heads), squeeze=False, sharex=True, sharey=True)
    ticks = np.arange(len(tokens))
    for row, layer in enumerate(layers):
        for col, head in enumerate(heads):
            ax = axes[row, col]
            image = ax.imshow(real_LxNxTxT[layer, head], vmin=0.0, vmax=1.0, cmap=cmap, interpolation="nearest")
            ax.set_title(f"layer {layer}, head {head}", fontsize=fontsize + 2)
            ax.set_xticks(ticks, tokens, rotation=90, fontsize=fontsize)
            ax.set_yticks(ticks, tokens, fontsize=fontsize)
            ax.tick_params(labelbottom=row == len(layers) - 1, labelleft=col == 0, length=0)
            if col == 0:
                ax.set_ylabel("query")
            if row == len(layers) - 1:
                ax.set_xlabel("key")
    fig.colorbar(image, ax=axes, label="attention probability", shrink=min(1.0, 0.5 + 0.25 * len(layers)))
    return fig


def plot_cls_attention(summary: dict[str, np.ndarray]) -> Figure:
    """Two panels from `cls_attention_summary(...)`, x = layer: where [CLS] attends (stacked bars of the head-averaged
    masses on [CLS], [SEP], segment A and segment B) and how spread out it is (entropy per head and its mean, against
    attending evenly to every real token). Returns the Figure (2 axes)."""
    figure_class = _figure_class()
    layers_L = np.arange(len(summary["cls_L"]))
    fig = figure_class(figsize=(max(8.5, 0.8 * len(layers_L) + 6.0), 3.4), layout="constrained")
    mass_ax, entropy_ax = fig.subplots(1, 2)
    bottom_L = np.zeros(len(layers_L))
    for part in CLS_PARTS:
        mass_ax.bar(layers_L, summary[f"{part}_L"], bottom=bottom_L, label=CLS_PART_LABELS[part])
        bottom_L = bottom_L + summary[f"{part}_L"]
    mass_ax.set(xlabel="layer", ylabel="attention mass", ylim=(0, 1), xticks=layers_L)
    mass_ax.set_title("[CLS] attends to (mean over heads)", fontsize=10)
    mass_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    entropy_LxN = summary["entropy_LxN"]
    for head in range(entropy_LxN.shape[1]):
        entropy_ax.plot(layers_L, entropy_LxN[:, head], "o", color="0.6", markersize=4,
                        label="one head" if head == 0 else None)
    entropy_ax.plot(layers_L, summary["entropy_L"], "o-", color="C0", label="mean over heads")
    entropy_ax.axhline(float(summary["uniform_entropy"]), color="0.3", linestyle="--", label="uniform")
    entropy_ax.set(xlabel="layer", ylabel="entropy (nats)", xticks=layers_L, xlim=(-0.5, len(layers_L) - 0.5),
                   ylim=(0, 1.1 * float(summary["uniform_entropy"]) + 0.05))
    entropy_ax.set_title("entropy of [CLS]'s attention", fontsize=10)
    entropy_ax.legend(fontsize=8, loc="lower right")
    return fig


def _figure_class() -> type[Figure]:
    """matplotlib's Figure, or a BertjaxError saying how to install it."""
    # Imported here, not at the top: matplotlib is optional (the `notebook` extra), and training, tests and
    # `attention_maps` must work without it.
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise BertjaxError("plotting needs matplotlib, an optional dependency; install it with "
                           "pip install -e '.[notebook]'") from e
    return Figure


def _indices(name: str, chosen: Sequence[int] | None, count: int, what: str) -> list[int]:
    """`chosen` (default: all) as indices in 0..count-1; BertjaxError naming an index out of range."""
    if chosen is None:
        return list(range(count))
    chosen = [chosen] if isinstance(chosen, (int, np.integer)) else list(chosen)
    if not chosen:
        raise BertjaxError(f"{name} is empty; pick at least one {what} of 0..{count - 1}")
    for index in chosen:
        if not -count <= int(index) < count:
            raise BertjaxError(f"{name}: {what} {index} does not exist; the maps have {count} {what}s, pick from "
                               f"0..{count - 1} (or -{count}..-1 from the end)")
    return [int(index) % count for index in chosen]


