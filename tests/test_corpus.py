"""Corpus formats (bertjax.data.corpus_formats) and their cleaning (bertjax.data.corpus): every format and
compression gives the same documents; bad records are named by file and line; dedup keeps the first copy."""
import gzip
import json
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bertjax.data import corpus, corpus_formats, text
from bertjax.errors import BertjaxError

DOCS = [["It is a truth universally acknowledged.", "A second  sentence\there."],
        ["Another document, one paragraph."],
        ["첫 문장입니다.", "두 번째 문단이다."],
        ["It is a truth universally acknowledged.", "A second  sentence\there."]]  # a duplicate of the first
CLEAN = [[" ".join(p.split()) for p in doc] for doc in DOCS]


def write_corpus(directory, fmt, compression="", docs=DOCS, field="text"):
    """DOCS in `fmt` (paragraph strings joined by newlines inside a record); returns the path."""
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet"}.get(fmt, ".txt")
    path = directory / f"corpus_{fmt}{suffix}{compression}"
    if fmt == "parquet":
        pq.write_table(pa.table({"id": list(range(len(docs))), field: ["\n".join(d) for d in docs]}), path,
                       row_group_size=2)
        return path
    if fmt in ("sentences", "paragraphs"):
        data = "\n\n".join("\n".join(doc) for doc in docs) + "\n"
    elif fmt == "documents":
        data = "".join(" ".join(doc) + "\n" for doc in docs)
    else:
        data = "".join(json.dumps({"id": i, field: "\n".join(doc)}) + "\n" for i, doc in enumerate(docs))
    raw = data.encode()
    raw = {"": raw, ".gz": gzip.compress(raw), ".zst": zstandard.ZstdCompressor().compress(raw)}[compression]
    path.write_bytes(raw)
    return path


def documents(paths, spec, shard_bytes=1 << 20):
    counts = dict.fromkeys(corpus.COUNT_KEYS, 0)
    found = [doc for shard in corpus_formats.plan_shards(paths, spec.input_format, shard_bytes, spec.text_field)
             for doc in corpus.shard_documents(shard, spec, text.TextStats(), counts)]
    return found, counts


@pytest.mark.parametrize("fmt,compression", [(fmt, c) for fmt in ("paragraphs", "documents", "jsonl")
                                               for c in ("", ".gz", ".zst")] + [("parquet", "")])
def test_every_format_and_compression_gives_the_same_documents(tmp_path, fmt, compression):
    path = write_corpus(tmp_path, fmt, compression)
    spec = corpus.CorpusSpec(input_format=corpus_formats.resolve_format(
        [path], "auto" if fmt in ("jsonl", "parquet") else fmt), text_field="text")
    assert spec.input_format == fmt
    got, counts = documents([path], spec)
    expected = [[" ".join(doc)] for doc in CLEAN] if fmt == "documents" else CLEAN
    assert got == expected
    smallest = 20 if fmt == "paragraphs" else 1  # (a document over 4 shard sizes is cut at a line end)
    for shard_bytes in (smallest, 40):  # tiny shards: whole documents each, the same documents in all
        assert documents([path], spec, shard_bytes)[0] == expected


def test_the_original_format_compressed_reads_as_uncompressed(tmp_path):
    plain, packed = write_corpus(tmp_path, "sentences"), write_corpus(tmp_path, "sentences", ".zst")
    for shard_bytes in (20, 30, 1 << 20):
        lines = [[line for s in corpus_formats.plan_shards([p], "sentences", shard_bytes, "")
                  for line in text.read_shard_text(s)[0]] for p in (plain, packed)]
        assert lines[0] == lines[1]


def test_format_by_name_and_mixed_globs(tmp_path):
    assert corpus_formats.format_by_name("a/b.jsonl.zst") == "jsonl"
    assert corpus_formats.format_by_name("b.parquet") == "parquet"
    assert corpus_formats.format_by_name("c.txt.gz") == "sentences"
    with pytest.raises(BertjaxError, match=r"mixes formats: .*a.jsonl \(jsonl\).*b.txt \(sentences\)"):
        corpus_formats.resolve_format([tmp_path / "a.jsonl", tmp_path / "b.txt"])
    with pytest.raises(BertjaxError, match=r"--input_format=documents but .*x.parquet is named as parquet"):
        corpus_formats.resolve_format([tmp_path / "x.parquet"], "documents")
    assert corpus_formats.resolve_format([tmp_path / "a.txt", tmp_path / "b.txt.gz"], "documents") == "documents"


@pytest.mark.parametrize("compression", [".gz", ".zst"])
def test_a_truncated_compressed_file_is_named(tmp_path, compression):
    path = write_corpus(tmp_path, "jsonl", compression, docs=DOCS * 200)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    spec = corpus.CorpusSpec(input_format="jsonl", text_field="text")
    with pytest.raises(BertjaxError, match=f"{path} is a truncated or corrupt"):
        documents([path], spec)


def test_bad_jsonl_records_are_named_by_line_or_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine."}\n' * 3 + '{"text": oops}\n{"body": "x", "id": 1}\n[1, 2]\n{"text": 5}\n'
                    '{"text": "fine too."}\n')
    spec = corpus.CorpusSpec(input_format="jsonl", text_field="text")
    with pytest.raises(BertjaxError, match=rf"line 4 of {path} is not JSON"):
        documents([path], spec, shard_bytes=10)  # line numbers survive shard cuts
    path.write_text('{"text": "fine."}\n{"body": "x", "id": 1}\n')
    with pytest.raises(BertjaxError, match=r"line 2 of .* has no field 'text'; its fields are \['body', 'id'\]"):
        documents([path], spec)
    path.write_text('{"text": "fine."}\n' * 3 + '{"text": oops}\n{"body": "x", "id": 1}\n[1, 2]\n{"text": 5}\n'
                    '{"text": "fine too."}\n{"text": null}\n')
    got, counts = documents([path], corpus.CorpusSpec(input_format="jsonl", text_field="text",
                                                      skip_bad_records=True))
    assert got == [["fine."]] * 3 + [["fine too."]]
    assert counts["bad_records"] == 4 and counts["empty_documents"] == 1


def test_parquet_without_the_column_lists_its_columns(tmp_path):
    path = write_corpus(tmp_path, "parquet", field="body")
    with pytest.raises(BertjaxError, match=r"has no column 'text'; its columns are \['id', 'body'\]"):
        corpus_formats.check_inputs([path], "parquet", "text")
    with pytest.raises(BertjaxError, match=r"column 'id' .* holds int64, not text"):
        corpus_formats.check_inputs([path], "parquet", "id")
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("just text\n")
    with pytest.raises(BertjaxError, match="does not read as a Parquet file"):
        corpus_formats.check_inputs([not_parquet], "parquet", "text")


def test_cleaning_keeps_hangul_whole_from_nfd_input():
    decomposed = unicodedata.normalize("NFD", "한국어  문장입니다.")
    assert any(0x1100 <= ord(c) <= 0x11FF for c in decomposed)
    assert corpus.clean_paragraph(decomposed) == "한국어 문장입니다."


class _OneSentencePerComma:
    """A stand-in sentence splitter: cuts after each comma."""

    def split(self, paragraphs):
        return [[s.strip() for s in p.replace(",", ",\n").split("\n") if s.strip()] for p in paragraphs]


def test_dedup_keeps_the_first_copy_across_shards_and_min_sentences_drops_short_documents(tmp_path):
    path = write_corpus(tmp_path, "paragraphs")
    spec = corpus.CorpusSpec(input_format="paragraphs", dedup_documents=True, min_document_sentences=2,
                             sentence_splitter="test")
    shards = list(corpus_formats.plan_shards([path], "paragraphs", 20, ""))
    assert len(shards) == 4
    keep = corpus.keep_first([corpus.document_hashes(s, spec) for s in shards])
    lines, counts = [], dict.fromkeys(corpus.COUNT_KEYS, 0)
    for shard, bits in zip(shards, keep):
        shard.keep = bits
        shard_lines, _, shard_counts = corpus.shard_lines(shard, spec, _OneSentencePerComma())
        lines += shard_lines
        counts = {k: counts[k] + shard_counts[k] for k in counts}
    assert lines == [*CLEAN[0], "", "Another document,", "one paragraph.", "", *CLEAN[2], ""]
    assert counts["duplicate_documents"] == 1 and counts["short_documents"] == 0
    spec3 = corpus.CorpusSpec(input_format="paragraphs", min_document_sentences=3, sentence_splitter="test")
    lines, _, counts = corpus.shard_lines(shards[1], spec3, _OneSentencePerComma())
    assert lines == [] and counts["short_documents"] == 1


def test_keep_first_is_corpus_order():
    keep = corpus.keep_first([np.array([5, 7, 5], np.uint64), np.array([], np.uint64), np.array([7, 9], np.uint64)])
    assert [np.unpackbits(k, count=n).tolist() for k, n in zip(keep, (3, 0, 2))] == [[1, 1, 0], [], [0, 1]]
