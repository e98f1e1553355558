"""Attention maps for notebooks: run the encoder once and return every layer's attention probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import BertConfig, BertModel


def attention_maps(config: BertConfig, params: dict, input_ids, input_mask=None, segment_ids=None) -> jax.Array:
    """Attention probabilities [L, B, N, T, T] (layer, batch, head, query, key) of a deterministic forward pass.

    `params` are BertForPreTraining params (with a `bert` subtree) or BertModel params, unrolled or scanned.
    Padded keys get probability 0; every row sums to 1.
    """
    encoder_params = params.get("bert", params)
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
