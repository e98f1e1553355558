"""Tests for bertjax.train_state: the original's Adam, the schedules, the decay mask, clipping, LAMB on stacked
layers, the non-finite guard and TrainState under jax.jit / Orbax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from bertjax import model
from bertjax.errors import BertjaxError
from bertjax.train_state import (
    TrainState,
    bert_adam,
    create_optimizer,
    decay_mask,
    default_optimizer_config,
    nonfinite_counts,
)


def optimizer_config(**overrides):
    """The default optimizer config with `overrides` applied."""
    config = default_optimizer_config()
    config.update(overrides)
    return config


def path_strings(tree) -> dict:
    """{'a/b/c': leaf} for a nested dict."""
    return {"/".join(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def small_bert_params(rng_seed: int = 0) -> dict:
    """A two-layer tree with the documented BERT paths (unrolled), small random values; layer_1 is 10x layer_0."""
    rng = np.random.default_rng(rng_seed)
    rand = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    layer = lambda s: {  # noqa: E731
        "attention": {"self": {"query": {"kernel": s * rand(4, 4), "bias": s * rand(4)}},
                      "output": {"LayerNorm": {"scale": 1 + s * rand(4), "bias": s * rand(4)}}},
        "intermediate": {"dense": {"kernel": s * rand(4, 8), "bias": s * rand(8)}},
    }
    return {
        "bert": {"embeddings": {"word_embeddings": {"embedding": rand(6, 4)}},
                 "encoder": {"layer_0": layer(1.0), "layer_1": layer(10.0)}},
        "cls": {"predictions": {"output_bias": rand(6)}, "seq_relationship": {"kernel": rand(4, 2)}},
    }


# ---------------------------------------------------------------------------------------------------------------------
# bert_adam
# ---------------------------------------------------------------------------------------------------------------------


def test_bert_adam_matches_the_original_formula_without_bias_correction():
    grads = [np.array([0.5, -2.0], np.float32), np.array([0.1, 1.0], np.float32), np.array([-0.3, 0.0], np.float32)]
    tx = bert_adam(b1=0.9, b2=0.999, eps=1e-6)
    state = tx.init(jnp.zeros(2))
    updates = []
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state)
        updates.append(np.asarray(u))

    # Step 1 by hand: m = 0.1 g, v = 0.001 g^2, u = 0.1 g / (sqrt(0.001) |g| + 1e-6) ~ sqrt(10) sign(g).
    np.testing.assert_allclose(updates[0], [0.05 / (0.015811388 + 1e-6), -0.2 / (0.063245553 + 1e-6)], rtol=1e-6)
    np.testing.assert_allclose(updates[0], [3.1620777, -3.1622276], rtol=1e-6)
    # Steps 2 and 3 with numpy, the original's recurrence.
    m = np.zeros(2)
    v = np.zeros(2)
    for step, g in enumerate(grads):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        np.testing.assert_allclose(updates[step], m / (np.sqrt(v) + 1e-6), rtol=1e-5)
    assert state.mu.dtype == jnp.float32 and state.nu.dtype == jnp.float32

    # Bias-corrected Adam gives ~1.0 on the first step, not ~3.16.
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-6)
    adam_update, _ = adam.update(jnp.asarray(grads[0]), adam.init(jnp.zeros(2)))
    np.testing.assert_allclose(np.abs(adam_update), [1.0, 1.0], rtol=1e-4)
    assert not np.allclose(adam_update, updates[0], rtol=0.1)


def test_bert_adam_keeps_float32_moments_for_bfloat16_params():
    tx = bert_adam()
    params = jnp.ones(3, jnp.bfloat16)
    state = tx.init(params)
    update, state = tx.update(jnp.full(3, 0.5, jnp.bfloat16), state)
    assert state.mu.dtype == jnp.float32 and state.nu.dtype == jnp.float32
    assert update.dtype == jnp.bfloat16


def test_full_bert_adam_step_decays_kernels_but_not_biases():
    # W = 0 with the "bert" schedule gives lr(0) = lr; clipping off so the formula is plain.
    config = optimizer_config(learning_rate=0.1, warmup_steps=0, clip_norm=0.0, weight_decay=0.01)
    tx, _ = create_optimizer(config, num_train_steps=1000)
    params = {"dense": {"kernel": jnp.array([2.0, -1.0]), "bias": jnp.array([2.0, -1.0])}}
    grads = {"dense": {"kernel": jnp.array([0.5, -2.0]), "bias": jnp.array([0.5, -2.0])}}
    state = TrainState.create(params, tx, jax.random.key(0))
    new = state.apply_gradients(grads, tx).params

    g = np.array([0.5, -2.0])
    adam_u = 0.1 * g / (np.sqrt(0.001 * g * g) + 1e-6)
    p = np.array([2.0, -1.0])
    np.testing.assert_allclose(new["dense"]["kernel"], p - 0.1 * (adam_u + 0.01 * p), rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["bias"], p - 0.1 * adam_u, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------------------

BOUNDARY_STEPS = [0, 1, 9, 10, 11, 99, 100, 101]  # W = 10, N = 100


@pytest.mark.parametrize(
    "schedule, expected",
    [
        # lr*s/W for s < W, else lr*(1 - min(s, N)/N): never reaches lr, 0.9 at both W - 1 and W.
        ("bert", [0.0, 0.1, 0.9, 0.9, 0.89, 0.01, 0.0, 0.0]),
        # peaks at exactly lr at s = W, then lr*(1 - (s - W)/(N - W)).
        ("warmup_linear", [0.0, 0.1, 0.9, 1.0, 1 - 1 / 90, 1 / 90, 0.0, 0.0]),
        # warmup-stable-decay, decay_fraction 0.1: lr from W to N - 10, then lr*(N - s)/10.
        ("wsd", [0.0, 0.1, 0.9, 1.0, 1.0, 0.1, 0.0, 0.0]),
    ],
)
def test_schedule_values_at_boundary_steps(schedule, expected):
    lr = 1e-4
    _, fn = create_optimizer(optimizer_config(learning_rate=lr, warmup_steps=10, schedule=schedule), 100)
    got = [float(fn(s)) for s in BOUNDARY_STEPS]
    np.testing.assert_allclose(got, [lr * e for e in expected], rtol=1e-5, atol=1e-12)
    # Works on int32 step arrays under jit (how the optimizer calls it).
    np.testing.assert_allclose(jax.jit(fn)(jnp.int32(11)), lr * expected[4], rtol=1e-5)


def test_bert_schedule_drops_at_warmup_end_as_in_the_original():
    # W = 10k, N = 1M: lr(W - 1) = 0.9999e-4 and lr(W) = 0.99e-4 (decay counted from step 0).
    _, fn = create_optimizer(optimizer_config(), 1_000_000)
    np.testing.assert_allclose([fn(9_999), fn(10_000)], [1e-4 * 9_999 / 10_000, 0.99e-4], rtol=1e-5)


def test_wsd_holds_the_peak_then_decays_over_its_fraction():
    _, fn = create_optimizer(optimizer_config(learning_rate=1.0, warmup_steps=10, schedule="wsd",
                                              decay_fraction=0.2), 100)
    np.testing.assert_allclose([fn(s) for s in (5, 10, 79, 80, 81, 90, 100, 120)],
                               [0.5, 1.0, 1.0, 1.0, 0.95, 0.5, 0.0, 0.0], atol=1e-6)
    for fraction, match in ((0.0, "decay_fraction=0.0 must be in"), (0.95, "exceed num_train_steps")):
        with pytest.raises(BertjaxError, match=match):
            create_optimizer(optimizer_config(warmup_steps=10, schedule="wsd", decay_fraction=fraction), 100)


def test_one_cycle_rises_to_the_peak_then_anneals_as_pytorch_one_cycle():
    # PyTorch OneCycleLR(max_lr=1, total_steps=100, pct_start=0.3, anneal_strategy="cos") gives these (its step
    # count is one less per phase; the shape and the ends are the same).
    _, fn = create_optimizer(optimizer_config(learning_rate=1.0, warmup_steps=30, schedule="one_cycle"), 100)
    got = np.array([fn(s) for s in (0, 15, 30, 65, 100, 130)])
    start, end = 1 / 25, 1 / 25 / 1e4
    np.testing.assert_allclose(got, [start, (1 + start) / 2, 1.0, (1 + end) / 2, end, end], rtol=1e-5)
    values = np.array([fn(s) for s in range(101)])
    assert values.argmax() == 30 and (np.diff(values[:31]) > 0).all() and (np.diff(values[30:]) < 0).all()
    with pytest.raises(BertjaxError, match="one_cycle needs config.optimizer.warmup_steps >= 1"):
        create_optimizer(optimizer_config(warmup_steps=0, schedule="one_cycle"), 100)


def test_a_schedule_position_sets_the_learning_rate_and_the_state_is_unchanged():
    # The time-budget schedule passes the position; without it the count is used, as optax.scale_by_learning_rate.
    tx, fn = create_optimizer(optimizer_config(name="adamw", learning_rate=1.0, warmup_steps=10, clip_norm=0.0,
                                               weight_decay=0.0), 100)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.5)}
    state = tx.init(params)
    by_count, _ = tx.update(grads, state, params)
    at_position, new_state = tx.update(grads, state, params, schedule_position=jnp.float32(7.5))
    np.testing.assert_allclose(at_position["w"], -float(fn(7.5)) * np.ones(3), rtol=1e-5)  # adam's first step: 1
    np.testing.assert_array_equal(by_count["w"], np.zeros(3))                             # fn(count 0) = 0
    reference = optax.chain(optax.identity(), optax.scale_by_learning_rate(fn)).init(params)[1]
    assert jax.tree.structure(new_state[-1]) == jax.tree.structure(reference)
    assert int(new_state[-1].count) == 1


@pytest.mark.parametrize("schedule", ["bert", "warmup_linear"])
def test_schedule_without_warmup_starts_at_the_peak(schedule):
    _, fn = create_optimizer(optimizer_config(learning_rate=1.0, warmup_steps=0, schedule=schedule), 100)
    np.testing.assert_allclose([fn(0), fn(50), fn(100)], [1.0, 0.5, 0.0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Weight-decay mask
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scan_layers", [False, True])
def test_decay_mask_on_the_bertjax_param_tree(scan_layers):
    bert = model.BertForPreTraining(model.BertConfig.named("tiny", vocab_size=64), scan_layers=scan_layers)
    shapes = jax.eval_shape(lambda: model.init_params(bert, jax.random.key(0)))
    mask = path_strings(decay_mask(shapes))

    decayed = {path for path, flag in mask.items() if flag}
    assert decayed == {path for path in mask if path.endswith(("/kernel", "/embedding"))}
    assert mask["bert/embeddings/word_embeddings/embedding"]
    assert mask["cls/seq_relationship/kernel"]
    assert not mask["cls/predictions/output_bias"]
    assert not mask["cls/seq_relationship/bias"]
    assert not mask["bert/embeddings/LayerNorm/scale"]
    assert not mask["cls/predictions/transform/LayerNorm/scale"]
    encoder = "bert/encoder/layers" if scan_layers else "bert/encoder/layer_0"
    assert mask[f"{encoder}/attention/self/query/kernel"]
    assert not mask[f"{encoder}/attention/output/LayerNorm/scale"]
    assert not mask[f"{encoder}/intermediate/dense/bias"]
    # 3 embedding tables + 6 kernels per layer (one stacked set when scanned) + pooler, MLM transform, NSP kernels.
    assert len(decayed) == 3 + 6 * (1 if scan_layers else 2) + 3


# ---------------------------------------------------------------------------------------------------------------------
# Clipping
# ---------------------------------------------------------------------------------------------------------------------


def one_update(config, params, grads):
    """The params change of one step from a fresh optimizer."""
    tx, _ = create_optimizer(config, num_train_steps=1000)
    state = TrainState.create(params, tx, jax.random.key(0))
    new = state.apply_gradients(grads, tx)
    return jax.tree.map(lambda a, b: np.asarray(a - b), new.params, params)


def test_clip_by_global_norm_at_one_across_all_leaves():
    # A big eps makes bert_adam's first update depend on the gradient's scale: u = 0.1 g / (sqrt(0.001)|g| + 1).
    settings = dict(learning_rate=1.0, warmup_steps=0, weight_decay=0.0, eps=1.0)
    config = optimizer_config(**settings)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    first_update = lambda g: -(0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1.0))  # noqa: E731

    big = {"a": np.array([30.0, 0.0]), "b": np.array([40.0])}  # global norm 50
    clipped = one_update(config, params, jax.tree.map(jnp.asarray, big))
    for name in ("a", "b"):
        np.testing.assert_allclose(clipped[name], first_update(big[name] / 50.0), rtol=1e-5)

    unclipped = one_update(optimizer_config(**settings, clip_norm=0.0), params, jax.tree.map(jnp.asarray, big))
    np.testing.assert_allclose(unclipped["b"], first_update(big["b"]), rtol=1e-5)
    assert not np.allclose(unclipped["b"], clipped["b"])

    small = {"a": np.array([0.3, 0.0]), "b": np.array([0.4])}  # global norm 0.5: left alone
    np.testing.assert_allclose(one_update(config, params, jax.tree.map(jnp.asarray, small))["b"],
                               first_update(small["b"]), rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# LAMB
# ---------------------------------------------------------------------------------------------------------------------


def test_lamb_trust_ratio_is_per_layer_on_stacked_layers():
    config = optimizer_config(name="lamb", learning_rate=0.01, warmup_steps=0)
    params = small_bert_params(0)
    grads = jax.tree.map(lambda p: 0.1 * p + 0.05, small_bert_params(1))
    stacked_params, stacked_grads = model.stack_layers(params, 2), model.stack_layers(grads, 2)

    tx, _ = create_optimizer(config, num_train_steps=100)
    unrolled = TrainState.create(params, tx, jax.random.key(0))
    stacked = TrainState.create(stacked_params, tx, jax.random.key(0))
    for _ in range(2):
        unrolled = unrolled.apply_gradients(grads, tx)
        stacked = stacked.apply_gradients(stacked_grads, tx)

    got = path_strings(model.unstack_layers(stacked.params))
    want = path_strings(unrolled.params)
    assert got.keys() == want.keys()
    for path in want:
        np.testing.assert_allclose(got[path], want[path], rtol=1e-5, atol=1e-7, err_msg=path)

    # Plain optax.lamb takes one norm over the whole stack, which gives a different update.
    plain = optax.lamb(0.01, weight_decay=0.01, mask=decay_mask)
    stacked_plain, _ = plain.update(stacked_grads, plain.init(stacked_params), stacked_params)
    unrolled_plain, _ = plain.update(grads, plain.init(params), params)
    kernel = lambda tree: tree["bert"]["encoder"]  # noqa: E731
    assert not np.allclose(kernel(model.unstack_layers(stacked_plain))["layer_0"]["intermediate"]["dense"]["kernel"],
                           kernel(unrolled_plain)["layer_0"]["intermediate"]["dense"]["kernel"], rtol=1e-3)


def test_lamb_on_unrolled_params_equals_optax_lamb():
    params = small_bert_params(0)
    grads = jax.tree.map(lambda p: 0.1 * p + 0.05, small_bert_params(1))
    tx, _ = create_optimizer(optimizer_config(name="lamb", learning_rate=0.01, warmup_steps=0, clip_norm=0.0), 100)
    ours, _ = tx.update(grads, tx.init(params), params)
    reference = optax.lamb(0.01, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, mask=decay_mask)
    theirs, _ = reference.update(grads, reference.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), ours, theirs)


# ---------------------------------------------------------------------------------------------------------------------
# Non-finite guard and TrainState
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bert_adam", "adamw", "lamb"])
def test_nonfinite_gradient_is_skipped_counted_and_recovered_from(name):
    tx, schedule = create_optimizer(optimizer_config(name=name, learning_rate=0.1, warmup_steps=2), 100)
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    good = {"dense": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.full(2, -0.5)}}
    nan = {"dense": {"kernel": jnp.array([[0.5, jnp.nan], [0.5, 0.5]]), "bias": jnp.full(2, -0.5)}}
    inf = {"dense": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.array([jnp.inf, 0.0])}}
    step = jax.jit(lambda state, grads: state.apply_gradients(grads, tx))
    counts = jax.jit(nonfinite_counts)

    state = step(step(TrainState.create(params, tx, jax.random.key(0)), good), good)
    assert [int(c) for c in counts(state.opt_state)] == [0, 0]
    for expected, bad in [([1, 1], nan), ([2, 2], inf)]:
        skipped = step(state, bad)
        assert [int(c) for c in counts(skipped.opt_state)] == expected
        # Params and every moment are untouched; only the counters move.
        jax.tree.map(np.testing.assert_array_equal, skipped.params, state.params)
        jax.tree.map(np.testing.assert_array_equal, skipped.opt_state[0].inner_state, state.opt_state[0].inner_state)
        state = skipped

    recovered = step(state, good)
    assert [int(c) for c in counts(recovered.opt_state)] == [0, 2]
    assert not np.allclose(recovered.params["dense"]["kernel"], state.params["dense"]["kernel"])
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(recovered.params))
    # The schedule's counter advanced on skipped steps too, so lr of the next update is schedule(state.step).
    assert int(recovered.step) == 5 and int(recovered.opt_state[1].count) == 5
    assert float(schedule(recovered.step)) == pytest.approx(0.1 * (1 - 5 / 100))


def test_train_state_is_a_pytree_of_arrays_through_sharded_jit_and_orbax(tmp_path):
    tx, _ = create_optimizer(optimizer_config(warmup_steps=0), 100)
    params = small_bert_params(0)
    abstract = jax.eval_shape(lambda: TrainState.create(params, tx, jax.random.key(1)))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(abstract))
    assert abstract.step.dtype == jnp.int32 and abstract.step.shape == ()
    assert jax.dtypes.issubdtype(abstract.rng.dtype, jax.dtypes.prng_key)

    mesh = jax.make_mesh((8,), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    shardings = jax.tree.map(lambda _: replicated, abstract)
    create = jax.jit(lambda p: TrainState.create(p, tx, jax.random.key(1)), out_shardings=shardings)
    train_step = jax.jit(lambda s, g: s.apply_gradients(g, tx), in_shardings=(shardings, replicated),
                         out_shardings=shardings, donate_argnums=0)
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    state = train_step(create(params), grads)
    assert int(state.step) == 1
    assert state.params["bert"]["embeddings"]["word_embeddings"]["embedding"].sharding == replicated

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "state", state)
    with ocp.StandardCheckpointer() as checkpointer:
        # The target carries concrete shardings (eval_shape would give an AbstractMesh, which Orbax rejects).
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        restored = checkpointer.restore(tmp_path / "state", target)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))


@pytest.mark.parametrize("name", ["bert_adam", "lamb"])
def test_optimizer_step_keeps_fsdp_shardings_on_an_explicit_mesh(name):
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"))  # explicit axis types, the jax default
    spec = lambda x: NamedSharding(mesh, PartitionSpec(None, "fsdp") if x.ndim == 3 else PartitionSpec())  # noqa: E731
    params = model.stack_layers(small_bert_params(0), 2)
    tx, _ = create_optimizer(optimizer_config(name=name, warmup_steps=0), 100)
    with jax.set_mesh(mesh):
        params = jax.tree.map(lambda x: jax.device_put(x, spec(x)), params)
        shardings = jax.tree.map(spec, jax.eval_shape(lambda p: TrainState.create(p, tx, jax.random.key(0)), params))
        state = jax.jit(lambda p: TrainState.create(p, tx, jax.random.key(0)), out_shardings=shardings)(params)
        state = jax.jit(lambda s, g: s.apply_gradients(g, tx), out_shardings=shardings)(state, params)
    kernel = state.params["bert"]["encoder"]["layers"]["intermediate"]["dense"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec(None, "fsdp")
    assert int(state.step) == 1 and np.isfinite(kernel).all()


def test_create_accepts_a_raw_uint32_key():
    tx, _ = create_optimizer(optimizer_config(warmup_steps=0), 100)
    state = TrainState.create({"w": jnp.ones(2)}, tx, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(jax.random.key_data(state.rng), jax.random.key_data(jax.random.key(3)))


# ---------------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------------


def test_default_config_is_the_paper_recipe():
    config = default_optimizer_config()
    assert (config.name, config.schedule) == ("bert_adam", "bert")
    assert (config.learning_rate, config.warmup_steps) == (1e-4, 10_000)
    assert (config.weight_decay, config.b1, config.b2, config.eps, config.clip_norm) == (0.01, 0.9, 0.999, 1e-6, 1.0)
    assert config.max_consecutive_nonfinite >= 1


@pytest.mark.parametrize(
    "overrides, num_train_steps, message",
    [
        ({"name": "sgd"}, 100, "config.optimizer.name='sgd'"),
        ({"schedule": "cosine"}, 100, "config.optimizer.schedule='cosine'"),
        ({"warmup_steps": 200}, 100, "config.optimizer.warmup_steps=200"),
        ({"learning_rate": 0.0}, 100_000, "config.optimizer.learning_rate"),
        ({"max_consecutive_nonfinite": 0}, 100_000, "config.optimizer.max_consecutive_nonfinite"),
        ({}, 0, "num_train_steps=0"),
    ],
)
def test_bad_config_raises_one_clear_error(overrides, num_train_steps, message):
    with pytest.raises(BertjaxError, match=message.replace(".", r"\.")):
        create_optimizer(optimizer_config(**overrides), num_train_steps)


def test_missing_config_field_names_it():
    config = default_optimizer_config()
    del config["clip_norm"]
    with pytest.raises(BertjaxError, match="missing clip_norm"):
        create_optimizer(config, 100)
