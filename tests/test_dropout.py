"""`layers.Dropout` and `config.model.dropout_bits`: 32 bits is flax's nn.Dropout bit for bit; 16 and 8 bits keep
the right fraction and keep the expectation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _train_helpers import tiny_config
from bertjax import layers, run_config
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, dummy_inputs, init_params


class _Twice(nn.Module):
    """Two dropouts in one scope, so the auto names (Dropout_0, Dropout_1) and their random streams are compared."""

    dropout: type
    kwargs: dict

    @nn.compact
    def __call__(self, x):
        y = self.dropout(0.1, **self.kwargs)(x, deterministic=False)
        return y, self.dropout(0.3, **self.kwargs)(x, deterministic=False)


def test_32_bits_is_flax_dropout_bit_for_bit():
    x = jnp.arange(1.0, 4097.0).reshape(64, 64)
    rngs = {"dropout": jax.random.key(7)}
    ours = _Twice(layers.Dropout, {}).apply({}, x, rngs=rngs)
    theirs = _Twice(nn.Dropout, {}).apply({}, x, rngs=rngs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_model_default_is_32_bits_and_16_bits_changes_only_the_masks():
    config = BertConfig.named("tiny", vocab_size=99)
    inputs = dummy_inputs(config, batch_size=2, seq_len=16, num_predictions=3)
    params = init_params(BertForPreTraining(config), jax.random.key(0))
    run = lambda model: model.apply({"params": params}, *inputs, deterministic=False,  # noqa: E731
                                    rngs={"dropout": jax.random.key(1)})["mlm_logits"]
    default = run(BertForPreTraining(config))
    np.testing.assert_array_equal(default, run(BertForPreTraining(config, dropout_bits=32)))
    sixteen = run(BertForPreTraining(config, dropout_bits=16))
    assert sixteen.shape == default.shape and not np.allclose(sixteen, default)
    deterministic = lambda bits: BertForPreTraining(config, dropout_bits=bits).apply(  # noqa: E731
        {"params": params}, *inputs, deterministic=True)["mlm_logits"]
    np.testing.assert_array_equal(deterministic(16), deterministic(32))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_keep_rate_and_expectation(bits, rate):
    n = 1 << 22
    x = jnp.ones((n,), jnp.float32)
    y = layers.Dropout(rate, bits=bits).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    threshold = round((1 - rate) * 2**bits)
    keep = threshold / 2**bits
    kept = float(jnp.mean(y != 0))
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(kept - keep) < 5 * sigma, (kept, keep, sigma)  # 5 sigma ~ 7e-4 at rate 0.1
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 2**bits / threshold], rtol=1e-6)
    assert abs(float(jnp.mean(y)) - 1.0) < 5 * sigma / keep


def test_config_field_is_checked_at_the_door():
    config = tiny_config()
    config.model.dropout_bits = 12
    with pytest.raises(BertjaxError, match=r"--config.model.dropout_bits=12 must be one of 8, 16, 32"):
        run_config.validate(config, 1, 1)
    config.model.dropout_bits = 16
    run_config.validate(config, 1, 1)
