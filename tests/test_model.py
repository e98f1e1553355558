"""The BERT model: config, parameter counts, padding, dropout, precision, scan, gradients."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _batches import make_batch
from bertjax import losses
from bertjax.errors import BertjaxError
from bertjax.layers import get_activation
from bertjax.model import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    abstract_params,
    init_params,
    stack_layers,
    unstack_layers,
)

SMALL = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                   max_position_embeddings=32)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture
def batch():
    """3 rows of 12 positions with 12, 8 and 5 real tokens (a fresh copy per test: some change it)."""
    return make_batch(3, seq_length=12, vocab_size=SMALL.vocab_size, lengths=(12, 8, 5))


def model_inputs(batch):
    return batch["input_ids"], batch["input_mask"], batch["segment_ids"], batch["masked_lm_positions"]


def pretraining_loss(params, model, batch):
    """The full pretraining loss of `model` with `params` on `batch`."""
    out = model.apply({"params": params}, *model_inputs(batch))
    return losses.pretraining_loss(out["mlm_logits"], out["nsp_logits"], batch)


# Its gradient, compiled once per model (rather than run op by op).
pretraining_grad = jax.jit(jax.grad(pretraining_loss), static_argnums=1)


@pytest.fixture(scope="module")
def small_params():
    return init_params(BertForPreTraining(SMALL), jax.random.PRNGKey(0))


@pytest.mark.parametrize("size,expected_with_heads,expected_encoder",
                         [("tiny", 4_433_468, 4_385_920), ("base", 110_106_428, 109_482_240)])
def test_parameter_counts_match_reference(size, expected_with_heads, expected_encoder):
    config = BertConfig.named(size, vocab_size=30522)
    assert count(abstract_params(BertForPreTraining(config))) == expected_with_heads
    assert count(abstract_params(BertModel(config))) == expected_encoder
    assert count(abstract_params(BertForPreTraining(config, scan_layers=True))) == expected_with_heads


def test_named_sizes():
    large = BertConfig.named("large")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads, large.intermediate_size) == (
        24, 1024, 16, 4096)
    mini = BertConfig.named("mini", vocab_size=100)
    assert (mini.num_hidden_layers, mini.hidden_size, mini.num_attention_heads, mini.vocab_size) == (4, 256, 4, 100)
    with pytest.raises(BertjaxError, match="unknown model size 'huge'"):
        BertConfig.named("huge")


@pytest.mark.parametrize("changes,message", [
    (dict(hidden_size=100, num_attention_heads=12), "not divisible by num_attention_heads"),
    (dict(hidden_size=0), "hidden_size=0 must be a positive integer"),
    (dict(num_hidden_layers=-1), "num_hidden_layers=-1 must be a positive integer"),
    (dict(hidden_act="swishy"), "hidden_act='swishy' is unknown"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob=1.5 must be in"),
])
def test_config_validation(changes, message):
    with pytest.raises(BertjaxError, match=message):
        BertConfig(**changes)


def test_config_json_round_trip_and_hf_extras(tmp_path):
    path = tmp_path / "config.json"
    SMALL.to_json_file(path)
    data = json.loads(path.read_text())
    assert data["model_type"] == "bert" and data["hidden_size"] == 32
    assert BertConfig.from_json_file(path) == SMALL
    data.update(transformers_version="5.0", use_cache=True)  # Hugging Face keys that are not model fields
    path.write_text(json.dumps(data))
    assert BertConfig.from_json_file(path) == SMALL
    with pytest.raises(BertjaxError, match="does not exist"):
        BertConfig.from_json_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BertjaxError, match="not valid JSON"):
        BertConfig.from_json_file(tmp_path / "bad.json")


def test_gelu_is_exact_erf_and_tanh_variants_differ():
    x = jnp.linspace(-4, 4, 101)
    exact = 0.5 * x * (1 + jax.scipy.special.erf(x / np.sqrt(2)))
    np.testing.assert_allclose(get_activation("gelu")(x), exact, atol=1e-6)
    tanh = 0.5 * x * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    for name in ("gelu_new", "gelu_tanh"):
        np.testing.assert_allclose(get_activation(name)(x), tanh, atol=1e-6)
    assert float(jnp.abs(get_activation("gelu")(x) - get_activation("gelu_new")(x)).max()) > 1e-4


def test_initializers_follow_original(small_params):
    kernel = np.asarray(small_params["bert"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"])
    assert np.abs(kernel).max() <= 2 * SMALL.initializer_range + 1e-7  # truncated at 2 stddev
    assert 0.6 * SMALL.initializer_range < kernel.std() < SMALL.initializer_range
    word = np.asarray(small_params["bert"]["embeddings"]["word_embeddings"]["embedding"])
    assert np.abs(word).max() <= 2 * SMALL.initializer_range + 1e-7 and word.std() > 0.01
    assert np.all(np.asarray(small_params["bert"]["encoder"]["layer_0"]["output"]["dense"]["bias"]) == 0)
    ln = small_params["bert"]["encoder"]["layer_0"]["output"]["LayerNorm"]
    assert np.all(np.asarray(ln["scale"]) == 1) and np.all(np.asarray(ln["bias"]) == 0)
    assert np.all(np.asarray(small_params["cls"]["predictions"]["output_bias"]) == 0)
    nsp_kernel = np.asarray(small_params["cls"]["seq_relationship"]["kernel"])
    assert nsp_kernel.shape == (SMALL.hidden_size, 2) and nsp_kernel.std() > 0.01


def test_sequence_longer_than_position_embeddings_is_a_clear_error(small_params):
    too_long = SMALL.max_position_embeddings + 1
    ids = np.ones((1, too_long), np.int32)
    with pytest.raises(BertjaxError, match=rf"sequence length {too_long} exceeds max_position_embeddings=32"):
        BertForPreTraining(SMALL).apply({"params": small_params}, ids, ids, 0 * ids, np.zeros((1, 2), np.int32))


def test_output_shapes_and_dtypes(small_params, batch):
    out = BertForPreTraining(SMALL).apply({"params": small_params}, *model_inputs(batch), output_hidden_states=True)
    assert out["sequence_output"].shape == (3, 12, 32)
    assert out["pooled_output"].shape == (3, 32)
    assert out["mlm_logits"].shape == (3, 4, 97) and out["mlm_logits"].dtype == jnp.float32
    assert out["nsp_logits"].shape == (3, 2) and out["nsp_logits"].dtype == jnp.float32
    assert out["hidden_states"].shape == (SMALL.num_hidden_layers + 1, 3, 12, 32)
    np.testing.assert_array_equal(out["hidden_states"][-1], out["sequence_output"])


def test_mlm_logits_only_at_masked_positions(small_params, batch):
    """The head gathers first: logits equal a dense head applied to the sequence output at those positions."""
    out = BertForPreTraining(SMALL).apply({"params": small_params}, *model_inputs(batch))
    cls = small_params["cls"]["predictions"]
    seq = np.asarray(out["sequence_output"])
    rows = np.arange(3)[:, None]
    h = seq[rows, batch["masked_lm_positions"]] @ cls["transform"]["dense"]["kernel"] + cls["transform"]["dense"]["bias"]
    h = get_activation("gelu")(h)
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) / np.sqrt(var + 1e-12) * cls["transform"]["LayerNorm"]["scale"] + cls["transform"]["LayerNorm"]["bias"]
    word = small_params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    expected = h @ np.asarray(word).T + cls["output_bias"]
    np.testing.assert_allclose(out["mlm_logits"], expected, atol=2e-5)


def test_padding_does_not_change_real_outputs(small_params, batch):
    model = BertForPreTraining(SMALL)
    out = model.apply({"params": small_params}, *model_inputs(batch))
    changed = dict(batch)
    noise = np.random.default_rng(1).integers(1, SMALL.vocab_size, batch["input_ids"].shape).astype(np.int32)
    changed["input_ids"] = np.where(batch["input_mask"] == 1, batch["input_ids"], noise)
    changed["segment_ids"] = np.where(batch["input_mask"] == 1, batch["segment_ids"], 1)
    assert not np.array_equal(changed["input_ids"], batch["input_ids"])
    out2 = model.apply({"params": small_params}, *model_inputs(changed))
    real = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(out2["sequence_output"])[real], np.asarray(out["sequence_output"])[real],
                               atol=1e-6)
    for key in ("pooled_output", "mlm_logits", "nsp_logits"):
        np.testing.assert_allclose(out2[key], out[key], atol=1e-5)


def test_attention_probabilities_sown_sum_to_one_and_ignore_padding(small_params, batch):
    model = BertForPreTraining(SMALL, sow_attention=True)
    _, state = model.apply({"params": small_params}, *model_inputs(batch), mutable=["intermediates"])
    probs = np.asarray(state["intermediates"]["bert"]["encoder"]["layer_1"]["attention"]["self"]["attention_probs"][0])
    assert probs.shape == (3, SMALL.num_attention_heads, 12, 12)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    padded_keys = batch["input_mask"][:, None, None, :] == 0
    assert np.broadcast_to(padded_keys, probs.shape).any()
    assert probs[np.broadcast_to(padded_keys, probs.shape)].max() < 1e-4  # exp(-10000) underflows to 0
    # Off by default: nothing is sown.
    _, state = BertForPreTraining(SMALL).apply({"params": small_params}, *model_inputs(batch), mutable=["intermediates"])
    assert not state.get("intermediates")


def test_dropout_only_when_not_deterministic(small_params, batch):
    model = BertForPreTraining(SMALL)
    apply = functools.partial(model.apply, {"params": small_params}, *model_inputs(batch))
    base = apply(deterministic=True)["sequence_output"]
    again = apply(deterministic=True, rngs={"dropout": jax.random.PRNGKey(5)})["sequence_output"]
    np.testing.assert_array_equal(base, again)
    drop1 = apply(deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})["sequence_output"]
    drop1b = apply(deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})["sequence_output"]
    drop2 = apply(deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})["sequence_output"]
    assert not np.allclose(drop1, base, atol=1e-3)
    assert not np.allclose(drop1, drop2, atol=1e-3)
    np.testing.assert_array_equal(drop1, drop1b)


def test_attention_dropout_is_not_broadcast(small_params, batch):
    """Dropout on attention probabilities differs between heads and batch rows (not Flax's broadcast dropout)."""
    config = SMALL.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)
    batch["input_ids"][1] = batch["input_ids"][0]
    batch["input_mask"][1] = batch["input_mask"][0]
    batch["segment_ids"][1] = batch["segment_ids"][0]
    model = BertForPreTraining(config)
    out = model.apply({"params": small_params}, *model_inputs(batch), deterministic=False,
                      rngs={"dropout": jax.random.PRNGKey(3)})
    seq = np.asarray(out["sequence_output"])
    assert not np.allclose(seq[0], seq[1], atol=1e-4)  # identical rows get different dropout masks


def test_bfloat16_forward_close_to_float32(small_params, batch):
    f32 = BertForPreTraining(SMALL).apply({"params": small_params}, *model_inputs(batch))
    bf16 = BertForPreTraining(SMALL, dtype=jnp.bfloat16).apply({"params": small_params}, *model_inputs(batch))
    assert bf16["sequence_output"].dtype == jnp.bfloat16
    assert bf16["mlm_logits"].dtype == jnp.float32 and bf16["nsp_logits"].dtype == jnp.float32
    for key in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits"):
        ref, got = np.asarray(f32[key], np.float32), np.asarray(bf16[key], np.float32)
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert rel < 2e-2, (key, rel)


def test_param_dtype_is_independent_of_compute_dtype():
    model = BertForPreTraining(SMALL, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert {x.dtype for x in jax.tree.leaves(abstract_params(model))} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_encoder_equals_unrolled(small_params, remat, batch):
    unrolled = BertForPreTraining(SMALL).apply({"params": small_params}, *model_inputs(batch),
                                               output_hidden_states=True)
    stacked = stack_layers(small_params, SMALL.num_hidden_layers)
    assert stacked["bert"]["encoder"]["layers"]["attention"]["self"]["query"]["kernel"].shape == (3, 32, 32)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), unstack_layers(stacked), small_params)
    scanned = BertForPreTraining(SMALL, scan_layers=True, remat=remat).apply(
        {"params": stacked}, *model_inputs(batch), output_hidden_states=True)
    for key in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits", "hidden_states"):
        np.testing.assert_allclose(scanned[key], unrolled[key], atol=2e-5, rtol=1e-5)


def test_remat_and_scan_give_same_gradients(small_params, batch):
    grads = pretraining_grad(small_params, BertForPreTraining(SMALL), batch)
    stacked = stack_layers(small_params, SMALL.num_hidden_layers)
    grads_scan = pretraining_grad(stacked, BertForPreTraining(SMALL, scan_layers=True, remat=True), batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), unstack_layers(grads_scan), grads)


@pytest.mark.parametrize("policy", ["nothing_saveable", "dots_saveable", "minimal"])
def test_remat_policies_give_the_same_gradients(small_params, policy, batch):
    reference = pretraining_grad(small_params, BertForPreTraining(SMALL), batch)
    grads = pretraining_grad(small_params, BertForPreTraining(SMALL, remat=policy), batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, reference)


def test_remat_policies_change_what_is_recomputed(small_params, batch):
    def matmuls_in_backward(policy):
        loss_fn = functools.partial(pretraining_loss, model=BertForPreTraining(SMALL, remat=policy), batch=batch)
        return jax.jit(jax.grad(loss_fn)).lower(small_params).as_text().count("dot_general")

    counts = {policy: matmuls_in_backward(policy) for policy in ("nothing_saveable", "minimal", "dots_saveable")}
    assert counts["dots_saveable"] < counts["nothing_saveable"], counts  # saved matmuls are not recomputed


def test_gradient_is_finite_and_matches_finite_difference(batch):
    """jax.grad of the full pretraining loss against a central difference, in float64 so the check is tight."""
    config = SMALL.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    with jax.enable_x64(True):
        model = BertForPreTraining(config, dtype=jnp.float64, param_dtype=jnp.float64)
        params = init_params(model, jax.random.PRNGKey(0))
        loss_fn = jax.jit(functools.partial(pretraining_loss, model=model, batch=batch))  # one compile, 3 calls

        assert loss_fn(params).dtype == jnp.float64
        grads = jax.grad(loss_fn)(params)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
        layer = ("bert", "encoder", "layer_1", "attention", "self", "query")
        kernel, kernel_grad = params, grads
        for key in layer:
            kernel, kernel_grad = kernel[key], kernel_grad[key]
        kernel, kernel_grad = kernel["kernel"], kernel_grad["kernel"]
        index = np.unravel_index(int(jnp.argmax(jnp.abs(kernel_grad))), kernel.shape)
        eps = 1e-6

        def loss_at(delta):
            p = jax.tree.map(lambda x: x, params)
            leaf = p
            for key in layer:
                leaf = leaf[key]
            leaf["kernel"] = kernel.at[index].add(delta)
            return float(loss_fn(p))

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = float(kernel_grad[index])
        assert abs(analytic) > 1e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4)


def test_attention_maps_helper_for_notebooks(small_params, batch):
    from bertjax.visualization import attention_maps

    maps = attention_maps(SMALL, small_params, batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    assert maps.shape == (SMALL.num_hidden_layers, 3, SMALL.num_attention_heads, 12, 12)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    scanned = attention_maps(SMALL, stack_layers(small_params, SMALL.num_hidden_layers), batch["input_ids"],
                             batch["input_mask"], batch["segment_ids"])
    np.testing.assert_allclose(scanned, maps, atol=1e-5)
    assert float(maps[:, 2, :, :, 5:].max()) < 1e-4  # row 2 has 5 real tokens


def test_dense_dot_accumulates_in_float32_and_its_gradient_matches():
    """layers.wide_accumulation_dot_general: float32 is lax.dot_general exactly; bfloat16 (forward and the custom
    backward) equals the float32 computation within bfloat16 rounding, with bfloat16 results and gradients."""
    from bertjax import layers

    x = jax.random.normal(jax.random.key(0), (4, 7, 16))
    w = jax.random.normal(jax.random.key(1), (16, 5))
    numbers = (((2,), (0,)), ((), ()))
    weights = jnp.arange(1.0, 6.0)

    def loss(dot, a, b):
        return (dot(a, b, numbers).astype(jnp.float32) * weights).sum()

    exact = jax.grad(loss, argnums=(1, 2))(jax.lax.dot_general, x, w)
    same = jax.grad(loss, argnums=(1, 2))(layers.wide_accumulation_dot_general, x, w)
    for a, b in zip(exact, same):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    out = layers.wide_accumulation_dot_general(xb, wb, numbers)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.einsum("abi,io->abo", xb.astype(np.float32),
                                                                       wb.astype(np.float32)), rtol=1e-2, atol=2e-2)
    grads = jax.grad(loss, argnums=(1, 2))(layers.wide_accumulation_dot_general, xb, wb)
    reference = jax.grad(loss, argnums=(1, 2))(jax.lax.dot_general, xb.astype(jnp.float32), wb.astype(jnp.float32))
    for got, want in zip(grads, reference):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), rtol=1e-2, atol=0.1)
