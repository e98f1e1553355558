"""Corpora in other formats through vocab and create_pretraining_data (issue 18): the same data as the original
format, the same dataset for any worker count, a rerun that does nothing, Korean reviews with Hangul kept whole."""
import gzip
import json
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from bench.corpus_formats import STATS, documents_of, rejoin_paragraphs
from bertjax.data import catalog, corpus, corpus_formats, create_pretraining_data as cpd, sentences, tokenizer
from bertjax.data import vocab, worker_pool
from test_create_pretraining_data import _read

REPO = Path(__file__).resolve().parents[1]
DEMO, DEMO_KO = REPO / "data" / "demo" / "corpus.txt", REPO / "data" / "demo_ko" / "corpus.txt"


def _jamo(strings) -> int:
    return sum(1 for s in strings for c in s if 0x1100 <= ord(c) <= 0x11FF)


@pytest.mark.slow
@pytest.mark.parametrize("source,korean", [(DEMO, False), (DEMO_KO, True)], ids=["english", "korean"])
def test_rejoined_corpus_gives_the_statistics_of_the_original_format(source, korean, tmp_path):
    """The demo corpus re-joined into paragraphs as JSONL (split into sentences on the way) against the same corpus
    in the original format: every statistic within 1 point (length: 1 token). dupe_factor 40 so that chance moves
    them less than that (bench/results/corpus_formats.md has every format and the seed-to-seed spread)."""
    docs = documents_of(source)
    original, jsonl = tmp_path / "corpus.txt", tmp_path / "corpus.jsonl"
    original.write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n")
    jsonl.write_text("".join(json.dumps({"text": "\n".join(rejoin_paragraphs(doc))}) + "\n" for doc in docs))
    vocab_file = vocab.train_vocab(str(original), 4000, tmp_path / "vocab", do_lower_case=not korean,
                                   show_progress=False)
    stats = [cpd.create_pretraining_data(str(path), tmp_path / path.stem / path.suffix[1:], vocab_file,
                                         dupe_factor=40, num_workers=1, show_progress=False)
             for path in (original, jsonl)]
    assert stats[1]["segmenting_ms"] > 0 and stats[0]["segmenting_ms"] == 0
    assert abs(stats[1]["sentences"] / stats[0]["sentences"] - 1) < 0.01
    for key in STATS:
        scale = 1 if key == "mean_instance_tokens" else 100
        assert abs(stats[1][key] - stats[0][key]) * scale < 1.0, (key, stats[0][key], stats[1][key])


def _review_documents(count: int, seed: int = 0) -> list[str]:
    """English demo sentences grouped 1-4 to a document, with exact copies of some."""
    rng = random.Random(seed)
    lines = [line for doc in documents_of(DEMO) for line in doc][:3000]
    docs, i = [], 0
    while len(docs) < count:
        take = rng.randint(1, 4)
        docs.append(" ".join(lines[i:i + take]))
        i += take
        if rng.random() < 0.2:
            docs.append(docs[rng.randrange(len(docs))])
    return docs


def test_jsonl_gz_with_dedup_is_the_same_for_any_worker_count_and_a_rerun_does_nothing(vocab_dir, tmp_path,
                                                                                       monkeypatch):
    docs = _review_documents(400)
    path = tmp_path / "reviews.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps({"id": i, "review": d}) + "\n"
                                           for i, d in enumerate(docs)).encode()))
    monkeypatch.setattr(worker_pool, "MIN_MB_PER_WORKER", 0.001)  # really start 2 processes for this small corpus
    kwargs = dict(text_field="review", dedup_documents=True, min_document_sentences=2, dupe_factor=2,
                  shard_size_mb=0.005, show_progress=False)
    one = cpd.create_pretraining_data(str(path), tmp_path / "one", vocab_dir, num_workers=1, **kwargs)
    two = cpd.create_pretraining_data(str(path), tmp_path / "two", vocab_dir, num_workers=2, **kwargs)
    timings = ("seconds", "instances_per_second", "segmenting_ms")
    assert one == {**two, **{key: one[key] for key in timings}}
    a, b = _read(tmp_path / "one"), _read(tmp_path / "two")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert one["duplicate_documents"] == len(docs) - len(set(docs)) > 0
    assert one["short_documents"] > 0 and one["bad_records"] == 0
    settings = catalog.read_manifest(tmp_path / "one")["settings"]["corpus"]
    assert settings["input_format"] == "jsonl" and settings["text_field"] == "review"
    assert settings["dedup_documents"] and settings["min_document_sentences"] == 2
    versions = dict(settings["splitter_versions"])
    assert versions["splitter"] == "auto" and versions["blingfire"] and versions["kiwipiepy"]
    shards = sorted((tmp_path / "one").glob("*.array_record*"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = cpd.create_pretraining_data(str(path), tmp_path / "one", vocab_dir, num_workers=1, **kwargs)
    assert again["instances"] == one["instances"]
    assert [p.stat().st_mtime_ns for p in shards] == mtimes


def _korean_reviews() -> tuple[list[str], list[str]]:
    """Reviews made of 1-3 Korean demo sentences each, punctuation dropped from some (as in comments), every 5th
    one in NFD; and held-out sentences (the topic task's dev split)."""
    rng = random.Random(1)
    lines = [line for doc in documents_of(DEMO_KO) for line in doc][:8000]
    reviews, i = [], 0
    while i < len(lines):
        take = rng.randint(1, 3)
        group = [s.rstrip(".") if rng.random() < 0.3 else s for s in lines[i:i + take]]
        review = " ".join(group)
        reviews.append(unicodedata.normalize("NFD", review) if len(reviews) % 5 == 0 else review)
        i += take
    dev = (REPO / "data" / "demo_ko" / "topic" / "dev.tsv").read_text().splitlines()[1:]
    return reviews, [row.split("\t")[0] for row in dev]


def test_korean_reviews_one_per_line_keep_hangul_whole_and_the_vocab_covers_held_out_text(tmp_path):
    reviews, held_out = _korean_reviews()
    path = tmp_path / "reviews.txt"
    path.write_text("".join(r + "\n" for r in reviews))
    assert _jamo(reviews) > 0  # the NFD ones
    vocab_file = vocab.train_vocab(str(path), 8000, tmp_path / "vocab", input_format="documents",
                                   show_progress=False)  # uncased by default: accents kept for Hangul
    tok = tokenizer.BertTokenizer.from_vocab(vocab_file)
    assert not tok.strip_accents and _jamo(tok.tokens) == 0
    ids, _ = tok.encode_batch(held_out)
    assert np.mean(ids == tok.unk_id) < 0.01
    spec = corpus.corpus_spec([path], "documents")
    splitter = sentences.SentenceSplitter(spec.sentence_splitter)
    lines = [line for shard in corpus_formats.plan_shards([path], "documents", 1 << 16, "")
             for line in corpus.shard_lines(shard, spec, splitter)[0]]
    split = [line for line in lines if line]
    assert _jamo(split) == 0 and len(split) > 1.3 * len(reviews)
    summary = cpd.create_pretraining_data(str(path), tmp_path / "ds", vocab_file, input_format="documents",
                                          dupe_factor=1, show_progress=False)
    assert summary["sentences"] == len(split) and summary["unk_rate"] < 0.01


def test_vocab_reads_jsonl_and_counts_each_document_once(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = ["zyxwv qutsr."] * 50 + [f"word{i} common text here." for i in range(30)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    once = vocab.train_vocab(str(path), 200, tmp_path / "once", dedup_documents=True, min_frequency=2,
                             show_progress=False).read_text().split()
    every = vocab.train_vocab(str(path), 200, tmp_path / "every", min_frequency=2,
                              show_progress=False).read_text().split()
    assert "zyxwv" in every and "zyxwv" not in once  # once in one distinct document: below min_frequency
    assert "common" in once and "common" in every


def test_the_demo_config_builds_from_a_jsonl_corpus(tmp_path):
    """config.data.build reads other formats too (main.py's build-on-first-use)."""
    from bertjax.data import prepare  # noqa: PLC0415  (imports JAX)
    from configs import demo  # noqa: PLC0415

    docs = documents_of(DEMO)[:60]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"body": "\n".join(rejoin_paragraphs(doc))}) + "\n" for doc in docs * 2))
    config = demo.get_config()
    build = config.data.build
    build.corpus, build.text_field, build.dedup_documents = str(path), "body", True
    build.vocab_size, build.dupe_factor, build.cache_dir = 1000, 1, str(tmp_path / "cache")
    data_dir, vocab_file = prepare.build_demo_dataset(config, str(tmp_path / "run"))
    manifest = catalog.read_manifest(data_dir)
    assert manifest["settings"]["corpus"]["input_format"] == "jsonl"
    assert manifest["statistics"]["duplicate_documents"] == len(docs)
    assert Path(vocab_file).is_file()
