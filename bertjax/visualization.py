"""Attention maps for notebooks: every layer's attention probabilities, heatmaps of them, and where [CLS] looks.

    maps = attention_maps(config, params, input_ids, input_mask, segment_ids)     # [L, B, N, T, T]
    fig = plot_attention(maps, tokens, layers=[0, -1], input_mask=input_mask)    # rows: layers, columns: heads
    fig = plot_cls_attention(cls_attention_summary(maps, input_mask, segment_ids))

Plotting needs matplotlib, an optional dependency (`pip install -e '.[notebook]'`); `attention_maps` and
`cls_attention_summary` do not. The figures are `matplotlib.figure.Figure`s made without pyplot, so they work on any
backend (Agg, headless) and are not kept alive by pyplot: `fig.savefig(path)`, or display them in a notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bertjax.data.vocab_files import SEP
from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import BertConfig, BertModel, unpad_vocab

if TYPE_CHECKING:  # matplotlib is optional: see _figure_class
    from matplotlib.figure import Figure

CLS_PARTS = ("cls", "sep", "segment_a", "segment_b")  # where [CLS] attends; with padding (~0) they sum to 1
CLS_PART_LABELS = {"cls": "[CLS]", "sep": "[SEP]", "segment_a": "segment A", "segment_b": "segment B"}


def attention_maps(config: BertConfig, params: dict, input_ids, input_mask=None, segment_ids=None) -> jax.Array:
    """Attention probabilities [L, B, N, T, T] (layer, batch, head, query, key) of a deterministic forward pass.

    `params` are BertForPreTraining params (with a `bert` subtree) or BertModel params, unrolled or scanned (a
    vocab-padded run's too: the padded embedding rows are cut off). Padded keys get probability 0; every row sums to 1.
    """
    encoder_params = unpad_vocab({"bert": params.get("bert", params)}, config.vocab_size)["bert"]
    scanned = SCANNED_LAYERS_NAME in encoder_params["encoder"]
    model = BertModel(config, scan_layers=scanned, sow_attention=True)
    _, state = model.apply({"params": encoder_params}, jnp.asarray(input_ids),
                           None if input_mask is None else jnp.asarray(input_mask),
                           None if segment_ids is None else jnp.asarray(segment_ids),
                           mutable=["intermediates"])
    encoder = state["intermediates"]["encoder"]
    if scanned:
        return encoder[SCANNED_LAYERS_NAME]["attention"]["self"]["attention_probs"][0]
    return jnp.stack([encoder[f"layer_{i}"]["attention"]["self"]["attention_probs"][0]
                      for i in range(config.num_hidden_layers)])


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
    maps_LxNxTxT = _one_example(maps, example)
    num_layers, num_heads, seq_len, _ = maps_LxNxTxT.shape
    tokens = list(tokens)
    if input_mask is None:
        if len(tokens) > seq_len:
            raise BertjaxError(f"tokens has {len(tokens)} entries but the maps have {seq_len} positions; pass the "
                               "tokens of the example the maps were computed on")
        keep_T = np.arange(len(tokens))
    else:
        keep_T = np.flatnonzero(_example_row(input_mask, "input_mask", example, seq_len))
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


def cls_attention_summary(maps, input_mask=None, segment_ids=None, *, sep_positions: Sequence[int] | None = None,
                          tokens: Sequence[str] | None = None, example: int = 0) -> dict[str, np.ndarray]:
    """Where [CLS] (query position 0) attends in each layer: the input of `pooled_output` (and so of NSP), which
    reads the last layer's [CLS] vector.

    `maps` is `attention_maps(...)`'s [L, B, N, T, T] (`example` picks the batch row) or one example's [L, N, T, T];
    `input_mask` and `segment_ids` are [B, T] or [T] (default: all real, all segment A). The [SEP] positions are
    `sep_positions`, else where `tokens` (the example's T or real tokens) are "[SEP]", else the last real token of
    each segment, as in [CLS] A [SEP] B [SEP].

    Returns float arrays (masses are fractions of [CLS]'s attention; the four parts and padding sum to 1):
      cls_L, sep_L, segment_a_L, segment_b_L   mass on [CLS] itself, on [SEP]s, on the other tokens of segment A
                                               and of segment B, averaged over heads
      entropy_L                                entropy (nats) of [CLS]'s attention, averaged over heads
      cls_LxN, sep_LxN, segment_a_LxN, segment_b_LxN, entropy_LxN   the same per head
      uniform_entropy                          log(real tokens): the entropy of attending evenly to all of them
    """
    maps_LxNxTxT = _one_example(maps, example)
    seq_len = maps_LxNxTxT.shape[-1]
    real_T = _example_row(input_mask, "input_mask", example, seq_len, default=1) > 0
    segment_T = _example_row(segment_ids, "segment_ids", example, seq_len, default=0)
    sep_T = _sep_mask(sep_positions, tokens, real_T, segment_T)
    cls_T = np.arange(seq_len) == 0
    keys = {
        "cls": cls_T,
        "sep": sep_T & ~cls_T,
        "segment_a": real_T & (segment_T == 0) & ~cls_T & ~sep_T,
        "segment_b": real_T & (segment_T != 0) & ~cls_T & ~sep_T,
    }
    probs_LxNxT = maps_LxNxTxT[:, :, 0, :].astype(np.float64)
    summary = {}
    for part, selected_T in keys.items():
        summary[f"{part}_LxN"] = probs_LxNxT[..., selected_T].sum(-1)
    plogp_LxNxT = np.where(probs_LxNxT > 0, probs_LxNxT * np.log(np.where(probs_LxNxT > 0, probs_LxNxT, 1.0)), 0.0)
    summary["entropy_LxN"] = -plogp_LxNxT.sum(-1)
    for name in list(summary):  # cls_LxN -> cls_L: the mean over heads
        summary[name.removesuffix("xN")] = summary[name].mean(-1)
    summary["uniform_entropy"] = np.array(np.log(max(int(real_T.sum()), 1)))
    return summary


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


def _one_example(maps, example: int) -> np.ndarray:
    """[L, N, T, T] float32 numpy of [L, B, N, T, T] (row `example`) or [L, N, T, T] maps."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 5:
        if not -maps.shape[1] <= example < maps.shape[1]:
            raise BertjaxError(f"example={example} is out of range: the maps hold {maps.shape[1]} examples "
                               f"(0..{maps.shape[1] - 1})")
        return maps[:, example]
    if maps.ndim != 4 or maps.shape[-1] != maps.shape[-2]:
        raise BertjaxError(f"maps has shape {maps.shape}; pass attention_maps(...)'s [L, B, N, T, T] or one "
                           "example's [L, N, T, T]")
    return maps


def _example_row(values, name: str, example: int, seq_len: int, default: int = 1) -> np.ndarray:
    """[T] int row of a [B, T] or [T] `values` (all `default` if None)."""
    if values is None:
        return np.full(seq_len, default, np.int64)
    values = np.asarray(values)
    if values.ndim == 2:
        if not -len(values) <= example < len(values):
            raise BertjaxError(f"example={example} is out of range: {name} holds {len(values)} examples")
        values = values[example]
    if values.shape != (seq_len,):
        raise BertjaxError(f"{name} has shape {np.shape(values)}; it must be [B, {seq_len}] or [{seq_len}] to match "
                           "the maps")
    return values.astype(np.int64)


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


def _sep_mask(sep_positions, tokens, real_T: np.ndarray, segment_T: np.ndarray) -> np.ndarray:
    """bool[T]: which positions are [SEP] (see `cls_attention_summary`)."""
    seq_len = len(real_T)
    sep_T = np.zeros(seq_len, bool)
    if sep_positions is not None:
        positions = np.asarray(sep_positions, np.int64).reshape(-1)
        bad = positions[(positions < 0) | (positions >= seq_len)]
        if bad.size:
            raise BertjaxError(f"sep_positions: {int(bad[0])} is not a position of the maps; pick from "
                               f"0..{seq_len - 1}")
        sep_T[positions] = True
    elif tokens is not None:
        tokens = list(tokens)
        real_positions = np.flatnonzero(real_T)
        if len(tokens) == seq_len:
            positions = [i for i, token in enumerate(tokens) if token == SEP]
        elif len(tokens) == len(real_positions):
            positions = [real_positions[i] for i, token in enumerate(tokens) if token == SEP]
        else:
            raise BertjaxError(f"tokens has {len(tokens)} entries; pass the example's {len(real_positions)} real "
                               f"tokens or all {seq_len} of them")
        sep_T[positions] = True
    else:
        for segment in np.unique(segment_T[real_T]):
            sep_T[np.flatnonzero(real_T & (segment_T == segment))[-1]] = True
    return sep_T
