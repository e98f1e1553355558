"""google-research/bert TF checkpoints read without TensorFlow.

The fixtures in tests/fixtures/tf_bert come from scripts/make_tf_fixture.py: a tiny BERT saved by TensorFlow's own
tf.compat.v1 Saver in run_pretraining.py's layout (model variables, adam_m/adam_v slots, global_step), the weights
as saved (weights.npz), a batch (inputs.npz) and transformers' BertForPreTraining outputs on it (expected.npz).
"""

import json
import re
import shutil
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from bertjax.convert import tensor_bundle as tb
from bertjax.convert import tf_checkpoint as tfc
from bertjax.data.features import _varint
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, abstract_params

FIXTURES = Path(__file__).parent / "fixtures" / "tf_bert"
PREFIX = FIXTURES / "bert_model.ckpt"
DATA_FILE = "bert_model.ckpt.data-00000-of-00001"


@pytest.fixture(scope="module")
def weights():
    return dict(np.load(FIXTURES / "weights.npz"))


@pytest.fixture(scope="module")
def config():
    return BertConfig.from_json_file(FIXTURES / "bert_config.json")


@pytest.fixture(scope="module")
def loaded():
    return tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json")


@pytest.fixture
def copy(tmp_path):
    """A writable copy of the fixture directory; returns the checkpoint prefix in it."""
    shutil.copytree(FIXTURES, tmp_path / "ckpt")
    return tmp_path / "ckpt" / "bert_model.ckpt"


def test_fixture_is_a_small_non_default_bert(config):
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.max_position_embeddings) == (2, 32, 4, 48, 40)
    vocab = (FIXTURES / "vocab.txt").read_text().splitlines()
    assert config.vocab_size == len(vocab) and vocab[0] == "[PAD]"
    assert sum(f.stat().st_size for f in FIXTURES.iterdir()) < 500_000


def test_every_model_variable_reads_back_bitwise(weights):
    arrays = tb.read_checkpoint(PREFIX, names=sorted(weights))
    assert set(arrays) == set(weights)
    for name, value in weights.items():
        assert arrays[name].dtype == np.float32 and arrays[name].shape == value.shape, name
        assert arrays[name].tobytes() == value.tobytes(), name


def test_optimizer_slots_and_global_step_are_recognised_and_skipped(weights, loaded):
    variables = tb.list_variables(PREFIX)
    others = set(variables) - set(weights)
    assert others == {f"{n}/adam_{s}" for n in weights for s in "mv"} | {"global_step"}
    assert all(tfc.is_optimizer_or_counter(n) for n in others)
    assert not any(tfc.is_optimizer_or_counter(n) for n in weights)
    assert variables["global_step"] == ((), "int64")
    assert sorted(loaded.skipped_names) == sorted(others) and loaded.missing_heads == []
    # A predicate leaves them unread; read alone, the counter is the int64 TF saved.
    assert set(tb.read_checkpoint(PREFIX, lambda n: not tfc.is_optimizer_or_counter(n))) == set(weights)
    step = tb.read_checkpoint(PREFIX, ["global_step"])["global_step"]
    assert step.dtype == np.int64 and step.shape == () and step == 4321


@pytest.mark.parametrize("name, expected", [
    ("global_step", True), ("bert/pooler/dense/kernel/adam_m", True), ("cls/predictions/output_bias/adam_v", True),
    ("bert/embeddings/word_embeddings/Adam", True), ("bert/embeddings/word_embeddings/Adam_1", True),
    ("bert/pooler/dense/bias/LAMB", True), ("bert/pooler/dense/bias/LAMB_1", True), ("beta1_power", True),
    ("loss_scale", True), ("current_loss_scale", True), ("good_steps", True), ("bad_steps", True),
    ("bert/pooler/dense/kernel", False), ("cls/seq_relationship/output_weights", False),
    ("bert/embeddings/LayerNorm/gamma", False), ("adam_m", False), ("output_weights", False),
])
def test_is_optimizer_or_counter(name, expected):
    assert tfc.is_optimizer_or_counter(name) is expected


@pytest.mark.parametrize("name, path, transpose", [
    ("bert/embeddings/word_embeddings", ("bert", "embeddings", "word_embeddings", "embedding"), False),
    ("bert/embeddings/position_embeddings", ("bert", "embeddings", "position_embeddings", "embedding"), False),
    ("bert/embeddings/LayerNorm/gamma", ("bert", "embeddings", "LayerNorm", "scale"), False),
    ("bert/encoder/layer_11/attention/self/key/kernel",
     ("bert", "encoder", "layer_11", "attention", "self", "key", "kernel"), False),
    ("bert/encoder/layer_0/attention/output/LayerNorm/beta",
     ("bert", "encoder", "layer_0", "attention", "output", "LayerNorm", "bias"), False),
    ("bert/encoder/layer_3/output/dense/bias", ("bert", "encoder", "layer_3", "output", "dense", "bias"), False),
    ("bert/pooler/dense/kernel", ("bert", "pooler", "dense", "kernel"), False),
    ("cls/predictions/transform/LayerNorm/gamma", ("cls", "predictions", "transform", "LayerNorm", "scale"), False),
    ("cls/predictions/output_bias", ("cls", "predictions", "output_bias"), False),
    ("cls/seq_relationship/output_weights", ("cls", "seq_relationship", "kernel"), True),
    ("cls/seq_relationship/output_bias", ("cls", "seq_relationship", "bias"), False),
])
def test_tf_name_to_flax_path(name, path, transpose):
    assert tfc.tf_name_to_flax_path(name) == (path, transpose)


@pytest.mark.parametrize("name", [
    "output_weights", "cls/squad/output_weights", "global_step", "bert/pooler/dense/kernel/adam_m",
    "bert/encoder/layer_0/output/dense/gamma", "bert/embeddings/word_embeddings/embedding",
    "bert/encoder/layer_01/output/dense/bias",
])
def test_unknown_names_are_errors(name):
    with pytest.raises(BertjaxError, match="is not a variable"):
        tfc.tf_name_to_flax_path(name)


def test_params_tree_holds_every_variable_exactly(weights, loaded, config):
    shapes = jax.tree.map(lambda s: (s.shape, np.dtype(s.dtype)), abstract_params(BertForPreTraining(config)))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), loaded.params) == shapes
    params = loaded.params
    seq = params["cls"]["seq_relationship"]
    np.testing.assert_array_equal(seq["kernel"], weights["cls/seq_relationship/output_weights"].T)
    np.testing.assert_array_equal(seq["bias"], weights["cls/seq_relationship/output_bias"])
    pred = params["cls"]["predictions"]
    np.testing.assert_array_equal(pred["output_bias"], weights["cls/predictions/output_bias"])
    np.testing.assert_array_equal(pred["transform"]["LayerNorm"]["scale"],
                                  weights["cls/predictions/transform/LayerNorm/gamma"])
    np.testing.assert_array_equal(pred["transform"]["dense"]["kernel"],
                                  weights["cls/predictions/transform/dense/kernel"])
    layer = params["bert"]["encoder"]["layer_1"]
    np.testing.assert_array_equal(layer["attention"]["output"]["LayerNorm"]["bias"],
                                  weights["bert/encoder/layer_1/attention/output/LayerNorm/beta"])
    np.testing.assert_array_equal(layer["intermediate"]["dense"]["kernel"],
                                  weights["bert/encoder/layer_1/intermediate/dense/kernel"])
    np.testing.assert_array_equal(params["bert"]["embeddings"]["word_embeddings"]["embedding"],
                                  weights["bert/embeddings/word_embeddings"])
    for name, value in weights.items():
        path, transpose = tfc.tf_name_to_flax_path(name)
        leaf = params
        for key in path:
            leaf = leaf[key]
        assert leaf.tobytes() == np.ascontiguousarray(value.T if transpose else value).tobytes(), name


def test_outputs_match_transformers_on_the_original_weights():
    config, loaded = tfc.load_tf_checkpoint(FIXTURES)  # the directory of a released BERT
    inputs = np.load(FIXTURES / "inputs.npz")
    expected = np.load(FIXTURES / "expected.npz")
    out = jax.jit(BertForPreTraining(config).apply)(
        {"params": loaded.params}, inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"],
        inputs["masked_lm_positions"])
    for key in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits"):
        assert out[key].shape == expected[key].shape, key
        err = np.abs(np.asarray(out[key]) - expected[key]).max()
        assert err <= 1e-5, (key, err)


def test_sharded_bundle_of_every_dtype():
    """dtypes.ckpt: saved by Saver(sharded=True) from two devices, so two data files merged by one index."""
    assert len(list(FIXTURES.glob("dtypes.ckpt.data-*-of-00002"))) == 2
    arrays = tb.read_checkpoint(FIXTURES / "dtypes.ckpt.index")  # the .index file names the checkpoint too
    expected = np.load(FIXTURES / "dtypes.npz")
    assert set(arrays) == {f"dtypes/{n}" for n in expected.files}
    for name in expected.files:
        got = arrays[f"dtypes/{name}"]
        if name == "bfloat16":
            assert got.dtype == ml_dtypes.bfloat16
            got = got.view(np.uint16)
        assert got.dtype == expected[name].dtype and got.shape == expected[name].shape, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)


def test_crc32c_matches_the_bytewise_definition():
    assert tb.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tb.crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for size in (1, 4095, 4 * 4096, 5 * 4096 + 3, 9 * 4096 + 1001):  # the vectorised path from 4 lanes on
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert tb.crc32c(data) == tb._crc_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF, size


def _edit_index(monkeypatch, edit):
    """Make every checkpoint opened from now on look as `edit(entries)` says (a name -> TensorEntry dict)."""
    class Edited(tb.Bundle):
        def __init__(self, prefix):
            super().__init__(prefix)
            self.entries = edit(self.entries)

    monkeypatch.setattr(tb, "Bundle", Edited)
    monkeypatch.setattr(tfc, "Bundle", Edited)  # the name tf_checkpoint opens checkpoints with


def test_missing_heads_are_reported_separately(monkeypatch, weights):
    _edit_index(monkeypatch, lambda entries: {k: v for k, v in entries.items() if not k.startswith("cls/")})
    with pytest.raises(BertjaxError, match="lacks head variables cls/.*allow_missing_heads=True"):
        tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json")
    params, skipped, missing = tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json",
                                                             allow_missing_heads=True)
    assert "cls" not in params and set(params["bert"]) == {"embeddings", "encoder", "pooler"}
    assert ("cls", "seq_relationship", "kernel") in missing and ("cls", "predictions", "output_bias") in missing
    assert len(missing) == sum(n.startswith("cls/") for n in weights)
    flat = tfc.read_params(PREFIX, BertConfig.from_json_file(FIXTURES / "bert_config.json"))
    assert set(flat) == {tfc.tf_name_to_flax_path(n)[0] for n in weights if not n.startswith("cls/")}


def test_a_missing_pooler_is_a_missing_head(monkeypatch):
    _edit_index(monkeypatch, lambda entries: {k: v for k, v in entries.items()  # BertForMaskedLM-like
                                              if not k.startswith(("bert/pooler/", "cls/seq_relationship/"))})
    loaded = tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json", allow_missing_heads=True)
    assert sorted(loaded.missing_heads) == [("bert", "pooler", "dense", "bias"), ("bert", "pooler", "dense", "kernel"),
                                            ("cls", "seq_relationship", "bias"), ("cls", "seq_relationship", "kernel")]
    assert "pooler" not in loaded.params["bert"] and "predictions" in loaded.params["cls"]


def test_unknown_variables_are_an_error_unless_skipped(monkeypatch):
    nsp_weights = "cls/seq_relationship/output_weights"  # run_classifier.py's head next to the pretraining variables
    _edit_index(monkeypatch, lambda entries: {**entries, "output_weights": entries[nsp_weights]})
    with pytest.raises(BertjaxError, match="not BERT pretraining variables: output_weights; pass skip_unknown"):
        tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json")
    loaded = tfc.params_from_tf_checkpoint(PREFIX, FIXTURES / "bert_config.json", skip_unknown=True)
    assert "output_weights" in loaded.skipped_names


def _write_config(directory: Path, **changes) -> Path:
    data = json.loads((FIXTURES / "bert_config.json").read_text())
    path = directory / "bert_config.json"
    path.write_text(json.dumps({**data, **changes}))
    return path


def test_config_whose_hidden_size_contradicts_the_shapes(copy):
    config_file = _write_config(copy.parent, hidden_size=64)
    with pytest.raises(BertjaxError) as info:
        tfc.params_from_tf_checkpoint(copy, config_file)
    message = str(info.value)
    assert "\n" not in message and str(config_file) in message and "does not belong to this checkpoint" in message
    assert "bert/embeddings/LayerNorm/beta is [32] in the checkpoint but [64] for the config" in message
    with pytest.raises(BertjaxError, match="does not belong"):
        tfc.load_tf_checkpoint(copy.parent)  # bert_config.json next to the checkpoint


@pytest.mark.parametrize("layers, problem", [(3, "missing bert/encoder/layer_2/"),
                                             (1, "not in the config: bert/encoder/layer_1/")])
def test_config_with_another_layer_count(copy, layers, problem):
    with pytest.raises(BertjaxError, match=f"{problem}.*does not belong to this checkpoint"):
        tfc.params_from_tf_checkpoint(copy, _write_config(copy.parent, num_hidden_layers=layers))


def test_truncated_data_file(copy):
    data = copy.parent / DATA_FILE
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(BertjaxError, match=f"data file {re.escape(str(data))} is truncated: .* needs bytes"):
        tb.read_checkpoint(copy)


def _flip_bits(path: Path, position: int, bits: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= bits
    path.write_bytes(bytes(raw))


def test_corrupted_data_fails_its_checksum(copy):
    _flip_bits(copy.parent / DATA_FILE, 100, 0xFF)
    with pytest.raises(BertjaxError, match=r"^\S+ in \S+data-00000-of-00001 fails its crc32c check"):
        tb.read_checkpoint(copy)
    assert len(tb.read_checkpoint(copy, verify_crc=False)) == len(tb.list_variables(PREFIX))


def test_index_without_table_magic(copy):
    index = copy.parent / "bert_model.ckpt.index"
    _flip_bits(index, -1, 0xFF)
    with pytest.raises(BertjaxError, match=f"{re.escape(str(index))} is not a TensorFlow checkpoint index"):
        tb.read_checkpoint(copy)
    index.write_bytes(b"model_checkpoint_path: \"bert_model.ckpt\"\n")
    with pytest.raises(BertjaxError, match="not a TensorFlow checkpoint index"):
        tb.list_variables(copy)


def test_index_with_a_corrupted_block(copy):
    index = copy.parent / "bert_model.ckpt.index"
    _flip_bits(index, 200, 0x01)
    with pytest.raises(BertjaxError, match=f"checkpoint index {re.escape(str(index))} is corrupt .*checksum"):
        tb.list_variables(copy)


def test_missing_files(copy):
    (copy.parent / DATA_FILE).unlink()
    assert len(tb.list_variables(copy)) == len(tb.list_variables(PREFIX))  # the index alone
    with pytest.raises(BertjaxError, match=f"data file {re.escape(str(copy.parent / DATA_FILE))} does not exist"):
        tb.read_checkpoint(copy)
    with pytest.raises(BertjaxError, match=r"index .*nothing\.ckpt\.index does not exist; pass the checkpoint prefix"):
        tb.read_checkpoint(copy.parent / "nothing.ckpt")


def test_shard_count_mismatch(copy):
    (copy.parent / DATA_FILE).rename(copy.parent / "bert_model.ckpt.data-00000-of-00002")
    with pytest.raises(BertjaxError, match="declares 1 data shard.*data-00000-of-00002.*different saves"):
        tb.read_checkpoint(copy)


def test_names_that_are_not_in_the_checkpoint():
    with pytest.raises(BertjaxError, match="has no variable bert/nothing; list_variables"):
        tb.read_checkpoint(PREFIX, ["bert/pooler/dense/bias", "bert/nothing"])


def test_unsupported_dtype(monkeypatch):
    bias = "bert/pooler/dense/bias"
    _edit_index(monkeypatch, lambda entries: {**entries, bias: entries[bias]._replace(dtype=7)})  # DT_STRING
    assert tb.list_variables(PREFIX)["bert/pooler/dense/bias"] == ((32,), "string")
    with pytest.raises(BertjaxError, match=r"bert/pooler/dense/bias in .*bert_model\.ckpt\.index has dtype string, "
                                           r"which bertjax does not read .*names="):
        tb.read_checkpoint(PREFIX)
    assert "bert/pooler/dense/bias" not in tb.read_checkpoint(PREFIX, lambda n: n.startswith("cls/"))


def test_prefix_from_a_directory_or_a_file(copy):
    assert tb.resolve_prefix(copy.parent) == copy  # named by the `checkpoint` file (a relative path)
    (copy.parent / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/bert_model.ckpt"\n')
    assert tb.resolve_prefix(copy.parent) == copy  # an absolute path from the machine that trained it
    (copy.parent / "checkpoint").unlink()
    with pytest.raises(BertjaxError, match="should hold one TF checkpoint"):
        tb.resolve_prefix(copy.parent)  # dtypes.ckpt.index is there too
    (copy.parent / "dtypes.ckpt.index").unlink()
    assert tb.resolve_prefix(copy.parent) == copy
    assert tb.resolve_prefix(copy.parent / DATA_FILE) == copy
    assert tb.resolve_prefix(f"{copy}.index") == copy


def _table(blocks: list[list[tuple[bytes, bytes]]]) -> bytes:
    """A table file in TF's format with the given data blocks (keys not prefix-compressed, a restart at every entry)."""
    out = bytearray()

    def block(entries):
        start, body, restarts = len(out), bytearray(), []
        for key, value in entries:
            restarts.append(len(body))
            body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
        body += b"".join(r.to_bytes(4, "little") for r in restarts) + len(restarts).to_bytes(4, "little")
        out.extend(body + b"\0" + tb.masked_crc32c(bytes(body) + b"\0").to_bytes(4, "little"))
        return _varint(start) + _varint(len(body))

    index = [(entries[-1][0], block(entries)) for entries in blocks]
    metaindex, index = block([]), block(index)
    footer = metaindex + index
    return bytes(out + footer + b"\0" * (40 - len(footer)) + (0xDB4775248B80FB57).to_bytes(8, "little"))


def test_index_of_several_data_blocks(copy):
    """TF packs 256 KiB of entries per block, so BERT's indexes have one; bigger ones have several."""
    entries = sorted(tb._read_table(copy.parent / "bert_model.ckpt.index").items())
    (copy.parent / "bert_model.ckpt.index").write_bytes(_table([entries[:1], entries[1:50], entries[50:]]))
    expected = tb.read_checkpoint(PREFIX)
    arrays = tb.read_checkpoint(copy)
    assert set(arrays) == set(expected) and all(np.array_equal(arrays[n], expected[n]) for n in expected)
