"""The jitted train step: it learns (overfits one batch) and gradient accumulation equals one big batch."""
import jax
import numpy as np
import pytest

from _batches import make_batch
from _train_helpers import run_steps, tiny_config


@pytest.mark.slow
def test_overfits_one_fixed_batch():
    config = tiny_config(num_train_steps=60)
    config.optimizer.learning_rate = 3e-3
    config.optimizer.warmup_steps = 10
    config.optimizer.weight_decay = 0.0
    batch = make_batch(config.train.batch_size)
    losses, _, _ = run_steps(config, 60, batches=[batch] * 60)
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def _one_step_grads_and_state(micro_batches: int):
    config = tiny_config(micro_batches=micro_batches)
    config.train.batch_size = 32
    batch = make_batch(32)
    # Unequal numbers of real predictions per example make the weighted-mean equivalence non-trivial.
    assert len(set(batch["masked_lm_weights"].sum(axis=1))) > 1
    losses, state, _ = run_steps(config, 2, batches=[batch, make_batch(32, start=32)])
    return losses, jax.device_get(state.params)


@pytest.mark.slow
def test_gradient_accumulation_equals_one_large_batch():
    losses_1, params_1 = _one_step_grads_and_state(1)
    losses_4, params_4 = _one_step_grads_and_state(4)
    np.testing.assert_allclose(losses_4, losses_1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_4)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params_and_metrics():
    config = tiny_config()
    config.dtype = "bfloat16"
    losses, state, trainer = run_steps(config, 2)
    assert trainer.model.dtype == jax.numpy.bfloat16
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {np.dtype("float32")}
    assert all(np.isfinite(losses))
    batch = trainer.global_batch(make_batch(config.train.batch_size))

    outputs = trainer.objective.forward(trainer.model, state.params, batch, deterministic=True)
    assert outputs["mlm_logits"].dtype == outputs["nsp_logits"].dtype == jax.numpy.float32


@pytest.mark.slow
def test_scanned_rematerialised_layers_train_like_unrolled_ones():
    from bertjax.model import stack_layers

    config = tiny_config()
    unrolled, _, trainer = run_steps(config, 3)
    params = jax.device_get(trainer.initial_state().params)
    config.model.scan_layers = True
    config.model.remat = True
    config.mesh.fsdp = 2
    scanned, state, _ = run_steps(config, 3, initial_params=stack_layers(params, 2))
    assert "layers" in state.params["bert"]["encoder"]
    np.testing.assert_allclose(scanned, unrolled, rtol=1e-5)
