"""Pretraining losses and metrics against a hand-computed example."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import losses
from bertjax.model import PADDED_LOGIT

# Two examples, two prediction slots each, a vocabulary of 3.
MLM_LOGITS = np.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                       [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]], np.float32)
NSP_LOGITS = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
BATCH = {
    "masked_lm_ids": np.array([[0, 2], [2, 0]], np.int32),
    "masked_lm_weights": np.array([[1.0, 1.0], [1.0, 0.0]], np.float32),  # the last slot is padding
    "next_sentence_labels": np.array([0, 0], np.int32),
}


def log_softmax(row, label):
    return row[label] - math.log(sum(math.exp(v) for v in row))


def hand_mlm_nll():
    return [-log_softmax([2, 0, 0], 0), -log_softmax([0, 1, 0], 2), -log_softmax([0, 0, 3], 2)]


def hand_nsp_nll():
    return [-log_softmax([1, 0], 0), -log_softmax([0, 2], 0)]


def test_pretraining_loss_matches_original_formula():
    mlm = sum(hand_mlm_nll()) / (3 + 1e-5)
    nsp = sum(hand_nsp_nll()) / 2
    loss = losses.pretraining_loss(MLM_LOGITS, NSP_LOGITS, BATCH)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(float(loss), mlm + nsp, rtol=1e-6)


def test_nsp_weight_scales_the_next_sentence_term_and_zero_leaves_it_out():
    mlm = sum(hand_mlm_nll()) / (3 + 1e-5)
    nsp = sum(hand_nsp_nll()) / 2
    sums = losses.metric_sums(MLM_LOGITS, NSP_LOGITS, BATCH)
    np.testing.assert_allclose(float(losses.loss_from_sums(sums, nsp_weight=0.5)), mlm + 0.5 * nsp, rtol=1e-6)
    np.testing.assert_allclose(float(losses.loss_from_sums(sums, nsp_weight=0.0)), mlm, rtol=1e-6)

    def loss(nsp_logits, weight):
        return losses.loss_from_sums(losses.metric_sums(MLM_LOGITS, nsp_logits, BATCH), nsp_weight=weight)

    # Weight 0: no gradient reaches the NSP logits (so none reaches the NSP head or the pooler), even non-finite ones.
    assert np.all(np.asarray(jax.grad(loss)(jnp.asarray(NSP_LOGITS), 0.0)) == 0)
    broken = jnp.asarray(NSP_LOGITS).at[0, 0].set(jnp.inf)
    assert np.all(np.asarray(jax.grad(loss)(broken, 0.0)) == 0)
    assert np.any(np.asarray(jax.grad(loss)(jnp.asarray(NSP_LOGITS), 1.0)) != 0)
    # The eval metrics keep the original loss (masked LM + NSP) whatever the weight.
    np.testing.assert_allclose(losses.compute_metrics(sums)["loss"], mlm + nsp, rtol=1e-5)


def test_the_config_sets_the_pretraining_objective_s_nsp_weight():
    from _train_helpers import load_config  # noqa: PLC0415
    from bertjax import task  # noqa: PLC0415

    config = load_config("base")
    assert task.pretraining_objective(config).nsp_weight == 1.0  # the original recipe by default
    config.train.nsp_weight = 0.0
    assert task.pretraining_objective(config).nsp_weight == 0.0


def test_metric_sums_and_metrics():
    sums = losses.metric_sums(MLM_LOGITS, NSP_LOGITS, BATCH)
    assert set(sums) == set(losses.METRIC_SUM_KEYS)
    np.testing.assert_allclose(float(sums["masked_lm_loss_sum"]), sum(hand_mlm_nll()), rtol=1e-6)
    assert float(sums["masked_lm_weight_sum"]) == 3.0
    # argmax: [0, 1] vs ids [0, 2] -> 1 correct; [2, 0(tie)] vs [2, (padding)] -> 1 correct (the padded slot is weighted out)
    assert float(sums["masked_lm_correct_sum"]) == 2.0
    assert float(sums["next_sentence_correct_sum"]) == 1.0 and float(sums["next_sentence_count"]) == 2.0
    metrics = losses.compute_metrics(sums)
    mlm_loss = sum(hand_mlm_nll()) / 3
    nsp_loss = sum(hand_nsp_nll()) / 2
    np.testing.assert_allclose(float(metrics["masked_lm_accuracy"]), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["masked_lm_loss"]), mlm_loss, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["next_sentence_accuracy"]), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["next_sentence_loss"]), nsp_loss, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["loss"]), mlm_loss + nsp_loss, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["perplexity"]), math.exp(mlm_loss), rtol=1e-5)


def test_sums_add_across_batches():
    """Summing the sums of two halves gives the metrics of the whole batch (what devices and eval loops rely on)."""
    halves = [{k: v[i:i + 1] for k, v in BATCH.items()} for i in range(2)]
    parts = [losses.metric_sums(MLM_LOGITS[i:i + 1], NSP_LOGITS[i:i + 1], h) for i, h in enumerate(halves)]
    added = {k: parts[0][k] + parts[1][k] for k in parts[0]}
    whole = losses.metric_sums(MLM_LOGITS, NSP_LOGITS, BATCH)
    for key in whole:
        np.testing.assert_allclose(float(added[key]), float(whole[key]), rtol=1e-6)


def test_all_zero_weights_give_no_nan():
    batch = dict(BATCH, masked_lm_weights=np.zeros((2, 2), np.float32))
    loss = losses.pretraining_loss(MLM_LOGITS, NSP_LOGITS, batch)
    np.testing.assert_allclose(float(loss), sum(hand_nsp_nll()) / 2, rtol=1e-6)
    metrics = losses.compute_metrics(losses.metric_sums(MLM_LOGITS, NSP_LOGITS, batch))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["masked_lm_loss"]) == 0.0 and float(metrics["masked_lm_accuracy"]) == 0.0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_logits_are_reduced_in_float32(dtype):
    loss = losses.pretraining_loss(jnp.asarray(MLM_LOGITS, dtype), jnp.asarray(NSP_LOGITS, dtype), BATCH)
    assert loss.dtype == jnp.float32
    sums = losses.metric_sums(jnp.asarray(MLM_LOGITS, dtype), jnp.asarray(NSP_LOGITS, dtype), BATCH)
    assert all(v.dtype == jnp.float32 for v in sums.values())


def _reference_nll(logits, labels):
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_fused_cross_entropy_value_and_gradient_equal_log_softmax(dtype):
    """`softmax_cross_entropy` (custom_vjp) against -log_softmax[label] and its autodiff gradient, padded columns too."""
    with jax.enable_x64(dtype == jnp.float64):
        _check_fused_cross_entropy(dtype)


def _check_fused_cross_entropy(dtype):
    rng = np.random.default_rng(0)
    vocab, padded = 37, 48
    logits = rng.normal(size=(3, 5, padded)) * 4
    logits[..., vocab:] = PADDED_LOGIT  # the vocab padding as the model returns it
    logits = jnp.asarray(logits, dtype)
    labels = jnp.asarray(rng.integers(0, vocab, (3, 5)), jnp.int32)
    weights = jnp.asarray(rng.uniform(size=(3, 5)), dtype)

    nll, correct = losses.softmax_cross_entropy(logits, labels)
    assert nll.dtype == dtype and correct.shape == labels.shape
    reference = _reference_nll(logits[..., :vocab], labels)
    tol = 1e-6 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(nll, reference, rtol=tol, atol=tol)
    np.testing.assert_array_equal(correct, (jnp.argmax(logits[..., :vocab], -1) == labels).astype(correct.dtype))

    grad = jax.grad(lambda x: jnp.sum(weights * losses.softmax_cross_entropy(x, labels)[0]))(logits)
    grad_reference = jax.grad(lambda x: jnp.sum(weights * _reference_nll(x[..., :vocab], labels)))(logits)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, grad_reference, rtol=tol, atol=tol)
    assert np.all(np.asarray(grad[..., vocab:]) == 0.0)  # padded columns: exactly zero gradient


def test_fused_cross_entropy_keeps_low_precision_gradients_in_their_dtype():
    logits = jnp.asarray(MLM_LOGITS, jnp.bfloat16)
    labels = jnp.asarray(BATCH["masked_lm_ids"])
    nll, _ = losses.softmax_cross_entropy(logits, labels)
    assert nll.dtype == jnp.float32
    grad = jax.grad(lambda x: jnp.sum(losses.softmax_cross_entropy(x, labels)[0]))(logits)
    assert grad.dtype == jnp.bfloat16
    expected = jax.grad(lambda x: jnp.sum(_reference_nll(x.astype(jnp.float32), labels)))(logits)
    np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(expected, np.float32), atol=1e-2)


def test_accuracy_counts_an_exact_tie_for_the_max_as_correct():
    """`label_logit >= max` differs from argmax only on exact ties: argmax picks the first tied index."""
    logits = jnp.asarray([[[1.0, 3.0, 3.0]]], jnp.float32)
    _, correct = losses.softmax_cross_entropy(logits, jnp.asarray([[2]]))
    assert float(correct[0, 0]) == 1.0 and int(jnp.argmax(logits, -1)[0, 0]) == 1
