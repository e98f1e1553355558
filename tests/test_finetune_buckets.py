"""Length-bucketed fine-tuning batches (`config.data.length_buckets`, bertjax/data/length_buckets.py): the plan is
deterministic per seed and trains each epoch's examples, the outputs are the padded batch's, eval keeps file order,
the iterator resumes exactly, bad settings are one line."""
import collections
import itertools
import pathlib
import random
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import finetune, heads, train_step
from bertjax.data import length_buckets
from bertjax.data.tokenizer import BertTokenizer
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig
from bertjax.tasks import IGNORE_LABEL
from bertjax.train import train_and_evaluate
from test_finetune import _config, _tagged_sentence, _write_conll, tiny_checkpoint  # noqa: F401  (a fixture)

T = 64


def _arrays(num_rows: int, seed: int) -> dict:
    """Encoded-looking rows: [CLS]-led ids and masks of random lengths 2..T, token labels inside the row."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([3, 5, 9, 12, 20, 30, 40, 64], size=num_rows)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask, rng.integers(5, 40, (num_rows, T)), 0).astype(np.int32)
    labels = np.where(mask, rng.integers(0, 3, (num_rows, T)), IGNORE_LABEL).astype(np.int32)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids), "label_ids": labels,
            "row": np.arange(num_rows)}  # "row" names each example, to follow it through the batches


def _source(buckets, *, seed=0, num_train=100, batch_size=8, num_eval=21, eval_batch_size=8):
    config = _config("finetune_ner", "tagging", "unused", "unused", data__max_seq_length=T, data__seed=seed,
                     data__length_buckets=buckets, train__batch_size=batch_size, eval__batch_size=eval_batch_size)
    return finetune._data_source(config, SimpleNamespace(vocab_size=40), _arrays(num_train, 0),
                                 _arrays(num_eval, 1))


def _take(iterator, count: int) -> list[dict]:
    return [next(iterator) for _ in range(count)]


def test_plan_is_deterministic_per_seed_and_trains_the_same_examples_each_epoch():
    batches = _take(_source("auto").train_iterator(), 36)         # 100 rows, batches of 8: 12 an epoch, 3 epochs
    again = _take(_source("auto").train_iterator(), 36)
    other_seed = _take(_source("auto", seed=1).train_iterator(), 36)
    plain = _take(_source(None).train_iterator(), 36)
    rows = [b["row"].tolist() for b in batches]
    assert rows == [b["row"].tolist() for b in again]
    assert rows != [b["row"].tolist() for b in other_seed]
    assert rows != [b["row"].tolist() for b in plain]              # regrouped ...
    buckets = length_buckets.choose(length_buckets.row_lengths(_arrays(100, 0)["input_mask"]), T, 8)
    for epoch in range(3):                                          # ... from the same examples, epoch by epoch
        span = slice(12 * epoch, 12 * (epoch + 1))
        assert (collections.Counter(r for b in batches[span] for r in b["row"].tolist())
                == collections.Counter(r for b in plain[span] for r in b["row"].tolist()))
    shapes = set()
    for batch in batches:
        length = batch["input_ids"].shape[1]
        shapes.add(length)
        assert {a.shape for a in (batch["input_ids"], batch["input_mask"], batch["label_ids"])} == {(8, length)}
        assert length in buckets
        needed = length_buckets.bucket_of(length_buckets.row_lengths(batch["input_mask"]), buckets)
        assert needed.max() == length and batch["input_mask"].sum() == _arrays(100, 0)["input_mask"][
            batch["row"]].sum()                                     # no real token cut
    assert len(shapes) > 1 and T in shapes


def test_two_processes_take_their_rows_of_the_same_global_batches(monkeypatch):
    whole = _take(_source("auto").train_iterator(), 14)
    hosts = []
    for index in (0, 1):
        monkeypatch.setattr(finetune.jax, "process_index", lambda index=index: index)
        monkeypatch.setattr(finetune.jax, "process_count", lambda: 2)
        hosts.append(_take(_source("auto").train_iterator(), 14))
    for batch, first, second in zip(whole, *hosts):
        for name in batch:
            np.testing.assert_array_equal(np.concatenate([first[name], second[name]]), batch[name])


def test_resume_mid_epoch_continues_with_the_same_batches():
    iterator = _source("auto").train_iterator()
    _take(iterator, 17)                                             # into the second epoch
    state = iterator.get_state()
    assert state == {"next_index": 17}                              # any process count resumes it (checkpoint.py)
    want = _take(iterator, 10)
    resumed = _source("auto").train_iterator()
    resumed.set_state(state)
    got = _take(resumed, 10)
    for a, b in zip(want, got):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_eval_batches_keep_file_order_cut_to_their_longest_row():
    batches = list(_source("16,32").eval_iterator())                # buckets 16, 32, 64 (max_seq_length added)
    plain = list(_source(None).eval_iterator())
    assert [b["row"].tolist() for b in batches] == [b["row"].tolist() for b in plain]
    for batch, full in zip(batches, plain):
        length = batch["input_ids"].shape[1]
        real = length_buckets.row_lengths(full["input_mask"]).max()
        assert length == length_buckets.bucket_of([real], (16, 32, 64))[0]
        np.testing.assert_array_equal(full["input_ids"][:, length:], 0)
        np.testing.assert_array_equal(batch["label_ids"], full["label_ids"][:, :length])


@pytest.mark.parametrize("head", [heads.BertForSequenceClassification, heads.BertForTokenClassification])
def test_outputs_of_a_row_cut_to_its_bucket_are_the_padded_rows(head):
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=T)
    model = head(config, num_labels=3)
    arrays = _arrays(6, 2)
    arrays["input_mask"][:, :12] = 1                                # every row at least 12 long: one bucket, 16
    arrays["input_mask"][:, 16:] = 0
    arrays["input_ids"] = np.where(arrays["input_mask"], np.maximum(arrays["input_ids"], 5), 0)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), *(jnp.asarray(arrays[k][:1]) for k in
                                                          ("input_ids", "input_mask", "segment_ids")))["params"]
    apply = jax.jit(model.apply)
    full = apply({"params": params}, arrays["input_ids"], arrays["input_mask"], arrays["segment_ids"])
    cut = length_buckets.trim(arrays, 16)
    short = apply({"params": params}, cut["input_ids"], cut["input_mask"], cut["segment_ids"])
    want = full["logits"][:, :16] if head is heads.BertForTokenClassification else full["logits"]
    assert short["logits"].shape == want.shape
    np.testing.assert_allclose(short["logits"], want, atol=1e-5, rtol=0)
    assert np.abs(np.asarray(want)).max() > 1e-3                    # not trivially zero


@pytest.mark.parametrize("value, problem", [
    ("64,32", "not strictly ascending"), ("0,32", "positive"), ("16,x", "whole numbers"),
    ("32,128", "above max_seq_length 64"), ("16,16", "not strictly ascending")])
def test_a_bad_setting_is_one_line_naming_the_field(value, problem):
    with pytest.raises(BertjaxError, match=problem) as error:
        length_buckets.parse(value, T)
    assert "\n" not in str(error.value) and str(error.value).startswith("--config.data.length_buckets=")
    assert "use auto, or ascending lengths up to --config.data.max_seq_length=64" in str(error.value)


def test_settings_and_auto_choice():
    assert [length_buckets.parse(v, T) for v in (None, "", "off", "auto", "16,32", "16, 32, 64", (8, 64))] == [
        None, None, None, "auto", (16, 32, 64), (16, 32, 64), (8, 64)]
    # 40 rows of length 10 and 8 of 60 in batches of 8: five batches need 16, one needs 64; 32 would be unused.
    assert length_buckets.choose([10] * 40 + [60] * 8, 64, 8) == (16, 64)
    assert length_buckets.choose([10] * 40 + [60] * 8, 512, 8) == (16, 64, 512)   # unused 512 kept: max_seq_length
    lengths = np.random.default_rng(0).integers(2, 512, 1000)
    assert len(length_buckets.choose(lengths, 512, 32)) <= length_buckets.MAX_AUTO_BUCKETS
    # The least padding of all sets of multiples of 8 (brute force), as SST-2-like lengths at seq 128 have.
    lengths = np.clip(np.random.default_rng(1).geometric(0.08, 640) + 3, 3, 128)
    longest = np.sort(lengths)[31::32]                             # each sorted batch's longest row
    def padded(buckets):
        return int(length_buckets.bucket_of(longest, buckets).sum())
    best = min(padded((*subset, 128)) for k in range(length_buckets.MAX_AUTO_BUCKETS)
               for subset in itertools.combinations(range(8, 128, 8), k))
    chosen = length_buckets.choose(lengths, 128, 32)
    assert padded(chosen) == best and all(b % 8 == 0 for b in chosen) and chosen[-1] == 128


def test_squad_refuses_buckets_in_one_line(tmp_path):
    config = _config("finetune_squad", "squad", tmp_path, tmp_path, data__length_buckets="auto")
    with pytest.raises(BertjaxError, match=r"length_buckets is not available for --config.task=squad") as error:
        finetune.prepare(config, str(tmp_path / "run"), None)
    assert "\n" not in str(error.value)


def _tagging_files(directory) -> None:
    """CoNLL train.txt (54 sentences) and dev.txt (22), a few of each long: two buckets at max_seq_length 32."""
    rng = random.Random(5)
    sentences = [_tagged_sentence(rng) for _ in range(64)]
    sentences += [(words * 4, tags * 4) for words, tags in sentences[:6]]
    _write_conll(directory / "train.txt", sentences[:48] + sentences[64:])
    _write_conll(directory / "dev.txt", sentences[48:])


def test_tagging_eval_with_buckets_scores_and_predicts_as_unbucketed(tmp_path, tiny_checkpoint):  # noqa: F811
    _tagging_files(tmp_path)
    tokenizer = BertTokenizer.from_vocab(tiny_checkpoint / "vocab.txt", do_lower_case=True)
    bert_config = BertConfig.from_json_file(tiny_checkpoint / "config.json")
    scores, predicted, shapes = {}, {}, {}
    for name, buckets in (("bucketed", "16,32"), ("plain", None)):
        config = _config("finetune_ner", "tagging", tmp_path, tiny_checkpoint, data__length_buckets=buckets,
                         eval__batch_size=8)
        task = finetune.prepare(config, str(tmp_path / name), tokenizer)
        model = task.objective.build_model(bert_config)
        params = jax.jit(model.init)(jax.random.PRNGKey(0), *task.objective.init_inputs(32))["params"]
        step = jax.jit(train_step.make_eval_step(model, task.objective))
        batches = list(task.data.eval_iterator())
        shapes[name] = [batch["input_ids"].shape[1] for batch in batches]
        outputs = [jax.device_get(step(params, batch)) for batch in batches]
        scores[name] = task.objective.score(outputs)
        predicted[name] = pathlib.Path(task.objective.write_predictions(outputs, str(tmp_path / name))).read_text()
    assert shapes == {"bucketed": [16, 16, 32], "plain": [32, 32, 32]}
    assert scores["bucketed"] == pytest.approx(scores["plain"], rel=1e-5)
    assert predicted["bucketed"] == predicted["plain"] and predicted["plain"].count("\n\n") == 22
    assert len(set(predicted["plain"].split())) > 5                 # not one tag everywhere


@pytest.mark.slow
def test_tagging_trains_end_to_end_with_buckets(tmp_path, tiny_checkpoint, capsys):  # noqa: F811
    _tagging_files(tmp_path)
    config = _config("finetune_ner", "tagging", tmp_path, tiny_checkpoint, train__num_epochs=1,
                     data__length_buckets="16,32")
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "length buckets 16,32 (max_seq_length 32): train, first epoch: 3 batches (16: 2, 32: 1)" in out, out
    assert metrics["eval_batches"] == 1 and metrics["loss"] > 0
    assert (tmp_path / "run" / "predictions_dev.txt").read_text().count("\n\n") == 22
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
