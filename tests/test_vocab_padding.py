"""Vocab padding for the TPU matrix units (`config.model.vocab_pad_multiple`): invisible in every output.

A padded BertForPreTraining has a [W, H] word-embedding table and a [W] MLM output bias (W = V rounded up); its logits
are sliced back to V. These tests check that the logits, loss, metric sums and real-row gradients are the unpadded
model's (float32, max abs difference <= 1e-6), that padded rows get no gradient and stay zero through the optimizer
(weight decay included), and that the padding never crosses the codebase's boundary: a padded run exports a [V, H]
Hugging Face directory that transformers loads, and init_from pads or cuts whatever it is given.
"""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file

from _batches import VOCAB_SIZE, make_batch
from _train_helpers import run_steps, synthetic_data, tiny_config
from bertjax import checkpoint, heads, losses, run_config, sharding
from bertjax.convert import hf, sources
from bertjax.errors import BertjaxError
from bertjax.model import (BertConfig, BertForPreTraining, flops_per_example, init_params, pad_vocab,
                           padded_vocab_size, unpad_vocab)
from bertjax.task import pretraining_objective
from bertjax.train import Trainer, train_and_evaluate
from bertjax.visualization import attention_maps

V, W = 1000, 1024  # the test vocab and its padding to a multiple of 128
CONFIG = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TOL = 1e-6
EMBEDDINGS = ("bert", "embeddings", "word_embeddings", "embedding")
BIAS = ("cls", "predictions", "output_bias")


def _leaf(params, path):
    for name in path:
        params = params[name]
    return params


def _batch(seed=0, batch_size=4, seq=16, predictions=5):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=(batch_size, seq)).astype(np.int32)
    ids[0, :predictions] = np.arange(V - predictions, V)  # the highest real ids, next to the padding
    return {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": (np.arange(seq) >= seq // 2)[None]
            .repeat(batch_size, 0).astype(np.int32),
            "masked_lm_positions": rng.integers(0, seq, size=(batch_size, predictions)).astype(np.int32),
            "masked_lm_ids": rng.integers(0, V, size=(batch_size, predictions)).astype(np.int32),
            "masked_lm_weights": (rng.random((batch_size, predictions)) > 0.3).astype(np.float32),
            "next_sentence_labels": (np.arange(batch_size) % 2).astype(np.int32)}


def _loss_and_sums(model, params, batch):
    out = model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                      batch["masked_lm_positions"])
    sums = losses.metric_sums(out["mlm_logits"], out["nsp_logits"], batch)
    return losses.loss_from_sums(sums), (out, sums)


def test_padded_vocab_size():
    assert [padded_vocab_size(v, 128) for v in (1, 128, 129, 30522)] == [128, 128, 256, 30592]
    assert padded_vocab_size(30522, 1) == 30522
    for bad in (0, -128, 1.5, True):
        with pytest.raises(BertjaxError, match="vocab_pad_multiple"):
            padded_vocab_size(V, bad)


def test_padded_init_is_the_unpadded_init_plus_zero_rows():
    plain = init_params(BertForPreTraining(CONFIG), jax.random.PRNGKey(0))
    padded = init_params(BertForPreTraining(CONFIG, vocab_pad_multiple=128), jax.random.PRNGKey(0))
    assert _leaf(padded, EMBEDDINGS).shape == (W, 32) and _leaf(padded, BIAS).shape == (W,)
    assert not np.any(np.asarray(_leaf(padded, EMBEDDINGS)[V:])) and not np.any(np.asarray(_leaf(padded, BIAS)[V:]))
    jax.tree.map(np.testing.assert_array_equal, unpad_vocab(padded, V), plain)  # bitwise
    jax.tree.map(np.testing.assert_array_equal, pad_vocab(plain, W), padded)


def test_logits_loss_metrics_and_gradients_equal_the_unpadded_models():
    plain_model, padded_model = BertForPreTraining(CONFIG), BertForPreTraining(CONFIG, vocab_pad_multiple=128)
    params = init_params(plain_model, jax.random.PRNGKey(0))
    params["cls"]["predictions"]["output_bias"] = jax.random.normal(jax.random.PRNGKey(3), (V,))
    padded = pad_vocab(params, W)
    # Garbage in the padded rows must not matter either: they are never looked up and their logits are cut off.
    garbage = 100.0 * jax.random.normal(jax.random.PRNGKey(4), (W - V, 32))
    padded["bert"]["embeddings"]["word_embeddings"]["embedding"] = _leaf(padded, EMBEDDINGS).at[V:].set(garbage)
    padded["cls"]["predictions"]["output_bias"] = _leaf(padded, BIAS).at[V:].set(1e4)
    batch = _batch()

    grad_fn = jax.value_and_grad(_loss_and_sums, argnums=1, has_aux=True)
    (loss, (out, sums)), grads = grad_fn(plain_model, params, batch)
    (loss_p, (out_p, sums_p)), grads_p = grad_fn(padded_model, padded, batch)

    assert out_p["mlm_logits"].shape == (4, 5, V)
    logits_diff = float(jnp.abs(out_p["mlm_logits"] - out["mlm_logits"]).max())
    assert logits_diff <= TOL, logits_diff
    for name in ("nsp_logits", "sequence_output", "pooled_output"):
        assert float(jnp.abs(out_p[name] - out[name]).max()) <= TOL, name
    assert abs(float(loss_p) - float(loss)) <= TOL
    for name in sums:
        assert abs(float(sums_p[name]) - float(sums[name])) <= TOL, name
    np.testing.assert_array_equal(jnp.argmax(out_p["mlm_logits"], -1), jnp.argmax(out["mlm_logits"], -1))

    for path in (EMBEDDINGS, BIAS):
        assert not np.any(np.asarray(_leaf(grads_p, path)[V:])), path  # exactly zero
    real_diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), unpad_vocab(grads_p, V), grads)
    assert max(jax.tree.leaves(real_diff)) <= TOL, real_diff


def test_attention_maps_take_padded_params():
    params = init_params(BertForPreTraining(CONFIG), jax.random.PRNGKey(0))
    ids = _batch()["input_ids"]
    np.testing.assert_array_equal(attention_maps(CONFIG, pad_vocab(params, W), ids),
                                  attention_maps(CONFIG, params, ids))


@pytest.mark.parametrize("optimizer", ["bert_adam", "lamb"])
def test_training_keeps_padded_rows_zero_and_matches_the_unpadded_run(optimizer):
    padded_config = tiny_config()  # configs/base.py: vocab_pad_multiple 128, so V = 96 -> W = 128
    plain_config = tiny_config()
    plain_config.model.vocab_pad_multiple = 1
    for config in (padded_config, plain_config):
        config.optimizer.name = optimizer
    assert padded_config.optimizer.weight_decay > 0
    _, initial, _ = run_steps(plain_config, 0)
    losses_plain, plain, _ = run_steps(plain_config, 3)
    losses_padded, padded, trainer = run_steps(padded_config, 3,
                                               initial_params=pad_vocab(jax.device_get(initial.params), 128))
    assert _leaf(padded.params, EMBEDDINGS).shape[0] == 128 and trainer.model.vocab_pad_multiple == 128
    assert not np.any(np.asarray(_leaf(padded.params, EMBEDDINGS)[VOCAB_SIZE:]))
    assert not np.any(np.asarray(_leaf(padded.params, BIAS)[VOCAB_SIZE:]))
    np.testing.assert_allclose(losses_padded, losses_plain, rtol=0, atol=1e-5)
    diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                        jax.device_get(unpad_vocab(padded.params, VOCAB_SIZE)), jax.device_get(plain.params))
    assert max(jax.tree.leaves(diff)) <= 1e-5, diff


def trainer_config(config):
    """The BertConfig a run of `config` on the synthetic data trains."""
    return run_config.bert_config(config, VOCAB_SIZE)


def test_flops_count_the_padded_matmul():
    plain, padded = flops_per_example(CONFIG, 16, 5), flops_per_example(CONFIG, 16, 5, vocab_pad_multiple=128)
    assert padded - plain == 3 * 5 * 2 * 32 * (W - V)


def test_config_field_is_checked_at_the_door():
    config = tiny_config()
    config.model.vocab_pad_multiple = 0
    with pytest.raises(BertjaxError, match=r"--config.model.vocab_pad_multiple=0 must be a positive integer"):
        run_config.validate(config, 1, 1)


def test_hugging_face_weights_load_into_a_padded_model():
    """HF fixture (transformers BertForPreTraining, V = 1000): padded on the way in, same outputs as transformers."""
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "hf_bert")
    config = hf.read_config(fixtures)
    model = BertForPreTraining(config, vocab_pad_multiple=128)
    flat, missing = hf.map_state_dict(hf.load_state_dict(fixtures), config, model=model)
    assert not missing and flat[EMBEDDINGS].shape == (W, config.hidden_size) and flat[BIAS].shape == (W,)
    params = traverse_util.unflatten_dict(flat)
    inputs, expected = np.load(os.path.join(fixtures, "inputs.npz")), np.load(os.path.join(fixtures, "expected.npz"))
    out = model.apply({"params": params}, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
                      inputs["masked_lm_positions"])
    assert np.abs(np.asarray(out["mlm_logits"]) - expected["mlm_logits_at_positions"]).max() <= 1e-5


def _abstract_params(config, objective=None):
    mesh = sharding.create_mesh(1, 1, jax.devices()[:1])
    with jax.set_mesh(mesh):
        objective = objective or pretraining_objective(config)
        return Trainer(config, trainer_config(config), mesh, objective).abstract_state_with_shardings().params


@pytest.mark.slow
def test_padded_run_exports_unpadded_and_init_from_pads_or_cuts(synthetic_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    # The padded run: the shared synthetic run (configs/base.py pads its vocab), copied, since it is resumed below.
    padded_config = synthetic_run.config.copy_and_resolve_references()
    assert padded_config.model.vocab_pad_multiple == 128
    padded_dir, plain_dir = tmp_path / "padded", tmp_path / "plain"
    shutil.copytree(synthetic_run.workdir, padded_dir)
    plain_config = tiny_config(num_train_steps=2)
    plain_config.model.vocab_pad_multiple = 1
    train_and_evaluate(plain_config, str(plain_dir), data=synthetic_data(plain_config))

    # The export is unpadded: [V, H] and [V], config.json vocab_size V; transformers loads it as it is.
    tensors = load_file(padded_dir / "export" / hf.WEIGHTS_NAME)
    assert tensors["bert.embeddings.word_embeddings.weight"].shape == (VOCAB_SIZE, 32)
    assert tensors["cls.predictions.bias"].shape == (VOCAB_SIZE,)
    model, info = transformers.BertForPreTraining.from_pretrained(padded_dir / "export", output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    assert model.config.vocab_size == VOCAB_SIZE
    # ... and its logits are those of the padded run's own params (restored from its checkpoint, W rows).
    padded_abstract = _abstract_params(padded_config)
    restored = checkpoint.load_params(str(padded_dir), padded_abstract)
    assert _leaf(restored, EMBEDDINGS).shape == (128, 32)
    batch = make_batch(4, start=1000)
    ours = BertForPreTraining(trainer_config(padded_config), vocab_pad_multiple=128).apply(
        {"params": restored}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
        batch["masked_lm_positions"])
    with torch.no_grad():
        theirs = model.eval()(input_ids=torch.tensor(batch["input_ids"]).long(),
                              attention_mask=torch.tensor(batch["input_mask"]).long(),
                              token_type_ids=torch.tensor(batch["segment_ids"]).long())
    positions = torch.tensor(batch["masked_lm_positions"]).long()
    theirs_mlm = torch.take_along_dim(theirs.prediction_logits, positions[..., None], dim=1).numpy()
    assert np.abs(np.asarray(ours["mlm_logits"]) - theirs_mlm).max() <= 1e-5
    # convert.sources cuts the padding off a padded workdir too, bitwise equal to the export.
    from_workdir, from_export = sources.load_pretrained(padded_dir), sources.load_pretrained(padded_dir / "export")
    jax.tree.map(np.testing.assert_array_equal, from_workdir.params, from_export.params)
    jax.tree.map(np.testing.assert_array_equal, from_workdir.params, jax.device_get(unpad_vocab(restored, VOCAB_SIZE)))

    # init_from an unpadded workdir (Orbax) or export (convert.sources) into a padded run: zero-padded to W rows.
    plain_params = sources.load_pretrained(plain_dir).params
    for source in (plain_dir, plain_dir / "export"):
        loaded = jax.device_get(checkpoint.load_params(str(source), padded_abstract))
        assert _leaf(loaded, EMBEDDINGS).shape == (128, 32) and _leaf(loaded, BIAS).shape == (128,)
        assert not np.any(_leaf(loaded, EMBEDDINGS)[VOCAB_SIZE:]) and not np.any(_leaf(loaded, BIAS)[VOCAB_SIZE:])
        jax.tree.map(np.testing.assert_array_equal, unpad_vocab(loaded, VOCAB_SIZE), plain_params)
    # A padded workdir into an unpadded run, or into a fine-tuning head (which never pads): cut to V rows.
    loaded = jax.device_get(checkpoint.load_params(str(padded_dir), _abstract_params(plain_config)))
    jax.tree.map(np.testing.assert_array_equal, loaded, from_workdir.params)
    head = heads.BertForSequenceClassification(trainer_config(padded_config), num_labels=2)
    head_abstract = jax.eval_shape(lambda: init_params(head, jax.random.PRNGKey(0)))
    mesh = sharding.create_mesh(1, 1, jax.devices()[:1])
    head_abstract = sharding.with_shardings(head_abstract, sharding.state_shardings(head_abstract, mesh))
    encoder = jax.device_get(checkpoint.load_params(str(padded_dir), head_abstract, type(head).__name__))
    jax.tree.map(np.testing.assert_array_equal, encoder["bert"], from_workdir.params["bert"])

    # Evaluating the unpadded run's params in a padded run gives its metrics (eval_only from init_from).
    plain_eval = tiny_config(num_train_steps=2, init_from=str(plain_dir), eval_only=True)
    plain_eval.model.vocab_pad_multiple = 1
    padded_eval = tiny_config(num_train_steps=2, init_from=str(plain_dir), eval_only=True)
    metrics_plain = train_and_evaluate(plain_eval, str(tmp_path / "eval_plain"), data=synthetic_data(plain_eval))
    metrics_padded = train_and_evaluate(padded_eval, str(tmp_path / "eval_padded"), data=synthetic_data(padded_eval))
    assert metrics_padded.keys() == metrics_plain.keys()
    for name, value in metrics_plain.items():
        assert abs(metrics_padded[name] - value) <= 1e-6, name

    # The padded workdir resumes: its checkpoint restores onto the padded state and training continues.
    more = padded_config.copy_and_resolve_references()
    more.train.num_train_steps += 1
    assert np.isfinite(train_and_evaluate(more, str(padded_dir), data=synthetic_data(more))["loss"])
    # Resuming it unpadded is refused before anything is restored, naming the field.
    more.model.vocab_pad_multiple = 1
    with pytest.raises(BertjaxError, match=r"incompatible run: config.model.vocab_pad_multiple was 128, now 1"):
        train_and_evaluate(more, str(padded_dir), data=synthetic_data(more))
