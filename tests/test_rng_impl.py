"""--config.train.rng_impl: another dropout bit generator changes the dropout masks and nothing else."""
import jax
import numpy as np
import pytest

from _train_helpers import params_digest, run_steps, synthetic_data, tiny_config
from bertjax import losses as bertjax_losses
from bertjax import run_config
from bertjax.errors import BertjaxError
from bertjax.train import train_and_evaluate

STEPS = 3


def _config(rng_impl, dropout):
    config = tiny_config(num_train_steps=STEPS)
    config.train.rng_impl = rng_impl
    config.model.hidden_dropout_prob = config.model.attention_probs_dropout_prob = dropout
    return config


def _devices():
    return jax.devices()[:2]


@pytest.mark.slow
def test_without_dropout_the_run_is_unchanged():
    reference, state_reference, _ = run_steps(_config("threefry", 0.0), STEPS, devices=_devices())
    for rng_impl in ("rbg", "unsafe_rbg"):  # one test, so that one process trains the reference for both
        losses, state, _ = run_steps(_config(rng_impl, 0.0), STEPS, devices=_devices())
        assert losses == reference, rng_impl
        assert params_digest(state.params) == params_digest(state_reference.params), rng_impl
        assert jax.random.key_impl(state.rng) != jax.random.key_impl(state_reference.rng), rng_impl


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_with_dropout_only_the_masks_differ_and_resume_is_exact(tmp_path):
    reference, _, _ = run_steps(_config("threefry", 0.1), STEPS, devices=_devices())
    config = _config("rbg", 0.1)
    config.checkpoint.every_steps = 2
    losses = []

    def record_loss(info):
        losses.append(float(bertjax_losses.compute_metrics(jax.device_get(info.metrics))["loss"]))

    train_and_evaluate(config, str(tmp_path / "straight"), data=synthetic_data(config), devices=_devices(),
                       hooks=[record_loss])
    assert len(losses) == len(reference) == STEPS
    assert np.all(np.isfinite(losses)) and losses != reference
    assert abs(losses[0] - reference[0]) < 0.05  # same params at step 0: only the dropout masks differ

    def stop_at_2(info):
        if info.step == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_and_evaluate(config, str(tmp_path / "resumed"), data=synthetic_data(config), devices=_devices(),
                           hooks=[stop_at_2])
    train_and_evaluate(config, str(tmp_path / "resumed"), data=synthetic_data(config), devices=_devices())
    weights = "export/model.safetensors"
    assert (tmp_path / "resumed" / weights).read_bytes() == (tmp_path / "straight" / weights).read_bytes()


def test_unknown_rng_impl_is_a_clear_error():
    with pytest.raises(BertjaxError, match=r"--config.train.rng_impl='philox' is unknown; use one of threefry, rbg"):
        run_config.validate(_config("philox", 0.0), num_devices=1, process_count=1)
