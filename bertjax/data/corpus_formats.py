"""Corpus files as people have them: which format a file is in, its bytes (decompressed), and its shards.

Formats (`--input_format`; `auto`, the default, goes by the file name, compression suffix aside):

| format       | one document is                                   | file names under `auto`            |
| ------------ | ------------------------------------------------- | ---------------------------------- |
| `sentences`  | sentence lines up to a blank line (the original)  | anything else (`.txt`)             |
| `paragraphs` | paragraph lines up to a blank line                | (by flag only)                     |
| `documents`  | one line                                          | (by flag only)                     |
| `jsonl`      | one JSON object per line, text in `--text_field`  | `.jsonl`, `.ndjson`, `.json`       |
| `parquet`    | one row, text in the column `--text_field`        | `.parquet`                         |

`.gz` and `.zst` files are read as streams (a truncated one is an error naming it). Uncompressed `sentences` and
`paragraphs` files are cut into shards as byte ranges by `bertjax.data.text` (no process reads them whole); every
other file is read here, in the main process, and cut into shards whose parts carry the bytes (or, for Parquet, the
texts) to the worker that splits them into sentences. Shards depend on the corpus and the shard size only, so the
dataset does not depend on the number of workers. A shard part remembers the line (record) number it starts at, so
that a bad record is named by file and line.
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

from bertjax import paths
from bertjax.data import text
from bertjax.errors import BertjaxError

AUTO = "auto"
SENTENCES, PARAGRAPHS, DOCUMENTS, JSONL, PARQUET = "sentences", "paragraphs", "documents", "jsonl", "parquet"
FORMATS = (SENTENCES, PARAGRAPHS, DOCUMENTS, JSONL, PARQUET)
BLANK_LINE_FORMATS = (SENTENCES, PARAGRAPHS)  # a blank line ends a document (else: every line is a record)
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_FORMAT_OF_SUFFIX = {".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL, ".parquet": PARQUET}
EXTRA = "pip install 'bertjax[corpus]'"  # what brings pyarrow and zstandard
READ_CHUNK = 1 << 20
MAX_RECORD_BYTES = 64 << 20  # a JSON line or document line longer than this is refused (memory stays bounded)
PARQUET_BATCH_ROWS = 1024


def compression_of(path: str | os.PathLike) -> str | None:
    """'gzip', 'zstd' or None, by the file name's last suffix."""
    return COMPRESSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def format_by_name(path: str | os.PathLike) -> str:
    """The format `auto` gives a file: by its suffix, a compression suffix aside."""
    name = os.fspath(path)
    if compression_of(name):
        name = os.path.splitext(name)[0]
    return _FORMAT_OF_SUFFIX.get(os.path.splitext(name)[1].lower(), SENTENCES)


def resolve_format(files: Sequence[str | os.PathLike], input_format: str = AUTO) -> str:
    """The one format of all `files`: `input_format`, or (auto) the format their names say.

    Raises BertjaxError for an unknown format, a glob whose files' names say different formats, or a flag that
    contradicts a structured file's name (e.g. --input_format=documents on a .parquet file).
    """
    if input_format != AUTO and input_format not in FORMATS:
        raise BertjaxError(f"--input_format={input_format} is not one of {AUTO}, {', '.join(FORMATS)}")
    by_name = {os.fspath(f): format_by_name(f) for f in files}
    if input_format == AUTO:
        found = sorted(set(by_name.values()))
        if len(found) > 1:
            examples = ", ".join(f"{next(f for f, v in by_name.items() if v == fmt)} ({fmt})" for fmt in found)
            raise BertjaxError(f"the input mixes formats: {examples}; give files of one format per run")
        return found[0]
    for name, fmt in by_name.items():
        if fmt in (JSONL, PARQUET) and fmt != input_format:
            raise BertjaxError(f"--input_format={input_format} but {name} is named as {fmt}; pass "
                               f"--input_format={fmt}, or give files of one format per run")
    return input_format


def check_inputs(files: Sequence[str | os.PathLike], input_format: str, text_field: str) -> None:
    """Refuse, before any work, a Parquet file that is not one or lacks the text column, and a compressed file when
    its library is missing."""
    for path in files:
        if compression_of(path) == "zstd":
            _zstandard()
        if input_format == PARQUET:
            with paths.path(path).open("rb") as f:
                _parquet_column(f, path, text_field)


# ----------------------------------------------------------------------------------------------------------------
# Bytes


def read_chunks(path: str | os.PathLike) -> Iterator[tuple[bytes, int]]:
    """(decompressed bytes, input bytes read so far) of a file, chunk by chunk; a truncated or corrupt .gz/.zst file
    is a BertjaxError naming it."""
    kind = compression_of(path)
    with paths.path(path).open("rb") as raw:
        if kind is None:
            while chunk := raw.read(READ_CHUNK):
                yield chunk, raw.tell()
            return
        decompress = _gzip_stream if kind == "gzip" else _zstd_stream
        try:
            for chunk in decompress(raw):
                yield chunk, raw.tell()
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as e:
            raise BertjaxError(f"input {os.fspath(path)} is a truncated or corrupt {kind} file ({e}); download or "
                               "compress it again") from None


def _gzip_stream(raw) -> Iterator[bytes]:
    with gzip.GzipFile(fileobj=raw) as f:
        while chunk := f.read(READ_CHUNK):
            yield chunk


def _zstd_stream(raw) -> Iterator[bytes]:
    """Every frame of a .zst stream; a stream that ends inside a frame raises ValueError (zstandard's reader
    would silently stop there)."""
    zstandard = _zstandard()
    decompressor, in_frame = zstandard.ZstdDecompressor().decompressobj(), False
    while data := raw.read(READ_CHUNK):
        while data:
            try:
                out = decompressor.decompress(data)
            except zstandard.ZstdError as e:
                raise ValueError(str(e)) from None
            in_frame = True
            if out:
                yield out
            if not decompressor.eof:
                break
            data, in_frame = decompressor.unused_data, False
            decompressor = zstandard.ZstdDecompressor().decompressobj()
    if in_frame:
        raise ValueError("the stream ends inside a frame")


def _zstandard():
    try:
        import zstandard  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise BertjaxError(f".zst input needs the zstandard package: {EXTRA}") from None
    return zstandard


def text_sample(path: str | os.PathLike, num_bytes: int) -> bytes:
    """The first `num_bytes` of a file's (decompressed) content: what `text.check_is_text` looks at."""
    sample = b""
    for chunk, _ in read_chunks(path):
        sample += chunk
        if len(sample) >= num_bytes:
            break
    return sample[:num_bytes]


# ----------------------------------------------------------------------------------------------------------------
# Shards


@dataclass
class Part:
    """A piece of one input file carried inside a shard: its bytes (line formats) or texts (Parquet)."""

    source: str
    first_record: int  # 0-based number of its first line (line formats) or row (Parquet) in the file
    data: bytes | list
    num_bytes: int  # bytes of text (of UTF-8 for Parquet)


def plan_shards(files: Sequence[str | os.PathLike], input_format: str, shard_bytes: int,
                text_field: str) -> Iterator[text.TextShard]:
    """The corpus cut into shards of about `shard_bytes` of text, whole documents each, numbered in order."""
    if input_format in BLANK_LINE_FORMATS and not any(compression_of(f) for f in files):
        yield from text.plan_text_shards(files, shard_bytes)
        return
    shard = text.TextShard(0)
    for path in files:
        pieces = (_parquet_parts(path, text_field, shard_bytes) if input_format == PARQUET else
                  _line_parts(path, input_format in BLANK_LINE_FORMATS, shard_bytes))
        for part, input_bytes in pieces:
            shard.parts.append(part)
            shard.input_bytes += input_bytes
            if shard.num_bytes >= shard_bytes:
                yield shard
                shard = text.TextShard(shard.index + 1)
    if shard.parts:
        yield shard


_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c\x1c-\x1f]*\n")


def _line_parts(path, blank_line_ends: bool, shard_bytes: int) -> Iterator[tuple[Part, int]]:
    """Parts of about `shard_bytes` of a text file, each ending at a document end (a blank line, or with records
    any line end); a document over MAX_DOCUMENT_SHARDS shard sizes is cut at a line end, a record line over
    MAX_RECORD_BYTES is refused."""
    source, buffer, line, consumed, reported = os.fspath(path), b"", 0, 0, 0
    for chunk, consumed in read_chunks(path):
        buffer += chunk
        while len(buffer) > shard_bytes:
            cut = _cut(buffer, shard_bytes, blank_line_ends)
            if cut is None:
                if not blank_line_ends and len(buffer) > MAX_RECORD_BYTES:
                    raise BertjaxError(f"line {line + 1} of {source} is longer than {MAX_RECORD_BYTES >> 20} MB; "
                                       "split that document into several records")
                break
            yield Part(source, line, buffer[:cut], cut), consumed - reported
            line, reported, buffer = line + buffer.count(b"\n", 0, cut), consumed, buffer[cut:]
    if buffer:
        yield Part(source, line, buffer, len(buffer)), consumed - reported


def _cut(buffer: bytes, shard_bytes: int, blank_line_ends: bool) -> int | None:
    """Where to end a part of `buffer`: after the first document end past `shard_bytes`, or None if none yet."""
    if blank_line_ends:
        match = _BLANK_LINE.search(buffer, shard_bytes - 1)
        if match:
            return match.end()
        limit = text.MAX_DOCUMENT_SHARDS * shard_bytes
        if len(buffer) > limit:  # a huge document: cut at a line end (inside a huge line: as text.iter_lines)
            newline = buffer.find(b"\n", limit)
            if newline >= 0:
                return newline + 1
            if len(buffer) > limit + text.MAX_LINE_BYTES:
                return limit + text.char_boundary(buffer[limit:limit + text.MAX_LINE_BYTES])
        return None
    newline = buffer.find(b"\n", shard_bytes - 1)
    return newline + 1 if newline >= 0 else None


def _parquet_column(f, path, text_field: str):
    """The ParquetFile of `f` (the open file `path`), checked to hold the string column `text_field` (else
    BertjaxError)."""
    try:
        import pyarrow as pa  # noqa: PLC0415  (an optional extra)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise BertjaxError(f"Parquet input needs pyarrow: {EXTRA}") from None
    try:
        parquet = pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise BertjaxError(f"input {os.fspath(path)} does not read as a Parquet file ({e}); pass Parquet files, or "
                           "set --input_format") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise BertjaxError(f"Parquet file {os.fspath(path)} has no column {text_field!r}; its columns are "
                           f"{schema.names}; pass --text_field")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise BertjaxError(f"column {text_field!r} of {os.fspath(path)} holds {kind}, not text; pass the text "
                           f"column as --text_field (columns: {schema.names})")
    return parquet


def _parquet_parts(path, text_field: str, shard_bytes: int) -> Iterator[tuple[Part, int]]:
    """Parts of about `shard_bytes` of a Parquet file's text column (texts as str, or None for null)."""
    import pyarrow as pa  # noqa: PLC0415  (an optional extra)

    source, size = os.fspath(path), text.file_size(path)
    with paths.path(path).open("rb") as f:
        parquet = _parquet_column(f, path, text_field)
        rows = max(1, parquet.metadata.num_rows)
        texts: list = []
        num_bytes, first, row = 0, 0, 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
                column = batch.column(0)
                texts.extend(column.to_pylist())
                num_bytes += column.nbytes
                row += len(column)
                if num_bytes >= shard_bytes:
                    yield Part(source, first, texts, num_bytes), size * (row - first) // rows
                    texts, num_bytes, first = [], 0, row
        except (pa.ArrowException, OSError) as e:
            raise BertjaxError(f"Parquet file {source} is corrupt near row {row} ({e}); restore the file") from None
        if texts:
            yield Part(source, first, texts, num_bytes), size * (row - first) // rows
