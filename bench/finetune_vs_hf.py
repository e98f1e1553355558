"""Benchmark: fine-tune one Hugging Face checkpoint with bertjax and with transformers (PyTorch), side by side.

    python bench/finetune_vs_hf.py --task sst2 --data_dir glue/SST-2 --init path/to/hf_bert \
        [--train_examples 2000] [--dev_examples 872] [--epochs 2] [--seeds 0,1,2] [--max_seq_length 64] \
        [--batch_size 32] [--learning_rate 5e-5] [--data_source "where the files came from"] \
        [--arms bertjax_buckets,bertjax_max_length,transformers_longest] [--length_buckets auto]

Every arm sees the same files: the first --train_examples rows of the task's train file and the first
--dev_examples rows of its dev file, copied (header kept) into a temporary GLUE-format directory. GLUE tasks with
labels (cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli; not stsb) are supported.

Arms (--arms, comma-separated, reported in the order given), each a framework and a padding:
- bertjax_buckets: bertjax with --config.data.length_buckets set to --length_buckets (default auto): batches cut
  to a few lengths (docs/finetuning.md);
- bertjax_max_length: bertjax, every row padded to --max_seq_length;
- transformers_longest: transformers, each batch padded to its longest row, as transformers'
  DataCollatorWithPadding does;
- transformers_max_length: transformers, every row padded to --max_seq_length.
Without --arms, the two arms of the older flags: bertjax_buckets if --length_buckets is set, else
bertjax_max_length; and transformers_longest with `--hf_padding longest`, else transformers_max_length (the
default, bertjax_max_length against transformers_max_length). With --arms, --hf_padding is refused (name the
transformers arm instead) and --length_buckets only sets the bertjax_buckets arm's buckets.

Recipe, the same for every arm (the BERT paper's, configs/finetune_glue.py): AdamW (bias-corrected, b1 0.9, b2
0.999, eps 1e-6), weight decay 0.01 on every param but LayerNorm params and biases (bertjax.train_state.decay_mask),
gradients clipped to global norm 1.0, lr warming up linearly from 0 over round(10%) of the steps then decaying
linearly to 0, epochs x (train examples // batch) steps (the last partial batch of an epoch dropped), dropout 0.1,
float32.

- bertjax: the real command, `main.py --config=configs/finetune_glue.py` in a subprocess per seed
  (train.seed = data.seed = the seed). The dev metrics are scored from its predictions_dev.tsv (written by the final
  evaluation) with bertjax's GLUE metric code, and checked against its last `eval step` line. Throughput comes from
  the steps/s it writes to TensorBoard with each step line (over each epoch; the first step, which compiles, and
  the evaluations are left out), logged once per epoch (--config.log.every_steps = steps per epoch). With length
  buckets, the first epoch also compiles each further batch shape once (on its first use).
- transformers: `BertForSequenceClassification.from_pretrained(init)` in a plain PyTorch loop in this process,
  torch.manual_seed(seed) before loading (the classifier's init) and a torch.Generator(seed) for the shuffling;
  texts tokenized by the init directory's BertTokenizerFast. Throughput over each epoch's training steps, the first
  step of the first epoch left out as for bertjax. The dev metrics use the same metric code as bertjax.

Throughput is reported twice per run: over all training steps after the first, and over the last epoch alone
(with --epochs >= 2; by then bertjax has compiled every bucket shape that epoch 1 used, so it is the steady-state
number). The ratios of each bertjax arm over each transformers arm use the last-epoch number when --epochs >= 2,
else the all-steps one; they are given as the ratio of the means and per seed (the two runs of a seed ran
back to back). When both paddings of a framework are run, the report gives the dev metric difference (padding-saving
arm minus full padding) in points with both arms' stds and the standard error of the difference.

The seed policy is "the same seed value, each framework's own random streams": data order, classifier init and
dropout masks differ between the frameworks (and bertjax's length buckets regroup its data order), so compare means
over seeds, not single runs. The tokenizations are compared row by row (bertjax's cached features against
BertTokenizerFast's ids) and the agreement reported.

Runs are sequential (never two at once), interleaved by seed (seed 0 of every arm, then seed 1, ...) so that drift
in the machine's load hits every arm alike; the load average before each run is recorded. Results go to
bench/results/finetune_vs_hf.json and .md (or --output).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from bertjax.tasks import classification  # noqa: E402  (after the path insert)

import machine_info  # noqa: E402  (bench/, the script's directory)

NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")  # as bertjax.train_state (kept free of a JAX import)
STEP_LINE = re.compile(r"step (\d+): .*tokens/s ([\d,.]+)")
EVAL_LINE = re.compile(r"eval step (\d+): (.*)")

# Arm name: (framework, padding). "buckets": --config.data.length_buckets; "longest": each batch to its longest row.
ARMS = {
    "bertjax_buckets": ("bertjax", "buckets"),
    "bertjax_max_length": ("bertjax", "max_length"),
    "transformers_longest": ("transformers", "longest"),
    "transformers_max_length": ("transformers", "max_length"),
}


# ----------------------------------------------------------------------------------------------------------------
# Data


def subsample(task: classification.GlueTask, data_dir: Path, out_dir: Path, num_train: int, num_dev: int) -> dict:
    """Copy the first rows of the train and dev files (plus the header) into out_dir; returns their counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, limit in ((task.train_file, num_train), (task.dev_files[0], num_dev)):
        lines = (data_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)
        header, rows = (lines[:1], lines[1:]) if task.has_header else ([], lines)
        rows = [row for row in rows if row.strip()]
        if limit and limit > len(rows):
            raise SystemExit(f"{data_dir / name} has {len(rows)} rows, fewer than the {limit} asked for")
        kept = rows[:limit] if limit else rows
        (out_dir / name).write_text("".join(header + kept), encoding="utf-8")
        counts[name] = len(kept)
    return counts


def label_ids(task: classification.GlueTask, examples) -> np.ndarray:
    return np.array([task.labels.index(e.label) for e in examples], np.int64)


# ----------------------------------------------------------------------------------------------------------------
# bertjax (subprocess: the real command)


def run_bertjax(args, task, data_dir: Path, workdir: Path, seed: int, steps_per_epoch: int, dev_gold,
                length_buckets: str) -> dict:
    """One bertjax run (length_buckets: the --config.data.length_buckets value, or empty for max_seq_length)."""
    command = [
        sys.executable, str(REPO / "main.py"), "--config=configs/finetune_glue.py", f"--workdir={workdir}",
        f"--config.task={task.name}", f"--config.data.dir={data_dir}", f"--config.train.init_from={args.init}",
        f"--config.data.max_seq_length={args.max_seq_length}", f"--config.train.batch_size={args.batch_size}",
        f"--config.train.num_epochs={args.epochs}", f"--config.optimizer.name=adamw",
        f"--config.optimizer.learning_rate={args.learning_rate}", "--config.optimizer.warmup_fraction=0.1",
        "--config.optimizer.schedule=warmup_linear", "--config.optimizer.weight_decay=0.01",
        "--config.optimizer.eps=1e-6", "--config.optimizer.clip_norm=1.0", "--config.dtype=float32",
        "--config.model.hidden_dropout_prob=0.1", "--config.model.attention_probs_dropout_prob=0.1",
        f"--config.train.seed={seed}", f"--config.data.seed={seed}", f"--config.log.every_steps={steps_per_epoch}",
        f"--config.eval.batch_size={args.eval_batch_size}",
    ] + ([f"--config.data.length_buckets={length_buckets}"] if length_buckets else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = result.stdout + result.stderr
    (workdir.parent / f"{workdir.name}.log").write_text(log)
    if result.returncode != 0:
        raise SystemExit(f"bertjax run failed (exit {result.returncode}):\n{log[-3000:]}")

    # Throughput: one step line per epoch; the first interval starts after step 1 (compilation). The step line's
    # tokens/s counts real (non-padding) tokens, so examples/s comes from the steps/s written with it to TensorBoard.
    steps_per_sec = tensorboard_scalars(workdir, "train/steps_per_sec")
    epochs = []
    for match in STEP_LINE.finditer(log):
        step, tokens_per_sec = int(match.group(1)), float(match.group(2).replace(",", ""))
        steps = steps_per_epoch - 1 if step == steps_per_epoch else steps_per_epoch
        if step not in steps_per_sec:
            raise SystemExit(f"no train/steps_per_sec at step {step} in {workdir / 'tensorboard'}")
        examples_per_sec = steps_per_sec[step] * args.batch_size
        epochs.append({"step": step, "steps": steps, "examples_per_sec": examples_per_sec,
                       "real_tokens_per_sec": tokens_per_sec, "seconds": steps * args.batch_size / examples_per_sec})
    if len(epochs) != args.epochs:
        raise SystemExit(f"expected {args.epochs} step lines in the bertjax log, found {len(epochs)}:\n{log[-3000:]}")
    plan = re.search(r"^length buckets .*$", log, re.MULTILINE)
    evals = [(int(m.group(1)), m.group(2)) for m in EVAL_LINE.finditer(log)]
    last_eval = dict(zip(evals[-1][1].split()[::2], map(float, evals[-1][1].split()[1::2])))

    # Dev metrics from the final evaluation's predictions file, with the same metric code as for transformers.
    rows = (workdir / "predictions_dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    predictions = np.array([task.labels.index(row.split("\t")[1]) for row in rows], np.int64)
    scores = classification.glue_metrics(task, predictions, dev_gold)
    for name, value in scores.items():
        if name in last_eval and abs(last_eval[name] - value) > 1e-3:
            raise SystemExit(f"bertjax: {name} from predictions_dev.tsv {value} != its eval line {last_eval[name]}")
    return {"seed": seed, "metrics": scores, "eval_line": last_eval, "epochs": epochs,
            "examples_per_sec": throughput(epochs), "examples_per_sec_last_epoch": last_epoch_rate(epochs),
            "wall_seconds": wall, "load_before": load_before,
            "load_after": os.getloadavg(), "command": " ".join(command),
            "bucket_plan": plan.group(0) if plan else None}


def tensorboard_scalars(workdir: Path, tag: str) -> dict[int, float]:
    """{step: value} of one scalar in the run's TensorBoard event files (TFRecord framing: length, its CRC, the
    Event proto, its CRC; the CRCs are not checked)."""
    from tensorboardX.proto import event_pb2  # noqa: PLC0415

    values = {}
    for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


def throughput(epochs: list[dict]) -> float:
    """Training examples per second over all epochs' timed steps."""
    return sum(e["examples_per_sec"] * e["seconds"] for e in epochs) / sum(e["seconds"] for e in epochs)


def last_epoch_rate(epochs: list[dict]) -> float | None:
    """Training examples per second over the last epoch, with 2 or more epochs (the steady state: the first epoch
    holds the compilations); None with one."""
    return epochs[-1]["examples_per_sec"] if len(epochs) >= 2 else None


def bertjax_features(workdir: Path, split: str) -> dict:
    paths = sorted((workdir / "features").glob(f"{split}-*.npz"))
    with np.load(paths[-1]) as stored:
        return dict(stored)


# ----------------------------------------------------------------------------------------------------------------
# transformers on PyTorch (in this process)


def hf_tokenize(args, train_examples, dev_examples) -> dict:
    """{"train", "dev"}: the examples tokenized by the init directory's BertTokenizerFast, padded to max_seq_length."""
    from transformers import BertTokenizerFast  # noqa: PLC0415

    tokenizer = BertTokenizerFast.from_pretrained(args.init)
    return {"train": hf_encode(tokenizer, train_examples, args.max_seq_length),
            "dev": hf_encode(tokenizer, dev_examples, args.max_seq_length)}


def hf_encode(tokenizer, examples, max_seq_length: int) -> dict:
    texts_b = [e.text_b for e in examples]
    encoded = tokenizer([e.text_a for e in examples], texts_b if any(t is not None for t in texts_b) else None,
                        max_length=max_seq_length, truncation="longest_first", padding="max_length",
                        return_tensors="np")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
            "token_type_ids": encoded["token_type_ids"]}


def hf_batch(tensors: dict, index, padding: str) -> dict:
    """The rows `index` of max_length-padded tensors; with padding "longest", cut to the batch's longest row (what
    transformers' DataCollatorWithPadding gives: right padding, so the cut keeps every real token)."""
    batch = {k: v[index] for k, v in tensors.items()}
    if padding == "longest":
        longest = int(batch["attention_mask"].sum(1).max())
        batch = {k: v[:, :longest] for k, v in batch.items()}
    return batch


def run_hf(args, task, tokenized: dict, train_examples, dev_examples, seed: int, steps_per_epoch: int,
           padding: str) -> dict:
    """One transformers run on the hf_tokenize output; padding "max_length" or "longest" (see hf_batch)."""
    import torch  # noqa: PLC0415
    from transformers import BertForSequenceClassification  # noqa: PLC0415
    from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = BertForSequenceClassification.from_pretrained(
        args.init, num_labels=len(task.labels), hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        torch_dtype=torch.float32)
    train = {k: torch.from_numpy(v) for k, v in tokenized["train"].items()}
    train_labels = torch.from_numpy(label_ids(task, train_examples))
    dev = {k: torch.from_numpy(v) for k, v in tokenized["dev"].items()}

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(part in n for part in NO_DECAY_NAME_PARTS)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(part in n for part in NO_DECAY_NAME_PARTS)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-6)
    num_steps = args.epochs * steps_per_epoch
    warmup = int(round(0.1 * num_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, num_steps)
    generator = torch.Generator().manual_seed(seed)
    load_before = os.getloadavg()
    start = time.perf_counter()
    epochs = []
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        epoch_start, losses, counted = None, [], 0
        for b in range(steps_per_epoch):
            if epoch_start is None and (epoch > 0 or b == 1):  # step 1 left out, as bertjax's compile step
                epoch_start = time.perf_counter()
            index = order[b * args.batch_size:(b + 1) * args.batch_size]
            outputs = model(**hf_batch(train, index, padding), labels=train_labels[index])
            outputs.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(outputs.loss))
            counted += epoch_start is not None
        seconds = time.perf_counter() - epoch_start
        epochs.append({"epoch": epoch + 1, "steps": counted, "seconds": seconds, "loss": float(np.mean(losses)),
                       "examples_per_sec": counted * args.batch_size / seconds})
    train_wall = time.perf_counter() - start

    model.eval()
    predictions = []
    with torch.no_grad():
        for b in range(0, len(dev_examples), args.eval_batch_size):
            logits = model(**hf_batch(dev, slice(b, b + args.eval_batch_size), padding)).logits
            predictions.append(logits.argmax(-1).numpy())
    scores = classification.glue_metrics(task, np.concatenate(predictions), label_ids(task, dev_examples))
    total_steps = sum(e["steps"] for e in epochs)
    return {"seed": seed, "metrics": scores, "epochs": epochs,
            "examples_per_sec": total_steps * args.batch_size / sum(e["seconds"] for e in epochs),
            "examples_per_sec_last_epoch": last_epoch_rate(epochs),
            "train_wall_seconds": train_wall, "wall_seconds": time.perf_counter() - start,
            "load_before": load_before, "load_after": os.getloadavg(), "torch_threads": torch.get_num_threads()}


def tokenization_agreement(hf: dict, ours: dict) -> dict:
    same = ((hf["input_ids"] == ours["input_ids"]).all(1) & (hf["attention_mask"] == ours["input_mask"]).all(1)
            & (hf["token_type_ids"] == ours["segment_ids"]).all(1))
    return {"rows": int(len(same)), "identical": int(same.sum()),
            "first_different": [int(i) for i in np.flatnonzero(~same)[:5]]}


# ----------------------------------------------------------------------------------------------------------------
# Report


def machine() -> dict:
    info = machine_info.describe(("jax", "jaxlib", "flax", "optax", "torch", "transformers", "tokenizers", "numpy"))
    try:
        info["torch_threads"] = __import__("torch").get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def summarise(runs: list[dict]) -> dict:
    """One arm's runs: each dev metric in % and each throughput (mean, std, per seed); std None with one seed."""
    def stats(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
                "values": values}

    out = {"metrics": {name: stats([100 * r["metrics"][name] for r in runs]) for name in runs[0]["metrics"]},
           "examples_per_sec": stats([r["examples_per_sec"] for r in runs])}
    last = [r["examples_per_sec_last_epoch"] for r in runs]
    out["examples_per_sec_last_epoch"] = stats(last) if None not in last else None
    return out


def throughput_basis(epochs: int) -> str:
    """Which examples/s the ratios use: the last epoch's with 2 or more epochs, else all steps after the first."""
    return "examples_per_sec_last_epoch" if epochs >= 2 else "examples_per_sec"


def compare(arms: list[dict], runs: dict[str, list[dict]], summary: dict, metric_names: list[str],
            basis: str) -> tuple[list[dict], list[dict]]:
    """(throughput ratios of each bertjax arm over each transformers arm, with their metric differences; metric
    differences of each padding-saving arm over the same framework's max_length arm). Per-seed values pair the
    runs of one seed (run back to back)."""
    names = [a["name"] for a in arms]
    ratios = []
    for ours in (a["name"] for a in arms if a["framework"] == "bertjax"):
        for theirs in (a["name"] for a in arms if a["framework"] == "transformers"):
            ratios.append({
                "bertjax": ours, "transformers": theirs, "basis": basis,
                "ratio": summary[ours][basis]["mean"] / summary[theirs][basis]["mean"],
                "per_seed": [a[basis] / b[basis] for a, b in zip(runs[ours], runs[theirs])],
                "difference": {n: summary[ours]["metrics"][n]["mean"] - summary[theirs]["metrics"][n]["mean"]
                               for n in metric_names}})
    differences = []
    pairs = (("bertjax_buckets", "bertjax_max_length"), ("transformers_longest", "transformers_max_length"))
    for saving, full in pairs:
        if saving not in names or full not in names:
            continue
        entry = {"arm": saving, "baseline": full}
        for n in metric_names:
            a, b = summary[saving]["metrics"][n], summary[full]["metrics"][n]
            std_error = (math.sqrt(a["std"] ** 2 / len(a["values"]) + b["std"] ** 2 / len(b["values"]))
                         if a["std"] is not None and b["std"] is not None else None)
            entry[n] = {"difference": a["mean"] - b["mean"], "std": a["std"], "baseline_std": b["std"],
                        "std_error": std_error, "per_seed": [x - y for x, y in zip(a["values"], b["values"])]}
        differences.append(entry)
    return ratios, differences


def write_report(report: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    s, m, a = report["summary"], report["machine"], report["args"]
    arms = report["arms"]
    metric_names = list(s[arms[0]["name"]]["metrics"])
    last_epoch = a["epochs"] >= 2
    runs = {arm["name"]: [r for r in report["runs"] if r["arm"] == arm["name"]] for arm in arms}

    def mean_std(cell: dict, digits: int = 2) -> str:
        return f"{cell['mean']:.{digits}f}" + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else "")

    def values(cell: dict, digits: int = 2) -> str:
        return ", ".join(f"{v:.{digits}f}" for v in cell["values"])

    rate_columns = ["examples/s after step 1"] + (["examples/s last epoch"] if last_epoch else [])
    lines = [
        "# Fine-tuning: bertjax vs transformers (PyTorch)", "",
        f"{m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX flags found'}), {m['cores']} cores, Python "
        f"{m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) +
        f"; torch threads {m.get('torch_threads')}, JAX on CPU (XLA's own thread pool). "
        f"Made by `{report['command']}` ({report['date']}), {report['total_minutes']:.1f} min in all.", "",
        f"Task {a['task']}: {report['data']['train_rows']} train rows, {report['data']['dev_rows']} dev rows; "
        f"init `{a['init']}`; max_seq_length {a['max_seq_length']}, batch {a['batch_size']}, {a['epochs']} epochs "
        f"= {report['num_train_steps']} steps ({report['warmup_steps']} warmup), lr {a['learning_rate']}, "
        f"seeds {a['seeds']}; runs interleaved by seed (seed {a['seeds'][0]} of every arm, then the next seed).", "",
        f"Data: {a['data_source'] or a['data_dir']}", "",
        "| arm | padding | " + " | ".join(f"dev {n} (%) mean ± std | per seed" for n in metric_names) + " | " +
        " | ".join(f"{c} (mean ± std) | per seed" for c in rate_columns) + " |",
        "|---|---|" + "---|---|" * (len(metric_names) + len(rate_columns)),
    ]
    for arm in arms:
        row = s[arm["name"]]
        cells = [f"{mean_std(row['metrics'][n])} | {values(row['metrics'][n])}" for n in metric_names]
        cells += [f"{mean_std(row[k], 1)} | {values(row[k], 1)}" for k in
                  ["examples_per_sec"] + (["examples_per_sec_last_epoch"] if last_epoch else [])]
        lines.append(f"| {arm['name']} | {padding_words(arm)} | " + " | ".join(cells) + " |")
    lines.append("")

    if report["throughput_ratios"]:
        basis_words = (f"the last epoch's examples/s (epoch {a['epochs']} of {a['epochs']}; bertjax's length "
                       "buckets compile each batch shape on its first use, in epoch 1)" if last_epoch else
                       "examples/s over all training steps after the first (one epoch: with length buckets this "
                       "includes compiling each further batch shape)")
        lines += [f"Throughput ratios use {basis_words}: the ratio of the arms' means, then per seed (paired: the "
                  "arms' runs of one seed ran in the same round). Metric differences are of the arms' means.", ""]
        for r in report["throughput_ratios"]:
            diffs = ", ".join(f"dev {n} {r['difference'][n]:+.2f} points" for n in metric_names)
            lines.append(f"- {r['bertjax']} / {r['transformers']}: **{r['ratio']:.2f}x** (per seed "
                         + ", ".join(f"{x:.2f}x" for x in r["per_seed"]) + f"); {diffs}.")
        lines.append("")
    if report["padding_differences"]:
        lines += ["Padding against accuracy: each padding-saving arm minus the same framework's max_length arm (a "
                  "difference within about two standard errors is within seed noise):", ""]
    for d in report["padding_differences"]:
        for n in metric_names:
            e, ours, base = d[n], s[d["arm"]]["metrics"][n]["mean"], s[d["baseline"]]["metrics"][n]["mean"]
            noise = (f"{ours:.2f} ± {e['std']:.2f} against {base:.2f} ± {e['baseline_std']:.2f}, mean ± std over "
                     f"seeds; standard error of the difference {e['std_error']:.2f}" if e["std_error"] is not None
                     else f"{ours:.2f} against {base:.2f}; one seed, so no seed noise measured")
            lines.append(f"- dev {n}, {d['arm']} − {d['baseline']}: **{e['difference']:+.2f} points** ({noise}; "
                         "per seed " + ", ".join(f"{x:+.2f}" for x in e["per_seed"]) + ").")
    if report["padding_differences"]:
        lines.append("")
    bucket_runs = runs.get("bertjax_buckets")
    if bucket_runs and bucket_runs[0].get("bucket_plan"):
        lines += [f"bertjax's bucket plan (bertjax_buckets, seed {bucket_runs[0]['seed']}): "
                  f"`{bucket_runs[0]['bucket_plan']}`", ""]
    if report["tokenization"]:
        t = report["tokenization"]
        lines += [f"Tokenization (bertjax's cached features vs BertTokenizerFast): train {t['train']['identical']}"
                  f"/{t['train']['rows']} rows identical, dev {t['dev']['identical']}/{t['dev']['rows']}.", ""]
    lines += [
        "Per run, in the order run (examples/s per epoch; load average over 1, 5, 15 min before the run):", "",
        "| arm | seed | " + " | ".join(metric_names) + " | examples/s per epoch | wall s | load before |",
        "|---|---|" + "---|" * len(metric_names) + "---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(f"{100 * r['metrics'][n]:.2f}"
                                                                 for n in metric_names) +
                     " | " + ", ".join(f"{e['examples_per_sec']:.1f}" for e in r["epochs"]) +
                     f" | {r['wall_seconds']:.0f} | {[round(x, 2) for x in r['load_before']]} |")
    lines += [
        "",
        "Recipe for every arm: AdamW (bias-corrected, b1 0.9, b2 0.999, eps 1e-6), weight decay 0.01 except "
        "LayerNorm params and biases, global-norm clipping 1.0, linear warmup from 0 over 10% of the steps then "
        "linear decay to 0, dropout 0.1 (hidden, attention, classifier), float32, padding as in the table, the last "
        "partial batch of each epoch dropped. Same seed value for every arm, each framework's own random streams "
        "(data order, classifier init, dropout; bertjax's length buckets also regroup its data order), so single "
        "runs differ; compare the means. Dev metrics are scored with bertjax's GLUE metric code for every arm "
        "(bertjax's from its predictions_dev.tsv of the final evaluation). Throughput: training examples per second "
        "over the training steps only — the first step (bertjax: the XLA compilation) and the evaluations left out; "
        "bertjax's interval includes its asynchronous checkpoint save at each epoch's end, and with length buckets "
        "its first epoch compiles each further batch shape (a shape first used later compiles then). "
        "Wall s: bertjax's whole subprocess (imports, feature encoding, compilation, evaluations at each epoch's "
        "end, checkpoints, exports); transformers' training plus the final evaluation (model loading and "
        "tokenization not counted). The machine is shared: wall-clock rates move with its load.",
        "",
    ]
    for arm in arms:
        if arm["framework"] == "bertjax":
            first = runs[arm["name"]][0]
            lines += [f"{arm['name']} command (seed {first['seed']}): `{first['command']}`", ""]
    output.with_suffix(".md").write_text("\n".join(lines))


def padding_words(arm: dict) -> str:
    """An arm's padding in words."""
    if arm["padding"] == "buckets":
        return f"length buckets `{arm['length_buckets']}`"
    if arm["padding"] == "longest":
        return "each batch to its longest row"
    return "every row to max_seq_length"


def parse_arms(args) -> list[dict]:
    """The arms to run, from --arms, or without it from the older flags (--length_buckets, --hf_padding)."""
    if args.arms:
        names = [n.strip() for n in args.arms.split(",") if n.strip()]
        unknown = [n for n in names if n not in ARMS]
        if unknown or not names:
            raise SystemExit(f"--arms: unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
        if len(set(names)) != len(names):
            raise SystemExit(f"--arms names an arm twice: {args.arms}")
        if args.hf_padding:
            raise SystemExit("--hf_padding is for runs without --arms: name transformers_longest or "
                             "transformers_max_length in --arms instead")
        if args.length_buckets and "bertjax_buckets" not in names:
            raise SystemExit("--length_buckets sets the bertjax_buckets arm's buckets, which --arms does not name")
    else:
        names = ["bertjax_buckets" if args.length_buckets else "bertjax_max_length",
                 f"transformers_{args.hf_padding or 'max_length'}"]
    return [{"name": n, "framework": ARMS[n][0], "padding": ARMS[n][1],
             "length_buckets": (args.length_buckets or "auto") if ARMS[n][1] == "buckets" else ""} for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data_dir", required=True, type=Path)
    parser.add_argument("--init", required=True, help="a Hugging Face BERT directory (BertModel or a head model)")
    parser.add_argument("--train_examples", type=int, default=2000, help="first N train rows; 0 = all")
    parser.add_argument("--dev_examples", type=int, default=872, help="first M dev rows; 0 = all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--data_source", default="", help="where the data came from (written into the results)")
    parser.add_argument("--arms", default="",
                        help=f"comma-separated arms, of {', '.join(ARMS)} (see the module docstring); empty: the two "
                        "arms that the older flags --length_buckets and --hf_padding give")
    parser.add_argument("--length_buckets", default="",
                        help="bertjax's --config.data.length_buckets (auto, or lengths like 32,64): the "
                        "bertjax_buckets arm's (default auto); without --arms, set = bertjax_buckets instead of "
                        "bertjax_max_length")
    parser.add_argument("--hf_padding", choices=("max_length", "longest"), default=None,
                        help="without --arms: transformers pads every row to max_seq_length (default), or each "
                        "batch to its longest row")
    parser.add_argument("--output", type=Path, default=RESULTS / "finetune_vs_hf",
                        help="results path without suffix (.json and .md are written)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (workdirs, logs)")
    args = parser.parse_args()
    task = classification.glue_task(args.task)
    if task.labels is None:
        raise SystemExit("regression (stsb) is not supported by this benchmark")
    arms = parse_arms(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="finetune_vs_hf_"))
    try:
        data_dir = tmp / "data"
        counts = subsample(task, args.data_dir, data_dir, args.train_examples, args.dev_examples)
        train_examples = classification.read_glue(task, data_dir, "train")
        dev_examples = classification.read_glue(task, data_dir, "dev")
        dev_gold = label_ids(task, dev_examples)
        steps_per_epoch = len(train_examples) // args.batch_size
        num_steps = args.epochs * steps_per_epoch
        tokenized = hf_tokenize(args, train_examples, dev_examples)
        print(f"{task.name}: {len(train_examples)} train, {len(dev_examples)} dev; {steps_per_epoch} steps/epoch, "
              f"{num_steps} steps; seeds {seeds}; arms {', '.join(a['name'] for a in arms)}", flush=True)

        runs = []
        for seed in seeds:  # interleaved: seed 0 of every arm, then seed 1, ...
            for arm in arms:
                if arm["framework"] == "bertjax":
                    run = run_bertjax(args, task, data_dir, tmp / f"{arm['name']}_seed{seed}", seed, steps_per_epoch,
                                      dev_gold, arm["length_buckets"])
                else:
                    run = run_hf(args, task, tokenized, train_examples, dev_examples, seed, steps_per_epoch,
                                 arm["padding"])
                runs.append({"arm": arm["name"], **run})
                last = run["examples_per_sec_last_epoch"]
                print(f"{arm['name']:<24} seed {seed}: {run['metrics']} {run['examples_per_sec']:.1f} examples/s"
                      + (f" ({last:.1f} last epoch)" if last is not None else "") +
                      f", wall {run['wall_seconds']:.0f}s, load before {[round(x, 2) for x in run['load_before']]}",
                      flush=True)

        first_bertjax = next((a for a in arms if a["framework"] == "bertjax"), None)
        agreement = None if first_bertjax is None else {
            split: tokenization_agreement(tokenized[split],
                                          bertjax_features(tmp / f"{first_bertjax['name']}_seed{seeds[0]}", split))
            for split in ("train", "dev")}
        by_arm = {a["name"]: [r for r in runs if r["arm"] == a["name"]] for a in arms}
        summary = {name: summarise(arm_runs) for name, arm_runs in by_arm.items()}
        metric_names = list(task.metrics)
        basis = throughput_basis(args.epochs)
        ratios, differences = compare(arms, by_arm, summary, metric_names, basis)
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python bench/finetune_vs_hf.py " + shlex.join(sys.argv[1:]),
            "args": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "seeds": seeds},
            "machine": machine(),
            "data": {"train_rows": counts[task.train_file], "dev_rows": counts[task.dev_files[0]]},
            "num_train_steps": num_steps, "warmup_steps": int(round(0.1 * num_steps)),
            "arms": arms,
            "summary": summary,
            "throughput_basis": basis,
            "throughput_ratios": ratios,
            "padding_differences": differences,
            "tokenization": agreement,
            "runs": runs,
            "total_minutes": (time.perf_counter() - started) / 60,
        }
        write_report(report, args.output)
        print(Path(args.output.with_suffix(".md")).read_text())
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
