"""Pretraining losses and metrics, as google-research/bert `run_pretraining.py` computes them. Pure functions.

Everything here runs in float32. Metrics come as sums and counts (`metric_sums`) so they can be added across
devices, micro-batches and eval batches and divided once (`compute_metrics`).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

# The original's masked-LM denominator: sum(weights) + 1e-5, so a batch without predictions gives 0, not NaN.
MLM_DENOMINATOR_EPS = 1e-5

METRIC_SUM_KEYS = (
    "masked_lm_loss_sum",
    "masked_lm_correct_sum",
    "masked_lm_weight_sum",
    "next_sentence_loss_sum",
    "next_sentence_correct_sum",
    "next_sentence_count",
)


def _nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label] over the last axis, in float32 (float64 logits stay float64)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def masked_lm_nll(mlm_logits_BxPxV: jax.Array, masked_lm_ids_BxP: jax.Array) -> jax.Array:
    """Per-prediction negative log-likelihood [B, P] (padded predictions included; weight them out)."""
    return _nll(mlm_logits_BxPxV, masked_lm_ids_BxP)


def next_sentence_nll(nsp_logits_Bx2: jax.Array, next_sentence_labels_B: jax.Array) -> jax.Array:
    """Per-example next-sentence negative log-likelihood [B]; label 0 = IsNext, 1 = random."""
    return _nll(nsp_logits_Bx2, next_sentence_labels_B.reshape(nsp_logits_Bx2.shape[:-1]))


def pretraining_loss(mlm_logits_BxPxV: jax.Array, nsp_logits_Bx2: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The original training loss: sum(w * nll) / (sum(w) + 1e-5) for masked LM, plus the mean NSP loss."""
    return loss_from_sums(metric_sums(mlm_logits_BxPxV, nsp_logits_Bx2, batch))


def loss_from_sums(sums: Mapping[str, jax.Array], masked_lm_weight_total: jax.Array | None = None,
                   num_examples: jax.Array | None = None) -> jax.Array:
    """The original training loss from `metric_sums`.

    The denominators default to the sums' own; pass the whole batch's (sum of masked_lm_weights, number of
    examples) to get one micro-batch's exact share of the whole-batch loss for gradient accumulation.
    """
    weight_total = sums["masked_lm_weight_sum"] if masked_lm_weight_total is None else masked_lm_weight_total
    count = sums["next_sentence_count"] if num_examples is None else num_examples
    return (sums["masked_lm_loss_sum"] / (weight_total + MLM_DENOMINATOR_EPS)
            + sums["next_sentence_loss_sum"] / count)


def metric_sums(mlm_logits_BxPxV: jax.Array, nsp_logits_Bx2: jax.Array,
                batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Float32 sums behind the eval metrics; add them over batches and devices, then call `compute_metrics`."""
    weights_BxP = batch["masked_lm_weights"].astype(jnp.float32)
    mlm_ids_BxP = batch["masked_lm_ids"].astype(jnp.int32)
    nsp_labels_B = batch["next_sentence_labels"].astype(jnp.int32).reshape(nsp_logits_Bx2.shape[:-1])
    mlm_correct_BxP = (jnp.argmax(mlm_logits_BxPxV, axis=-1) == mlm_ids_BxP).astype(jnp.float32)
    nsp_correct_B = (jnp.argmax(nsp_logits_Bx2, axis=-1) == nsp_labels_B).astype(jnp.float32)
    return {
        "masked_lm_loss_sum": jnp.sum(weights_BxP * masked_lm_nll(mlm_logits_BxPxV, mlm_ids_BxP)),
        "masked_lm_correct_sum": jnp.sum(weights_BxP * mlm_correct_BxP),
        "masked_lm_weight_sum": jnp.sum(weights_BxP),
        "next_sentence_loss_sum": jnp.sum(next_sentence_nll(nsp_logits_Bx2, nsp_labels_B)),
        "next_sentence_correct_sum": jnp.sum(nsp_correct_B),
        "next_sentence_count": jnp.float32(nsp_labels_B.size),
    }


def _safe_div(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    return numerator / jnp.maximum(denominator, 1e-12)


def compute_metrics(sums: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Turns summed `metric_sums` into the original's eval metrics (weighted means), plus loss and perplexity.

    masked_lm_loss is the weighted mean of the per-prediction loss (tf.metrics.mean with weights), loss is
    masked_lm_loss + next_sentence_loss and perplexity is exp(masked_lm_loss). With no predictions at all the
    masked-LM metrics are 0, not NaN.
    """
    sums = {k: jnp.asarray(v, jnp.float32) for k, v in sums.items()}
    masked_lm_loss = _safe_div(sums["masked_lm_loss_sum"], sums["masked_lm_weight_sum"])
    next_sentence_loss = _safe_div(sums["next_sentence_loss_sum"], sums["next_sentence_count"])
    return {
        "masked_lm_accuracy": _safe_div(sums["masked_lm_correct_sum"], sums["masked_lm_weight_sum"]),
        "masked_lm_loss": masked_lm_loss,
        "next_sentence_accuracy": _safe_div(sums["next_sentence_correct_sum"], sums["next_sentence_count"]),
        "next_sentence_loss": next_sentence_loss,
        "loss": masked_lm_loss + next_sentence_loss,
        "perplexity": jnp.exp(masked_lm_loss),
    }
