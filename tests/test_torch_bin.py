"""bertjax.convert.torch_bin: `torch.save`d state dicts (zip and legacy formats) read without torch.

torch is a test dependency: it writes the files, and `tensor.numpy()` is the expected value of every array.
"""
import collections
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bertjax.convert.torch_bin import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, load_state_dict
from bertjax.errors import BertjaxError

FORMATS = ("zip", "legacy")
EXPECTED_DTYPES = {
    torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16, torch.bfloat16: np.float32,
    torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
    torch.uint8: np.uint8, torch.bool: np.bool_, torch.complex64: np.complex64,
}


def _save(state_dict, path, fmt):
    torch.save(state_dict, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def _assert_loads_as_torch(state_dict, path):
    loaded = load_state_dict(path)
    assert list(loaded) == list(state_dict)
    for name, tensor in state_dict.items():
        expected = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).resolve_conj().resolve_neg().numpy()
        assert loaded[name].dtype == EXPECTED_DTYPES[tensor.dtype], name
        assert loaded[name].shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
    return loaded


@pytest.fixture(scope="module")
def bert_state_dict():
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=37, max_position_embeddings=40))
    state_dict = model.state_dict()
    # The int64 buffer older transformers versions saved: a stride-0 view of one 40-element row.
    state_dict["bert.embeddings.position_ids"] = torch.arange(40).expand((1, -1))
    return state_dict


@pytest.mark.parametrize("fmt", FORMATS)
def test_bert_for_pretraining_state_dict(bert_state_dict, tmp_path, fmt):
    decoder, embeddings = "cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"
    assert bert_state_dict[decoder].data_ptr() == bert_state_dict[embeddings].data_ptr()  # tied: one storage

    loaded = _assert_loads_as_torch(bert_state_dict, _save(bert_state_dict, tmp_path / "pytorch_model.bin", fmt))

    assert loaded[decoder] is not loaded[embeddings]
    loaded[decoder][0, 0] += 1  # independent, writable copies
    assert loaded[decoder][0, 0] != loaded[embeddings][0, 0]
    assert loaded["bert.embeddings.position_ids"].tolist() == [list(range(40))]


def test_reads_without_torch(bert_state_dict, tmp_path):
    """torch is no runtime dependency: loading works where `import torch` fails."""
    path = _save(bert_state_dict, tmp_path / "pytorch_model.bin", "legacy")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from bertjax.convert.torch_bin import load_state_dict\n"
            f"print(len(load_state_dict({str(path)!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(bert_state_dict))


@pytest.mark.parametrize("fmt", FORMATS)
def test_dtypes_views_offsets_and_scalars(tmp_path, fmt):
    base = torch.randn(4, 6)
    state_dict = {
        "base": base,
        "transposed": base.t(),  # non-contiguous view of the same storage
        "rows": base[1:3],  # storage_offset 6
        "every_other_column": base[:, ::2],
        "float16": torch.randn(3, 5).half(),
        "bfloat16": torch.randn(2, 7).bfloat16(),
        "float64": torch.randn(3).double(),
        "int64": torch.arange(-3, 9),
        "int32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "int16": torch.tensor([-7, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "complex64": torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64),
        "scalar": torch.tensor(2.5),
        "int_scalar": torch.tensor(7),
        "empty": torch.zeros(0, 3),
    }
    assert not state_dict["transposed"].is_contiguous() and state_dict["rows"].storage_offset() == 6

    loaded = _assert_loads_as_torch(state_dict, _save(state_dict, tmp_path / "weights.bin", fmt))

    assert all(array.flags.c_contiguous for array in loaded.values())
    assert loaded["scalar"].shape == () and isinstance(loaded["scalar"], np.ndarray)


def test_conjugate_and_negative_views_are_resolved(tmp_path):
    values = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64)
    state_dict = {"conj": values.clone().conj(), "neg": values.clone().conj().imag}
    assert state_dict["conj"].is_conj() and state_dict["neg"].is_neg()
    for fmt in FORMATS:
        _assert_loads_as_torch(state_dict, _save(state_dict, tmp_path / f"{fmt}.bin", fmt))


def test_uint16_tensor_in_zip_format(tmp_path):
    """dtypes without a typed storage class are pickled with `_rebuild_tensor_v3` and a `torch.uint16` global."""
    state_dict = {"counts": torch.tensor([0, 1, 65535], dtype=torch.uint16)}
    loaded = load_state_dict(_save(state_dict, tmp_path / "weights.bin", "zip"))
    assert loaded["counts"].dtype == np.uint16 and loaded["counts"].tolist() == [0, 1, 65535]


class _Storage:
    """A storage in a hand-written legacy file; pickled as the persistent id `pid`."""

    def __init__(self, *pid):
        self.pid = ("storage", *pid)


class _Call:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def _write_legacy(path, obj=None, storages=(), obj_pickle=None):
    """A file in torch's legacy format, with `obj` (or raw `obj_pickle` bytes) and `{key: array}` storages."""
    sys_info = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info):
            pickle.dump(header, f, protocol=2)
        if obj_pickle is None:
            _LegacyPickler(f, protocol=2).dump(obj)
        else:
            f.write(obj_pickle)
        storages = dict(storages)
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
            f.write(len(storages[key]).to_bytes(8, "little") + storages[key].tobytes())
    return path


def _tensor_call(storage, offset, size, stride):
    return _Call(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, collections.OrderedDict())


def test_legacy_storage_view(tmp_path):
    """Old torch could save a slice of a storage: a persistent id with (view key, offset, size) in elements."""
    view = _Storage(torch.FloatStorage, "root", "cuda:0", 6, ("view", 2, 3))
    path = _write_legacy(tmp_path / "old.bin", collections.OrderedDict(w=_tensor_call(view, 1, (2,), (1,))),
                         {"root": np.arange(6, dtype="<f4")})
    assert load_state_dict(path)["w"].tolist() == [3.0, 4.0]


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    storage = _Storage(torch.FloatStorage, "0", "cpu", 6, None)
    path = _write_legacy(tmp_path / "bad.bin", {"w": _tensor_call(storage, 2, (2, 3), (3, 1))},
                         {"0": np.arange(6, dtype="<f4")})
    with pytest.raises(BertjaxError, match=r"tensor 'w' .* reaches past its storage of 6 elements"):
        load_state_dict(path)


def _os_system_pickle(marker):
    """A protocol-0 pickle of {'w': os.system('touch <marker>')}, as a malicious file would hold."""
    return f"(dp0\nS'w'\ncos\nsystem\n(S'touch {marker}'\ntRs.".encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_pickle_calling_os_system_is_refused(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", _os_system_pickle(marker))
            archive.writestr("archive/byteorder", "little")
    else:
        _write_legacy(path, obj_pickle=_os_system_pickle(marker))
    with pytest.raises(BertjaxError, match=r"pytorch_model\.bin refers to os\.system in its pickle;.* refuses any other name"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cut", [3, 10, 100_000])  # keep 2/3, 9/10, all but one byte
def test_truncated_file(bert_state_dict, tmp_path, fmt, cut):
    path = _save(bert_state_dict, tmp_path / "pytorch_model.bin", fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - max(len(data) // cut, 1)])
    with pytest.raises(BertjaxError, match=r"pytorch_model\.bin is a truncated or corrupt .*re-download it"):
        load_state_dict(path)


def test_legacy_file_cut_inside_its_pickle(tmp_path):
    path = _save({"w": torch.ones(3)}, tmp_path / "w.bin", "legacy")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(BertjaxError, match=r"truncated or corrupt legacy torch\.save file"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(4096), b"", b"PK\x03\x04" + bytes(100)])
def test_not_a_pytorch_file(tmp_path, content):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(BertjaxError, match=r"pytorch_model\.bin is (not a PyTorch state dict|a truncated or corrupt)"):
        load_state_dict(path)


def test_zip_archive_without_data_pkl(tmp_path):
    path = tmp_path / "weights.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "hello")
    with pytest.raises(BertjaxError, match=r"is not a PyTorch state dict \(a zip archive without"):
        load_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        load_state_dict(tmp_path / "pytorch_model.bin")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("obj, message", [
    ([torch.ones(2)], r"holds a list, not a state dict mapping names to tensors"),
    ({"model": {"w": torch.ones(2)}}, r"key 'model' holds a value of type dict, not a tensor; save model.state_dict"),
    ({"w": torch.ones(2), "step": 3}, r"key 'step' holds a value of type int, not a tensor"),
])
def test_not_a_mapping_of_names_to_tensors(tmp_path, fmt, obj, message):
    with pytest.raises(BertjaxError, match=message):
        load_state_dict(_save(obj, tmp_path / "checkpoint.bin", fmt))
