"""time_to_quality's data: per corpus a WordPiece vocab and, per sequence length, a dynamic-masking dataset."""
from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from pathlib import Path

from ttq.tables import CORPORA, DATASET, ENV, EVAL_BATCH_SIZE, REPO, SIZES



def corpus_settings(corpus: str, args) -> dict:
    settings = dict(CORPORA[corpus])
    settings["corpus"] = settings["corpus"].format(nsmc_dir=args.nsmc_dir)
    settings["source"] = settings["source"].format(nsmc_dir=args.nsmc_dir)
    return settings


def build_data(corpus: str, sizes: list[str], args, state: dict) -> dict:
    """The vocab and one dataset per sequence length (skipped when already there); returns their paths."""
    settings = corpus_settings(corpus, args)
    if not Path(settings["corpus"]).is_file():
        raise SystemExit(f"corpus {settings['corpus']} is missing" +
                         (f"; make it with python bench/nsmc_data.py --out {args.nsmc_dir}" if corpus == "ko" else ""))
    root = args.workdir / "data" / corpus
    vocab_dir = root / "vocab"
    commands = []
    if not (vocab_dir / "vocab.txt").is_file():
        command = [sys.executable, "-m", "bertjax.data.vocab", f"--input={settings['corpus']}",
                   f"--vocab_size={settings['vocab_size']}", f"--output={vocab_dir}"]
        command += ["--lowercase"] if settings["lowercase"] else ["--no-lowercase", "--no-strip_accents"]
        commands.append(command)
        run_checked(command, root / "vocab.log")
    out = {"vocab_file": str(vocab_dir / "vocab.txt"), "datasets": {}, "source": settings["source"],
           "corpus_file": settings["corpus"], "corpus_sha256": sha256_file(Path(settings["corpus"]))}
    for size in sizes:
        seq, preds = SIZES[size]["seq"], SIZES[size]["max_predictions"]
        data_dir = root / f"seq{seq}"
        command = [sys.executable, "-m", "bertjax.data.create_pretraining_data", f"--input_file={settings['corpus']}",
                   f"--vocab_file={vocab_dir / 'vocab.txt'}", f"--output_dir={data_dir}",
                   f"--max_seq_length={seq}", f"--max_predictions_per_seq={preds}",
                   f"--dupe_factor={DATASET['dupe_factor']}", f"--eval_fraction={DATASET['eval_fraction']}",
                   f"--masking={DATASET['masking']}", f"--random_seed={DATASET['random_seed']}", "--no_progress"]
        if not (data_dir / "dataset_info.json").is_file():
            commands.append(command)
            run_checked(command, root / f"seq{seq}.log")
        from bertjax.data import catalog  # noqa: PLC0415

        manifest = catalog.read_manifest(str(data_dir))
        out["datasets"][seq] = {"dir": str(data_dir), "command": shlex.join(command),
                                "num_examples": manifest.get("num_examples"),
                                "masked_lm_prob": manifest.get("masked_lm_prob"), "masking": manifest.get("masking")}
    out["vocab_size"] = sum(1 for _ in open(out["vocab_file"], encoding="utf-8"))
    state.setdefault("data", {})[corpus] = out
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_checked(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(command)}", flush=True)
    with open(log, "w") as f:
        result = subprocess.run(command, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"failed (exit {result.returncode}); see {log}:\n{log.read_text()[-3000:]}")


def eval_batch_count(data_dir: str, wanted: int) -> int:
    from bertjax.data import pipeline  # noqa: PLC0415

    available = pipeline.batches_per_epoch(data_dir, "eval", EVAL_BATCH_SIZE, process_count=1)
    if available < 1:
        raise SystemExit(f"{data_dir}'s eval split has fewer than {EVAL_BATCH_SIZE} examples")
    return min(wanted, available)
