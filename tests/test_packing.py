"""Sequence packing with NSP: the packer's rows, `create_pretraining_data --pack` (the pairs and masks of the unpacked
dataset, in fewer rows), and the model: the loss, metrics and gradients of packed rows equal those of the same
pairs unpacked."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax import losses, objectives
from bertjax.data import catalog, packing, pipeline
from bertjax.data import create_pretraining_data as cpd
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig

from test_instances import write_corpus

T, P, K = 64, 12, 5
CLS, SEP, MASK, VOCAB = 2, 3, 4, 300


def _unpacked_rows(num, seed):
    """Random [CLS] A [SEP] B [SEP] rows of 5..40 tokens with 15% of their tokens predicted (sorted positions)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(5, 41, num)
    rows = {key: np.zeros((num, T), np.int32) for key in ("input_ids", "input_mask", "segment_ids")}
    rows.update(masked_lm_positions=np.zeros((num, P), np.int32), masked_lm_ids=np.zeros((num, P), np.int32),
                masked_lm_weights=np.zeros((num, P), np.float32),
                next_sentence_labels=rng.integers(0, 2, num).astype(np.int32))
    for i, length in enumerate(n):
        a = int(rng.integers(1, length - 3))
        rows["input_ids"][i, :length] = rng.integers(10, VOCAB, length)
        rows["input_ids"][i, [0, a + 1, length - 1]] = [CLS, SEP, SEP]
        rows["input_mask"][i, :length] = 1
        rows["segment_ids"][i, a + 2:length] = 1
        count = max(1, round(0.15 * length))
        where = np.sort(rng.choice(np.setdiff1d(np.arange(1, length - 1), [a + 1]), count, replace=False))
        rows["masked_lm_positions"][i, :count] = where
        rows["masked_lm_ids"][i, :count] = rows["input_ids"][i, where]
        rows["masked_lm_weights"][i, :count] = 1.0
        rows["input_ids"][i, where] = MASK
    return rows, n


def _packed(rows, n):
    plan = packing.plan_rows(n, (rows["masked_lm_weights"] > 0).sum(1), T, P, K)
    return packing.pack(rows, n, plan, K), plan


def test_plan_fills_rows_within_every_budget_and_uses_each_pair_once():
    rows, n = _unpacked_rows(200, seed=0)
    predictions = (rows["masked_lm_weights"] > 0).sum(1)
    plan = packing.plan_rows(n, predictions, T, P, K)
    assert sorted(i for row in plan for i in row) == list(range(200))
    assert all(len(row) <= K and n[row].sum() <= T and predictions[row].sum() <= P for row in plan)
    assert len(plan) < 0.5 * 200                      # 5..40-token pairs: well over two a row
    with pytest.raises(BertjaxError, match="max_pairs_per_seq=0"):
        packing.plan_rows(n, predictions, T, P, 0)


def test_pack_then_unpack_gives_back_every_pair():
    rows, n = _unpacked_rows(60, seed=1)
    packed, plan = _packed(rows, n)
    assert packed["pair_ids"].max() <= K and packed["input_ids"].shape == (len(plan), T)
    assert np.array_equal(packed["input_mask"], (packed["pair_ids"] > 0).astype(np.int32))
    cls_rows, cls_slots = np.nonzero(packed["next_sentence_weights"])
    assert np.all(packed["input_ids"][cls_rows, packed["next_sentence_positions"][cls_rows, cls_slots]] == CLS)
    order = [i for row in plan for i in row]
    back = packing.unpack(packed)
    for key, value in back.items():
        np.testing.assert_array_equal(value, rows[key][order], err_msg=key)


def _model_and_params(seed=0):
    config = BertConfig.named("tiny", vocab_size=VOCAB, max_position_embeddings=T, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    objective = objectives.Pretraining(P, vocab_pad_multiple=128)
    model = objective.build_model(config)
    params = model.init(jax.random.PRNGKey(seed), *objective.init_inputs(T))["params"]
    return objective, model, params


def test_packed_loss_metrics_and_gradients_equal_the_same_pairs_unpacked():
    rows, n = _unpacked_rows(24, seed=2)
    packed, plan = _packed(rows, n)
    assert len(plan) < 12
    objective, model, params = _model_and_params()

    def loss_and_sums(params, batch):
        batch = {k: jnp.asarray(v) for k, v in batch.items()}
        outputs = objective.forward(model, params, batch, deterministic=True)
        sums = objective.metric_sums(outputs, batch)
        return objective.loss(sums, objective.denominators(batch)), (sums, outputs["nsp_logits"])

    grad_fn = jax.jit(jax.value_and_grad(loss_and_sums, has_aux=True))
    (loss_u, (sums_u, nsp_u)), grads_u = grad_fn(params, rows)
    (loss_p, (sums_p, nsp_p)), grads_p = grad_fn(params, packed)
    assert abs(float(loss_p) - float(loss_u)) < 1e-5, (float(loss_p), float(loss_u))
    for key in losses.METRIC_SUM_KEYS:
        np.testing.assert_allclose(float(sums_p[key]), float(sums_u[key]), rtol=1e-5, atol=1e-5, err_msg=key)
    assert float(sums_p["next_sentence_count"]) == 24.0 and nsp_p.shape == (len(plan), K, 2)
    order = [i for row in plan for i in row]
    real = np.asarray(packed["next_sentence_weights"]) > 0
    np.testing.assert_allclose(np.asarray(nsp_p)[real], np.asarray(nsp_u)[order], atol=1e-5)
    for g_u, g_p in zip(jax.tree.leaves(grads_u), jax.tree.leaves(grads_p)):
        np.testing.assert_allclose(np.asarray(g_p), np.asarray(g_u), atol=2e-5, rtol=1e-4)
    # One pair a row through the packed path is the unpacked model itself.
    (loss_1, _), _ = grad_fn(params, packing.pack(rows, n, [[i] for i in range(24)], 1))
    assert abs(float(loss_1) - float(loss_u)) < 1e-5


def _records(out):
    source = tfds.builder_from_directory(str(out)).as_data_source()["train"]
    rows = [source[i] for i in range(len(source))]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _pair_keys(batch):
    return sorted(tuple(np.concatenate([batch[k][i] for k in ("input_ids", "segment_ids", "masked_lm_positions",
                                                              "masked_lm_ids")]).tolist())
                  + (int(batch["next_sentence_labels"][i]),) for i in range(len(batch["input_ids"])))


def test_create_pretraining_data_pack_keeps_the_pairs_and_masks_of_the_unpacked_dataset(tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "c.txt", 120, seed=4)
    kwargs = dict(max_seq_length=T, max_predictions_per_seq=P, dupe_factor=2, num_workers=1, short_seq_prob=0.5,
                  show_progress=False)
    plain = cpd.create_pretraining_data(str(corpus), tmp_path / "plain", vocab_dir, **kwargs)
    packed = cpd.create_pretraining_data(str(corpus), tmp_path / "packed", vocab_dir, max_pairs_per_seq=K, **kwargs)
    assert packed["instances"] == plain["instances"] == plain["rows"] > packed["rows"]
    assert packed["padding_fraction"] < plain["padding_fraction"]
    assert catalog.read_manifest(tmp_path / "packed")["max_pairs_per_seq"] == K
    rows = _records(tmp_path / "packed")
    assert rows["next_sentence_labels"].shape == (packed["rows"], K)
    assert _pair_keys(packing.unpack(rows)) == _pair_keys(_records(tmp_path / "plain"))
    # The pipeline hands packed rows to training as they are.
    batch = next(pipeline.create_iterator(str(tmp_path / "packed"), "train", global_batch_size=4, process_index=0,
                                          process_count=1))
    assert batch["pair_ids"].shape == (4, T) and batch["next_sentence_weights"].shape == (4, K)


def test_pack_needs_static_masking(tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "c.txt", 10, seed=5)
    with pytest.raises(BertjaxError, match="--pack needs --masking=static"):
        cpd.create_pretraining_data(str(corpus), tmp_path / "out", vocab_dir, masking="dynamic", max_pairs_per_seq=4,
                                    show_progress=False)
    assert not (tmp_path / "out").exists()
