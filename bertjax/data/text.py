"""Reading the raw corpus: input globs, lines, and bounded shards of whole documents.

The format is google-research/bert's: one sentence per line, a blank (or whitespace-only) line ending a document;
the end of a file also ends a document. Invalid UTF-8 is replaced and counted, never fatal; a line longer than
MAX_LINE_BYTES is cut (at a character boundary) into several lines.

`plan_text_shards` cuts the corpus into shards of about `shard_bytes` as byte ranges, looking only at raw bytes
(for blank lines), so the planning process stays light however many workers read; `read_shard_text` turns one
shard into lines, decoding it in bulk. A shard ends at a blank line or at a file end, except that a document
longer than 4 * shard_bytes is cut at a line end, so that no shard grows without bound.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np
from etils import epath

from bertjax import paths
from bertjax.errors import BertjaxError

MAX_LINE_BYTES = 1 << 20  # longer lines are cut into several sentences of at most this many bytes
MAX_DOCUMENT_SHARDS = 4  # a document longer than this many shard sizes is cut at a line end
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c\x1c-\x1f]*\n")  # ASCII-blank lines: the places shards are cut
_FIRST_READ = 1 << 16  # bytes read past the shard size when looking for a blank line (doubled until found)


def expand_input_files(patterns: str | Sequence[str]) -> list[epath.Path]:
    """Files named by comma-separated globs (a string) or a list of globs, local or gs://, in order, without
    duplicates."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [p for p in os.fspath(patterns).split(",")]
    patterns = [p.strip() for p in patterns if p and p.strip()]
    if not patterns:
        raise BertjaxError("no input file given; pass --input_file with a file, a glob or a comma-separated list")
    files: list[epath.Path] = []
    for pattern in patterns:
        matches = paths.glob(pattern)
        if not matches and paths.path(pattern).is_dir():
            raise BertjaxError(f"input {pattern!r} is a directory; pass the text files in it, e.g. "
                               f"'{pattern.rstrip('/')}/*.txt'")
        if not matches:
            raise BertjaxError(f"input {pattern!r} matches no file; check the path or glob (quote globs in the shell)")
        files.extend(m for m in matches if m not in files)
    return files


TEXT_SAMPLE_BYTES = 1 << 20  # how much of each input file `check_is_text` looks at
_NOT_TEXT = re.compile("[\ufffd\x00-\x08\x0e-\x1f\x7f]")  # invalid UTF-8 (replaced) and control characters


def non_text_fraction(path: str | os.PathLike, read_sample: Callable[[str | os.PathLike, int], bytes] | None = None
                      ) -> float:
    """Fraction of the characters in the first TEXT_SAMPLE_BYTES of a file (as `read_sample(path, n)` gives them;
    default: its raw bytes) that are invalid UTF-8 or control characters (tab, newlines, form feed and the like
    excluded): near 0 for text, large for binary files."""
    sample = (read_sample or _raw_sample)(path, TEXT_SAMPLE_BYTES)
    decoded = sample[:char_boundary(sample)].decode("utf-8", errors="replace") if sample else ""
    return len(_NOT_TEXT.findall(decoded)) / max(len(decoded), 1)


def _raw_sample(path: str | os.PathLike, num_bytes: int) -> bytes:
    with paths.path(path).open("rb") as f:
        return f.read(num_bytes)


def check_is_text(files: Sequence[str | os.PathLike], max_non_text_fraction: float,
                  read_sample: Callable[[str | os.PathLike, int], bytes] | None = None) -> None:
    """BertjaxError naming the first input file whose sample is more than `max_non_text_fraction` non-text."""
    for path in files:
        fraction = non_text_fraction(path, read_sample)
        if fraction > max_non_text_fraction:
            raise BertjaxError(f"input {os.fspath(path)} does not look like text: {fraction:.1%} of its first "
                               f"{TEXT_SAMPLE_BYTES >> 20} MB is invalid UTF-8 or control characters (at most "
                               f"{max_non_text_fraction:.1%} allowed); pass UTF-8 text files, or raise "
                               "--max_non_text_fraction")


def file_size(path: str | os.PathLike) -> int:
    """Size in bytes of a local or remote file."""
    return paths.path(path).stat().length


@dataclass
class TextStats:
    """Counts made while reading text."""

    lines: int = 0
    invalid_utf8_lines: int = 0
    split_long_lines: int = 0
    bytes: int = 0


def iter_lines(source: str | os.PathLike | BinaryIO, stats: TextStats) -> Iterator[str]:
    """Lines of a text file (a path or a binary file object) as str without the newline.

    Invalid UTF-8 is replaced (and counted), never fatal; a line longer than MAX_LINE_BYTES is cut (at a UTF-8
    character boundary) into several lines.
    """
    with (paths.path(source).open("rb") if isinstance(source, (str, os.PathLike)) else source) as f:
        carry = b""
        while True:
            chunk = carry + f.readline(MAX_LINE_BYTES + 1 - len(carry))
            carry = b""
            if not chunk:
                return
            if not chunk.endswith(b"\n") and len(chunk) > MAX_LINE_BYTES:
                cut = char_boundary(chunk[:MAX_LINE_BYTES])
                chunk, carry = chunk[:cut], chunk[cut:]
                stats.split_long_lines += 1
            yield _decode(chunk.rstrip(b"\r\n"), stats)


def char_boundary(chunk: bytes) -> int:
    """Where to cut `chunk` so that no UTF-8 character is split: before a possibly incomplete last character
    (its whole length if nothing else works)."""
    cut = len(chunk)
    while cut > 0 and (chunk[cut - 1] & 0xC0) == 0x80:  # back off to a character start
        cut -= 1
    if cut > 0 and chunk[cut - 1] >= 0xC0:
        cut -= 1
    return cut or len(chunk)


def _decode(raw: bytes, stats: TextStats) -> str:
    stats.lines += 1
    stats.bytes += len(raw) + 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        return raw.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------------------------------
# Shards


@dataclass
class TextShard:
    """A bounded slice of the corpus, read by a worker: byte ranges (path, start, end) of one or more files, or
    parts that carry their text (`bertjax.data.corpus_formats.Part`: compressed files, records, Parquet)."""

    index: int
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    parts: list[Any] = field(default_factory=list)
    input_bytes: int = 0  # bytes of the input files the parts stand for (compressed: fewer than their text)
    keep: Any = None  # --dedup_documents: numpy packbits of the documents to keep, in order (None: all)

    @property
    def num_bytes(self) -> int:
        """Bytes of text in the shard."""
        return sum(end - start for _, start, end in self.spans) + sum(part.num_bytes for part in self.parts)

    @property
    def progress_bytes(self) -> int:
        """Bytes of the input files the shard stands for (for a progress bar over the files' sizes)."""
        return self.input_bytes if self.parts else self.num_bytes


def plan_text_shards(files: Sequence[str | os.PathLike], shard_bytes: int) -> Iterator[TextShard]:
    """Cut the corpus into shards of about `shard_bytes` each (see module doc), reading only raw bytes."""
    shard = TextShard(0)
    for path in files:
        size_of_file = file_size(path)
        with paths.path(path).open("rb") as f:
            start = 0
            while start < size_of_file:
                size = shard.num_bytes
                end = _find_cut(f, start, size_of_file, max(shard_bytes - size, 0),
                                max(MAX_DOCUMENT_SHARDS * shard_bytes - size, 1))
                shard.spans.append((os.fspath(path), start, end))
                if end < size_of_file or shard.num_bytes >= shard_bytes:
                    yield shard
                    shard = TextShard(shard.index + 1)
                start = end
    if shard.spans:
        yield shard


def _find_cut(f: BinaryIO, start: int, file_size: int, wanted: int, limit: int) -> int:
    """End of the next piece of a file starting at `start` (a line start, or a cut inside a long line).

    The first blank line ending at least `wanted` bytes on, if one ends within `limit` bytes; else the file's end
    if that is within `limit`; else the end of the line holding byte `limit` (a long line: where `iter_lines`
    would cut it).
    """
    if start + wanted >= file_size:
        return file_size
    size = min(limit, wanted + _FIRST_READ)
    while True:
        f.seek(start)
        window = f.read(min(size, file_size - start))
        match = _BLANK_LINE.search(window, max(wanted - 1, 0))
        if match:
            return start + match.end()
        if start + len(window) >= file_size:
            return file_size
        if size >= limit:
            break
        size = min(limit, 2 * size)
    line_start = start + window.rfind(b"\n", 0, limit - 1) + 1  # rfind gives -1 when the line began at start
    f.seek(line_start)
    line = f.read(MAX_LINE_BYTES + 1)
    newline = line.find(b"\n")
    if newline >= 0:
        return line_start + newline + 1
    if line_start + len(line) >= file_size:
        return file_size
    return line_start + char_boundary(line[:MAX_LINE_BYTES])


def read_shard_text(shard: TextShard) -> tuple[list[str], TextStats]:
    """The lines of a shard, "" for each blank line and after each span or part (its end ends a document).

    The common case (valid UTF-8, no line over MAX_LINE_BYTES) is decoded in bulk; otherwise `iter_lines` reads
    the span line by line.
    """
    stats = TextStats()
    lines: list[str] = []
    for raw in shard_bytes(shard, stats):
        lines.extend(raw_lines(raw, stats))
        lines.append("")
    return lines, stats


def shard_bytes(shard: TextShard, stats: TextStats) -> Iterator[bytes]:
    """The bytes of each span, then of each part, of a shard (a part's data must be bytes); counted in `stats`."""
    for path, start, end in shard.spans:
        with paths.path(path).open("rb") as f:
            f.seek(start)
            raw = f.read(end - start)
        stats.bytes += len(raw)
        if not raw.endswith(b"\n") and end < file_size(path):
            stats.split_long_lines += 1  # the span ends inside a long line
        yield raw
    for part in shard.parts:
        stats.bytes += len(part.data)
        yield part.data


def raw_lines(raw: bytes, stats: TextStats) -> list[str]:
    """The lines of a piece of a text file ending at a line end (or at the file end), "" for blank lines; invalid
    UTF-8 replaced and lines over MAX_LINE_BYTES cut, as `iter_lines` (counted in `stats`, as the lines are)."""
    text = _decode_lines(raw)
    if text is None:
        span_stats = TextStats()
        span_lines = list(iter_lines(io.BytesIO(raw), span_stats))
        stats.invalid_utf8_lines += span_stats.invalid_utf8_lines
        stats.split_long_lines += span_stats.split_long_lines
    else:
        span_lines = text.split("\n")
        if raw.endswith(b"\n"):
            span_lines.pop()
        if "\r" in text:
            span_lines = [line.rstrip("\r\n") for line in span_lines]
    stats.lines += len(span_lines)
    return [line if line and not line.isspace() else "" for line in span_lines]


def _decode_lines(raw: bytes) -> str | None:
    """`raw` decoded, if it is valid UTF-8 and has no line longer than MAX_LINE_BYTES; else None."""
    if len(raw) > MAX_LINE_BYTES:
        ends = np.flatnonzero(np.frombuffer(raw, np.uint8) == ord("\n"))
        if np.diff(ends, prepend=-1, append=len(raw)).max() > MAX_LINE_BYTES + 1:  # a line + its newline
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
