"""A shard of any corpus format -> sentence lines, cleaned: what the pretraining-example maker reads.

`shard_lines` gives the contract of `bertjax.data.instances.tokenize_documents`: one sentence per line, "" after
each document. For the original format (`sentences`) the lines are the file's, untouched. For every other format
(`bertjax.data.corpus_formats`) each document is read as paragraphs (its lines; a JSON or Parquet text is cut at
its newlines), cleaned, and split into sentences by `bertjax.data.sentences`. Cleaning, in this order:
* every paragraph is put in Unicode NFC (Hangul stays whole syllables, even from NFD input) and its whitespace
  runs become one space; empty paragraphs and documents are dropped (counted);
* --dedup_documents: a document whose text (its cleaned paragraphs, or for the original format its lines) has
  been seen before in the corpus is dropped (counted): the first copy in file order is kept, found by a first
  pass over the corpus that hashes every document (`document_hashes`, `keep_first`);
* --min_document_sentences: a document with fewer sentences is dropped (counted).
A bad record (a JSON line that is not JSON or not an object, lacks the text field, or holds no text there) is an
error naming the file and line, or with --skip_bad_records a count.
"""
from __future__ import annotations

import hashlib
import json
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from bertjax.data import corpus_formats as formats
from bertjax.data import sentences, text
from bertjax.errors import BertjaxError

DEFAULT_TEXT_FIELD = "text"
COUNT_KEYS = ("bad_records", "empty_documents", "duplicate_documents", "short_documents", "segmenting_ms")


@dataclass(frozen=True)
class CorpusSpec:
    """How to read a corpus: everything besides the files that decides what its documents are."""

    input_format: str = formats.SENTENCES
    text_field: str = DEFAULT_TEXT_FIELD
    sentence_splitter: str = ""  # "" for the original format (its lines are the sentences)
    language: str = ""
    dedup_documents: bool = False
    min_document_sentences: int = 0
    skip_bad_records: bool = False
    splitter_versions: tuple[tuple[str, str], ...] = ()  # (library, version): part of the dataset's settings

    @property
    def splits_sentences(self) -> bool:
        """Whether documents are split into sentences here (every format but the original, given a splitter)."""
        return self.input_format != formats.SENTENCES and bool(self.sentence_splitter)


def corpus_spec(files: Sequence[Any], input_format: str = formats.AUTO, text_field: str = DEFAULT_TEXT_FIELD,
                sentence_splitter: str | None = sentences.AUTO, language: str | None = None,
                dedup_documents: bool = False, min_document_sentences: int = 0,
                skip_bad_records: bool = False) -> CorpusSpec:
    """How to read `files`, checked (BertjaxError): the format, the flags, and the splitter (installed; its versions
    recorded). sentence_splitter=None: documents are read but not split (the vocab trainer)."""
    fmt = formats.resolve_format(files, input_format)
    if min_document_sentences < 0:
        raise BertjaxError(f"--min_document_sentences={min_document_sentences} must be >= 0")
    if not text_field:
        raise BertjaxError("--text_field is empty; name the JSON field or Parquet column that holds the text")
    formats.check_inputs(files, fmt, text_field)
    splitter, versions = "", ()
    if fmt != formats.SENTENCES and sentence_splitter is not None:
        sentences.check_splitter(sentence_splitter, language)
        splitter = sentence_splitter
        versions = tuple(sorted(sentences.splitter_versions(sentence_splitter, language).items()))
    return CorpusSpec(input_format=fmt, text_field=text_field if fmt in (formats.JSONL, formats.PARQUET) else "",
                      sentence_splitter=splitter, language=language or "", dedup_documents=dedup_documents,
                      min_document_sentences=min_document_sentences, skip_bad_records=skip_bad_records,
                      splitter_versions=versions)


def clean_paragraph(paragraph: str) -> str:
    """NFC, whitespace runs -> one space, no space at either end."""
    if not unicodedata.is_normalized("NFC", paragraph):
        paragraph = unicodedata.normalize("NFC", paragraph)
    return " ".join(paragraph.split())


def document_hash(units: list[str]) -> int:
    """A 64-bit hash of a document's cleaned paragraphs (or lines), for --dedup_documents."""
    return int.from_bytes(hashlib.blake2b("\n".join(units).encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


# ----------------------------------------------------------------------------------------------------------------
# Documents of a shard


def shard_documents(shard: text.TextShard, spec: CorpusSpec,
                    stats: text.TextStats, counts: dict[str, int]) -> list[list[str]]:
    """The non-empty documents of a shard, in order: cleaned paragraphs, or for the original format its lines."""
    if spec.input_format in formats.BLANK_LINE_FORMATS:
        lines, read = text.read_shard_text(shard)
        for name in ("lines", "invalid_utf8_lines", "split_long_lines", "bytes"):
            setattr(stats, name, getattr(stats, name) + getattr(read, name))
        documents = blank_line_documents(lines)
        if spec.input_format == formats.PARAGRAPHS:
            documents = [[p for p in map(clean_paragraph, doc) if p] for doc in documents]
    else:
        documents = [[p for p in map(clean_paragraph, raw.splitlines()) if p]
                     for raw in _record_texts(shard, spec, stats, counts)]
    kept = [doc for doc in documents if doc]
    counts["empty_documents"] += len(documents) - len(kept)
    return kept


def blank_line_documents(lines: list[str]) -> list[list[str]]:
    """Lines ("" ends a document) -> the documents' non-empty lines."""
    documents, current = [], []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            documents.append(current)
            current = []
    if current:
        documents.append(current)
    return documents


def _record_texts(shard: text.TextShard, spec: CorpusSpec, stats: text.TextStats,
                  counts: dict[str, int]) -> Iterator[str]:
    """The text of every record (a line, a JSON line's field, a Parquet row) of a shard's parts."""
    for part in shard.parts:
        if spec.input_format == formats.PARQUET:
            stats.bytes += part.num_bytes
            stats.lines += len(part.data)
            yield from (t or "" for t in part.data)  # null: an empty document
            continue
        stats.bytes += len(part.data)
        raw_lines = part.data.split(b"\n")
        if raw_lines and not raw_lines[-1]:
            raw_lines.pop()
        stats.lines += len(raw_lines)
        for number, raw in enumerate(raw_lines, part.first_record + 1):
            if spec.input_format == formats.DOCUMENTS:
                yield _decode(raw, stats)
            elif raw.strip():
                record = _json_text(raw, spec.text_field, part.source, number)
                if not isinstance(record, _BadRecord):
                    yield record
                elif spec.skip_bad_records:
                    counts["bad_records"] += 1
                else:
                    raise BertjaxError(f"{record}, or pass --skip_bad_records to count and skip such records")


def _decode(raw: bytes, stats: text.TextStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        return raw.decode("utf-8", errors="replace")


class _BadRecord(str):
    """What is wrong with a record (a message, not a text)."""


def _json_text(raw: bytes, field: str, source: str, number: int) -> str | _BadRecord:
    where = f"line {number} of {source}"
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return _BadRecord(f"{where} is not JSON ({' '.join(str(e).split())[:80]}); fix or drop it")
    if not isinstance(record, dict):
        return _BadRecord(f"{where} is a JSON {type(record).__name__}, not an object with a {field!r} field")
    if field not in record:
        return _BadRecord(f"{where} has no field {field!r}; its fields are {sorted(record)[:20]}; pass --text_field")
    value = record[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        return _BadRecord(f"field {field!r} of {where} is a JSON {type(value).__name__}, not text")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Deduplication and sentences


def document_hashes(shard: text.TextShard, spec: CorpusSpec) -> np.ndarray:
    """The uint64 hashes of a shard's documents, in order (the first pass of --dedup_documents)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    documents = shard_documents(shard, spec, text.TextStats(), counts)
    return np.fromiter(map(document_hash, documents), np.uint64, len(documents))


def keep_first(hashes_per_shard: list[np.ndarray]) -> list[np.ndarray]:
    """Per shard, the packed bits of the documents to keep: the first copy of each text in corpus order."""
    all_hashes = np.concatenate(hashes_per_shard) if hashes_per_shard else np.zeros(0, np.uint64)
    keep = np.zeros(len(all_hashes), bool)
    keep[np.unique(all_hashes, return_index=True)[1]] = True
    bounds = np.cumsum([0] + [len(h) for h in hashes_per_shard])
    return [np.packbits(keep[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def shard_lines(shard: text.TextShard, spec: CorpusSpec, splitter) -> tuple[list[str], text.TextStats,
                                                                             dict[str, int]]:
    """A shard's sentence lines, "" after each document (see module doc), with its reading statistics and counts.

    `splitter` is a `bertjax.data.sentences.SentenceSplitter` (unused for the original format).
    """
    stats, counts = text.TextStats(), dict.fromkeys(COUNT_KEYS, 0)
    if not spec.splits_sentences and not spec.dedup_documents and not spec.min_document_sentences:
        lines, stats = text.read_shard_text(shard)  # the original format as it is
        return lines, stats, counts
    documents = shard_documents(shard, spec, stats, counts)
    if shard.keep is not None:
        keep = np.unpackbits(shard.keep, count=len(documents)).astype(bool)
        counts["duplicate_documents"] += int((~keep).sum())
        documents = [doc for doc, kept in zip(documents, keep) if kept]
    if spec.splits_sentences:
        started = time.process_time()
        sentences = iter(splitter.split([p for doc in documents for p in doc]))
        documents = [[s for _ in doc for s in next(sentences)] for doc in documents]
        counts["segmenting_ms"] += int(1000 * (time.process_time() - started))
    lines: list[str] = []
    for doc in documents:
        if len(doc) < spec.min_document_sentences:
            counts["short_documents"] += 1
            continue
        lines.extend(doc)
        lines.append("")
    return lines, stats, counts
