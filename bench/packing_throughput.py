"""Sequence packing, measured: padding removed and real (non-pad) tokens/s of the train step, packed vs unpacked.

  python bench/packing_throughput.py --input_file=data/demo_ko/corpus.txt \\
      --vocab_file=workdir/demo_ko/data/vocab/vocab.txt --name="Korean demo corpus" [--seq 512 --size mini]

For one corpus: `create_pretraining_data` makes the same pairs twice at --seq (the original algorithm, dupe factor
--dupe_factor), unpacked and with --pack; both datasets' padding fractions come from their summaries. Then the
train step main.py runs (configs/base.py at --size, float32, one process) trains on batches of each, interleaved
step by step from the same initial state, with the batches read beforehand (input time is not counted). Real
tokens/s counts only input_mask tokens; pairs/s counts sentence pairs (rows unpacked, next_sentence_weights
packed), the work the original would do per step. Gains are paired: the median over rounds of the per-round ratio.
Each corpus is one row of --out (rows of other corpora already there are kept; raw numbers beside it as .json).
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bertjax import run_config, sharding, task, train  # noqa: E402
from bertjax.data import create_pretraining_data as cpd  # noqa: E402
from bertjax.data import pipeline, vocab_files  # noqa: E402
from configs import base as base_config  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "packing.md")


def build(input_file, vocab_file, directory, seq, predictions, dupe_factor, max_pairs):
    """The unpacked and packed datasets of the corpus; returns their summaries."""
    common = dict(max_seq_length=seq, max_predictions_per_seq=predictions, dupe_factor=dupe_factor,
                  show_progress=False)
    return {name: cpd.create_pretraining_data(input_file, os.path.join(directory, name), vocab_file,
                                              max_pairs_per_seq=pairs, **common)
            for name, pairs in (("unpacked", 0), ("packed", max_pairs))}


def make_trainer(size, seq, predictions, batch, vocab_size):
    """The train step of main.py (configs/base.py) at this size, float32, on this machine's devices."""
    config = base_config.get_config()
    config.model.size = size
    config.model.vocab_size = vocab_size
    config.data.max_seq_length = seq
    config.data.max_predictions_per_seq = predictions
    config.train.batch_size = batch
    config.eval.batch_size = batch
    config.optimizer.warmup_steps = 0
    config.dtype = "float32"
    run_config.validate(config, jax.device_count(), jax.process_count())
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp)
    return train.Trainer(config, run_config.bert_config(config, vocab_size), mesh,
                         task.pretraining_objective(config)), mesh


def measure(trainer, mesh, data_dirs, batch, steps, warmup):
    """Interleaved step times per dataset, with the real tokens and pairs of each timed batch."""
    runs = {}
    with jax.set_mesh(mesh):
        for name, data_dir in data_dirs.items():
            iterator = pipeline.create_iterator(data_dir, "train", global_batch_size=batch, seed=0)
            host = [next(iterator) for _ in range(steps + warmup)]
            batches = [trainer.global_batch(b) for b in host]
            state = trainer.initial_state()
            compiled = trainer.jit_train_step.lower(state, batches[0]).compile()
            pairs = [float(b["next_sentence_weights"].sum()) if "next_sentence_weights" in b else float(len(b["input_ids"]))
                     for b in host]
            runs[name] = dict(compiled=compiled, state=state, batches=batches, seconds=[],
                              real_tokens=[float(b["input_mask"].sum()) for b in host], pairs=pairs)
        for index in range(warmup + steps):
            for run in runs.values():
                start = time.perf_counter()
                run["state"], metrics = run["compiled"](run["state"], run["batches"][index])
                jax.block_until_ready((run["state"], metrics))
                if index >= warmup:
                    run["seconds"].append(time.perf_counter() - start)
    for run in runs.values():
        run["real_tokens"], run["pairs"] = run["real_tokens"][warmup:], run["pairs"][warmup:]
        for key in ("compiled", "state", "batches"):
            del run[key]
    return runs


def summarize(name, input_file, summaries, runs, args):
    """One result row (a dict) from the datasets' summaries and the timed steps."""
    row = {"name": name, "input_file": input_file, "seq": args.seq, "size": args.size, "batch": args.batch,
           "max_pairs_per_seq": args.max_pairs_per_seq, "dupe_factor": args.dupe_factor,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "load": os.getloadavg()[0], "steps": args.steps}
    for key, run in runs.items():
        seconds = np.array(run["seconds"])
        row[key] = {"instances": summaries[key]["instances"], "rows": summaries[key]["rows"],
                    "padding_fraction": summaries[key]["padding_fraction"],
                    "step_ms": 1000 * statistics.median(seconds),
                    "real_tokens_per_s": float(np.sum(run["real_tokens"]) / seconds.sum()),
                    "pairs_per_s": float(np.sum(run["pairs"]) / seconds.sum()),
                    "real_tokens_per_step": float(np.mean(run["real_tokens"]))}
    per_round = [(p_tokens / p_s) / (u_tokens / u_s) for p_tokens, p_s, u_tokens, u_s in
                 zip(runs["packed"]["real_tokens"], runs["packed"]["seconds"], runs["unpacked"]["real_tokens"],
                     runs["unpacked"]["seconds"])]
    row["real_tokens_gain_paired"] = statistics.median(per_round)
    row["step_time_ratio_paired"] = statistics.median(
        p / u for p, u in zip(runs["packed"]["seconds"], runs["unpacked"]["seconds"]))
    return row


def render(rows):
    """The markdown results file."""
    lines = ["# Sequence packing with NSP: padding removed and real tokens/s gained", "",
             "Made by `python bench/packing_throughput.py` (one row per corpus; the command of each row is in "
             "`packing.json`). The same pairs (original algorithm, static masks) unpacked and packed "
             "(`create_pretraining_data --pack`); the train step of main.py (configs/base.py at the size given, "
             "float32, AdamW, dropout on) on batches of each, interleaved step by step on this machine "
             f"({os.cpu_count()}-core CPU). Real tokens exclude padding; pairs/s is sentence pairs trained per "
             "second. Gain = median over rounds of (packed real tokens/s) / (unpacked real tokens/s) in the same "
             "round.", "",
             "| corpus | seq | model, batch | pairs -> rows (unpacked / packed) | padding unpacked | padding packed | "
             "step ms unpacked / packed | real tokens/s unpacked | real tokens/s packed | gain (paired) | pairs/s "
             "unpacked / packed | load | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        u, p = row["unpacked"], row["packed"]
        lines.append(
            f"| {row['name']} | {row['seq']} | {row['size']}, {row['batch']} | {u['instances']:,} -> {u['rows']:,} / "
            f"{p['rows']:,} (K={row['max_pairs_per_seq']}) | {u['padding_fraction']:.1%} | {p['padding_fraction']:.1%} | "
            f"{u['step_ms']:.0f} / {p['step_ms']:.0f} | {u['real_tokens_per_s']:,.0f} | "
            f"{p['real_tokens_per_s']:,.0f} | {row['real_tokens_gain_paired']:.2f}x | "
            f"{u['pairs_per_s']:.1f} / {p['pairs_per_s']:.1f} | {row['load']:.1f} | {row['date']} |")
    lines += ["", "Sources: " + "; ".join(f"{row['name']}: `{row['input_file']}`" for row in rows) + "."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_file", required=True)
    parser.add_argument("--vocab_file", required=True)
    parser.add_argument("--name", required=True, help="the corpus's name in the table")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--predictions", type=int, default=80)
    parser.add_argument("--max_pairs_per_seq", type=int, default=cpd.DEFAULT_MAX_PAIRS_PER_SEQ)
    parser.add_argument("--dupe_factor", type=int, default=1)
    parser.add_argument("--size", default="mini")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        summaries = build(args.input_file, args.vocab_file, directory, args.seq, args.predictions, args.dupe_factor,
                          args.max_pairs_per_seq)
        vocab_size = len(vocab_files.read_vocab(args.vocab_file))
        trainer, mesh = make_trainer(args.size, args.seq, args.predictions, args.batch, vocab_size)
        runs = measure(trainer, mesh, {name: os.path.join(directory, name) for name in summaries}, args.batch,
                       args.steps, args.warmup)
    row = summarize(args.name, args.input_file, summaries, runs, args)
    row["command"] = "python bench/packing_throughput.py " + " ".join(sys.argv[1:])
    json_path = os.path.splitext(args.out)[0] + ".json"
    rows = json.load(open(json_path)) if os.path.exists(json_path) else []
    rows = [r for r in rows if r["name"] != row["name"]] + [row]
    with open(json_path, "w") as f:
        json.dump(rows, f, indent=2)
    with open(args.out, "w") as f:
        f.write(render(rows))
    print(render([row]))


if __name__ == "__main__":
    main()
