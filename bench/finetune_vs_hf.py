"""Benchmark: fine-tune one Hugging Face checkpoint with bertjax and with transformers (PyTorch), side by side.

    python bench/finetune_vs_hf.py --task sst2 --data_dir glue/SST-2 --init path/to/hf_bert \
        [--train_examples 2000] [--dev_examples 872] [--epochs 2] [--seeds 0,1,2] [--max_seq_length 64] \
        [--batch_size 32] [--learning_rate 5e-5] [--data_source "where the files came from"]

Both frameworks see the same files: the first --train_examples rows of the task's train file and the first
--dev_examples rows of its dev file, copied (header kept) into a temporary GLUE-format directory. GLUE tasks with
labels (cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli; not stsb) are supported.

Recipe, the same for both (the BERT paper's, configs/finetune_glue.py): AdamW (bias-corrected, b1 0.9, b2 0.999,
eps 1e-6), weight decay 0.01 on every param but LayerNorm params and biases (bertjax.train_state.decay_mask),
gradients clipped to global norm 1.0, lr warming up linearly from 0 over round(10%) of the steps then decaying
linearly to 0, epochs x (train examples // batch) steps (the last partial batch of an epoch dropped), dropout 0.1,
float32, every sequence padded to --max_seq_length.

- bertjax: the real command, `main.py --config=configs/finetune_glue.py` in a subprocess per seed
  (train.seed = data.seed = the seed). The dev metrics are scored from its predictions_dev.tsv (written by the final
  evaluation) with bertjax's GLUE metric code, and checked against its last `eval step` line. Throughput comes from
  its step lines (tokens/s over each epoch; the first step, which compiles, and the evaluations are left out),
  logged once per epoch (--config.log.every_steps = steps per epoch).
- transformers: `BertForSequenceClassification.from_pretrained(init)` in a plain PyTorch loop in this process,
  torch.manual_seed(seed) before loading (the classifier's init) and a torch.Generator(seed) for the shuffling;
  texts tokenized by the init directory's BertTokenizerFast. Throughput over each epoch's training steps, the first
  step of the first epoch left out as for bertjax. The dev metrics use the same metric code as bertjax.

The seed policy is "the same seed value, each framework's own random streams": data order, classifier init and
dropout masks differ between the frameworks, so compare means over seeds, not single runs. The tokenizations are
compared row by row (bertjax's cached features against BertTokenizerFast's ids) and the agreement reported.

Runs are sequential (never two at once). Results go to bench/results/finetune_vs_hf.json and .md (or --output).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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

NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")  # as bertjax.train_state (kept free of a JAX import)
STEP_LINE = re.compile(r"step (\d+): .*tokens/s ([\d,.]+)")
EVAL_LINE = re.compile(r"eval step (\d+): (.*)")


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


def run_bertjax(args, task, data_dir: Path, workdir: Path, seed: int, steps_per_epoch: int, dev_gold) -> dict:
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
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = result.stdout + result.stderr
    (workdir.parent / f"{workdir.name}.log").write_text(log)
    if result.returncode != 0:
        raise SystemExit(f"bertjax run failed (exit {result.returncode}):\n{log[-3000:]}")

    # Throughput: one step line per epoch; the first interval starts after step 1 (compilation).
    epochs = []
    for match in STEP_LINE.finditer(log):
        step, tokens_per_sec = int(match.group(1)), float(match.group(2).replace(",", ""))
        steps = steps_per_epoch - 1 if step == steps_per_epoch else steps_per_epoch
        examples_per_sec = tokens_per_sec / args.max_seq_length
        epochs.append({"step": step, "steps": steps, "examples_per_sec": examples_per_sec,
                       "seconds": steps * args.batch_size / examples_per_sec})
    if len(epochs) != args.epochs:
        raise SystemExit(f"expected {args.epochs} step lines in the bertjax log, found {len(epochs)}:\n{log[-3000:]}")
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
            "examples_per_sec": throughput(epochs), "wall_seconds": wall, "load_before": load_before,
            "load_after": os.getloadavg(), "command": " ".join(command)}


def throughput(epochs: list[dict]) -> float:
    """Training examples per second over all epochs' timed steps."""
    return sum(e["examples_per_sec"] * e["seconds"] for e in epochs) / sum(e["seconds"] for e in epochs)


def bertjax_features(workdir: Path, split: str) -> dict:
    paths = sorted((workdir / "features").glob(f"{split}-*.npz"))
    with np.load(paths[-1]) as stored:
        return dict(stored)


# ----------------------------------------------------------------------------------------------------------------
# transformers on PyTorch (in this process)


def hf_encode(tokenizer, examples, max_seq_length: int) -> dict:
    texts_b = [e.text_b for e in examples]
    encoded = tokenizer([e.text_a for e in examples], texts_b if any(t is not None for t in texts_b) else None,
                        max_length=max_seq_length, truncation="longest_first", padding="max_length",
                        return_tensors="np")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
            "token_type_ids": encoded["token_type_ids"]}


def run_hf(args, task, train_examples, dev_examples, seed: int, steps_per_epoch: int) -> dict:
    import torch  # noqa: PLC0415
    from transformers import BertForSequenceClassification, BertTokenizerFast  # noqa: PLC0415
    from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

    torch.manual_seed(seed)
    np.random.seed(seed)
    tokenizer = BertTokenizerFast.from_pretrained(args.init)
    model = BertForSequenceClassification.from_pretrained(
        args.init, num_labels=len(task.labels), hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        torch_dtype=torch.float32)
    train = {k: torch.from_numpy(v) for k, v in hf_encode(tokenizer, train_examples, args.max_seq_length).items()}
    train_labels = torch.from_numpy(label_ids(task, train_examples))
    dev = {k: torch.from_numpy(v) for k, v in hf_encode(tokenizer, dev_examples, args.max_seq_length).items()}

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
            outputs = model(**{k: v[index] for k, v in train.items()}, labels=train_labels[index])
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
            logits = model(**{k: v[b:b + args.eval_batch_size] for k, v in dev.items()}).logits
            predictions.append(logits.argmax(-1).numpy())
    scores = classification.glue_metrics(task, np.concatenate(predictions), label_ids(task, dev_examples))
    total_steps = sum(e["steps"] for e in epochs)
    return {"seed": seed, "metrics": scores, "epochs": epochs,
            "examples_per_sec": total_steps * args.batch_size / sum(e["seconds"] for e in epochs),
            "train_wall_seconds": train_wall, "wall_seconds": time.perf_counter() - start,
            "load_before": load_before, "load_after": os.getloadavg(), "torch_threads": torch.get_num_threads(),
            "tokenized": {"train": hf_encode(tokenizer, train_examples, args.max_seq_length),
                          "dev": hf_encode(tokenizer, dev_examples, args.max_seq_length)}}


def tokenization_agreement(hf: dict, ours: dict) -> dict:
    same = ((hf["input_ids"] == ours["input_ids"]).all(1) & (hf["attention_mask"] == ours["input_mask"]).all(1)
            & (hf["token_type_ids"] == ours["segment_ids"]).all(1))
    return {"rows": int(len(same)), "identical": int(same.sum()),
            "first_different": [int(i) for i in np.flatnonzero(~same)[:5]]}


# ----------------------------------------------------------------------------------------------------------------
# Report


def machine() -> dict:
    info = {"python": platform.python_version(), "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")
        info["cpu_flags"] = [f for f in wanted if flags and f in flags.group(1).split()]
    except OSError:
        info["cpu"] = platform.processor()
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "tokenizers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    info["versions"] = versions
    return info


def summarise(runs: list[dict]) -> dict:
    out = {}
    for name in runs[0]["metrics"]:
        values = [100 * r["metrics"][name] for r in runs]
        out[name] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "values": values}
    rates = [r["examples_per_sec"] for r in runs]
    out["examples_per_sec"] = {"mean": statistics.mean(rates), "values": rates}
    return out


def write_report(report: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    s, m, a = report["summary"], report["machine"], report["args"]
    metric_names = [n for n in s["bertjax"] if n != "examples_per_sec"]
    lines = [
        "# Fine-tuning: bertjax vs transformers (PyTorch)", "",
        f"{m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX flags found'}), {m['cores']} cores, Python "
        f"{m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) +
        f"; torch threads {report['hf_runs'][0]['torch_threads']}, JAX on CPU (XLA's own thread pool). "
        f"Made by `{report['command']}` ({report['date']}), {report['total_minutes']:.1f} min in all.", "",
        f"Task {a['task']}: {report['data']['train_rows']} train rows, {report['data']['dev_rows']} dev rows; "
        f"init `{a['init']}`; max_seq_length {a['max_seq_length']}, batch {a['batch_size']}, {a['epochs']} epochs "
        f"= {report['num_train_steps']} steps ({report['warmup_steps']} warmup), lr {a['learning_rate']}, "
        f"seeds {a['seeds']}.", "",
        f"Data: {a['data_source'] or a['data_dir']}", "",
        "| framework | " + " | ".join(f"dev {n} (%) mean ± std" for n in metric_names) +
        " | per seed | train examples/s (mean) | per seed |",
        "|---|" + "---|" * len(metric_names) + "---|---|---|",
    ]
    for framework in ("bertjax", "transformers"):
        row = s[framework]
        cells = [f"{row[n]['mean']:.2f} ± {row[n]['std']:.2f}" for n in metric_names]
        per_seed = "; ".join(", ".join(f"{v:.2f}" for v in row[n]["values"]) for n in metric_names)
        rates = ", ".join(f"{v:.1f}" for v in row["examples_per_sec"]["values"])
        lines.append(f"| {framework} | " + " | ".join(cells) +
                     f" | {per_seed} | {row['examples_per_sec']['mean']:.1f} | {rates} |")
    main = metric_names[0]
    lines += [
        "",
        f"bertjax − transformers, dev {main}: {report['difference'][main]:+.2f} points (mean over seeds). "
        f"Throughput bertjax / transformers: {report['throughput_ratio']:.2f}x.",
        "",
        f"Tokenization (bertjax's cached features vs BertTokenizerFast): train {report['tokenization']['train']['identical']}"
        f"/{report['tokenization']['train']['rows']} rows identical, dev {report['tokenization']['dev']['identical']}"
        f"/{report['tokenization']['dev']['rows']}.",
        "",
        "Per run (examples/s per epoch; load average before the run):", "",
        "| framework | seed | " + " | ".join(metric_names) + " | examples/s per epoch | wall s | load before |",
        "|---|---|" + "---|" * len(metric_names) + "---|---|---|",
    ]
    for framework, runs in (("bertjax", report["bertjax_runs"]), ("transformers", report["hf_runs"])):
        for r in runs:
            lines.append(f"| {framework} | {r['seed']} | " + " | ".join(f"{100 * r['metrics'][n]:.2f}"
                                                                      for n in metric_names) +
                         " | " + ", ".join(f"{e['examples_per_sec']:.1f}" for e in r["epochs"]) +
                         f" | {r['wall_seconds']:.0f} | {[round(x, 2) for x in r['load_before']]} |")
    lines += [
        "",
        "Recipe for both: AdamW (bias-corrected, b1 0.9, b2 0.999, eps 1e-6), weight decay 0.01 except LayerNorm "
        "params and biases, global-norm clipping 1.0, linear warmup from 0 over 10% of the steps then linear decay "
        "to 0, dropout 0.1 (hidden, attention, classifier), float32, sequences padded to max_seq_length, the last "
        "partial batch of each epoch dropped. Same seed value for both, each framework's own random streams (data "
        "order, classifier init, dropout), so single runs differ; compare the means. Dev metrics are scored with "
        "bertjax's GLUE metric code for both (bertjax's from its predictions_dev.tsv of the final evaluation). "
        "Throughput: training examples per second over the training steps only — the first step (bertjax: the "
        "XLA compilation) and the evaluations left out; bertjax's interval includes its asynchronous checkpoint "
        "save at each epoch's end. Wall s: bertjax's whole subprocess (imports, feature encoding, compilation, "
        "evaluations at each epoch's end, checkpoints, exports); transformers' training plus the final evaluation "
        "(model loading and tokenization not counted). The machine is shared: wall-clock rates move with its load.",
        "",
        f"bertjax command (seed {report['bertjax_runs'][0]['seed']}): `{report['bertjax_runs'][0]['command']}`",
        "",
    ]
    output.with_suffix(".md").write_text("\n".join(lines))


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
    parser.add_argument("--output", type=Path, default=RESULTS / "finetune_vs_hf",
                        help="results path without suffix (.json and .md are written)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (workdirs, logs)")
    args = parser.parse_args()
    task = classification.glue_task(args.task)
    if task.labels is None:
        raise SystemExit("regression (stsb) is not supported by this benchmark")
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
        print(f"{task.name}: {len(train_examples)} train, {len(dev_examples)} dev; {steps_per_epoch} steps/epoch, "
              f"{num_steps} steps; seeds {seeds}", flush=True)

        bertjax_runs, hf_runs = [], []
        for seed in seeds:
            run = run_bertjax(args, task, data_dir, tmp / f"bertjax_seed{seed}", seed, steps_per_epoch, dev_gold)
            bertjax_runs.append(run)
            print(f"bertjax      seed {seed}: {run['metrics']} {run['examples_per_sec']:.1f} examples/s, "
                  f"wall {run['wall_seconds']:.0f}s", flush=True)
            run = run_hf(args, task, train_examples, dev_examples, seed, steps_per_epoch)
            hf_runs.append(run)
            print(f"transformers seed {seed}: {run['metrics']} {run['examples_per_sec']:.1f} examples/s, "
                  f"wall {run['wall_seconds']:.0f}s", flush=True)

        features = tmp / f"bertjax_seed{seeds[0]}"
        agreement = {split: tokenization_agreement(hf_runs[0]["tokenized"][split], bertjax_features(features, split))
                     for split in ("train", "dev")}
        for run in hf_runs:
            del run["tokenized"]
        summary = {"bertjax": summarise(bertjax_runs), "transformers": summarise(hf_runs)}
        metric_names = list(task.metrics)
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python bench/finetune_vs_hf.py " + shlex.join(sys.argv[1:]),
            "args": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "seeds": seeds},
            "machine": machine(),
            "data": {"train_rows": counts[task.train_file], "dev_rows": counts[task.dev_files[0]]},
            "num_train_steps": num_steps, "warmup_steps": int(round(0.1 * num_steps)),
            "summary": summary,
            "difference": {n: summary["bertjax"][n]["mean"] - summary["transformers"][n]["mean"]
                           for n in metric_names},
            "throughput_ratio": summary["bertjax"]["examples_per_sec"]["mean"] /
            summary["transformers"]["examples_per_sec"]["mean"],
            "tokenization": agreement,
            "bertjax_runs": bertjax_runs, "hf_runs": hf_runs,
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
