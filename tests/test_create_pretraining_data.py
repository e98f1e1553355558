"""create_pretraining_data: a TFDS dataset that matches the original algorithm's statistics, deterministic,
streaming in shards, and every bad input refused with one clear message and nothing half-written left behind."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax.data import catalog, features, masking, tokenizer, vocab_files
from bertjax.data import create_pretraining_data as cpd
from bertjax.data import worker_pool
from bertjax.errors import BertjaxError

import reference_original
from test_instances import small_vocab, write_corpus

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", 300, seed=1)


def _make(corpus, out, vocab_dir, **kwargs):
    kwargs.setdefault("dupe_factor", 2)
    kwargs.setdefault("num_workers", 1)
    return cpd.create_pretraining_data(str(corpus), out, vocab_dir, show_progress=False, **kwargs)


def _read(out, split="train"):
    source = tfds.builder_from_directory(str(out)).as_data_source()[split]
    rows = [source[i] for i in range(len(source))]
    return {k: np.stack([r[k] for r in rows]) for k in features.FEATURE_NAMES}


def _no_leftovers(out):
    parent = Path(out).parent
    return not any(p.name.startswith(f".{Path(out).name}.") for p in parent.iterdir())


def test_static_dataset_is_a_valid_tfds_dataset(corpus, vocab_dir, tmp_path):
    out = tmp_path / "ds"
    summary = _make(corpus, out, vocab_dir, max_seq_length=64, max_predictions_per_seq=10)
    manifest = catalog.read_manifest(out)
    assert manifest["masking"] == "static" and manifest["whole_word_mask"] == "none"
    assert manifest["max_seq_length"] == 64 and manifest["vocab_sha256"] == vocab_files.vocab_sha256(vocab_dir)
    assert manifest["num_examples"]["train"] == summary["instances"] > 300
    assert manifest["statistics"]["documents"] == summary["documents"] == 300
    batch = _read(out)
    n = batch["input_mask"].sum(1)
    assert batch["input_ids"].shape == (summary["instances"], 64) and batch["input_ids"].dtype == np.int32
    assert np.all(batch["input_ids"][:, 0] == CLS)
    assert np.all(batch["input_ids"][np.arange(len(n)), n - 1] == SEP)
    assert np.all(batch["input_ids"][batch["input_mask"] == 0] == 0)
    assert np.array_equal(batch["masked_lm_weights"].sum(1), masking.num_to_predict(n, 0.15, 10))
    labels = batch["masked_lm_ids"][batch["masked_lm_weights"] > 0]
    assert not np.isin(labels, [PAD, CLS, SEP, MASK]).any()
    assert set(np.unique(batch["next_sentence_labels"])) == {0, 1}
    # long sentences for T=64: many 1-sentence chunks, which always take a random next
    assert 0.5 < summary["random_next_fraction"] < 0.9 and summary["unk_rate"] == 0.0


@pytest.mark.slow
def test_statistics_match_the_original_algorithm(tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "c.txt", 1500, seed=2)
    ref_tok = reference_original.FullTokenizer(small_vocab(), do_lower_case=True)
    ref = reference_original.create_training_instances([corpus], ref_tok, dupe_factor=4, random_seed=3)
    ref_len = np.array([len(r.tokens) for r in ref])
    ref_pred = np.array([t for r in ref for t in (r.tokens[p] for p in r.masked_lm_positions)])
    ref_label = np.array([t for r in ref for t in r.masked_lm_labels])
    for shard_mb in (100.0, 0.05):  # one shard (as the original), and ~8 shards with shard-local random next
        out = tmp_path / f"ds{shard_mb}"
        _make(corpus, out, vocab_dir, dupe_factor=4, random_seed=3, shard_size_mb=shard_mb)
        batch = _read(out)
        n = batch["input_mask"].sum(1)
        assert abs(len(n) / len(ref) - 1) < 0.04
        assert abs(n.mean() - ref_len.mean()) < 0.02 * ref_len.mean()
        bins = np.linspace(0, 128, 17)
        hist = np.histogram(n, bins)[0] / len(n)
        ref_hist = np.histogram(ref_len, bins)[0] / len(ref_len)
        assert 0.5 * np.abs(hist - ref_hist).sum() < 0.04  # total variation distance of the length distribution
        assert abs(np.mean(n < 100) - np.mean(ref_len < 100)) < 0.02  # short sequences
        nsp = batch["next_sentence_labels"].mean()
        assert abs(nsp - np.mean([r.is_random_next for r in ref])) < 0.02 and 0.5 < nsp < 0.62
        weights = batch["masked_lm_weights"] > 0
        assert abs(weights.sum() / n.sum() - sum(len(r.masked_lm_positions) for r in ref) / ref_len.sum()) < 0.002
        replaced = np.take_along_axis(batch["input_ids"], batch["masked_lm_positions"], 1)[weights]
        labels = batch["masked_lm_ids"][weights]
        assert abs(np.mean(replaced == MASK) - np.mean(ref_pred == "[MASK]")) < 0.015
        assert abs(np.mean(replaced == labels) - np.mean(ref_pred == ref_label)) < 0.015


def test_same_seed_same_dataset_other_seed_differs(corpus, vocab_dir, tmp_path):
    _make(corpus, tmp_path / "a", vocab_dir, random_seed=5, shard_size_mb=0.01)
    _make(corpus, tmp_path / "b", vocab_dir, random_seed=5, shard_size_mb=0.01)
    _make(corpus, tmp_path / "c", vocab_dir, random_seed=6, shard_size_mb=0.01)
    a, b, c = _read(tmp_path / "a"), _read(tmp_path / "b"), _read(tmp_path / "c")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"][:50], c["input_ids"][:50])
    assert len(list((tmp_path / "a").glob("*.array_record-*"))) > 1


def test_worker_count_does_not_change_the_dataset(corpus, vocab_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(worker_pool, "MIN_MB_PER_WORKER", 0.001)  # really start 2 processes for this small corpus
    assert worker_pool.worker_processes(2, corpus.stat().st_size, 10_000) == 2
    one = _make(corpus, tmp_path / "one", vocab_dir, num_workers=1, shard_size_mb=0.01)
    two = _make(corpus, tmp_path / "two", vocab_dir, num_workers=2, shard_size_mb=0.01)
    assert one["instances"] == two["instances"]
    a, b = _read(tmp_path / "one"), _read(tmp_path / "two")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_script_read_from_stdin_runs_in_process(corpus, vocab_dir, tmp_path):
    """Worker processes re-import the main script; one read from stdin has no file, so the run stays in-process
    (with a note) instead of breaking the pool."""
    script = (f"from bertjax.data import create_pretraining_data as cpd, worker_pool\n"
              f"worker_pool.MIN_MB_PER_WORKER = 0.001\n"
              f"s = cpd.create_pretraining_data({str(corpus)!r}, {str(tmp_path / 'ds')!r}, {str(vocab_dir)!r}, "
              f"dupe_factor=1, num_workers=2, shard_size_mb=0.01, show_progress=False)\n"
              f"print('instances', s['instances'])\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "running in this process only" in run.stderr and run.stdout.startswith("instances ")
    assert int(run.stdout.split()[1]) == len(_read(tmp_path / "ds")["input_ids"]) > 0


def test_dynamic_masking_stores_unmasked_pairs_and_the_vocab(corpus, vocab_dir, tmp_path):
    out = tmp_path / "dyn"
    _make(corpus, out, vocab_dir, masking="dynamic", whole_word_masking="per_word", masked_lm_prob=0.2)
    manifest = catalog.read_manifest(out)
    settings = (manifest["masking"], manifest["whole_word_mask"], manifest["masked_lm_prob"])
    assert settings == ("dynamic", "per_word", 0.2)
    batch = _read(out)
    assert not batch["masked_lm_weights"].any() and not (batch["input_ids"] == MASK).any()
    assert (out / "vocab.txt").read_bytes() == (vocab_dir / "vocab.txt").read_bytes()
    tok = tokenizer.BertTokenizer.from_vocab(out)
    ids, positions, labels, weights = masking.mask_tokens(
        batch["input_ids"][0], int(batch["input_mask"][0].sum()), np.random.default_rng(0), masked_lm_prob=0.2,
        max_predictions_per_seq=20, vocab_size=tok.vocab_size, mask_id=MASK, cls_id=CLS, sep_id=SEP,
        whole_word="per_word", is_continuation=tok.is_continuation())
    assert weights.sum() >= 1 and np.array_equal(labels[weights > 0], batch["input_ids"][0][positions[weights > 0]])


def test_eval_fraction_and_whole_word_flags(corpus, vocab_dir, tmp_path):
    summary = _make(corpus, tmp_path / "ev", vocab_dir, eval_fraction=0.2, do_whole_word_mask=True, dupe_factor=1)
    manifest = catalog.read_manifest(tmp_path / "ev")
    assert manifest["whole_word_mask"] == "original"
    counts = manifest["num_examples"]
    assert set(counts) == {"train", "eval"} and 0.1 < counts["eval"] / (counts["train"] + counts["eval"]) < 0.3
    assert counts["train"] + counts["eval"] == summary["instances"]
    assert len(_read(tmp_path / "ev", "eval")["input_ids"]) == counts["eval"]
    with pytest.raises(BertjaxError, match="do_whole_word_mask=True conflicts with whole_word_masking='none'"):
        _make(corpus, tmp_path / "x", vocab_dir, do_whole_word_mask=True, whole_word_masking="none")


def test_same_settings_reuse_other_settings_need_overwrite(corpus, vocab_dir, tmp_path):
    out = tmp_path / "ds"
    first = _make(corpus, out, vocab_dir)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _make(corpus, out, vocab_dir)
    assert again == first and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    with pytest.raises(BertjaxError, match="already holds a dataset made with other settings.*--overwrite"):
        _make(corpus, out, vocab_dir, dupe_factor=1)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    rebuilt = _make(corpus, out, vocab_dir, dupe_factor=1, overwrite=True)
    assert catalog.read_manifest(out)["dupe_factor"] == 1 and rebuilt["instances"] < first["instances"]
    assert _no_leftovers(out)


def test_invalid_utf8_and_long_words_are_not_fatal(vocab_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"hello \xff\xfe world .\nthe cafe .\n" + b"w" * 500 + b" the .\n\nhello world .\nthe .\n")
    summary = _make(corpus, tmp_path / "ds", vocab_dir)
    assert summary["invalid_utf8_lines"] == 1 and summary["unk_tokens"] >= 1 and summary["instances"] > 0


def _vocab_without_mask(tmp_path):
    path = tmp_path / "badvocab"
    path.mkdir()
    (path / "vocab.txt").write_text("".join(t + "\n" for t in small_vocab() if t != "[MASK]"), encoding="utf-8")
    return path


@pytest.mark.parametrize("case,message", [
    ("glob", "matches no file"),
    ("empty", "is empty"),
    ("one_sentence_docs", "no document with at least 2 sentences"),
    ("missing_vocab", "does not exist"),
    ("vocab_without_mask", r"lacks the special token\(s\) \[MASK\]"),
    ("predictions", "max_predictions_per_seq=200 is larger than max_seq_length=128"),
    ("shard_size", "shard_size_mb=0 must be > 0"),
    ("no_train", "0 training instances"),
    ("no_eval", "held out none of the 2 documents"),
    ("not_a_dataset", "not empty and holds no bertjax dataset"),
])
def test_bad_input_is_one_clear_error_and_leaves_nothing(case, message, corpus, vocab_dir, tmp_path):
    out = tmp_path / "out"
    args = dict(corpus=corpus, out=out, vocab_dir=vocab_dir)
    if case == "glob":
        args["corpus"] = tmp_path / "nothing*.txt"
    elif case == "empty":
        args["corpus"] = tmp_path / "empty.txt"
        args["corpus"].write_text("")
    elif case == "one_sentence_docs":
        args["corpus"] = write_corpus(tmp_path / "single.txt", 20, single_sentence_docs=True)
    elif case == "missing_vocab":
        args["vocab_dir"] = tmp_path / "novocab" / "vocab.txt"
    elif case == "vocab_without_mask":
        args["vocab_dir"] = _vocab_without_mask(tmp_path)
    elif case == "not_a_dataset":
        out.mkdir()
        (out / "precious.txt").write_text("keep me")
    extra = {"predictions": {"max_predictions_per_seq": 200}, "shard_size": {"shard_size_mb": 0},
             "no_train": {"eval_fraction": 0.9999},
             "no_eval": {"eval_fraction": 1e-6}}.get(case, {})
    if case in ("no_train", "no_eval"):
        args["corpus"] = write_corpus(tmp_path / "two.txt", 2)
    with pytest.raises(BertjaxError, match=message):
        _make(args["corpus"], args["out"], args["vocab_dir"], **extra)
    if case == "not_a_dataset":
        assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1
    else:
        assert not out.exists()
    assert _no_leftovers(out)


def test_cli_prints_summary_and_exits_2_on_bad_input(corpus, vocab_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    base = [sys.executable, "-m", "bertjax.data.create_pretraining_data", f"--vocab_file={vocab_dir / 'vocab.txt'}",
            "--dupe_factor=1", "--num_workers=1", "--no_progress"]
    ok = subprocess.run(base + [f"--input_file={corpus}", f"--output_dir={tmp_path / 'ds'}", "--do_lower_case=true"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "instances" in ok.stdout and "random next" in ok.stdout
    bad = subprocess.run(base + [f"--input_file={corpus}", f"--output_dir={tmp_path / 'bad'}", "--do_lower_case=false"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and bad.stderr.startswith("error: do_lower_case")
    assert not (tmp_path / "bad").exists()


def test_flags_and_defaults_are_the_originals():
    args = cpd.parse_args(["--input_file=a.txt,b/*.txt", "--output_dir=o", "--vocab_file=v.txt",
                           "--do_lower_case=False", "--do_whole_word_mask"])
    assert (args.max_seq_length, args.max_predictions_per_seq, args.masked_lm_prob, args.short_seq_prob,
            args.dupe_factor, args.random_seed) == (128, 20, 0.15, 0.1, 10, 12345)
    assert args.do_lower_case is False and args.do_whole_word_mask is True
    assert (args.masking, args.whole_word_masking, args.eval_fraction) == ("static", None, 0.0)
    assert args.num_workers == os.cpu_count() and args.input_file == "a.txt,b/*.txt"
    assert cpd.parse_args(["--input_file=a", "--output_dir=o", "--vocab_file=v"]).do_lower_case is None  # stored


def test_small_corpora_use_fewer_worker_processes():
    mb = 1 << 20
    assert worker_pool.worker_processes(8, 1 * mb, mb // 4) == 1  # 1 MB: in-process
    assert worker_pool.worker_processes(8, 5 * mb, mb) == 3
    assert worker_pool.worker_processes(8, 2 * mb, mb // 4) == 1
    assert worker_pool.worker_processes(2, 100 * mb, mb) == 2
    assert worker_pool.worker_processes(8, 100 * mb, 50 * mb) == 2  # never more than the shards


def test_binary_input_is_refused_unless_the_threshold_allows_it(corpus, vocab_dir, tmp_path):
    from bertjax.data import text

    assert text.non_text_fraction(corpus) == 0.0
    assert text.non_text_fraction(Path(__file__).parents[1] / "data" / "demo_ko" / "corpus.txt") == 0.0
    garbage = tmp_path / "model.bin"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(BertjaxError, match=r"input .*model.bin does not look like text: [1-9]\d\.\d% of its first 1 MB "
                                           r"is invalid UTF-8 or control characters \(at most 10\.0% allowed\)"):
        _make(f"{corpus},{garbage}", tmp_path / "out", vocab_dir)
    assert not (tmp_path / "out").exists()
    # A corpus with a few bad bytes is text: read, the bad lines counted.
    mostly_text = tmp_path / "latin1.txt"
    mostly_text.write_bytes(Path(corpus).read_bytes() + "caf\xe9 cr\xe8me .\n".encode("latin-1"))
    assert 0 < text.non_text_fraction(mostly_text) < 0.01
    assert _make(mostly_text, tmp_path / "ok", vocab_dir)["invalid_utf8_lines"] == 1
