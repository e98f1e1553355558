"""`config.model.attention_impl="dot_product_attention"` (jax.nn.dot_product_attention) against the einsum attention.

On the CPU both compute the same math: the scores multiplied by 1/sqrt(D) (as modeling.py: attention_layer does),
the mask bias added, a float32 softmax. The pretraining model's outputs and the gradients of its loss agree within
1e-5 (relative to their largest value), in float32 and in bfloat16, with padding masks and with packed rows' block
masks. (Here they come out bit for bit equal: XLA compiles both to the same dots.)
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _batches import make_batch
from bertjax import losses
from bertjax.errors import BertjaxError
from bertjax.layers import fused_attention_backend
from bertjax.model import BertConfig, BertForPreTraining, init_params

CONFIG = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=48,
                    max_position_embeddings=32, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def params():
    return init_params(BertForPreTraining(CONFIG), jax.random.PRNGKey(0))


def _batch(packed: bool) -> dict:
    batch = make_batch(3, seq_length=12, vocab_size=CONFIG.vocab_size, lengths=(12, 8, 5))
    if packed:   # rows of two pairs each (pair ids 1, 2; 0 = padding), [CLS] at each pair's start
        pair_ids = np.zeros((3, 12), np.int32)
        pair_ids[0, :7], pair_ids[0, 7:] = 1, 2
        pair_ids[1, :3], pair_ids[1, 3:8] = 1, 2
        pair_ids[2, :5] = 1
        batch["pair_ids"] = pair_ids
        batch["next_sentence_positions"] = np.array([[0, 7], [0, 3], [0, 0]], np.int32)
        batch["next_sentence_labels"] = np.zeros((3, 2), np.int32)
        batch["next_sentence_weights"] = np.array([[1, 1], [1, 1], [1, 0]], np.float32)
    return batch


def _outputs_and_grads(params, batch, impl: str, dtype):
    model = BertForPreTraining(CONFIG, dtype=dtype, attention_impl=impl)

    def loss(p):
        out = model.apply({"params": p}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                          batch["masked_lm_positions"], pair_ids=batch.get("pair_ids"),
                          next_sentence_positions=batch.get("next_sentence_positions"))
        nll = losses.masked_lm_nll(out["mlm_logits"], batch["masked_lm_ids"])
        value = jnp.mean(nll) - jnp.mean(jax.nn.log_softmax(out["nsp_logits"].astype(jnp.float32))[..., 0])
        return value, out

    (value, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return value, out, grads


def _max_difference(a, b) -> float:
    return max(float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("packed", [False, True], ids=["padding mask", "packed block mask"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fused_attention_equals_the_einsum_forward_and_backward(params, packed, dtype):
    tolerance = 1e-5
    batch = _batch(packed)
    einsum = _outputs_and_grads(params, batch, "einsum", dtype)
    fused = _outputs_and_grads(params, batch, "dot_product_attention", dtype)
    assert abs(float(einsum[0]) - float(fused[0])) <= tolerance * max(1.0, abs(float(einsum[0])))
    for name in ("mlm_logits", "nsp_logits"):
        scale = float(jnp.max(jnp.abs(einsum[1][name].astype(jnp.float32))))
        assert _max_difference(einsum[1][name], fused[1][name]) <= tolerance * max(1.0, scale), name
    grad_scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(einsum[2]))
    assert _max_difference(einsum[2], fused[2]) <= tolerance * max(1.0, grad_scale)


def test_on_this_cpu_the_fused_call_is_xla_and_on_a_gpu_cudnn_in_half_precision(monkeypatch):
    assert fused_attention_backend(jnp.bfloat16) is None
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert fused_attention_backend(jnp.bfloat16) == "cudnn" and fused_attention_backend(jnp.float32) is None


def test_fused_attention_refuses_probability_dropout(params):
    batch = _batch(False)
    dropping = BertForPreTraining(dataclasses.replace(CONFIG, attention_probs_dropout_prob=0.1),
                                  attention_impl="dot_product_attention")
    with pytest.raises(ValueError, match="attention_probs_dropout_prob=0"):
        dropping.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                       batch["masked_lm_positions"], deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})


def test_the_run_config_names_the_fix_in_one_line():
    from _train_helpers import tiny_config
    from bertjax import run_config

    config = tiny_config()
    config.model.attention_impl = "dot_product_attention"
    run_config.validate(config, num_devices=1, process_count=1)           # tiny_config has no dropout: fine
    config.model.attention_probs_dropout_prob = 0.1
    with pytest.raises(BertjaxError, match="attention_probs_dropout_prob=0"):
        run_config.validate(config, num_devices=1, process_count=1)
    config.model.attention_impl = "flash"
    with pytest.raises(BertjaxError, match="attention_impl='flash' is unknown"):
        run_config.validate(config, num_devices=1, process_count=1)
