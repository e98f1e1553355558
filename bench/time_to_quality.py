"""Time to quality of BERT pretraining under one wall-clock budget W: the original recipe, the budget recipe and
transformers, side by side, on an English and a Korean corpus, BERT-tiny and BERT-mini (issue 20, part 2).

    python bench/nsmc_data.py --out /work/data/nsmc          # once: the Korean corpus and the labelled reviews
    python bench/time_to_quality.py --budget_minutes 10 --ablation --nsmc_finetune

    # a quick check of the script (one corpus, one size, the original recipe only):
    python bench/time_to_quality.py --budget_minutes 0.5 --corpora en --sizes tiny --recipes original \
        --workdir /tmp/ttq_smoke --output /tmp/ttq_smoke/time_to_quality

What runs, one at a time (never two at once). Under `taskset -c 1 python bench/time_to_quality.py ...` every run
(bertjax's subprocesses, transformers' torch threads) uses only the pinned cores, and the report says how many:
two such invocations on the two cores of this machine run side by side.

0. Reuse: a finished run is kept in <workdir>/records/ and reused by a later invocation when its key matches:
   bertjax runs by their command and the contents of the config files they load; the original recipe by W, the
   data and the evaluation settings (not by its calibrated step count, which a fresh calibration would change);
   transformers by its settings and W. A half-finished run is started afresh. Delete <workdir>/records/ to redo all.
1. Data, per corpus: a WordPiece vocab and, per sequence length, a dataset made with `--masking=dynamic` (so the
   budget recipe can train at 30% while every evaluation keeps the dataset's 15%) and `--eval_fraction=0.05`
   (held-out documents, the eval split every run is scored on). Corpora: `en` = data/demo/corpus.txt (the demo's,
   data/demo/SOURCES.md; vocab 4096, uncased, as configs/demo.py), `ko` = NSMC reviews from bench/nsmc_data.py
   (<nsmc_dir>/pretrain/corpus.txt, <nsmc_dir>/SOURCES.md; vocab 8000, cased, accents kept, as configs/demo_ko.py).
2. Per corpus x size (tiny: seq 64, 10 predictions, as the demo; mini: seq 128, 20 predictions; batch 64, the
   budget recipe's batch size and ramp as configs/budget.py sets them):
   a. calibration: the original recipe for a few steps; its eval lines' `train_seconds` give steps/s (between the
      two evaluations, so without the compilation) and the start-up cost (compilation, first steps);
   b. original: `main.py --config=configs/demo.py` with num_train_steps = steps/s x (W - start-up cost), warmup
      5% of it (the demo's 50 of 1000), 15% masking, dropout 0.1, warmup_linear, NSP on;
   c. budget: `main.py --config=configs/budget.py` with --config.train.time_budget_hours = W (the tricks as
      configs/budget.py sets them; the learning rate follows the training clock, training stops at W);
   d. transformers: BertForPreTraining (PyTorch, one thread per usable core) of the same shape, in this process, on the same batches
      as the original (bertjax.data.pipeline.create_iterator, same seed, batch 64, the dataset's 15% masks; labels =
      -100 except at the masked positions), AdamW at the learning rate of a sweep (--hf_lrs, each at
      --hf_sweep_fraction of W, per size on the first corpus), linear warmup 5% then linear decay over steps/s x W
      steps (steps/s timed on a few steps first).
   Every run is evaluated ~--evals times during training and at its end on the same --eval_batches batches of 128
   held-out examples (the eval split's first batches, the same masks for every run); the time of an evaluation is
   the run's training clock: bertjax's `train_seconds` (wall-clock of the train loop, compilation and input
   pipeline included, evaluations excluded), transformers' the same around its loop. transformers' evaluation code
   also scores the original run's export once, which must give bertjax's own final accuracy (the same batches).
3. --ablation (on --ablation_on, default en:tiny): the budget recipe with one trick undone at a time (table
   ABLATIONS); a trick's gain = budget accuracy at W - ablated accuracy at W.
4. --nsmc_finetune: per size, the Korean runs' final exports (original, budget) and a random init fine-tuned on
   <nsmc_dir>/finetune/train.tsv (4,000 reviews) and scored on dev.tsv (2,000 reviews of other movies):
   `main.py --config=configs/finetune_glue.py --config.task=classification`, seeds --ft_seeds, 3 epochs, lr 3e-4
   (tiny) / 1e-4 (mini), max_seq_length = the pretraining's; the final epoch's dev accuracy (no selection on dev).

Results: bench/results/time_to_quality.md, .json and .png (or --output), rewritten after every run, with the machine,
the load average before each run, versions, every command and the data's provenance. The targets of issue 20 are
checked in the .md: (a) the budget recipe reaches the original's accuracy at W by W/2; (b) at W it is >= 2 points
higher; (c) it reaches transformers' final accuracy in <= half of transformers' training time; (d) NSMC: budget
>= random init + 3 points.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

import machine_info  # noqa: E402  (bench/, the script's directory)

# ----------------------------------------------------------------------------------------------------------------
# The tables: corpora, sizes, recipes and the budget recipe's config fields. Field names live here only.

CORPORA = {
    "en": {"corpus": str(REPO / "data" / "demo" / "corpus.txt"), "vocab_size": 4096, "lowercase": True,
           "source": "data/demo/corpus.txt: the demo corpus (public-domain English books and State of the Union "
                     "addresses; data/demo/SOURCES.md)"},
    "ko": {"corpus": "{nsmc_dir}/pretrain/corpus.txt", "vocab_size": 8000, "lowercase": False,
           "source": "{nsmc_dir}/pretrain/corpus.txt: Naver movie reviews from e9t/nsmc's crawl (CC0), made by "
                     "bench/nsmc_data.py ({nsmc_dir}/SOURCES.md)"},
}
# Sequence length, predictions per sequence (the dataset's, at 15%), calibration steps (about 30-60 s here).
SIZES = {
    "tiny": {"seq": 64, "max_predictions": 10, "calib_steps": 200},
    "mini": {"seq": 128, "max_predictions": 20, "calib_steps": 20},
}
BATCH_SIZE = 64           # configs/demo.py's
EVAL_BATCH_SIZE = 128     # configs/demo.py's
DATASET = {"dupe_factor": 5, "eval_fraction": 0.05, "masking": "dynamic", "random_seed": 0}  # demo's, but dynamic
WARMUP_FRACTION = 0.05    # configs/demo.py: 50 warmup steps of 1000
ORIGINAL_CONFIG = "configs/demo.py"
BUDGET_CONFIG = "configs/budget.py"
# The budget recipe's config fields (configs/base.py).
TIME_BUDGET = "train.time_budget_hours"
NUM_STEPS = "train.num_train_steps"
WARMUP_STEPS = "optimizer.warmup_steps"
# Ablations: the budget recipe with one trick undone (None = unset the field: a generated config file does that,
# since --config flags cannot say None). "time_budget" is filled in at run time: the budget run's own final step
# count as num_train_steps, budget.py's warmup fraction of it, and no time budget.
ABLATIONS = {
    "masking": ("masking 30% -> 15%", {"data.train_masked_lm_prob": 0.15}),
    "dropout": ("dropout back on (0.1)", {"model.hidden_dropout_prob": 0.1,
                                          "model.attention_probs_dropout_prob": 0.1}),
    "schedule": ("schedule wsd -> warmup_linear (the same warmup)", {"optimizer.schedule": "warmup_linear"}),
    "ramp": ("no batch-size ramp", {"train.batch_size_ramp_start": None}),
    "nsp": ("NSP back on (weight 1)", {"train.nsp_weight": 1.0}),
    "time_budget": ("time budget off (step schedule, steps = the budget run's)", {TIME_BUDGET: None}),
}
# Fine-tuning on NSMC (configs/finetune_glue.py's generic classification): per size, the same for every init.
FINETUNE = {"epochs": 3, "batch_size": 32, "lr": {"tiny": 3e-4, "mini": 1e-4}}
HF_SETTINGS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "clip_norm": 1.0,
               "threads": machine_info.usable_cores(),
               "warmup_fraction": WARMUP_FRACTION, "seed": 42}
NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")
EVAL_LINE = re.compile(r"^eval step (\d+): (.*)$", re.M)
DONE_LINE = re.compile(r"^done: step (\d+)", re.M)
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ----------------------------------------------------------------------------------------------------------------
# Small helpers


def flag_value(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def run_key(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def configs_digest(config: str = ORIGINAL_CONFIG) -> str:
    """The contents of the config files a run loads (base, demo, and budget for the budget recipe's runs), so that
    a run is redone when one of them changes."""
    names = ("base", "demo", "budget") if "budget" in Path(config).name else ("base", "demo")
    files = [REPO / "configs" / f"{name}.py" for name in names]
    return run_key({f.name: f.read_text() for f in files if f.is_file()})


def load_record(path: Path, key: str) -> dict | None:
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("key") == key:
            return record
    return None


def save_record(path: Path, record: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return record


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parse_metrics(text: str) -> dict:
    """'loss 6.4 masked_lm_accuracy 0.15 ... (constant-prediction mlm baseline 0.0597)' -> {name: value}."""
    metrics = {}
    baseline = re.search(r"\(constant-prediction mlm baseline ([\d.eE+-]+)\)", text)
    if baseline:
        metrics["masked_lm_accuracy_baseline"] = float(baseline.group(1))
        text = text[:baseline.start()]
    tokens = text.split()
    for name, value in zip(tokens[::2], tokens[1::2]):
        try:
            metrics[name] = float(value)
        except ValueError:
            pass
    return metrics


def machine() -> dict:
    info = machine_info.describe(("jax", "jaxlib", "flax", "optax", "grain", "torch", "transformers", "numpy"))
    try:
        info["bertjax_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "bertjax", "configs"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        info["bertjax_uncommitted_changes"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


# ----------------------------------------------------------------------------------------------------------------
# Data


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


# ----------------------------------------------------------------------------------------------------------------
# bertjax runs (main.py in a subprocess)


def common_overrides(data: dict, size: str, eval_batches: int) -> dict:
    seq = SIZES[size]["seq"]
    return {"data.dir": data["datasets"][seq]["dir"], "data.vocab_file": data["vocab_file"], "model.size": size,
            "data.max_seq_length": seq, "data.max_predictions_per_seq": SIZES[size]["max_predictions"],
            "eval.batch_size": EVAL_BATCH_SIZE, "eval.num_batches": eval_batches,
            "checkpoint.every_steps": 10**9, "log.tensorboard": False}


def config_file(base: str, unset: list[str], args) -> str:
    """`base`, or a generated config file that loads it and unsets fields (--config flags cannot pass None)."""
    if not unset:
        return base
    module = Path(base).stem
    name = f"{module}__unset_" + "__".join(f.replace(".", "_") for f in sorted(unset))
    path = args.workdir / "configs" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"    config.{field} = None\n" for field in sorted(unset))
    path.write_text(f'"""Made by bench/time_to_quality.py: {base} with {", ".join(sorted(unset))} unset."""\n'
                    f"from configs import {module}\n\n\ndef get_config():\n    config = {module}.get_config()\n"
                    f"{body}    return config\n")
    return str(path)


def bertjax_command(config: str, workdir: Path, overrides: dict, args) -> list[str]:
    unset = [k for k, v in overrides.items() if v is None]
    command = [sys.executable, "main.py", f"--config={config_file(config, unset, args)}", f"--workdir={workdir}"]
    command += [f"--config.{k}={flag_value(v)}" for k, v in overrides.items() if v is not None]
    return command


def reusable(name: str, key: str, args) -> dict | None:
    """The record of a finished run with this key, if there is one."""
    path = args.workdir / "records" / f"{name}.json"
    record = load_record(path, key)
    if record is not None:
        print(f"[{name}] reusing the finished run ({path})", flush=True)
    return record


def run_logged(name: str, command: list[str], workdir: Path, log_name: str | None = None):
    """Run `command` in a fresh `workdir` with its output in <workdir>/../<name>.log; (log, its text, wall seconds,
    load average before). A failed run stops the bench with the log's end."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    log = workdir.parent / f"{log_name or name}.log"
    print(f"[{name}] {shlex.join(command)}", flush=True)
    load_before = load_average()
    start = time.perf_counter()
    with open(log, "w") as f:
        result = subprocess.run(command, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    text = log.read_text()
    if result.returncode:
        raise SystemExit(f"[{name}] failed (exit {result.returncode}); {log}:\n{text[-4000:]}")
    return log, text, wall, load_before


def run_bertjax(name: str, config: str, overrides: dict, args, meta: dict, key: str | None = None) -> dict:
    """Run main.py (or reuse a finished run with the same key: by default the command and the config files);
    returns the run's record with its eval curve. key="" never reuses."""
    workdir = args.workdir / "runs" / name
    command = bertjax_command(config, workdir, overrides, args)
    record_path = args.workdir / "records" / f"{name}.json"
    key = run_key([command, configs_digest(config)]) if key is None else key
    record = reusable(name, key, args) if key else None
    if record is not None:
        return record
    log, text, wall, load_before = run_logged(name, command, workdir)
    curve = []
    for match in EVAL_LINE.finditer(text):
        metrics = parse_metrics(match.group(2))
        metrics["step"] = int(match.group(1))
        if "train_seconds" not in metrics:
            raise SystemExit(f"[{name}] its eval lines carry no train_seconds (bertjax too old?): {match.group(0)}")
        curve.append(metrics)
    if not curve:
        raise SystemExit(f"[{name}] no eval lines in {log}")
    done = DONE_LINE.search(text)
    record = {"key": key, "name": name, "framework": "bertjax", **meta, "command": shlex.join(command),
              "config_file": command[2].split("=", 1)[1], "curve": curve, "final": curve[-1],
              "final_step": int(done.group(1)) if done else curve[-1]["step"], "wall_seconds": round(wall, 1),
              "load_before": load_before, "load_after": load_average(), "log": str(log),
              "export": str(workdir / "export"), "workdir": str(workdir)}
    print(f"[{name}] step {record['final_step']}, {curve[-1]['train_seconds']:.0f} s training, "
          f"mlm accuracy {curve[-1]['masked_lm_accuracy']:.4f} ({wall:.0f} s wall)", flush=True)
    return save_record(record_path, record)


def calibrate(corpus: str, size: str, data: dict, args, eval_batches: int) -> dict:
    """A short run of the original recipe: steps/s between its two evaluations, and the start-up cost."""
    steps = args.calib_steps or SIZES[size]["calib_steps"]
    steps -= steps % 2
    overrides = {**common_overrides(data, size, 1), "train.batch_size": BATCH_SIZE, NUM_STEPS: steps,
                 WARMUP_STEPS: max(1, round(WARMUP_FRACTION * steps)), "eval.every_steps": steps // 2,
                 "log.every_steps": steps // 2}
    record = run_bertjax(f"{corpus}-{size}-calibration", ORIGINAL_CONFIG, overrides, args,
                         {"corpus": corpus, "size": size, "recipe": "calibration"}, key="")  # always measured anew
    (s1, t1), (s2, t2) = [(p["step"], p["train_seconds"]) for p in record["curve"][:2]]
    rate = (s2 - s1) / (t2 - t1)
    startup = max(0.0, t1 - s1 / rate)
    num_steps = max(10, round(rate * (args.budget_minutes * 60 - startup)))
    return {"steps_per_second": rate, "startup_seconds": startup, "steps": s2, "original_steps": num_steps,
            "load_before": record["load_before"], "name": record["name"]}


def original_key(cell: str, data_dir: str, eval_batches: int, args) -> str:
    """What makes an original-recipe run reusable: not its calibrated step count (measured anew each time)."""
    return run_key({"recipe": "original", "cell": cell, "data": data_dir, "W": args.budget_minutes,
                    "eval_batches": eval_batches, "evals": args.evals, "configs": configs_digest(),
                    "calib_steps": args.calib_steps})


def original_overrides(data: dict, size: str, num_steps: int, eval_batches: int, evals: int) -> dict:
    every = max(1, math.ceil(num_steps / evals))
    return {**common_overrides(data, size, eval_batches), "train.batch_size": BATCH_SIZE, NUM_STEPS: num_steps,
            WARMUP_STEPS: max(1, round(WARMUP_FRACTION * num_steps)), "eval.every_steps": every,
            "log.every_steps": every}


def budget_steps_estimate(original_steps: int) -> int:
    """The budget recipe's steps in W, about: the original's full-batch steps, where the batch-size ramp's first
    steps count as the fraction of a full batch they are (their cost), so the ramp adds its steps minus that."""
    from bertjax import batch_ramp  # noqa: PLC0415

    train = budget_config().train
    if not batch_ramp.enabled(train):
        return original_steps
    ramp = min(int(train.batch_size_ramp_steps), original_steps)
    full_batch_equivalent = sum(batch_ramp.batch_size_at(train, s) for s in range(ramp)) / int(train.batch_size)
    return round(original_steps + ramp - full_batch_equivalent)


def budget_overrides(data: dict, size: str, minutes: float, expected_steps: int, eval_batches: int,
                     evals: int) -> dict:
    """The budget recipe: configs/budget.py's tricks, batch size and schedule scale, the time budget W; evaluations
    spaced by its expected steps in W (`budget_steps_estimate`)."""
    every = max(1, math.ceil(budget_steps_estimate(expected_steps) / evals))
    return {**common_overrides(data, size, eval_batches), TIME_BUDGET: minutes / 60.0, "eval.every_steps": every,
            "log.every_steps": every}


def budget_config():
    """configs/budget.py's config (read, never changed): its schedule scale, and which tricks it switches on."""
    import importlib  # noqa: PLC0415

    return importlib.import_module("configs." + Path(BUDGET_CONFIG).stem).get_config()


def config_field(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


# ----------------------------------------------------------------------------------------------------------------
# transformers (PyTorch) in this process


class HFRunner:
    """BertForPreTraining on bertjax's batches: training, timing and the shared evaluation."""

    def __init__(self, data: dict, size: str, eval_batches: int, head: str):
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from bertjax.data import pipeline  # noqa: PLC0415
        from bertjax.model import BertConfig  # noqa: PLC0415

        torch.set_num_threads(HF_SETTINGS["threads"])
        self.np, self.torch, self.pipeline = np, torch, pipeline
        self.data_dir = data["datasets"][SIZES[size]["seq"]]["dir"]
        self.size, self.head = size, head
        self.model_config = BertConfig.named(size, vocab_size=data["vocab_size"]).to_dict()
        batches = itertools.islice(pipeline.create_iterator(
            self.data_dir, "eval", EVAL_BATCH_SIZE, seed=0, shuffle=False, num_epochs=1, process_index=0,
            process_count=1), eval_batches)
        self.eval_batches = [self.tensors(b) for b in batches]

    def tensors(self, batch: dict) -> dict:
        t = self.torch
        out = {k: t.from_numpy(self.np.asarray(v).astype(self.np.int64)) for k, v in batch.items()
               if k != "masked_lm_weights"}
        out["masked_lm_weights"] = t.from_numpy(self.np.asarray(batch["masked_lm_weights"], self.np.float32))
        return out

    def new_model(self):
        from transformers import BertConfig, BertForPreTraining  # noqa: PLC0415

        self.torch.manual_seed(HF_SETTINGS["seed"])
        return BertForPreTraining(BertConfig(**self.model_config))

    def train_iterator(self):
        return self.pipeline.create_iterator(self.data_dir, "train", BATCH_SIZE, seed=0, shuffle=True,
                                             num_epochs=None, process_index=0, process_count=1)

    def loss(self, model, b: dict):
        """The training loss: HF's own (labels -100 except at masked positions; prediction logits at every
        position), or with head=masked the MLM head on the masked positions only (as bertjax and the original)."""
        t = self.torch
        if self.head == "full":
            labels = t.full_like(b["input_ids"], -100)
            rows = t.arange(labels.shape[0])[:, None].expand_as(b["masked_lm_positions"])
            real = b["masked_lm_weights"] > 0
            labels[rows[real], b["masked_lm_positions"][real]] = b["masked_lm_ids"][real]
            return model(input_ids=b["input_ids"], attention_mask=b["input_mask"], token_type_ids=b["segment_ids"],
                         labels=labels, next_sentence_label=b["next_sentence_labels"]).loss
        mlm_logits, nsp_logits = self.masked_logits(model, b)
        weights = b["masked_lm_weights"]
        nll = t.nn.functional.cross_entropy(mlm_logits.flatten(0, 1), b["masked_lm_ids"].flatten(), reduction="none")
        mlm = (nll * weights.flatten()).sum() / weights.sum().clamp_min(1e-5)
        return mlm + t.nn.functional.cross_entropy(nsp_logits, b["next_sentence_labels"])

    def masked_logits(self, model, b: dict):
        sequence, pooled = model.bert(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                                      token_type_ids=b["segment_ids"], return_dict=False)[:2]
        index = b["masked_lm_positions"][:, :, None].expand(-1, -1, sequence.shape[-1])
        return model.cls(self.torch.gather(sequence, 1, index), pooled)

    def evaluate(self, model) -> dict:
        t = self.torch
        model.eval()
        sums = dict.fromkeys(("correct", "loss", "weight", "nsp_correct", "nsp_count"), 0.0)
        with t.no_grad():
            for b in self.eval_batches:
                mlm_logits, nsp_logits = self.masked_logits(model, b)
                w = b["masked_lm_weights"]
                nll = t.nn.functional.cross_entropy(mlm_logits.transpose(1, 2), b["masked_lm_ids"], reduction="none")
                sums["correct"] += float(((mlm_logits.argmax(-1) == b["masked_lm_ids"]).float() * w).sum())
                sums["loss"] += float((nll * w).sum())
                sums["weight"] += float(w.sum())
                sums["nsp_correct"] += float((nsp_logits.argmax(-1) == b["next_sentence_labels"]).float().sum())
                sums["nsp_count"] += len(nsp_logits)
        model.train()
        return {"masked_lm_accuracy": sums["correct"] / sums["weight"],
                "masked_lm_loss": sums["loss"] / sums["weight"],
                "next_sentence_accuracy": sums["nsp_correct"] / sums["nsp_count"]}

    def optimizer(self, model, lr: float):
        named = list(model.named_parameters())
        decay = [p for n, p in named if not any(part in n for part in NO_DECAY_NAME_PARTS)]
        no_decay = [p for n, p in named if any(part in n for part in NO_DECAY_NAME_PARTS)]
        return self.torch.optim.AdamW([{"params": decay, "weight_decay": HF_SETTINGS["weight_decay"]},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                                      betas=HF_SETTINGS["betas"], eps=HF_SETTINGS["eps"])

    def time_steps(self, warmup: int = 5, timed: int = 20) -> float:
        """Steps/s of training (a throwaway model and optimizer), after `warmup` untimed steps (enough for the input
        pipeline's prefetch to fill, which on one core otherwise competes with the first timed steps)."""
        model = self.new_model()
        model.train()
        optimizer = self.optimizer(model, 1e-4)
        iterator = self.train_iterator()
        for i in range(warmup + timed):
            if i == warmup:
                start = time.perf_counter()
            self.step(model, optimizer, None, next(iterator))
        return timed / (time.perf_counter() - start)

    def step(self, model, optimizer, scheduler, batch) -> float:
        loss = self.loss(model, self.tensors(batch))
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(model.parameters(), HF_SETTINGS["clip_norm"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def train(self, lr: float, num_steps: int, evals: int) -> dict:
        from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

        model = self.new_model()
        model.train()
        optimizer = self.optimizer(model, lr)
        warmup = max(1, round(HF_SETTINGS["warmup_fraction"] * num_steps))
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, num_steps)
        iterator = self.train_iterator()
        every = max(1, math.ceil(num_steps / evals))
        curve, clock, losses = [], 0.0, []
        for step in range(1, num_steps + 1):
            start = time.perf_counter()
            losses.append(self.step(model, optimizer, scheduler, next(iterator)))
            clock += time.perf_counter() - start
            if step % every == 0 or step == num_steps:
                curve.append({**self.evaluate(model), "step": step, "train_seconds": clock,
                              "train_loss": statistics.mean(losses)})
                losses = []
        return {"curve": curve, "final": curve[-1], "final_step": num_steps, "warmup_steps": warmup}


def cross_check(runner: HFRunner, original: dict) -> dict:
    """transformers' evaluation of the original run's export against bertjax's own final evaluation of it: the same
    batches, masks and metric, so the two must agree (up to float summation order)."""
    from transformers import BertForPreTraining  # noqa: PLC0415

    ours = runner.evaluate(BertForPreTraining.from_pretrained(original["export"]))
    theirs = original["final"]["masked_lm_accuracy"]
    check = {"bertjax_eval": theirs, "transformers_eval_of_export": ours["masked_lm_accuracy"],
             "agree": abs(ours["masked_lm_accuracy"] - theirs) < 1e-3}
    print(f"[{original['name']}] eval cross-check: bertjax {theirs:.4f}, transformers on its export "
          f"{ours['masked_lm_accuracy']:.4f}" + ("" if check["agree"] else "  <-- DIFFERENT"), flush=True)
    return check


def run_hf(name: str, runner: HFRunner, lr: float, minutes: float, get_rate, args, meta: dict) -> dict:
    """Train transformers for `minutes` (steps = steps/s x minutes, steps/s from `get_rate()`, timed when first
    needed), or reuse a finished run of the same settings."""
    settings = {"lr": lr, "minutes": minutes, "evals": args.evals, "eval_batches": len(runner.eval_batches),
                "data_dir": runner.data_dir, "model": runner.model_config, "head": runner.head, **HF_SETTINGS}
    key = run_key(settings)
    record = reusable(name, key, args)
    if record is not None:
        return record
    rate = get_rate()
    num_steps = max(2, round(rate * minutes * 60))
    print(f"[{name}] transformers BertForPreTraining, lr {lr}, {num_steps} steps ({rate:.2f} steps/s x "
          f"{minutes:g} min)", flush=True)
    load_before = load_average()
    start = time.perf_counter()
    result = runner.train(lr, num_steps, args.evals)
    record = {"key": key, "name": name, "framework": "transformers", **meta, "settings": settings,
              "steps_per_second_timed": rate, "num_train_steps": num_steps, **result,
              "wall_seconds": round(time.perf_counter() - start, 1), "load_before": load_before,
              "load_after": load_average(), "torch_threads": runner.torch.get_num_threads()}
    print(f"[{name}] {result['final']['train_seconds']:.0f} s training, mlm accuracy "
          f"{result['final']['masked_lm_accuracy']:.4f}", flush=True)
    return save_record(args.workdir / "records" / f"{name}.json", record)


# ----------------------------------------------------------------------------------------------------------------
# NSMC fine-tuning


def run_finetune(name: str, size: str, init: dict, seed: int, args, vocab_file: str) -> dict:
    workdir = args.workdir / "finetune" / name
    seq = SIZES[size]["seq"]
    overrides = {"task": "classification", "data.dir": str(args.nsmc_dir / "finetune"),
                 "data.text_columns": "sentence", "data.label_column": "label", "data.max_seq_length": seq,
                 "data.features_dir": str(args.workdir / "finetune" / f"features-{size}"),
                 "train.batch_size": FINETUNE["batch_size"], "train.num_epochs": args.ft_epochs,
                 "optimizer.learning_rate": FINETUNE["lr"][size], "train.seed": seed, "data.seed": seed,
                 "log.tensorboard": False}
    if args.ft_length_buckets:
        overrides["data.length_buckets"] = args.ft_length_buckets
    if init["from"] is None:  # random init: the same size and vocab, no init_from
        overrides.update({"data.vocab_file": vocab_file, "data.do_lower_case": False, "model.size": size})
    else:
        overrides["train.init_from"] = init["from"]
    command = [sys.executable, "main.py", "--config=configs/finetune_glue.py", f"--workdir={workdir}",
               *[f"--config.{k}={flag_value(v)}" for k, v in overrides.items()]]
    record_path = args.workdir / "records" / f"ft-{name}.json"
    key = run_key([command, init.get("key")])
    record = load_record(record_path, key)
    if record is not None:
        print(f"[ft {name}] reusing the finished run", flush=True)
        return record
    log, text, wall, load_before = run_logged(f"ft {name}", command, workdir, log_name=name)
    evals = [parse_metrics(m.group(2)) | {"step": int(m.group(1))} for m in EVAL_LINE.finditer(text)]
    record = {"key": key, "name": name, "size": size, "init": init["label"], "seed": seed,
              "command": shlex.join(command),
              "evals": evals, "final": evals[-1], "wall_seconds": round(wall, 1),
              "load_before": load_before, "log": str(log)}
    print(f"[ft {name}] dev accuracy {evals[-1].get('accuracy', float('nan')):.4f}", flush=True)
    return save_record(record_path, record)


# ----------------------------------------------------------------------------------------------------------------
# Analysis


def reach_time(curve: list[dict], target: float) -> float | None:
    """The first training time at which the curve reaches `target` (linear between evaluations; None: never)."""
    previous = None
    for point in curve:
        t, acc = point["train_seconds"], point["masked_lm_accuracy"]
        if acc >= target:
            if previous is None:
                return t
            t0, a0 = previous
            return t0 + (t - t0) * (target - a0) / (acc - a0) if acc > a0 else t
        previous = (t, acc)
    return None


def analyse(state: dict, args) -> dict:
    W = args.budget_minutes * 60
    runs = state["runs"]
    rows = []
    for corpus, size in itertools.product(args.corpora, args.sizes):
        get = lambda recipe: runs.get(f"{corpus}-{size}-{recipe}")  # noqa: E731
        original, budget, hf = get("original"), get("budget"), get("hf")
        row = {"corpus": corpus, "size": size}
        for label, run in (("original", original), ("budget", budget), ("hf", hf)):
            if run:
                row[label] = {"accuracy": run["final"]["masked_lm_accuracy"],
                              "train_seconds": run["final"]["train_seconds"], "steps": run["final_step"]}
        if original and budget:
            target = original["final"]["masked_lm_accuracy"]
            t = reach_time(budget["curve"], target)
            row["a"] = {"budget_reaches_original_at_s": t, "limit_s": W / 2, "met": t is not None and t <= W / 2}
            gap = 100 * (budget["final"]["masked_lm_accuracy"] - target)
            row["b"] = {"points": gap, "met": gap >= 2.0}
        if hf and budget:
            target = hf["final"]["masked_lm_accuracy"]
            t = reach_time(budget["curve"], target)
            limit = hf["final"]["train_seconds"] / 2
            row["c"] = {"budget_reaches_hf_at_s": t, "limit_s": limit, "met": t is not None and t <= limit}
        rows.append(row)
    ablation = None
    if args.ablation:
        corpus, size = args.ablation_on.split(":")
        budget = runs.get(f"{corpus}-{size}-budget")
        ablation = {"corpus": corpus, "size": size, "tricks": []}
        for trick, (label, _) in ABLATIONS.items():
            run = runs.get(f"{corpus}-{size}-ablation-{trick}")
            if run and budget:
                acc = run["final"]["masked_lm_accuracy"]
                ablation["tricks"].append({"trick": trick, "label": label, "accuracy": acc,
                                           "train_seconds": run["final"]["train_seconds"],
                                           "gain_points": 100 * (budget["final"]["masked_lm_accuracy"] - acc)})
    finetune = None
    if state.get("finetune"):
        finetune = []
        for size in args.sizes:
            cells = {}
            for init in ("random", "original", "budget"):
                values = [100 * r["final"]["accuracy"] for r in state["finetune"].values()
                          if r["size"] == size and r["init"] == init]
                if values:
                    cells[init] = {"mean": statistics.mean(values), "values": values,
                                   "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            row = {"size": size, **cells}
            if "budget" in cells and "random" in cells:
                gain = cells["budget"]["mean"] - cells["random"]["mean"]
                row["d"] = {"points": gain, "met": gain >= 3.0}
            finetune.append(row)
    return {"targets": rows, "ablation": ablation, "finetune": finetune}


# ----------------------------------------------------------------------------------------------------------------
# Report


def fmt_min(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds / 60:.2f} min"


def verdict(cell: dict | None) -> str:
    return "—" if cell is None else ("**met**" if cell["met"] else "missed")


def write_report(state: dict, args, output: Path) -> None:
    analysis = analyse(state, args)
    state["analysis"] = analysis
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(state, indent=1, default=str) + "\n")
    plotted = plot(state, args, output)
    W = args.budget_minutes
    m = state["machine"]
    lines = [
        "# Time to quality: BERT pretraining under a wall-clock budget (CPU)", "",
        f"{m['cpu']}, {m['cores']} cores (shared; this run used {m.get('cores_used', m['cores'])}: its CPU affinity), {m['platform']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + f"; bertjax at {m.get('bertjax_commit', '?')[:10]}"
        + (" with uncommitted changes in bertjax/ or configs/" if m.get("bertjax_uncommitted_changes") else "")
        + f". Made by `{state['command']}` ({state['date']}), {state['total_minutes']:.1f} min in all.", "",
        f"Budget W = {W:g} min of training per run (the training clock: evaluations excluded, compilation and input "
        "pipeline included). One run at a time; the load average before each run is in the tables.", "",
        "## The targets (issue 20)", "",
        "(a) the budget recipe reaches the original's accuracy at W by W/2; (b) at W it is at least 2 points higher; "
        "(c) it reaches transformers' final accuracy in at most half of transformers' training time. Accuracy = "
        "masked-LM accuracy on the same held-out batches at 15% masking; 'at W' = the run's final evaluation "
        "(its training clock is in the table).", "",
        "| corpus | size | original at W | budget at W | transformers at W | (a) budget reaches original's | "
        "(b) budget − original | (c) budget reaches transformers' (limit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in analysis["targets"]:
        def acc(label):
            r = row.get(label)
            if r is None:
                return "—"
            return f"{100 * r['accuracy']:.2f} ({fmt_min(r['train_seconds'])}, {r['steps']} steps)"
        a = row.get("a")
        b = row.get("b")
        c = row.get("c")
        lines.append(
            f"| {row['corpus']} | {row['size']} | {acc('original')} | {acc('budget')} | {acc('hf')} | "
            + ("—" if a is None else f"{fmt_min(a['budget_reaches_original_at_s'])} (limit {fmt_min(a['limit_s'])}): "
               f"{verdict(a)}") + " | "
            + ("—" if b is None else f"{b['points']:+.2f} points: {verdict(b)}") + " | "
            + ("—" if c is None else f"{fmt_min(c['budget_reaches_hf_at_s'])} ({fmt_min(c['limit_s'])}): "
               f"{verdict(c)}") + " |")
    lines += ["", *missed_targets(analysis), *clock_notes(state, args), ""]
    if plotted:
        lines += [f"![eval MLM accuracy against training minutes]({plotted.name})", ""]
    ab = analysis.get("ablation")
    if ab:
        budget = state["runs"].get(f"{ab['corpus']}-{ab['size']}-budget")
        lines += ["## Ablation", "",
                  f"{ab['corpus']}, BERT-{ab['size']}: the budget recipe with one trick undone at a time; gain = "
                  f"budget accuracy at W ({100 * budget['final']['masked_lm_accuracy']:.2f}) − ablated accuracy at W."
                  if budget else "", "",
                  "| trick undone | accuracy at W | training clock | gain of the trick |", "|---|---|---|---|"]
        for t in sorted(ab["tricks"], key=lambda t: -t["gain_points"]):
            lines.append(f"| {t['label']} | {100 * t['accuracy']:.2f} | {fmt_min(t['train_seconds'])} | "
                         f"{t['gain_points']:+.2f} points |")
        for label in (state.get("ablation_skipped") or {}).values():
            lines.append(f"| {label} | not run: {BUDGET_CONFIG} keeps the original's value | | |")
        lines.append("")
    ft = analysis.get("finetune")
    if ft:
        lines += ["## NSMC fine-tuning: what the pretraining buys", "",
                  f"Dev accuracy (%) on {args.nsmc_dir}/finetune/dev.tsv (2,000 reviews of movies held out of both "
                  "the labelled train set and the pretraining corpus), fine-tuned on train.tsv (4,000 reviews); "
                  f"mean ± std over seeds {args.ft_seeds}; the final epoch's model (no selection on dev). Target (d): "
                  "budget ≥ random init + 3 points.", "",
                  "| size | random init | original (W) | budget (W) | budget − random |", "|---|---|---|---|---|"]
        for row in ft:
            cell = lambda k: "—" if k not in row else f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}"  # noqa: E731
            d = row.get("d")
            lines.append(f"| {row['size']} | {cell('random')} | {cell('original')} | {cell('budget')} | "
                         + ("—" if d is None else f"{d['points']:+.2f}: {verdict(d)}") + " |")
        lines += ["", f"Recipe (the same for the three inits): configs/finetune_glue.py, generic classification "
                      f"(`sentence`, `label`), AdamW, lr {FINETUNE['lr']} by size, {args.ft_epochs} epochs, batch "
                      f"{FINETUNE['batch_size']}, 10% warmup then linear decay, dropout 0.1, max_seq_length = the "
                      "pretraining's. Random init: the same size and the Korean vocab, no init_from.", ""]
    lines += setup_section(state, args)
    lines += runs_section(state)
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")


def missed_targets(analysis: dict) -> list[str]:
    """For each missed target: by how much, and which trick fell short (the ablation's smallest gains)."""
    out = []
    ab = analysis.get("ablation") or {}
    weak = sorted(ab.get("tricks", []), key=lambda t: t["gain_points"])
    weak_text = (f"; in the ablation ({ab.get('corpus')}/{ab.get('size')}) the tricks that gained least were "
                 + ", ".join(f"{t['label']} ({t['gain_points']:+.2f})" for t in weak[:2])) if weak else ""
    for row in analysis["targets"]:
        where = f"{row['corpus']}/{row['size']}"
        if row.get("a") and not row["a"]["met"]:
            t = row["a"]["budget_reaches_original_at_s"]
            out.append(f"- (a) missed on {where}: the budget recipe reaches the original's accuracy at "
                       + ("no point within W" if t is None else
                          f"{t / 60:.2f} min, {(t - row['a']['limit_s']) / 60:.2f} min after W/2") + weak_text + ".")
        if row.get("b") and not row["b"]["met"]:
            out.append(f"- (b) missed on {where}: {row['b']['points']:+.2f} points, {2 - row['b']['points']:.2f} short "
                       "of +2" + weak_text + ".")
        if row.get("c") and not row["c"]["met"]:
            t = row["c"]["budget_reaches_hf_at_s"]
            out.append(f"- (c) missed on {where}: the budget recipe reaches transformers' final accuracy at "
                       + ("no point within W" if t is None else f"{t / 60:.2f} min, "
                          f"{(t - row['c']['limit_s']) / 60:.2f} min after half of transformers' time") + ".")
    for row in analysis.get("finetune") or []:
        if row.get("d") and not row["d"]["met"]:
            out.append(f"- (d) missed on BERT-{row['size']}: budget − random = {row['d']['points']:+.2f} points, "
                       f"{3 - row['d']['points']:.2f} short of +3.")
    measured = any(row.get(t) for row in analysis["targets"] for t in "abc") or any(
        row.get("d") for row in analysis.get("finetune") or [])
    return out or (["All targets measured here are met."] if measured else [])


def clock_notes(state: dict, args) -> list[str]:
    """Runs whose training did not end within 5% of W (step-scheduled runs: the original, transformers, the
    time-budget-off ablation, when the machine's load changed between the timing of the steps and the run)."""
    W = args.budget_minutes * 60
    notes = []
    for name, run in state["runs"].items():
        t = run["final"]["train_seconds"]
        if abs(t - W) > 0.05 * W:
            notes.append(f"- Note: {name} ended its training at {t / 60:.2f} min, not W = {W / 60:g} min"
                         + ("" if run["recipe"] == "budget" else " (its step count was set from steps/s measured "
                            "before it; the shared machine's load changed)") + ".")
    return notes


def setup_section(state: dict, args) -> list[str]:
    lines = ["## Set-up", "", "**Data.**", ""]
    for corpus, d in state.get("data", {}).items():
        lines.append(f"- `{corpus}`: {d['source']}; sha256 {d['corpus_sha256'][:16]}…; vocab {d['vocab_size']} "
                     f"entries ({'uncased' if CORPORA[corpus]['lowercase'] else 'cased, accents kept'}).")
        for seq, ds in d["datasets"].items():
            counts = ", ".join(f"{split} {n:,}" for split, n in (ds.get("num_examples") or {}).items())
            lines.append(f"  - seq {seq}: {counts} examples; `{ds['command']}`")
    lines += [
        "", "Every dataset is made with `--masking=dynamic`: the original recipe and transformers train on the "
        "dataset's 15% masks (drawn afresh each epoch from (seed, epoch, example)), the budget recipe at its own rate; "
        f"every evaluation reads the eval split's first {args.eval_batches} batches of {EVAL_BATCH_SIZE} (or all "
        "of it when smaller) with the dataset's 15% masks, the same examples and masks for every run.", "",
        *([("Check that transformers is scored on the same examples: its evaluation code on the original run's "
            "export against bertjax's final evaluation of the same run: " + "; ".join(
                f"{cell} {100 * c['transformers_eval_of_export']:.3f} vs {100 * c['bertjax_eval']:.3f}"
                + ("" if c["agree"] else " (DIFFERENT)") for cell, c in state["eval_cross_check"].items()) + "."), ""]
          if state.get("eval_cross_check") else []),
        "**Sizes.** BERT-tiny (2 layers, hidden 128) at seq 64 with 10 predictions per sequence (the demo's); "
        f"BERT-mini (4 layers, hidden 256) at seq 128 with 20; batch {BATCH_SIZE} (the budget recipe: "
        f"{BUDGET_CONFIG}'s batch size and ramp); float32.", "",
        "**Calibration of the original recipe.** A short run of the original recipe per corpus and size; steps/s "
        "between its two evaluations' `train_seconds`; the start-up cost (compilation, first steps) = the first "
        "evaluation's `train_seconds` − its steps / (steps/s). num_train_steps = steps/s × (W − start-up), warmup "
        "5% of it.", "",
        "| corpus | size | steps/s | start-up s | original's num_train_steps | transformers steps/s (timed) |",
        "|---|---|---|---|---|---|",
    ]
    for name, cal in state.get("calibration", {}).items():
        corpus, size = name.split("-")
        lines.append(f"| {corpus} | {size} | {cal['steps_per_second']:.2f} | {cal['startup_seconds']:.1f} | "
                     f"{cal.get('original_steps', '—')} | "
                     + (f"{state['hf_rate'][name]:.2f}" if name in state.get("hf_rate", {}) else "—") + " |")
    lines += [
        "", f"**Recipes.** Original: `{ORIGINAL_CONFIG}` (AdamW lr 2e-3, warmup_linear, 15% masking, dropout 0.1, "
        f"NSP on) with the calibrated steps. Budget: `{BUDGET_CONFIG}` with `--config.{TIME_BUDGET}` = W; its "
        "tricks and schedule as that file sets them. transformers: BertForPreTraining (BertConfig of the same size "
        f"and vocab), AdamW (betas {HF_SETTINGS['betas']}, eps {HF_SETTINGS['eps']}, weight decay "
        f"{HF_SETTINGS['weight_decay']} except LayerNorm and biases), clipping {HF_SETTINGS['clip_norm']}, "
        "get_linear_schedule_with_warmup (5% warmup), dropout 0.1, float32, "
        f"torch threads {HF_SETTINGS['threads']}, torch.manual_seed({HF_SETTINGS['seed']}); the MLM head "
        + ("on every position (HF's own BertForPreTraining loss with labels)" if args.hf_head == "full" else
           "on the masked positions only (as bertjax)") + ". steps = its timed steps/s × W.", "",
    ]
    sweep = state.get("hf_sweep", {})
    if sweep:
        lines += ["**transformers' learning rate**: a sweep per size on the first corpus, each rate trained "
                  f"{args.hf_sweep_fraction:.2g} × W with its schedule over that time; the best final accuracy "
                  "wins.", "",
                  "| corpus | size | lr | accuracy | training clock |", "|---|---|---|---|---|"]
        for size, entry in sweep.items():
            for r in entry["runs"]:
                best = " (chosen)" if r["lr"] == entry["best_lr"] else ""
                lines.append(f"| {entry['corpus']} | {size} | {r['lr']:g}{best} | {100 * r['accuracy']:.2f} | "
                             f"{fmt_min(r['train_seconds'])} |")
        lines.append("")
    return lines


def runs_section(state: dict) -> list[str]:
    lines = ["## Runs", "", "Each run's evaluations: training minutes → masked-LM accuracy (%).", "",
             "| run | evaluations | wall s | load before |", "|---|---|---|---|"]
    for name, r in state["runs"].items():
        points = ", ".join(f"{p['train_seconds'] / 60:.2f}→{100 * p['masked_lm_accuracy']:.1f}" for p in r["curve"])
        lines.append(f"| {name} | {points} | {r['wall_seconds']:.0f} | {r['load_before']} |")
    lines += ["", "Commands (bertjax runs):", ""]
    for name, r in state["runs"].items():
        if r.get("command"):
            lines.append(f"- {name}: `{r['command']}`")
    for name, r in (state.get("finetune") or {}).items():
        lines.append(f"- fine-tune {name}: `{r['command']}`")
    for path in sorted({r["config_file"] for r in state["runs"].values() if r.get("config_file", "").endswith(
            ".py") and "__unset_" in r.get("config_file", "")}):
        lines += ["", f"Generated config `{path}`:", "", "```python", Path(path).read_text().rstrip(), "```"]
    return lines


def plot(state: dict, args, output: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    runs = state["runs"]
    cells = [(c, s) for c in args.corpora for s in args.sizes]
    if not any(f"{c}-{s}-{r}" in runs for c, s in cells for r in ("original", "budget", "hf")):
        return None
    rows, cols = len(args.corpora), len(args.sizes)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    styles = {"original": ("original recipe", "tab:blue"), "budget": ("budget recipe", "tab:red"),
              "hf": ("transformers", "tab:gray")}
    for (i, corpus), (j, size) in itertools.product(enumerate(args.corpora), enumerate(args.sizes)):
        ax = axes[i][j]
        for recipe, (label, color) in styles.items():
            run = runs.get(f"{corpus}-{size}-{recipe}")
            if run:
                ax.plot([p["train_seconds"] / 60 for p in run["curve"]],
                        [100 * p["masked_lm_accuracy"] for p in run["curve"]], "o-", ms=3, color=color, label=label)
        ax.axvline(args.budget_minutes / 2, color="k", lw=0.6, ls=":")
        ax.axvline(args.budget_minutes, color="k", lw=0.6, ls="--")
        ax.set_title(f"{corpus}, BERT-{size}")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("eval MLM accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = output.with_suffix(".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    if args.ablation:
        corpus, size = args.ablation_on.split(":")
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name in [f"{corpus}-{size}-budget", *[f"{corpus}-{size}-ablation-{t}" for t in ABLATIONS]]:
            run = runs.get(name)
            if run:
                label = "budget recipe" if name.endswith("-budget") else "without: " + ABLATIONS[
                    name.rsplit("ablation-", 1)[1]][0]
                ax.plot([p["train_seconds"] / 60 for p in run["curve"]],
                        [100 * p["masked_lm_accuracy"] for p in run["curve"]], "o-", ms=2.5, label=label,
                        lw=2 if name.endswith("-budget") else 1)
        ax.set_title(f"ablation: {corpus}, BERT-{size}")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("eval MLM accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output.with_name(output.name + "_ablation.png"), dpi=110)
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------
# The whole benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget_minutes", type=float, default=10.0, help="W: training minutes per run")
    parser.add_argument("--corpora", default="en,ko", help="of: " + ", ".join(CORPORA))
    parser.add_argument("--sizes", default="tiny,mini", help="of: " + ", ".join(SIZES))
    parser.add_argument("--recipes", default="original,budget,hf", help="of: original, budget, hf")
    parser.add_argument("--ablation", action="store_true", help="the budget recipe with one trick undone at a time")
    parser.add_argument("--ablation_on", default="en:tiny", help="corpus:size of the ablation")
    parser.add_argument("--nsmc_finetune", action="store_true", help="fine-tune the Korean runs on NSMC reviews")
    parser.add_argument("--nsmc_dir", type=Path, default=Path("/work/data/nsmc"),
                        help="bench/nsmc_data.py's --out")
    parser.add_argument("--evals", type=int, default=10, help="evaluations per run, about")
    parser.add_argument("--eval_batches", type=int, default=16, help="eval batches of 128 (at most the eval split)")
    parser.add_argument("--calib_steps", type=int, default=0, help="calibration steps (0: the size's default)")
    parser.add_argument("--hf_lrs", default="5e-4,1e-3,2e-3,4e-3", help="transformers' lr sweep (one value: no sweep)")
    parser.add_argument("--hf_sweep_fraction", type=float, default=1 / 3, help="each sweep run's budget, x W")
    parser.add_argument("--hf_head", choices=("full", "masked"), default="full",
                        help="full: HF's BertForPreTraining loss (logits at every position); masked: only there")
    parser.add_argument("--ft_seeds", default="0,1,2")
    parser.add_argument("--ft_epochs", type=int, default=FINETUNE["epochs"])
    parser.add_argument("--ft_length_buckets", default="",
                        help="fine-tuning's --config.data.length_buckets (e.g. auto: exact, faster); empty: unset")
    parser.add_argument("--workdir", type=Path, default=Path("/work/data/bench/ttq"),
                        help="runs, data and records (outside the repository)")
    parser.add_argument("--output", type=Path, default=RESULTS / "time_to_quality",
                        help="results path without suffix (.md, .json, .png)")
    args = parser.parse_args()
    args.corpora = args.corpora.split(",")
    args.sizes = args.sizes.split(",")
    args.recipes = args.recipes.split(",")
    args.ft_seeds = [int(s) for s in args.ft_seeds.split(",")]
    args.workdir = args.workdir.resolve()
    for value, known, what in ((args.corpora, CORPORA, "corpus"), (args.sizes, SIZES, "size"),
                               (args.recipes, ("original", "budget", "hf"), "recipe")):
        for v in value:
            if v not in known:
                raise SystemExit(f"unknown {what} {v!r}; use {', '.join(known)}")
    needs_budget = "budget" in args.recipes or args.ablation
    if needs_budget and not (REPO / BUDGET_CONFIG).is_file():
        raise SystemExit(f"{BUDGET_CONFIG} does not exist yet; run with --recipes original,hf and without --ablation")
    if args.ablation and "budget" not in args.recipes:
        raise SystemExit("--ablation needs the budget recipe (--recipes ...,budget)")
    if args.nsmc_finetune and "ko" not in args.corpora:
        raise SystemExit("--nsmc_finetune needs the Korean corpus (--corpora ...,ko)")
    ab_corpus, ab_size = args.ablation_on.split(":")
    if args.ablation and (ab_corpus not in args.corpora or ab_size not in args.sizes):
        raise SystemExit(f"--ablation_on={args.ablation_on} is not among the corpora and sizes run")

    started = time.perf_counter()
    W = args.budget_minutes
    state = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "command": "python bench/time_to_quality.py " + shlex.join(sys.argv[1:]),
             "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
             "machine": machine(), "tables": {"sizes": SIZES, "corpora": CORPORA, "dataset": DATASET,
                                              "ablations": {k: v[0] for k, v in ABLATIONS.items()},
                                              "finetune": FINETUNE, "hf": HF_SETTINGS},
             "runs": {}, "calibration": {}, "hf_rate": {}, "hf_sweep": {}, "finetune": {}, "eval_cross_check": {}}

    def checkpoint_report():
        state["total_minutes"] = (time.perf_counter() - started) / 60
        write_report(state, args, args.output)

    datasets = {c: build_data(c, args.sizes, args, state) for c in args.corpora}
    hf_lrs = [float(x) for x in args.hf_lrs.split(",")]
    for corpus, size in itertools.product(args.corpora, args.sizes):
        data = datasets[corpus]
        cell = f"{corpus}-{size}"
        meta = lambda recipe: {"corpus": corpus, "size": size, "recipe": recipe}  # noqa: E731
        eval_batches = eval_batch_count(data["datasets"][SIZES[size]["seq"]]["dir"], args.eval_batches)
        # The original's step count: its finished run's, else calibrated now (also when it is not run: the budget
        # recipe's evaluations are spaced by it).
        data_dir = data["datasets"][SIZES[size]["seq"]]["dir"]
        key = original_key(cell, data_dir, eval_batches, args)
        original = reusable(f"{cell}-original", key, args)
        if original is None:
            cal = calibrate(corpus, size, data, args, eval_batches)
            if "original" in args.recipes:
                original = run_bertjax(
                    f"{cell}-original", ORIGINAL_CONFIG,
                    original_overrides(data, size, cal["original_steps"], eval_batches, args.evals), args,
                    {**meta("original"), "calibration": cal}, key=key)
        else:
            cal = original["calibration"]
        state["calibration"][cell] = cal
        original_steps = cal["original_steps"]
        if original is not None and "original" in args.recipes:
            state["runs"][f"{cell}-original"] = original
            checkpoint_report()
        if "budget" in args.recipes:
            state["runs"][f"{cell}-budget"] = run_bertjax(
                f"{cell}-budget", BUDGET_CONFIG,
                budget_overrides(data, size, W, original_steps, eval_batches, args.evals), args, meta("budget"))
            checkpoint_report()
        if "hf" in args.recipes:
            runner = HFRunner(data, size, eval_batches, args.hf_head)
            if f"{cell}-original" in state["runs"]:
                state["eval_cross_check"][cell] = cross_check(runner, state["runs"][f"{cell}-original"])
            timed = {}

            def get_rate(runner=runner, timed=timed, cell=cell) -> float:
                if "rate" not in timed:
                    print(f"[{cell}-hf] timing transformers' training steps", flush=True)
                    timed["rate"] = state["hf_rate"][cell] = runner.time_steps()
                return timed["rate"]
            if len(hf_lrs) == 1:
                lr = hf_lrs[0]
            else:
                if size not in state["hf_sweep"]:  # per size, on the first corpus that runs it
                    sweep = []
                    for lr_try in hf_lrs:
                        r = run_hf(f"{cell}-hf-sweep-lr{lr_try:g}", runner, lr_try, W * args.hf_sweep_fraction,
                                   get_rate, args, meta("hf-sweep"))
                        sweep.append({"lr": lr_try, "accuracy": r["final"]["masked_lm_accuracy"],
                                      "train_seconds": r["final"]["train_seconds"]})
                    best = max(sweep, key=lambda r: r["accuracy"])["lr"]
                    state["hf_sweep"][size] = {"corpus": corpus, "runs": sweep, "best_lr": best}
                lr = state["hf_sweep"][size]["best_lr"]
            state["runs"][f"{cell}-hf"] = run_hf(f"{cell}-hf", runner, lr, W, get_rate, args, meta("hf"))
            state["hf_rate"].setdefault(cell, state["runs"][f"{cell}-hf"]["steps_per_second_timed"])
            del runner
            checkpoint_report()

    if args.ablation:
        corpus, size = ab_corpus, ab_size
        data = datasets[corpus]
        cell = f"{corpus}-{size}"
        eval_batches = eval_batch_count(data["datasets"][SIZES[size]["seq"]]["dir"], args.eval_batches)
        budget_run = state["runs"][f"{cell}-budget"]
        base = budget_overrides(data, size, W, state["calibration"][cell]["original_steps"], eval_batches, args.evals)
        recipe = budget_config()
        budget_steps, budget_warmup = int(config_field(recipe, NUM_STEPS)), int(config_field(recipe, WARMUP_STEPS))
        state["ablation_skipped"] = {}
        for trick, (label, change) in ABLATIONS.items():
            if all(config_field(recipe, field) == value for field, value in change.items()):
                state["ablation_skipped"][trick] = label  # configs/budget.py does not switch this trick on
                print(f"[{cell}-ablation-{trick}] skipped: {BUDGET_CONFIG} does not switch it on", flush=True)
                continue
            overrides = {**base, **change}
            if trick == "time_budget":
                steps = budget_run["final_step"]
                overrides.update({NUM_STEPS: steps,
                                  WARMUP_STEPS: max(1, round(steps * budget_warmup / budget_steps))})
            if trick == "schedule":
                overrides[WARMUP_STEPS] = max(1, round(WARMUP_FRACTION * budget_steps))
            state["runs"][f"{cell}-ablation-{trick}"] = run_bertjax(
                f"{cell}-ablation-{trick}", BUDGET_CONFIG, overrides, args,
                {"corpus": corpus, "size": size, "recipe": f"ablation-{trick}", "trick": label})
            checkpoint_report()

    if args.nsmc_finetune:
        vocab = datasets["ko"]["vocab_file"]
        for size in args.sizes:
            inits = [{"label": "random", "from": None}]
            for recipe in ("original", "budget"):
                run = state["runs"].get(f"ko-{size}-{recipe}")
                if run:
                    inits.append({"label": recipe, "from": run["export"], "key": run["key"]})
            for init, seed in itertools.product(inits, args.ft_seeds):
                name = f"ko-{size}-{init['label']}-seed{seed}"
                state["finetune"][name] = run_finetune(name, size, init, seed, args, vocab)
                checkpoint_report()

    checkpoint_report()
    print(args.output.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
