"""features.py: record format matches TFDS, shards -> finalize -> tfds.builder_from_directory, manifest, errors."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python import array_record_module

from bertjax.data import catalog, features
from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import read_tokenizer_config
from bertjax.errors import BertjaxError

import _tiny_dataset as tiny
from _batches import make_batch

T, P = 16, 4


def _row(batch, i):
    return {k: v[i] for k, v in batch.items()}


def _assert_example_equal(got, want):
    assert set(got) == set(features.FEATURE_NAMES)
    for name in features.FEATURE_NAMES:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)


def test_feature_spec_names_shapes_dtypes():
    info = features.feature_spec(T, P).get_tensor_info()
    assert {k: (v.shape, np.dtype(v.np_dtype)) for k, v in info.items()} == {
        "input_ids": ((T,), np.int32), "input_mask": ((T,), np.int32), "segment_ids": ((T,), np.int32),
        "masked_lm_positions": ((P,), np.int32), "masked_lm_ids": ((P,), np.int32),
        "masked_lm_weights": ((P,), np.float32), "next_sentence_labels": ((), np.int32),
    }


def test_serialization_is_the_tfds_wire_format():
    spec = features.feature_spec(T, P)
    batch = make_batch(3, **tiny.rows())
    batch["masked_lm_weights"][:, 1] = 0.25                     # a non-trivial float
    records = features.serialize_batch(batch)
    for i, record in enumerate(records):
        example = _row(batch, i)
        _assert_example_equal(spec.deserialize_example_np(record), example)   # TFDS decodes ours
        _assert_example_equal(spec.deserialize_example_np(features.serialize_example(example)), example)
        _assert_example_equal(features.parse_example(spec.serialize_example(example)), example)  # we decode TFDS's
    parsed = features.parse_example(records[0])
    assert parsed["input_ids"].dtype == np.int32 and parsed["masked_lm_weights"].dtype == np.float32
    assert parsed["next_sentence_labels"].shape == ()


def test_finalize_then_tfds_reads_every_split_in_order(tmp_path):
    out = str(tmp_path / "ds")
    os.makedirs(out)
    first, second, evals = (make_batch(n, start, **tiny.rows()) for n, start in ((5, 0), (2, 5), (3, 7)))
    assert features.write_shard(os.path.join(out, "b.tmp"), first) == 5
    with features.ShardWriter(os.path.join(out, "a.tmp"), T, P) as writer:   # per-example writes
        for i in range(2):
            writer.write(_row(second, i))
    assert writer.num_examples == 2
    features.write_shard(os.path.join(out, "e.tmp"), [_row(evals, i) for i in range(3)])
    features.write_shard(os.path.join(out, "empty.tmp"), make_batch(0, **tiny.rows()))

    stored = catalog.finalize_dataset(out, {"train": [("b.tmp", 5), ("a.tmp", 2), ("empty.tmp", 0)],
                                            "eval": [(os.path.join(out, "e.tmp"), 3)]},
                                      tiny.manifest())
    assert stored["num_examples"] == {"train": 7, "eval": 3}
    assert sorted(n for n in os.listdir(out) if n.startswith("bert_pretraining-")) == [
        "bert_pretraining-eval.array_record-00000-of-00001",
        "bert_pretraining-train.array_record-00000-of-00002",
        "bert_pretraining-train.array_record-00001-of-00002",
    ]
    reader = array_record_module.ArrayRecordReader(os.path.join(out, catalog.shard_filename("eval", 0, 1)))
    assert "snappy" in reader.writer_options_string().split(",")      # the fast codec, which TFDS reads:
    reader.close()
    sources = tfds.builder_from_directory(out).as_data_source()
    assert len(sources["train"]) == 7 and len(sources["eval"]) == 3
    want_train = [_row(first, i) for i in range(5)] + [_row(second, i) for i in range(2)]
    for i in range(7):
        _assert_example_equal(sources["train"][i], want_train[i])
    _assert_example_equal(sources["eval"][2], _row(evals, 2))
    assert catalog.read_manifest(out) == stored


def test_dataset_directory_can_be_renamed_after_finalize(tmp_path):
    tiny.write_dataset(str(tmp_path / "tmp-output"), {"train": [4]})
    shutil.move(str(tmp_path / "tmp-output"), str(tmp_path / "final"))
    source = tfds.builder_from_directory(str(tmp_path / "final")).as_data_source()["train"]
    assert [tiny.example_id(source[i]) for i in range(4)] == [0, 1, 2, 3]
    assert catalog.read_manifest(str(tmp_path / "final"))["num_examples"] == {"train": 4}


def test_manifest_numpy_values_are_stored_as_json(tmp_path):
    manifest = tiny.manifest()
    manifest["random_seed"] = np.int64(7)
    manifest["statistics"] = {"tokens_per_example": np.float32(12.5), "hist": np.arange(3)}
    out = str(tmp_path / "ds")
    os.makedirs(out)
    features.write_shard(os.path.join(out, "x"), make_batch(2, **tiny.rows()))
    catalog.finalize_dataset(out, {"train": [("x", 2)]}, manifest)
    got = catalog.read_manifest(out)
    assert got["random_seed"] == 7 and got["statistics"] == {"tokens_per_example": 12.5, "hist": [0, 1, 2]}


def test_read_manifest_finds_the_single_nested_dataset(tmp_path):
    tiny.write_dataset(str(tmp_path / "root" / "bert_pretraining" / "default" / "1.0.0"), {"train": [2]})
    assert catalog.read_manifest(str(tmp_path / "root"))["num_examples"] == {"train": 2}


def test_read_manifest_errors(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        catalog.read_manifest(str(tmp_path / "nope"))
    with pytest.raises(BertjaxError, match="not a TFDS dataset directory"):
        catalog.read_manifest(str(tmp_path))
    out = tiny.write_dataset(str(tmp_path / "ds"), {"train": [2]})
    os.remove(os.path.join(out, "metadata.json"))
    with pytest.raises(BertjaxError, match="not a bertjax one"):
        catalog.read_manifest(out)
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump({catalog.MANIFEST_METADATA_KEY: {"masking": "static"}}, f)
    with pytest.raises(BertjaxError, match="missing keys"):
        catalog.read_manifest(out)


@pytest.mark.parametrize("change, message", [
    ({"masking": "sometimes"}, "masking='sometimes'"),
    ({"whole_word_mask": True}, "whole_word_mask=True"),
    ({"num_examples": {"train": 3}}, "does not match the shards"),
    ({"vocab_sha256": None, "__delete__": "vocab_sha256"}, r"missing keys \['vocab_sha256'\]"),
])
def test_finalize_rejects_a_bad_manifest(tmp_path, change, message):
    manifest = tiny.manifest()
    manifest.update({k: v for k, v in change.items() if k != "__delete__"})
    manifest.pop(change.get("__delete__", "__none__"), None)
    features.write_shard(str(tmp_path / "x"), make_batch(2, **tiny.rows()))
    with pytest.raises(BertjaxError, match=message):
        catalog.finalize_dataset(str(tmp_path), {"train": [("x", 2)]}, manifest)


def test_finalize_rejects_bad_shards(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        catalog.finalize_dataset(str(tmp_path), {"train": [("missing", 2)]}, tiny.manifest())
    features.write_shard(str(tmp_path / "x"), make_batch(2, **tiny.rows()))
    with pytest.raises(BertjaxError, match="split name"):
        catalog.finalize_dataset(str(tmp_path), {"train-1": [("x", 2)]}, tiny.manifest())
    with pytest.raises(BertjaxError, match="holds 2 examples, not 3"):
        catalog.finalize_dataset(str(tmp_path), {"train": [("x", 3)]}, tiny.manifest())
    os.makedirs(tmp_path / "sub")
    with pytest.raises(BertjaxError, match="not directly inside"):
        catalog.finalize_dataset(str(tmp_path / "sub"), {"train": [("../x", 2)]}, tiny.manifest())


def test_writer_rejects_wrong_shapes_and_missing_keys(tmp_path):
    batch = make_batch(2, **tiny.rows())
    with features.ShardWriter(str(tmp_path / "a"), T, P) as writer:
        with pytest.raises(BertjaxError, match="'input_ids' has per-example shape"):
            writer.write_batch({**batch, "input_ids": batch["input_ids"][:, :8]})
        with pytest.raises(BertjaxError, match="missing features"):
            writer.write({k: v[0] for k, v in batch.items() if k != "segment_ids"})
        with pytest.raises(BertjaxError, match="different leading sizes"):
            writer.write_batch({**batch, "next_sentence_labels": np.zeros(3, np.int32)})
    with features.ShardWriter(str(tmp_path / "b")) as writer:     # first write sets the reference shapes
        writer.write_batch(batch)
        with pytest.raises(BertjaxError, match="'masked_lm_ids' has per-example shape"):
            writer.write({**_row(batch, 0), "masked_lm_ids": np.zeros(P + 1, np.int32)})
    assert len(features.read_shard(str(tmp_path / "b"))) == 2


def test_serialize_batch_decodes_like_tfds_for_every_varint_width():
    rng = np.random.default_rng(0)
    n, length, p = 32, 24, 5
    batch = {"input_ids": rng.integers(0, 2**31 - 1, (n, length)).astype(np.int32),
             "input_mask": rng.integers(0, 2, (n, length)).astype(np.int32),
             "segment_ids": rng.integers(0, 2, (n, length)).astype(np.int32),
             "masked_lm_positions": rng.integers(0, length, (n, p)).astype(np.int32),
             "masked_lm_ids": (rng.integers(0, 200, (n, p)) ** rng.integers(1, 4, (n, p))).astype(np.int32),
             "masked_lm_weights": rng.random((n, p)).astype(np.float32),
             "next_sentence_labels": rng.integers(0, 2, n).astype(np.int32)}
    spec = features.feature_spec(length, p)
    records = features.serialize_batch(batch)
    assert len({len(record) for record in records}) == 1                # fixed-width varints: one layout
    for i, record in enumerate(records):
        example = _row(batch, i)
        for decoded in (features.parse_example(record), spec.deserialize_example_np(record)):
            _assert_example_equal(decoded, example)
    small = {**batch, "input_ids": batch["input_ids"] % 100}               # one-byte varints take less room
    small_record = features.serialize_batch(small)[0]
    assert len(small_record) <= len(records[0]) - 4 * length
    _assert_example_equal(spec.deserialize_example_np(small_record), _row(small, 0))
    for top in (300, 20_000, features.VARINT_TABLE_SIZE):                   # 2- and 3-byte ids by table look-up
        ids = {**batch, "input_ids": batch["input_ids"] % top, "masked_lm_ids": batch["masked_lm_ids"] % top}
        for i, record in enumerate(features.serialize_batch(ids)):
            _assert_example_equal(features.parse_example(record), _row(ids, i))
    with pytest.raises(BertjaxError, match="'segment_ids' has negative values"):
        features.serialize_batch({**batch, "segment_ids": -batch["input_mask"] - 1})
    assert features.serialize_batch({k: v[:0] for k, v in batch.items()}) == []


def test_a_dataset_carries_its_casing_even_without_a_config_beside_the_vocab(tmp_path):
    vocab = tiny.write_vocab(str(tmp_path / "vocab"))          # a bare vocab.txt, no tokenizer_config.json
    out = str(tmp_path / "ds")
    os.makedirs(out)
    features.write_shard(os.path.join(out, "a.tmp"), make_batch(3, **tiny.rows()))
    stored = {**tiny.manifest(vocab_sha256=tiny.sha256(vocab)), "do_lower_case": False, "strip_accents": False}
    catalog.finalize_dataset(out, {"train": [("a.tmp", 3)]}, stored, vocab_file=vocab)
    config = read_tokenizer_config(out)
    assert (config["do_lower_case"], config["strip_accents"]) == (False, False)
    tok = BertTokenizer.from_vocab(catalog.dataset_vocab_path(out))
    assert (tok.do_lower_case, tok.strip_accents) == (False, False)


def test_single_and_batch_writes_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.setattr(features.ShardWriter, "WRITE_BUFFER", 2)       # single writes are encoded 2 at a time
    batch = make_batch(6, **tiny.rows())
    with features.ShardWriter(str(tmp_path / "a"), T, P) as writer:
        for i in range(3):                                              # 2 flushed, 1 pending
            row = _row(batch, i)
            writer.write(row)
            row["input_ids"][1] = 0                                     # the writer kept its own copy
        writer.write_batch({k: v[3:5] for k, v in batch.items()})       # flushes the pending one first
        writer.write(_row(batch, 5))                                    # pending until close
        assert writer.num_examples == 6
    assert [tiny.example_id(features.parse_example(r)) for r in features.read_shard(str(tmp_path / "a"))] == list(
        range(6))


def test_metadata_is_what_tfds_writes(tmp_path):
    """finalize_dataset writes TFDS's metadata files without importing TFDS; they must equal TFDS's own."""
    out = str(tmp_path / "ours")
    os.makedirs(out)
    features.write_shard(os.path.join(out, "a"), make_batch(3, **tiny.rows()))
    features.write_shard(os.path.join(out, "b"), make_batch(2, 3, **tiny.rows()))
    features.write_shard(os.path.join(out, "c"), make_batch(1, 5, **tiny.rows()))
    manifest = catalog.finalize_dataset(out, {"train": [("a", 3), ("b", 2)], "eval": [("c", 1)]}, tiny.manifest())
    theirs = str(tmp_path / "theirs")
    shutil.copytree(out, theirs)
    for name in ("dataset_info.json", "features.json", "metadata.json"):
        os.remove(os.path.join(theirs, name))
    info = json.load(open(os.path.join(out, "dataset_info.json")))
    tfds.folder_dataset.write_metadata(
        data_dir=theirs, features=features.feature_spec(T, P), version=catalog.VERSION, check_data=False,
        split_infos=[tfds.core.SplitInfo(name=s["name"], shard_lengths=[int(n) for n in s["shardLengths"]],
                                         num_bytes=int(s["numBytes"])) for s in info["splits"]],
        filename_template=tfds.core.ShardedFileTemplate(
            data_dir=theirs, template=catalog.FILEPATH_TEMPLATE, dataset_name=catalog.DATASET_NAME,
            filetype_suffix=catalog.FILE_FORMAT),
        description=catalog.DESCRIPTION, metadata=tfds.core.MetadataDict({catalog.MANIFEST_METADATA_KEY: manifest}))
    for name in ("dataset_info.json", "features.json", "metadata.json"):
        assert json.load(open(os.path.join(out, name))) == json.load(open(os.path.join(theirs, name))), name
    assert info["splits"][0]["shardLengths"] == ["3", "2"]
    assert len(tfds.builder_from_directory(out).as_data_source()["train"]) == 5
