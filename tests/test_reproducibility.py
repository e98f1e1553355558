"""Same corpus, same bytes: the vocab, the examples, training and the export, each rebuilt in fresh processes.

The vocab trainer of `tokenizers` alone used to differ from run to run (huggingface/tokenizers#1794; see
`bertjax.data.vocab._seed_pieces`). What is compared, stage by stage:
- vocab: vocab.txt and tokenizer_config.json, byte for byte, whatever the trainer's thread count;
- examples: every shard and TFDS metadata file byte for byte, and the manifest but for its timings (seconds,
  instances/s, CPU-ms of sentence splitting), made with 1 and with 2 worker processes;
- training (50 steps of BERT-tiny, batch 8): the checkpoint's parameters bit for bit, and the logged metrics;
- export: model.safetensors, config.json, vocab.txt and tokenizer_config.json byte for byte.
The Orbax checkpoint files themselves are not compared byte for byte: their metadata holds write times.
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bertjax.data import vocab_files

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPORA = {"en": (REPO / "data" / "demo" / "corpus.txt", True),     # (corpus, lower-cased)
           "ko": (REPO / "data" / "demo_ko" / "corpus.txt", False)}
VOCAB_SIZE = 4096
TIMINGS = ("seconds", "instances_per_second", "segmenting_ms")   # manifest statistics that are wall or CPU time
# create_pretraining_data with worker processes even for a small corpus (one per MIN_MB_PER_WORKER MB otherwise)
CREATE_DATA = ("import sys; from bertjax.data import worker_pool, create_pretraining_data as c; "
               "worker_pool.MIN_MB_PER_WORKER = 0; sys.argv[0] = 'create_pretraining_data'; c.main()")


def _run(args, cwd=REPO, env=None, timeout=600):
    result = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _vocab_command(language: str, output: pathlib.Path) -> list[str]:
    corpus, lowercase = CORPORA[language]
    return [sys.executable, "-m", "bertjax.data.vocab", "--input", str(corpus), "--vocab_size", str(VOCAB_SIZE),
            "--output", str(output), "--lowercase" if lowercase else "--no-lowercase"]


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("language", sorted(CORPORA))
def test_five_fresh_vocab_runs_give_one_vocab(language, tmp_path):
    """Five processes at once (so they also race for the cores), with the trainer on one thread or on all."""
    runs = [subprocess.Popen(_vocab_command(language, tmp_path / f"v{i}"), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **({"RAYON_NUM_THREADS": "1"} if i % 2 else {})}) for i in range(5)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    for name in (vocab_files.VOCAB_FILE, vocab_files.CONFIG_FILE):
        assert len({_digest(tmp_path / f"v{i}" / name) for i in range(5)}) == 1, name
    tokens = (tmp_path / "v0" / vocab_files.VOCAB_FILE).read_text(encoding="utf-8").splitlines()
    assert len(tokens) == VOCAB_SIZE and tokens[:5] == list(vocab_files.SPECIAL_TOKENS)
    # the layout of an unseeded vocab: characters, then ## characters, each in code-point order, then merges
    characters = [t for t in tokens[5:] if len(t) == 1]
    continuing = [t for t in tokens[5:] if t.startswith("##") and len(t) == 3]
    seeds = len(characters) + len(continuing)
    assert tokens[5:5 + seeds] == sorted(characters, key=ord) + sorted(continuing, key=lambda t: ord(t[-1]))
    assert all(len(t) > 1 and not (t.startswith("##") and len(t) == 3) for t in tokens[5 + seeds:])
    if language == "ko":
        assert "한국" in tokens or any(len(t) > 1 and all("가" <= c <= "힣" for c in t) for t in tokens)
    import tokenizers
    config = json.loads((tmp_path / "v0" / vocab_files.CONFIG_FILE).read_text(encoding="utf-8"))
    assert config[vocab_files.TRAINED_WITH] == {"tokenizers": tokenizers.__version__}


def _pipeline(root: pathlib.Path, language: str, num_workers: int, train: bool) -> dict:
    """corpus -> vocab -> examples (-> 50 training steps -> export), each in a fresh process; what each stage made."""
    corpus, lowercase = CORPORA[language]
    _run(_vocab_command(language, root / "vocab"))
    _run([sys.executable, "-c", CREATE_DATA, "--input_file", str(corpus), "--output_dir", str(root / "data"),
          "--vocab_file", str(root / "vocab" / vocab_files.VOCAB_FILE), "--do_lower_case", str(lowercase).lower(),
          "--max_seq_length", "64", "--max_predictions_per_seq", "10", "--dupe_factor", "2",
          "--eval_fraction", "0.05", "--num_workers", str(num_workers), "--shard_size_mb", "0.25", "--no_progress"])
    made = {"vocab": {name: _digest(root / "vocab" / name) for name in (vocab_files.VOCAB_FILE,
                                                                       vocab_files.CONFIG_FILE)}}
    metadata = json.loads((root / "data" / "metadata.json").read_text(encoding="utf-8"))
    manifest = metadata["bertjax_manifest"]
    for key in TIMINGS:
        manifest["statistics"].pop(key)
    made["examples"] = {"files": {p.name: _digest(p) for p in sorted((root / "data").iterdir())
                                  if p.name != "metadata.json"},
                        "manifest": manifest}
    if not train:
        return made
    workdir = root / "run"
    log = _run([sys.executable, "main.py", "--config=configs/demo.py", f"--workdir={workdir}",
                f"--config.data.dir={root / 'data'}",
                f"--config.data.vocab_file={root / 'vocab' / vocab_files.VOCAB_FILE}",
                "--config.train.num_train_steps=50", "--config.train.batch_size=8", "--config.eval.batch_size=8",
                "--config.log.every_steps=10", "--config.eval.every_steps=50",
                "--config.eval.num_batches=2", "--config.checkpoint.every_steps=50", "--config.log.tensorboard=False"])
    from bertjax.convert import sources
    made["training"] = {"steps": [line.split(" lr ")[0] for line in (log.stdout + log.stderr).splitlines()
                                  if line.startswith("step ")],
                        "params": sources.load_pretrained(workdir).params}
    made["export"] = {p.name: _digest(p) for p in sorted((workdir / "export").iterdir())}
    return made


def _assert_params_equal(a, b):
    import jax
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b))


@pytest.mark.parametrize("language,train", [("en", True), ("ko", False)])
def test_the_pipeline_twice_gives_the_same_bytes_at_every_stage(language, train, tmp_path):
    """Run 1 makes its examples in one process, run 2 with two worker processes; nothing else differs.
    Korean stops after the examples: training does not look at the language."""
    first = _pipeline(tmp_path / "first", language, num_workers=1, train=train)
    second = _pipeline(tmp_path / "second", language, num_workers=2, train=train)
    assert first["vocab"] == second["vocab"]
    shards = [name for name in first["examples"]["files"] if ".array_record-" in name]
    assert len(shards) >= 3 and first["examples"] == second["examples"]
    assert first["examples"]["manifest"]["vocab_sha256"] == first["vocab"][vocab_files.VOCAB_FILE]
    import tokenizers
    assert first["examples"]["manifest"]["vocab_trained_with"] == {"tokenizers": tokenizers.__version__}
    if train:
        assert len(first["training"]["steps"]) >= 5 and first["training"]["steps"] == second["training"]["steps"]
        _assert_params_equal(first["training"]["params"], second["training"]["params"])
        assert first["export"] == second["export"] and "model.safetensors" in first["export"]
