"""The pretraining example format: TFDS feature spec, record encoding/decoding, ArrayRecord shard writing/reading.

A bertjax dataset is a TFDS dataset directory in ArrayRecord format, readable without TensorFlow:

    tfds.builder_from_directory(output_dir).as_data_source()["train"]

Each record is a serialized `tf.train.Example` (the wire format TFDS reads) holding the batch keys of
docs/design.md. `serialize_batch` encodes a whole batch with numpy (no protobuf objects, fixed-width varints):
records that TFDS decodes exactly like those of `FeaturesDict.serialize_example`, without a protobuf object per
example; `parse_example` is the matching decoder.

Typical use from a worker process (one shard per worker, any file names inside `output_dir`):

    with ShardWriter(os.path.join(output_dir, "train-w3.array_record")) as writer:
        writer.write_batch(batch)          # dict of [B, ...] numpy arrays, or writer.write(example)

then `catalog.finalize_dataset(...)` makes the directory a TFDS dataset with its manifest.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from array_record.python import array_record_module

from bertjax.errors import BertjaxError

# One record per chunk (random access); snappy instead of the default brotli: faster writes, about the same size
# for token ids, and TFDS `as_data_source()` and Grain read it unchanged. One encoding thread: with one record per
# chunk, handing chunks to a thread pool costs more CPU than it saves.
WRITER_OPTIONS = "group_size:1,snappy,max_parallelism:1"

SEQ_FEATURES = ("input_ids", "input_mask", "segment_ids")
PRED_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
FEATURE_NAMES = SEQ_FEATURES + PRED_FEATURES + ("next_sentence_labels",)
# Packed rows (`bertjax.data.packing`) add these; next_sentence_labels is then [K] instead of a scalar.
PACKED_FEATURES = ("pair_ids", "next_sentence_positions", "next_sentence_weights")
FLOAT_FEATURES = frozenset({"masked_lm_weights", "next_sentence_weights"})
VARINT_TABLE_SIZE = 1 << 17  # serialize_batch encodes ids below this by table look-up


# ----------------------------------------------------------------------------------------------------------------
# Feature spec


def feature_spec(max_seq_length: int, max_predictions_per_seq: int, max_pairs_per_seq: int = 0):
    """The TFDS `FeaturesDict` of one example: int32 [T] x3, int32/int32/float32 [P], int32 scalar label; packed
    (`max_pairs_per_seq` K > 0): also pair_ids int32 [T], and labels, [CLS] positions and weights [K]."""
    import tensorflow_datasets as tfds  # noqa: PLC0415  (shard worker processes import this module, never TFDS)

    check_lengths(max_seq_length, max_predictions_per_seq)
    shapes = example_shapes(max_seq_length, max_predictions_per_seq, max_pairs_per_seq)
    return tfds.features.FeaturesDict({
        name: (tfds.features.Tensor(shape=shape, dtype=feature_dtype(name)) if shape
               else tfds.features.Scalar(dtype=feature_dtype(name)))
        for name, shape in shapes.items()})


def feature_names(packed: bool = False) -> tuple[str, ...]:
    """The features of an example: FEATURE_NAMES, plus PACKED_FEATURES for packed rows."""
    return FEATURE_NAMES + (PACKED_FEATURES if packed else ())


def example_shapes(max_seq_length: int, max_predictions_per_seq: int,
                   max_pairs_per_seq: int = 0) -> dict[str, tuple[int, ...]]:
    """Per-example shape of every feature ([T], [P], and a scalar label; packed: pair_ids [T], the pair features
    [K])."""
    shapes: dict[str, tuple[int, ...]] = {k: (max_seq_length,) for k in SEQ_FEATURES}
    shapes.update({k: (max_predictions_per_seq,) for k in PRED_FEATURES})
    shapes["next_sentence_labels"] = ()
    if max_pairs_per_seq:
        shapes["pair_ids"] = (max_seq_length,)
        shapes.update({k: (max_pairs_per_seq,) for k in ("next_sentence_labels", *PACKED_FEATURES[1:])})
    return shapes


def feature_dtype(name: str) -> np.dtype:
    """The numpy dtype of a feature (float32 for masked_lm_weights, int32 otherwise)."""
    return np.dtype(np.float32) if name in FLOAT_FEATURES else np.dtype(np.int32)


def check_lengths(max_seq_length: int, max_predictions_per_seq: int) -> None:
    """Raise BertjaxError unless max_seq_length >= 3 and max_predictions_per_seq >= 1."""
    if int(max_seq_length) < 3 or int(max_predictions_per_seq) < 1:
        raise BertjaxError(f"max_seq_length={max_seq_length}, max_predictions_per_seq={max_predictions_per_seq}: "
                           "need max_seq_length >= 3 and max_predictions_per_seq >= 1")


# ----------------------------------------------------------------------------------------------------------------
# Serialization (tf.train.Example wire format, via the protobuf classes TFDS vendors; no TensorFlow)


def _proto():
    from tensorflow_datasets.proto import tf_example_pb2  # noqa: PLC0415  (imports TFDS: see feature_spec)

    return tf_example_pb2


def import_decoder() -> None:
    """Import what `parse_example` needs, now, in the calling thread.

    Call it before decoding from several threads: the first import of tensorflow_datasets made by two threads at
    once can deadlock (its lazy modules take functools.cached_property's lock while holding the import lock; Python
    3.11), which is what hung Grain worker processes whose prefetch threads all decoded their first batch at once.
    """
    _proto()


def _varint(value: int) -> bytes:
    """The minimal protobuf varint of one non-negative int."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fixed_varints(values: np.ndarray) -> np.ndarray:
    """Non-negative values[B, K] -> uint8[B, K*W]: each value as a varint padded to W bytes, W being the width of
    the largest value (a padded varint sets the continuation bit on leading zero groups; protobuf decodes it as the
    same number), so every row has the same length. Values below VARINT_TABLE_SIZE (token ids of any usual vocab)
    are looked up in a table of their W-byte encodings."""
    v = values.astype(np.uint32)
    largest = int(v.max(initial=0))
    width = len(_varint(largest))
    if width == 1:
        return v.astype(np.uint8)
    if largest < VARINT_TABLE_SIZE:
        return _varint_table(width)[v].view(np.uint8).reshape(len(v), -1)
    return _padded_varints(v, width).reshape(len(v), -1)


def _padded_varints(values: np.ndarray, width: int) -> np.ndarray:
    """uint32 values[...] -> uint8[..., width]: each value as a varint padded to `width` bytes."""
    slots = np.arange(width, dtype=np.uint32)
    continuation = np.where(slots < width - 1, 0x80, 0).astype(np.uint32)
    return ((values[..., None] >> (7 * slots)) & 0x7F | continuation).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _varint_table(width: int) -> np.ndarray:
    """The `width`-byte padded varint of every value below VARINT_TABLE_SIZE, one opaque `width`-byte item each."""
    table = _padded_varints(np.arange(VARINT_TABLE_SIZE, dtype=np.uint32), width)
    return np.ascontiguousarray(table).view(f"V{width}").reshape(-1)


def serialize_example(example: Mapping[str, Any]) -> bytes:
    """One example (dict of array-likes with the batch keys) -> serialized tf.train.Example bytes."""
    return serialize_batch({name: np.asarray(example[name])[None] for name in feature_names(_is_packed(example))})[0]


def serialize_batch(batch: Mapping[str, np.ndarray]) -> list[bytes]:
    """A batch (dict of [B, ...] arrays with the batch keys) -> B serialized tf.train.Example records.

    Vectorised with numpy (no protobuf objects). Integer features must be non-negative (ids, masks, positions,
    labels are); within a batch each one is written as packed varints of one fixed width (`_fixed_varints`), so
    all B records have the same layout: one constant header per feature, computed once, then its payload. TFDS,
    TensorFlow and `parse_example` decode them exactly as TFDS's own records. Minimal varints (as TFDS writes)
    would make somewhat smaller files, at a higher encoding cost. Layout: 0x0a V(body), then per feature the map
    entry 0x0a V(entry) 0x0a len(key) key 0x12 V(feature) tag V(list) 0x0a V(payload) payload.
    """
    n = _batch_size(batch)
    if n == 0:
        return []
    parts = []
    for name in feature_names(_is_packed(batch)):
        values = np.asarray(batch[name]).reshape(n, -1)
        if name in FLOAT_FEATURES:
            payload = np.ascontiguousarray(values, dtype="<f4").view(np.uint8).reshape(n, -1)
            list_tag = b"\x12"  # Feature.float_list
        else:
            if values.size and values.min() < 0:
                raise BertjaxError(f"feature {name!r} has negative values; only non-negative ids can be encoded")
            payload = _fixed_varints(values)
            list_tag = b"\x1a"  # Feature.int64_list
        size = payload.shape[1]
        value_list = b"\x0a" + _varint(size)
        feature = list_tag + _varint(len(value_list) + size)
        entry = b"\x0a" + bytes([len(name)]) + name.encode() + b"\x12" + _varint(len(feature) + len(value_list) + size)
        header = b"\x0a" + _varint(len(entry) + len(feature) + len(value_list) + size) + entry + feature + value_list
        parts.append([header, payload])
    body = sum(len(header) + payload.shape[1] for header, payload in parts)
    parts[0][0] = b"\x0a" + _varint(body) + parts[0][0]
    rows = np.concatenate([block for header, payload in parts
                           for block in (np.broadcast_to(np.frombuffer(header, np.uint8), (n, len(header))), payload)],
                          axis=1)
    size = rows.shape[1]
    joined = rows.tobytes()
    return [joined[start:start + size] for start in range(0, n * size, size)]


def parse_example(record: bytes) -> dict[str, np.ndarray]:
    """Serialized tf.train.Example bytes -> dict of numpy arrays (int32 / float32; label is a 0-d int32 array, or
    [K] in a packed row)."""
    features = _proto().Example.FromString(record).features.feature
    out = {}
    for name in feature_names(_is_packed(features)):
        if name not in features:
            raise BertjaxError(f"record has no feature {name!r} (has {sorted(features)}); "
                               "it was not written by bertjax.data.features")
        feature = features[name]
        if name in FLOAT_FEATURES:
            out[name] = np.array(feature.float_list.value, dtype=np.float32)
        else:
            out[name] = np.array(feature.int64_list.value, dtype=np.int32)
    if "pair_ids" not in out:
        out["next_sentence_labels"] = out["next_sentence_labels"].reshape(())
    return out


def _is_packed(example_or_batch) -> bool:
    """Whether an example, batch or record's features are those of packed rows (they have pair_ids)."""
    return "pair_ids" in example_or_batch


def max_pairs_of(example_or_batch: Mapping[str, Any]) -> int:
    """K of a packed example (or batch): the length of its next_sentence_labels; 0 for an unpacked one."""
    if not _is_packed(example_or_batch):
        return 0
    return int(np.shape(example_or_batch["next_sentence_labels"])[-1])


def _batch_size(batch: Mapping[str, Any]) -> int:
    names = feature_names(_is_packed(batch))
    missing = [k for k in names if k not in batch]
    if missing:
        raise BertjaxError(f"batch is missing features {missing}; every example needs {list(names)}")
    sizes = {k: np.shape(batch[k])[0] if np.ndim(batch[k]) else None for k in names}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise BertjaxError(f"batch features have different leading sizes {sizes}; all must be [B, ...]")
    return int(sizes["input_ids"])


def check_shapes(example_or_batch: Mapping[str, Any], max_seq_length: int, max_predictions_per_seq: int,
                 batched: bool = False) -> None:
    """Raise BertjaxError if an example (or batch, with `batched=True`) does not match the lengths T and P (and K of a
    packed one)."""
    for name, shape in example_shapes(max_seq_length, max_predictions_per_seq,
                                      max_pairs_of(example_or_batch)).items():
        got = np.shape(example_or_batch[name])
        if batched:
            got = got[1:]
        if tuple(got) != shape:
            raise BertjaxError(f"feature {name!r} has per-example shape {tuple(got)}, expected {shape} "
                               f"(max_seq_length={max_seq_length}, max_predictions_per_seq={max_predictions_per_seq})")


# ----------------------------------------------------------------------------------------------------------------
# Shard writing


class ShardWriter:
    """Writes examples to one ArrayRecord file (WRITER_OPTIONS: random access, snappy). Use as a context manager.

    `max_seq_length` / `max_predictions_per_seq`, if given, are checked on every write; otherwise the shapes of the
    first example written are the reference. Records are encoded by `serialize_batch`; single examples given to
    `write` are collected and encoded WRITE_BUFFER at a time (in order), so both paths are fast.
    """

    WRITE_BUFFER = 512

    def __init__(self, path: str | os.PathLike, max_seq_length: int | None = None,
                 max_predictions_per_seq: int | None = None, max_pairs_per_seq: int = 0):
        self.path = os.fspath(path)
        self._lengths = (max_seq_length, max_predictions_per_seq) if max_seq_length else None
        self._max_pairs = max_pairs_per_seq
        self._writer = array_record_module.ArrayRecordWriter(self.path, WRITER_OPTIONS)
        self._pending: list[dict[str, np.ndarray]] = []
        self.num_examples = 0

    def _check(self, example_or_batch: Mapping[str, Any], batched: bool) -> None:
        if self._lengths is None:
            ids = np.shape(example_or_batch["input_ids"])
            preds = np.shape(example_or_batch["masked_lm_ids"])
            self._lengths = (ids[-1], preds[-1])
            self._max_pairs = max_pairs_of(example_or_batch)
        if max_pairs_of(example_or_batch) != self._max_pairs:
            raise BertjaxError(f"{self.path}: an example with max_pairs_per_seq={max_pairs_of(example_or_batch)} "
                               f"among examples with {self._max_pairs}; write packed and unpacked rows apart")
        check_shapes(example_or_batch, *self._lengths, batched=batched)

    def write(self, example: Mapping[str, Any]) -> None:
        """Append one example (dict of array-likes with the batch keys)."""
        names = feature_names(_is_packed(example))
        missing = [k for k in names if k not in example]
        if missing:
            raise BertjaxError(f"example is missing features {missing}; every example needs {list(names)}")
        self._check(example, batched=False)
        self._pending.append({name: np.array(example[name]) for name in names})   # a copy
        self.num_examples += 1
        if len(self._pending) >= self.WRITE_BUFFER:
            self._flush()

    def write_batch(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append B examples given as a dict of [B, ...] arrays (the fast path)."""
        if _batch_size(batch) == 0:
            return
        self._check(batch, batched=True)
        self._flush()
        self._write_records(batch)
        self.num_examples += len(batch["input_ids"])

    def _write_records(self, batch: Mapping[str, np.ndarray]) -> None:
        for record in serialize_batch(batch):
            self._writer.write(record)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._write_records({name: np.stack([np.asarray(e[name]) for e in pending]) for name in pending[0]})

    def close(self) -> int:
        """Flush and close the file; returns the number of examples written."""
        if self._writer.is_open():
            try:
                self._flush()
            finally:
                self._writer.close()
        return self.num_examples

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_shard(path: str | os.PathLike, examples: Mapping[str, np.ndarray] | Iterable[Mapping[str, Any]]) -> int:
    """Write a batch dict ([B, ...] arrays) or an iterable of example dicts to one ArrayRecord file; returns the
    number of examples written."""
    with ShardWriter(path) as writer:
        if isinstance(examples, Mapping):
            writer.write_batch(examples)
        else:
            for example in examples:
                writer.write(example)
    return writer.num_examples


def count_records(path: str | os.PathLike) -> int:
    """Number of records in one ArrayRecord file (reads only its index)."""
    reader = array_record_module.ArrayRecordReader(os.fspath(path))
    try:
        return reader.num_records()
    finally:
        reader.close()


def iter_records(path: str | os.PathLike, chunk_size: int = 1024) -> Iterator[bytes]:
    """The raw records of one ArrayRecord file in order, read `chunk_size` at a time (bounded memory)."""
    reader = array_record_module.ArrayRecordReader(os.fspath(path))
    try:
        total = reader.num_records()
        for start in range(0, total, chunk_size):
            yield from reader.read(start, min(start + chunk_size, total))
    finally:
        reader.close()


def read_shard(path: str | os.PathLike) -> list[bytes]:
    """All raw records of one ArrayRecord file (for tests and tools; the pipeline reads with Grain)."""
    return list(iter_records(path))
