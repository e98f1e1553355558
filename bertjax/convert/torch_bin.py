"""`pytorch_model.bin` state dicts (files `torch.save` wrote) read as numpy arrays, without importing PyTorch.

`torch.save` writes one of two formats (`torch/serialization.py`):

* zip (`_save`; the default since torch 1.6): an uncompressed zip archive whose records all sit in one folder (the
  file's name without its extension, or `archive` when saved to a buffer): `data.pkl`, the pickled object;
  `data/<key>`, the raw bytes of each storage; `byteorder` (`little` or `big`; absent in older files, which are
  little-endian); and version records.
* legacy (`_legacy_save`; torch < 1.6, and `_use_new_zipfile_serialization=False`; e.g. the original 2019 Hugging
  Face BERT files): consecutive pickles (the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a
  sys_info dict, the object, the sorted list of storage keys), then for each key an 8-byte little-endian element
  count and the storage's bytes (always little-endian: torch byte-swaps on big-endian hosts).

In both, the pickle stores each tensor as a call `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
stride, requires_grad, backward_hooks[, metadata])` (`_rebuild_tensor_v3(..., dtype[, metadata])` with an untyped
storage for dtypes such as uint16), and each storage as a persistent id: `('storage', storage_type, key, location,
numel)` in the zip format, `('storage', storage_type, root_key, location, numel, view_metadata)` in the legacy one
(`view_metadata`: None, or `(view_key, offset, size)` for a slice of the root storage, which old torch could save).
Tensors sharing a storage (tied weights, slices, transposes) name the same key; the tensor's offset, size and stride
count its elements.

Why not torch: it is a large dependency that bertjax otherwise never needs, and a full `torch.load` (the default
before torch 2.6, `weights_only=False` since) runs whatever callables the file's pickle names. Here the pickle is read
by an unpickler that resolves only the few names a state dict needs, to local stand-ins, and refuses every other
global (a BertjaxError naming it), so no callable chosen by the file is ever run.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from etils.epath import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from bertjax import paths
from bertjax.errors import BertjaxError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch dtype name -> numpy dtype of its stored bytes (little-endian; bfloat16 as raw 16-bit words).
_STORED_DTYPES = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<u2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
    "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1",
    "bool": "?", "complex128": "<c16", "complex64": "<c8",
}
# The storage classes a pickle names (`torch.FloatStorage`, ...) -> the torch dtype of their elements.
_STORAGE_CLASSES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "UntypedStorage": "uint8",
}


class _StorageClass(NamedTuple):
    """Stand-in for `torch.FloatStorage` & co.: only the element dtype matters."""
    dtype: str


class _Dtype(NamedTuple):
    """Stand-in for a `torch.float32`-style dtype object (an argument of `_rebuild_tensor_v3`)."""
    name: str


class _Storage(NamedTuple):
    """One persistent id: storage `key` holding elements of `dtype`; legacy views add (view key, offset, size)."""
    key: str
    dtype: str
    view: tuple[str, int, int] | None


class _Tensor(NamedTuple):
    """What a rebuild call unpickles to; turned into an array once the storages' bytes are read."""
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str
    metadata: Any


def _is_ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, int) for v in values)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: Any, metadata: Any = None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise ValueError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
    if not (isinstance(offset, int) and _is_ints(size) and _is_ints(stride) and len(size) == len(stride)):
        raise ValueError(f"a tensor has a malformed layout (offset {offset!r}, size {size!r}, stride {stride!r})")
    if dtype not in _STORED_DTYPES:
        raise ValueError(f"a tensor has dtype {dtype!r}, which bertjax does not read (it reads "
                         f"{', '.join(_STORED_DTYPES)})")
    return _Tensor(storage, offset, size, stride, dtype, metadata)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride, getattr(storage, "dtype", None))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor(storage, storage_offset, size, stride, getattr(storage, "dtype", None), metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    return _tensor(storage, storage_offset, size, stride, getattr(dtype, "name", None), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return data


_REBUILD_FUNCTIONS = {f.__name__: f for f in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3,
                                              _rebuild_parameter)}
_REBUILD_FUNCTIONS["_rebuild_parameter_with_state"] = _rebuild_parameter


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data (numbers, strings, lists, dicts) and refuses every global."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves the names a state dict pickle needs to local stand-ins; any other global is a BertjaxError."""

    def __init__(self, file, path: Path, legacy: bool):
        super().__init__(file)
        self._path = path
        self._legacy = legacy
        self.storage_dtypes: dict[str, str] = {}  # root storage key -> dtype of its elements

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILD_FUNCTIONS:
            return _REBUILD_FUNCTIONS[name]
        if module in ("torch", "torch.cuda", "torch.storage") and name in _STORAGE_CLASSES:
            return _StorageClass(_STORAGE_CLASSES[name])
        if module == "torch" and name in _STORED_DTYPES:
            return _Dtype(name)
        raise BertjaxError(
            f"weights file {self._path} refers to {module}.{name} in its pickle; bertjax reads only state dicts of "
            f"{'/'.join(_STORED_DTYPES)} tensors and refuses any other name (it could run code): re-save the "
            "weights from a trusted copy as model.safetensors or as a plain state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == (6 if self._legacy else 5) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        storage_class, key, view = pid[1], pid[2], pid[5] if self._legacy else None
        if not (isinstance(storage_class, _StorageClass) and isinstance(key, str)):
            raise pickle.UnpicklingError(f"malformed storage id {str(pid)[:80]}")
        if not (view is None or (isinstance(view, tuple) and len(view) == 3 and _is_ints(view[1:]))):
            raise pickle.UnpicklingError(f"malformed storage view {str(view)[:80]}")
        if self.storage_dtypes.setdefault(key, storage_class.dtype) != storage_class.dtype:
            raise pickle.UnpicklingError(f"storage {key} is used with two dtypes")
        return _Storage(key, storage_class.dtype, view)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a `torch.save`d state dict (zip or legacy format) as numpy arrays, by name.

    Each array is a fresh C-contiguous copy with the tensor's dtype, except bfloat16, which comes back as float32
    (exactly). Tensors that shared storage in PyTorch (tied weights) come back as separate, equal arrays. Storages
    are read one at a time, so memory peaks at about the size of the result plus the largest storage.
    """
    path = paths.path(path)
    if not path.is_file():
        raise BertjaxError(f"weights file {path} does not exist; pass the path of a pytorch_model.bin")
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
        f.seek(0)
        try:
            contents = _read_zip(f, path) if is_zip else _read_legacy(f, path)
            tensors = _tensors(contents.obj, path)
            names_by_storage = collections.defaultdict(list)
            for name, tensor in tensors.items():
                names_by_storage[tensor.storage.key].append(name)
            arrays = {}
            for key, data in contents.storages:
                for name in names_by_storage[key]:
                    arrays[name] = _array(name, tensors[name], data, contents, path)
        except BertjaxError:
            raise
        except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, OverflowError) as e:
            kind = "zip archive" if is_zip else "legacy torch.save file"
            raise BertjaxError(f"weights file {path} is a truncated or corrupt {kind} ({e}); re-download it "
                               "or save it again") from None
    return {name: arrays[name] for name in tensors}


class _Contents(NamedTuple):
    obj: Any  # the unpickled object, with _Tensor stand-ins
    storage_dtypes: dict[str, str]  # storage key -> dtype of its elements
    storages: Iterator[tuple[str, bytes]]  # (key, raw bytes) of every storage the tensors use, read lazily
    byteorder: str


def _not_a_state_dict(path: Path, detail: str) -> BertjaxError:
    return BertjaxError(f"weights file {path} is not a PyTorch state dict ({detail}); pass a pytorch_model.bin "
                        "written by torch.save (re-download it), or use the model's model.safetensors instead")


def _read_zip(f, path: Path) -> _Contents:
    archive = zipfile.ZipFile(f)
    pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise _not_a_state_dict(path, "a zip archive without one <folder>/data.pkl record")
    folder = pickles[0][: -len("data.pkl")]
    unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), path, legacy=False)
    obj = unpickler.load()
    byteorder = "little"
    if folder + "byteorder" in archive.namelist():
        byteorder = archive.read(folder + "byteorder").decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise ValueError(f"unknown byteorder record {byteorder!r}")
    storages = ((key, archive.read(f"{folder}data/{key}")) for key in unpickler.storage_dtypes)
    return _Contents(obj, unpickler.storage_dtypes, storages, byteorder)


def _read_legacy(f, path: Path) -> _Contents:
    head = io.BytesIO(f.read(64))  # the magic number's pickle is ~15 bytes; a bounded read keeps junk harmless
    try:
        magic = _DataOnlyUnpickler(head).load()
    except Exception:  # noqa: BLE001 - arbitrary bytes fail in arbitrary ways; all mean "not this format"
        magic = None
    if magic != LEGACY_MAGIC_NUMBER:
        raise _not_a_state_dict(path, "neither a zip archive nor the legacy format's magic number")
    f.seek(head.tell())
    version = _DataOnlyUnpickler(f).load()
    if version != LEGACY_PROTOCOL_VERSION:
        raise BertjaxError(f"weights file {path} has legacy protocol version {version!r}, not "
                           f"{LEGACY_PROTOCOL_VERSION}; load it with the torch that wrote it and save it again")
    _DataOnlyUnpickler(f).load()  # sys_info: byte order and C type sizes; the storage data is little-endian anyway
    unpickler = _StateDictUnpickler(f, path, legacy=True)
    obj = unpickler.load()
    keys = _DataOnlyUnpickler(f).load()
    if not (isinstance(keys, list) and set(keys) >= set(unpickler.storage_dtypes)):
        raise ValueError("the list of storage keys does not cover the storages the tensors use")
    return _Contents(obj, unpickler.storage_dtypes, _legacy_storages(f, keys, unpickler.storage_dtypes), "little")


def _legacy_storages(f, keys: list, storage_dtypes: dict[str, str]) -> Iterator[tuple[str, bytes]]:
    """Each storage's 8-byte little-endian element count and bytes, in the order of `keys`."""
    start = f.tell()
    remaining = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    for key in keys:
        itemsize = np.dtype(_STORED_DTYPES[storage_dtypes.get(key, "uint8")]).itemsize
        header = f.read(8)
        nbytes = int.from_bytes(header, "little") * itemsize if len(header) == 8 else None
        remaining -= 8
        if nbytes is None or nbytes > remaining:
            raise EOFError(f"the data of storage {key} ends early")
        remaining -= nbytes
        yield key, f.read(nbytes)


def _tensors(obj: Any, path: Path) -> dict[str, _Tensor]:
    if not isinstance(obj, dict):
        raise BertjaxError(f"weights file {path} holds a {type(obj).__name__}, not a state dict mapping names to "
                           "tensors; save model.state_dict() instead")
    for name, value in obj.items():
        if not (isinstance(name, str) and isinstance(value, _Tensor)):
            what = "a tensor" if isinstance(value, _Tensor) else f"a value of type {type(value).__name__}, not a tensor"
            raise BertjaxError(f"weights file {path} is not a state dict mapping names to tensors: key {name!r} holds "
                               f"{what}; save model.state_dict() itself")
    return obj


def _array(name: str, tensor: _Tensor, data: bytes, contents: _Contents, path: Path) -> np.ndarray:
    stored = np.dtype(_STORED_DTYPES[tensor.dtype]).newbyteorder("<" if contents.byteorder == "little" else ">")
    raw = np.frombuffer(data, np.uint8)
    if tensor.storage.view is not None:  # legacy storage view: element offset and size in the root's dtype
        root_itemsize = np.dtype(_STORED_DTYPES[contents.storage_dtypes[tensor.storage.key]]).itemsize
        _, view_offset, view_size = tensor.storage.view
        raw = raw[max(view_offset, 0) * root_itemsize:][: max(view_size, 0) * root_itemsize]
    elements = raw[: len(raw) // stored.itemsize * stored.itemsize].view(stored)
    if tensor.shape and min(tensor.shape) == 0:
        return np.zeros(tensor.shape, _result_dtype(tensor.dtype))
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.strides))
    if min((tensor.offset, *tensor.shape, *tensor.strides)) < 0 or last >= len(elements):
        raise BertjaxError(f"weights file {path}: tensor {name!r} (offset {tensor.offset}, size {tensor.shape}, "
                           f"stride {tensor.strides}) reaches past its storage of {len(elements)} elements; the file "
                           "is corrupt: re-download it or save it again")
    view = np.lib.stride_tricks.as_strided(elements[tensor.offset:], tensor.shape,
                                           [s * stored.itemsize for s in tensor.strides], writeable=False)
    if tensor.dtype == "bfloat16":  # the upper half of a float32: widen the bits, exactly
        array = view.astype(np.uint32)
        array <<= 16
        array = array.view(np.float32)
    else:
        array = np.array(view, dtype=stored.newbyteorder("="), order="C")
    metadata = tensor.metadata if isinstance(tensor.metadata, dict) else {}
    if metadata.get("neg"):  # lazy-negation / conjugation bits of complex views (torch._utils.set_tensor_metadata)
        np.negative(array, out=array)
    if metadata.get("conj"):
        np.conjugate(array, out=array)
    return array


def _result_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.float32) if dtype == "bfloat16" else np.dtype(_STORED_DTYPES[dtype]).newbyteorder("=")
