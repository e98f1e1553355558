"""TensorFlow V2 checkpoints ("tensor bundles") read without TensorFlow: the index table, the data shards, crc32c.

The format is TensorFlow's V2 checkpoint, a "tensor bundle" (`tensorflow/core/util/tensor_bundle/tensor_bundle.cc`,
`tensor_bundle.proto`):
  * `<prefix>.data-0000K-of-0000N`: each tensor's raw bytes (little-endian here) at an offset in shard K;
  * `<prefix>.index`: a table (`tensorflow/core/lib/io/table_format.txt`, `format.cc`, `block.cc`: LevelDB's table
    format without filter blocks) mapping each variable name to a `BundleEntryProto` {1 dtype, 2 shape, 3 shard_id,
    4 offset, 5 size, 6 crc32c (masked, of the raw bytes), 7 slices}; the key "" holds the `BundleHeaderProto`
    {1 num_shards, 2 endianness (0 little, 1 big), 3 version}.
  * The table ends in a 48-byte footer: the metaindex and index block handles (varint offset, varint size), zero
    padding, and the magic number 0xdb4775248b80fb57 (little-endian). The index block maps a separator key to each
    data block's handle. A block is prefix-compressed entries (varint shared key length, varint unshared length,
    varint value length, key suffix, value), an array of uint32 restart offsets and their uint32 count, then a
    5-byte trailer: compression type (0 none, 1 snappy) and the masked crc32c of the block and that type byte.
    TensorFlow writes bundle indexes uncompressed (`TableBuilderOptions` and `BundleWriter::Finish` set
    `kNoCompression`), so a compressed block is reported as an error rather than decoded.
crc32c is CRC-32C (Castagnoli); TF stores it masked: ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32).
"""

from __future__ import annotations

import functools
import os
import re
import struct
from etils.epath import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import ml_dtypes
import numpy as np

from bertjax import paths
from bertjax.errors import BertjaxError

CHECKPOINT_STATE_NAME = "checkpoint"

# --------------------------------------------------------------------------------------------------- crc32c
_CRC_POLY = 0x82F63B78  # CRC-32C, reflected
_CRC_LANE_BYTES = 4096  # bytes per lane of the vectorised checksum
_CRC_MASK_DELTA = 0xA282EAD8


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC_POLY), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = _CRC_TABLE.tolist()


def _crc_update(state: int, data: bytes | memoryview) -> int:
    """The CRC register after feeding `data` byte by byte (no initial or final inversion)."""
    table = _CRC_TABLE_LIST
    for byte in bytes(data):
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


@functools.lru_cache(maxsize=None)
def _zero_shift(num_bytes: int) -> tuple[int, ...]:
    """The CRC register map of feeding `num_bytes` zero bytes (a linear map over GF(2)): the images of the 32 bits."""
    if num_bytes == 1:
        return tuple(_CRC_TABLE_LIST[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32))
    if num_bytes % 2:
        return _compose(_zero_shift(num_bytes - 1), _zero_shift(1))
    half = _zero_shift(num_bytes // 2)
    return _compose(half, half)


def _compose(first: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(_apply(then, np.array([image], np.uint32))[0]) for image in first)


def _apply(images: tuple[int, ...], states: np.ndarray) -> np.ndarray:
    out = np.zeros_like(states)
    for bit, image in enumerate(images):
        out ^= np.where((states >> np.uint32(bit)) & np.uint32(1), np.uint32(image), np.uint32(0))
    return out


def _zero_word_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables of the register map of feeding 4 zero bytes, for the low and the high 16 bits of the register."""
    low = np.arange(1 << 16, dtype=np.uint32)
    high = low << np.uint32(16)
    for _ in range(4):
        low = _CRC_TABLE[low & 0xFF] ^ (low >> np.uint32(8))
        high = _CRC_TABLE[high & 0xFF] ^ (high >> np.uint32(8))
    return low, high


_CRC_WORD_LOW, _CRC_WORD_HIGH = _zero_word_tables()


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC-32C of `data`, vectorised with numpy: the bytes are cut into lanes checksummed side by side, 4 bytes a step
    (xor a little-endian word into the register, then the 4-zero-byte map by two 16-bit table look-ups), and the lane
    registers are combined pairwise (the register after A+B is B's xor A's shifted through len(B) zero bytes)."""
    arr = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    lanes = len(arr) // _CRC_LANE_BYTES
    if lanes < 4:
        return _crc_update(0xFFFFFFFF, arr.tobytes()) ^ 0xFFFFFFFF
    words = arr[: lanes * _CRC_LANE_BYTES].view("<u4").reshape(lanes, _CRC_LANE_BYTES // 4)
    states = np.zeros(lanes, np.uint32)
    states[0] = 0xFFFFFFFF
    low, high = np.empty(lanes, np.uint32), np.empty(lanes, np.uint32)
    for column in np.ascontiguousarray(words.T):
        np.bitwise_xor(states, column, out=states)
        np.bitwise_and(states, 0xFFFF, out=low)
        np.right_shift(states, 16, out=high)
        np.take(_CRC_WORD_LOW, low, out=states)
        np.bitwise_xor(states, _CRC_WORD_HIGH[high], out=states)
    # Left-pad to a power of two with zero registers (zero lanes before the first one change nothing).
    width = 1 << (lanes - 1).bit_length()
    states = np.concatenate([np.zeros(width - lanes, np.uint32), states])
    span = _CRC_LANE_BYTES
    while len(states) > 1:
        states = _apply(_zero_shift(span), states[0::2]) ^ states[1::2]
        span *= 2
    return _crc_update(int(states[0]), arr[lanes * _CRC_LANE_BYTES:].tobytes()) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """crc32c as TensorFlow stores it (`crc32c::Mask`)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------------ varint, protobuf
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at buf[pos]."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a serialised protobuf message; varints as unsigned ints, fixed32/64 as
    ints, length-delimited fields as bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
            if pos > len(buf):
                raise ValueError("length-delimited field runs past the message")
        elif wire_type == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# ------------------------------------------------------------------------------------------------- the table
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5
_COMPRESSION_NAMES = {1: "snappy"}  # table_options.h: kSnappyCompression


class _CorruptIndex(Exception):
    """The .index file cannot be decoded (turned into a BertjaxError naming the file)."""


def _read_block(table: bytes, handle: bytes) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size + _BLOCK_TRAILER_BYTES
    if end > len(table) - _FOOTER_BYTES:
        raise _CorruptIndex(f"a block handle points past the end of the file (byte {end})")
    block, compression = table[offset:offset + size], table[offset + size]
    (stored_crc,) = struct.unpack_from("<I", table, offset + size + 1)
    if masked_crc32c(table[offset:offset + size + 1]) != stored_crc:
        raise _CorruptIndex(f"the block at byte {offset} fails its checksum")
    if compression != 0:
        name = _COMPRESSION_NAMES.get(compression, f"type {compression}")
        raise _CorruptIndex(f"the block at byte {offset} is {name}-compressed; TensorFlow writes checkpoint indexes "
                            "uncompressed, so re-save the checkpoint with TensorFlow's Saver")
    return block


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each entry of a table block, undoing the prefix compression of the keys."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _CorruptIndex("a block's restart array is longer than the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise _CorruptIndex("a block entry runs past its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_length]
        pos += value_length


def _read_table(path: Path) -> dict[bytes, bytes]:
    """Every (key, value) of a TensorFlow table file (the SSTable format of LevelDB without filter blocks)."""
    table = path.read_bytes()
    if len(table) < _FOOTER_BYTES or struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
        raise BertjaxError(f"{path} is not a TensorFlow checkpoint index (no table magic number at its end); pass the "
                           "prefix of a TF V2 checkpoint whose .index file TensorFlow wrote, e.g. .../bert_model.ckpt")
    try:
        footer = table[-_FOOTER_BYTES:]
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)  # the metaindex block (empty: TF tables have no filter blocks)
        index_handle_start = pos
        _, pos = _varint(footer, pos)
        _, pos = _varint(footer, pos)
        entries = {}
        for _, handle in _block_entries(_read_block(table, footer[index_handle_start:pos])):
            entries.update(_block_entries(_read_block(table, handle)))
        return entries
    except (_CorruptIndex, ValueError, IndexError, struct.error) as e:
        raise BertjaxError(f"checkpoint index {path} is corrupt ({e}); re-download or re-copy the checkpoint") from None


# ------------------------------------------------------------------------------------------------ the bundle
# tensorflow/core/framework/types.proto: DataType numbers -> numpy dtypes bertjax reads.
_DTYPES = {
    1: np.dtype("<f4"),                 # DT_FLOAT
    2: np.dtype("<f8"),                 # DT_DOUBLE
    3: np.dtype("<i4"),                 # DT_INT32
    9: np.dtype("<i8"),                 # DT_INT64
    14: np.dtype(ml_dtypes.bfloat16),   # DT_BFLOAT16
    19: np.dtype("<f2"),                # DT_HALF
}
_BUNDLE_VERSION = 1  # tensor_bundle.cc: kTensorBundleVersion
FLOAT_DTYPES = tuple(_DTYPES[k] for k in (1, 2, 14, 19))
_DTYPE_NAMES = {4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64", 10: "bool", 11: "qint8",
                12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128",
                20: "resource", 21: "variant", 22: "uint32", 23: "uint64"}


class TensorEntry(NamedTuple):
    """Where and how one tensor is stored (a decoded `BundleEntryProto`)."""

    dtype: int                  # TensorFlow DataType number
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int                 # masked, as stored
    sliced: bool                # a partitioned variable (stored as slices; not supported)


def _parse_entry(value: bytes) -> TensorEntry:
    fields = dict(dtype=0, shape=(), shard_id=0, offset=0, size=0, crc32c=None, sliced=False)
    for number, field in _proto_fields(value):
        if number == 1:
            fields["dtype"] = field
        elif number == 2:
            dims = []
            for dim_number, dim in _proto_fields(field):
                if dim_number == 2:  # TensorShapeProto.dim
                    dims.append(_int64(dict(_proto_fields(dim)).get(1, 0)))
                elif dim_number == 3 and dim:
                    raise ValueError("a tensor of unknown rank")
            fields["shape"] = tuple(dims)
        elif number in (3, 4, 5):
            fields[("shard_id", "offset", "size")[number - 3]] = _int64(field)
        elif number == 6:
            fields["crc32c"] = field
        elif number == 7:
            fields["sliced"] = True
    return TensorEntry(**fields)


def _dtype_name(dtype: int) -> str:
    return str(_DTYPES[dtype]) if dtype in _DTYPES else _DTYPE_NAMES.get(dtype, f"DataType {dtype}")


def data_filename(prefix: str | os.PathLike, shard: int, num_shards: int) -> Path:
    """The data file of one shard: `<prefix>.data-0000K-of-0000N`."""
    return paths.path(f"{os.fspath(prefix)}.data-{shard:05d}-of-{num_shards:05d}")


def resolve_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix for a prefix, its .index or .data-* file, or a directory holding one checkpoint (the one
    its `checkpoint` state file names, else its only *.index file)."""
    path = paths.path(path)
    if path.is_dir():
        state = path / CHECKPOINT_STATE_NAME
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_bytes().decode("utf-8", "replace"), re.M)
            if match:
                named = Path(match.group(1))
                if not named.is_absolute():
                    return path / named
                # An absolute path written on another machine: the checkpoint is most likely here.
                return named if paths.path(f"{named}.index").is_file() else path / named.name
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            found = "none" if not indexes else ", ".join(p.name for p in indexes)
            raise BertjaxError(f"directory {path} should hold one TF checkpoint (*.index) but has {found}; pass the "
                               f"checkpoint prefix, e.g. {path}/bert_model.ckpt")
        path = indexes[0]
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5}|meta)$", "", path.name)
    return path.with_name(name)


class Bundle:
    """An opened checkpoint: its index decoded (the data files are looked at only by `read`)."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = resolve_prefix(prefix)
        self.index_path = paths.path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            raise BertjaxError(f"TF checkpoint index {self.index_path} does not exist; pass the checkpoint prefix "
                               "(e.g. .../bert_model.ckpt, the file names without .index or .data-*)")
        table = _read_table(self.index_path)
        if b"" not in table:
            raise BertjaxError(f"checkpoint index {self.index_path} has no bundle header; it is not a TF V2 "
                               "checkpoint: pass the prefix of one written by tf.train.Saver or tf.train.Checkpoint")
        try:
            header = dict(_proto_fields(table.pop(b"")))
            self.entries = {key.decode("utf-8", "replace"): _parse_entry(value) for key, value in table.items()}
        except (ValueError, IndexError, struct.error) as e:
            raise BertjaxError(f"checkpoint index {self.index_path} is corrupt ({e}); re-download or re-copy the "
                               "checkpoint") from None
        if header.get(2, 0) != 0:
            raise BertjaxError(f"checkpoint {self.index_path} was written on a big-endian machine; convert it with "
                               "TensorFlow on a little-endian machine (load and re-save it)")
        min_consumer = dict(_proto_fields(header.get(3, b""))).get(2, 0)
        if min_consumer > _BUNDLE_VERSION:
            raise BertjaxError(f"checkpoint {self.index_path} needs a reader of tensor-bundle version {min_consumer}; "
                               f"bertjax reads version {_BUNDLE_VERSION}: re-save it with TensorFlow's tf.train.Saver")
        self.num_shards = header.get(1, 1)

    def _check_shards(self) -> None:
        for name, entry in self.entries.items():
            if not entry.sliced and not 0 <= entry.shard_id < self.num_shards:
                raise BertjaxError(f"checkpoint index {self.index_path} puts {name} in data shard {entry.shard_id} "
                                   f"but declares {self.num_shards} shard(s); the index is corrupt: re-download it")
        expected = [data_filename(self.prefix, k, self.num_shards) for k in range(self.num_shards)]
        missing = [p for p in expected if not p.is_file()]
        if not missing:
            return
        others = sorted(p.name for p in self.prefix.parent.glob(f"{self.prefix.name}.data-*-of-*")
                        if p not in expected)
        if others:
            raise BertjaxError(f"checkpoint index {self.index_path} declares {self.num_shards} data shard(s) but the "
                               f"data files next to it are {', '.join(others)}; the .index and .data-* files come "
                               "from different saves: copy the files of one save together")
        raise BertjaxError(f"TF checkpoint data file {missing[0]} does not exist ({len(missing)} of "
                           f"{self.num_shards} missing); copy every {self.prefix.name}.data-*-of-"
                           f"{self.num_shards:05d} file next to {self.index_path.name}")

    def dtype(self, name: str) -> np.dtype:
        entry = self.entries[name]
        if entry.sliced:
            raise BertjaxError(f"{name} in {self.index_path} is a partitioned variable (stored as slices), which "
                               "bertjax does not read; re-save it unpartitioned, or leave it out with names=")
        if entry.dtype not in _DTYPES:
            raise BertjaxError(f"{name} in {self.index_path} has dtype {_dtype_name(entry.dtype)}, which bertjax does "
                               f"not read (only {', '.join(str(d) for d in _DTYPES.values())}); leave it out with "
                               "names=")
        return _DTYPES[entry.dtype]

    def read(self, names: Iterable[str], verify_crc: bool) -> dict[str, np.ndarray]:
        self._check_shards()
        names = list(names)
        dtypes = {name: self.dtype(name) for name in names}
        for name in names:
            entry = self.entries[name]
            expected = int(np.prod(entry.shape, dtype=np.int64)) * dtypes[name].itemsize
            if entry.size != expected or min(entry.shape, default=0) < 0:
                raise BertjaxError(f"checkpoint index {self.index_path} gives {name} shape {entry.shape} and size "
                                   f"{entry.size} bytes, which disagree; the index is corrupt: re-download it")
        by_shard: dict[int, list[str]] = {}
        for name in names:
            by_shard.setdefault(self.entries[name].shard_id, []).append(name)
        out = {}
        for shard, shard_names in sorted(by_shard.items()):
            path = data_filename(self.prefix, shard, self.num_shards)
            file_size = path.stat().length
            shard_names.sort(key=lambda n: self.entries[n].offset)
            for name in shard_names:
                entry = self.entries[name]
                if entry.offset + entry.size > file_size:
                    raise BertjaxError(f"TF checkpoint data file {path} is truncated: {name} needs bytes "
                                       f"{entry.offset}..{entry.offset + entry.size} but the file has {file_size}; "
                                       "re-download or re-copy the checkpoint")
            with path.open("rb") as f:
                for name in shard_names:
                    entry = self.entries[name]
                    buf = bytearray(entry.size)
                    f.seek(entry.offset)
                    if f.readinto(buf) != entry.size:
                        raise BertjaxError(f"TF checkpoint data file {path} is truncated at {name}; re-download or "
                                           "re-copy the checkpoint")
                    if verify_crc and entry.crc32c is not None and masked_crc32c(buf) != entry.crc32c:
                        raise BertjaxError(f"{name} in {path} fails its crc32c check: the data file is corrupt "
                                           "(or belongs to another save); re-download or re-copy the checkpoint")
                    out[name] = np.frombuffer(buf, dtypes[name]).reshape(entry.shape)
        return {name: out[name] for name in names}


def list_variables(prefix: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every variable of a TF checkpoint: name -> (shape, dtype name), from the index alone (no data is read)."""
    bundle = Bundle(prefix)
    return {name: (entry.shape, _dtype_name(entry.dtype)) for name, entry in sorted(bundle.entries.items())}


def read_checkpoint(prefix: str | os.PathLike, names: Iterable[str] | Callable[[str], bool] | None = None, *,
                    verify_crc: bool = True) -> dict[str, np.ndarray]:
    """Reads a TF V2 checkpoint (`<prefix>.index` + `<prefix>.data-*`) into numpy arrays, name -> array.

    `names` picks the variables: a list of names (each must exist), a predicate on names (e.g.
    `lambda n: not is_optimizer_or_counter(n)`), or None for all. Arrays keep their stored dtype (float32, float16,
    ml_dtypes.bfloat16, float64, int32 or int64). With `verify_crc`, each tensor's bytes are checked against the
    crc32c the index stores. `prefix` may also be the .index file or a directory holding one checkpoint.
    """
    bundle = Bundle(prefix)
    if names is None:
        chosen = sorted(bundle.entries)
    elif callable(names):
        chosen = sorted(n for n in bundle.entries if names(n))
    else:
        chosen = list(names)
        absent = [n for n in chosen if n not in bundle.entries]
        if absent:
            raise BertjaxError(f"checkpoint {bundle.index_path} has no variable {some_names(absent)}; list_variables() "
                               "shows what it holds")
    return bundle.read(chosen, verify_crc)

def some_names(names: list[str], shown: int = 4) -> str:
    """The first names, comma-separated, and how many more there are (for one-line messages)."""
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")
