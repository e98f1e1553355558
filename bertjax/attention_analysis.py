"""What BERT's attention does, as numbers: every layer's attention probabilities with the queries and keys they
come from, and where [CLS] attends. The plots (`bertjax.visualization`) and the interactive viewer
(`bertjax.attention_viewer`) draw these.

    maps = attention_maps(config, params, input_ids, input_mask, segment_ids)     # [L, B, N, T, T]
    summary = cls_attention_summary(maps, input_mask, segment_ids)              # per layer: cls, sep, A, B, entropy
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bertjax.data.vocab_files import SEP
from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import BertConfig, BertModel, unpad_vocab

CLS_PARTS = ("cls", "sep", "segment_a", "segment_b")  # where [CLS] attends; with padding (~0) they sum to 1
ATTENTION_INTERNALS = ("attention_probs", "queries", "keys")  # what BertSelfAttention sows (layers.py)


def attention_maps(config: BertConfig, params: dict, input_ids, input_mask=None, segment_ids=None,
                   pair_ids=None) -> jax.Array:
    """Attention probabilities [L, B, N, T, T] (layer, batch, head, query, key) of a deterministic forward pass.

    `params` are BertForPreTraining params (with a `bert` subtree) or BertModel params, unrolled or scanned (a
    vocab-padded run's too: the padded embedding rows are cut off). Padded keys get probability 0; every row sums to 1.
    Packed rows (`bertjax.data.packing`) pass `pair_ids` [B, T]: each pair then attends only within its own block.
    """
    return attention_internals(config, params, input_ids, input_mask, segment_ids, pair_ids)["attention_probs"]


def attention_internals(config: BertConfig, params: dict, input_ids, input_mask=None, segment_ids=None,
                        pair_ids=None) -> dict[str, jax.Array]:
    """`attention_maps`'s probabilities and what they come from, stacked over layers:
    attention_probs [L, B, N, T, T], queries and keys [L, B, T, N, D] (per head, before the 1/sqrt(D) scaling;
    softmax(q·k/sqrt(D) + mask bias) over the keys gives the probabilities)."""
    encoder_params = unpad_vocab({"bert": params.get("bert", params)}, config.vocab_size)["bert"]
    scanned = SCANNED_LAYERS_NAME in encoder_params["encoder"]
    model = BertModel(config, scan_layers=scanned, sow_attention=True)
    optional = [None if x is None else jnp.asarray(x) for x in (input_mask, segment_ids, pair_ids)]
    _, state = model.apply({"params": encoder_params}, jnp.asarray(input_ids), optional[0], optional[1],
                           pair_ids=optional[2], mutable=["intermediates"])
    encoder = state["intermediates"]["encoder"]
    if scanned:
        sown = encoder[SCANNED_LAYERS_NAME]["attention"]["self"]
        return {name: sown[name][0] for name in ATTENTION_INTERNALS}
    layers = [encoder[f"layer_{i}"]["attention"]["self"] for i in range(config.num_hidden_layers)]
    return {name: jnp.stack([layer[name][0] for layer in layers]) for name in ATTENTION_INTERNALS}


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
    maps_LxNxTxT = one_example(maps, example)
    seq_len = maps_LxNxTxT.shape[-1]
    real_T = example_row(input_mask, "input_mask", example, seq_len, default=1) > 0
    segment_T = example_row(segment_ids, "segment_ids", example, seq_len, default=0)
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


def one_example(maps, example: int) -> np.ndarray:
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


def example_row(values, name: str, example: int, seq_len: int, default: int = 1) -> np.ndarray:
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
