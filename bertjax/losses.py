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


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label] over the last axis, in float32 (float64 logits stay float64): the plain
    cross-entropy of NSP and of every fine-tuning head (`bertjax.objectives`)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


@jax.custom_vjp
def _fused_nll_and_correct(logits_flat: jax.Array, labels_flat: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`softmax_cross_entropy` on flattened predictions: logits [B*P, V] (or W), labels [B*P]."""
    nll_flat, correct_flat, _ = _fused_forward(logits_flat, labels_flat)
    return nll_flat, correct_flat


def _fused_forward(logits_flat, labels_flat):
    wide = logits_flat.astype(jnp.promote_types(logits_flat.dtype, jnp.float32))
    max_flat = jnp.max(wide, axis=-1)
    log_sum_flat = jnp.log(jnp.sum(jnp.exp(wide - max_flat[:, None]), axis=-1))
    label_logit_flat = jnp.take_along_axis(wide, labels_flat[:, None], axis=-1)[:, 0]
    # log_softmax's own order of operations (shift by the max first), so the value equals jax.nn.log_softmax's.
    nll_flat = log_sum_flat - (label_logit_flat - max_flat)
    correct_flat = (label_logit_flat >= max_flat).astype(wide.dtype)
    return nll_flat, correct_flat, max_flat + log_sum_flat


def _fused_fwd(logits_flat, labels_flat):
    nll_flat, correct_flat, logsumexp_flat = _fused_forward(logits_flat, labels_flat)
    return (nll_flat, correct_flat), (logits_flat, labels_flat, logsumexp_flat)


def _fused_bwd(residuals, cotangents):
    logits_flat, labels_flat, logsumexp_flat = residuals
    g_nll_flat, _ = cotangents  # `correct` is a step function: no gradient
    wide = logits_flat.astype(logsumexp_flat.dtype)
    one_hot_flat = jax.lax.broadcasted_iota(jnp.int32, wide.shape, 1) == labels_flat[:, None]
    grad_flat = g_nll_flat[:, None] * (jnp.exp(wide - logsumexp_flat[:, None]) - one_hot_flat.astype(wide.dtype))
    return grad_flat.astype(logits_flat.dtype), None


_fused_nll_and_correct.defvjp(_fused_fwd, _fused_bwd)


def softmax_cross_entropy(logits_BxPxV: jax.Array, labels_BxP: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Fused softmax cross-entropy over the last axis: `(nll, correct)`, both [B, P] in float32 (float64 stays).

    nll = logsumexp(logits) - logits[label], equal to -log_softmax(logits)[label]; its gradient (a `custom_vjp`)
    is g * (softmax - one_hot(label)) with the one-hot an iota compare, instead of autodiff's zero broadcast plus a
    scatter for the gather. `correct` = 1.0 where logits[label] >= max(logits) (reusing the logsumexp's max, no
    argmax over the vocab); it equals `argmax(logits) == label` except on an exact tie for the maximum, where
    argmax picks the first tied index and this counts the label as correct. Columns with a large negative logit
    (the vocab padding, `model.PADDED_LOGIT`) get softmax 0, are never the max and get exactly zero gradient.
    """
    shape = labels_BxP.shape
    nll_flat, correct_flat = _fused_nll_and_correct(logits_BxPxV.reshape(-1, logits_BxPxV.shape[-1]),
                                              labels_BxP.reshape(-1).astype(jnp.int32))
    return nll_flat.reshape(shape), correct_flat.reshape(shape)


def masked_lm_nll(mlm_logits_BxPxV: jax.Array, masked_lm_ids_BxP: jax.Array) -> jax.Array:
    """Per-prediction negative log-likelihood [B, P] (padded predictions included; weight them out).

    The logits may be the vocab-padded [B, P, W] ones with the padded columns at `model.PADDED_LOGIT`.
    """
    return softmax_cross_entropy(mlm_logits_BxPxV, masked_lm_ids_BxP)[0]


def next_sentence_nll(nsp_logits_Bx2: jax.Array, next_sentence_labels_B: jax.Array) -> jax.Array:
    """Per-example next-sentence negative log-likelihood [B]; label 0 = IsNext, 1 = random."""
    return cross_entropy(nsp_logits_Bx2, next_sentence_labels_B.reshape(nsp_logits_Bx2.shape[:-1]))


def pretraining_loss(mlm_logits_BxPxV: jax.Array, nsp_logits_Bx2: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The original training loss: sum(w * nll) / (sum(w) + 1e-5) for masked LM, plus the mean NSP loss."""
    return loss_from_sums(metric_sums(mlm_logits_BxPxV, nsp_logits_Bx2, batch))


def loss_from_sums(sums: Mapping[str, jax.Array], masked_lm_weight_total: jax.Array | None = None,
                   num_examples: jax.Array | None = None, nsp_weight: float = 1.0) -> jax.Array:
    """The original training loss from `metric_sums` (with `nsp_weight` 1: masked LM + NSP).

    The denominators default to the sums' own; pass the whole batch's (sum of masked_lm_weights, number of
    examples) to get one micro-batch's exact share of the whole-batch loss for gradient accumulation.
    `nsp_weight` scales the NSP term (0: masked LM only; the NSP head stays and is still evaluated).
    """
    weight_total = sums["masked_lm_weight_sum"] if masked_lm_weight_total is None else masked_lm_weight_total
    count = sums["next_sentence_count"] if num_examples is None else num_examples
    masked_lm = sums["masked_lm_loss_sum"] / (weight_total + MLM_DENOMINATOR_EPS)
    if nsp_weight == 0:  # not 0 * loss: a non-finite NSP loss must not reach the gradient
        return masked_lm
    return masked_lm + nsp_weight * sums["next_sentence_loss_sum"] / count


def metric_sums(mlm_logits_BxPxV: jax.Array, nsp_logits_Bx2: jax.Array,
                batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Float32 sums behind the eval metrics; add them over batches and devices, then call `compute_metrics`."""
    weights_BxP = batch["masked_lm_weights"].astype(jnp.float32)
    mlm_ids_BxP = batch["masked_lm_ids"].astype(jnp.int32)
    nsp_labels_B = batch["next_sentence_labels"].astype(jnp.int32).reshape(nsp_logits_Bx2.shape[:-1])
    # Packed rows ([B, K] pairs, `bertjax.data.packing`) weigh out their empty pair slots; unpacked rows all count.
    nsp_weights_B = batch.get("next_sentence_weights", jnp.ones(nsp_labels_B.shape)).astype(jnp.float32)
    mlm_nll_BxP, mlm_correct_BxP = softmax_cross_entropy(mlm_logits_BxPxV, mlm_ids_BxP)
    nsp_correct_B = (jnp.argmax(nsp_logits_Bx2, axis=-1) == nsp_labels_B).astype(jnp.float32)
    return {
        "masked_lm_loss_sum": jnp.sum(weights_BxP * mlm_nll_BxP),
        "masked_lm_correct_sum": jnp.sum(weights_BxP * mlm_correct_BxP.astype(jnp.float32)),
        "masked_lm_weight_sum": jnp.sum(weights_BxP),
        "next_sentence_loss_sum": jnp.sum(nsp_weights_B * next_sentence_nll(nsp_logits_Bx2, nsp_labels_B)),
        "next_sentence_correct_sum": jnp.sum(nsp_weights_B * nsp_correct_B),
        "next_sentence_count": jnp.sum(nsp_weights_B),
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
