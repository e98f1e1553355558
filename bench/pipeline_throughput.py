"""Input pipeline throughput vs. a BERT-base train step, on this machine's CPU.

    python bench/pipeline_throughput.py [--examples 12288] [--batches 40] [--step_batch_sizes 8,32]

Writes bench/results/pipeline_throughput.{json,md}. Measures, in one run:
  * shard writing (features.ShardWriter.write_batch: serialize + ArrayRecord) in examples/s;
  * pipeline.create_iterator at global batch 256, seq 128, 20 predictions, shuffled, one host: batches/s and
    examples/s with static masks and with dynamic masking, with the default 2 reader threads and with 2 worker
    processes (mp_prefetch);
  * the step time of a BERT-base forward+backward (jit(value_and_grad(pretraining_loss)), float32, dropout on) at
    each of `--step_batch_sizes`; a batch of 256 is too slow for this CPU, so the 256 time is scaled linearly from
    the largest one (compute is linear in the batch size at fixed sequence length, which the two sizes check;
    reported as an estimate);
and the ratio pipeline batches/s x step time at 256 (target >= 20: the pipeline is never the bottleneck).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bertjax.data import catalog, features, pipeline  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SEQ, PREDS, VOCAB, GLOBAL_BATCH = 128, 20, 30522, 256
CLS, SEP, MASK = 101, 102, 103


def write_vocab(directory: str) -> str:
    """A BERT-sized synthetic vocab.txt ([PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103)."""
    tokens = [f"[unused{i}]" for i in range(VOCAB)]
    tokens[0], tokens[100], tokens[CLS], tokens[SEP], tokens[MASK] = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    for i in range(1000, VOCAB):
        tokens[i] = f"##p{i}" if i % 4 == 0 else f"w{i}"
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def synthetic_batch(rng: np.random.Generator, num: int, masked: bool) -> dict[str, np.ndarray]:
    """Realistic-looking examples: 90% full length, 10% short; 15% of tokens predicted when `masked`."""
    lengths = np.where(rng.random(num) < 0.1, rng.integers(8, SEQ, num), SEQ)
    pos = np.arange(SEQ)[None, :]
    input_ids = np.where(pos < lengths[:, None], rng.integers(1000, VOCAB, (num, SEQ)), 0).astype(np.int32)
    input_ids[:, 0] = CLS
    input_ids[np.arange(num), lengths - 1] = SEP
    batch = {
        "input_ids": input_ids, "input_mask": (pos < lengths[:, None]).astype(np.int32),
        "segment_ids": ((pos >= lengths[:, None] // 2) & (pos < lengths[:, None])).astype(np.int32),
        "masked_lm_positions": np.zeros((num, PREDS), np.int32), "masked_lm_ids": np.zeros((num, PREDS), np.int32),
        "masked_lm_weights": np.zeros((num, PREDS), np.float32),
        "next_sentence_labels": rng.integers(0, 2, num).astype(np.int32),
    }
    if masked:
        batch["masked_lm_positions"] = np.sort(rng.integers(1, 120, (num, PREDS)), axis=1).astype(np.int32)
        batch["masked_lm_ids"] = rng.integers(1000, VOCAB, (num, PREDS)).astype(np.int32)
        batch["masked_lm_weights"][:] = 1.0
    return batch


def make_dataset(root: str, masking: str, num_examples: int, vocab: str, sha: str) -> tuple[str, float]:
    """A dataset of `num_examples` in 4 shards; returns (dir, shard-writing examples/s)."""
    out = os.path.join(root, masking)
    os.makedirs(out)
    rng = np.random.default_rng(0)
    shards, seconds = [], 0.0
    for k in range(4):
        batch = synthetic_batch(rng, num_examples // 4, masked=masking == "static")
        name = f"part{k}"
        start = time.perf_counter()
        with features.ShardWriter(os.path.join(out, name), SEQ, PREDS) as writer:
            for lo in range(0, len(batch["input_ids"]), 1024):
                writer.write_batch({key: value[lo:lo + 1024] for key, value in batch.items()})
        seconds += time.perf_counter() - start
        shards.append((name, writer.num_examples))
    manifest = {"vocab_size": VOCAB, "vocab_sha256": sha, "do_lower_case": True, "strip_accents": True,
                "max_seq_length": SEQ, "max_predictions_per_seq": PREDS, "masking": masking, "masked_lm_prob": 0.15,
                "whole_word_mask": "none", "random_seed": 0, "dupe_factor": 1}
    catalog.finalize_dataset(out, {"train": shards}, manifest, vocab_file=vocab)
    return out, num_examples / seconds


def time_pipeline(data_dir: str, num_batches: int, worker_count: int) -> dict[str, float]:
    """Batches/s of a shuffled, repeating iterator at GLOBAL_BATCH on one host, after 3 warm-up batches."""
    it = pipeline.create_iterator(data_dir, "train", GLOBAL_BATCH, seed=0, process_index=0, process_count=1,
                                  worker_count=worker_count)
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(num_batches):
        batch = next(it)
    seconds = time.perf_counter() - start
    assert batch["input_ids"].shape == (GLOBAL_BATCH, SEQ)
    if hasattr(it, "close"):
        it.close()
    return {"batches_per_s": num_batches / seconds, "examples_per_s": num_batches * GLOBAL_BATCH / seconds}


def time_train_step(batch_size: int, steps: int) -> dict[str, float]:
    """Seconds per BERT-base forward+backward step at `batch_size` (after one compile+warm-up step)."""
    # Not at the top: Grain's worker processes (spawned) re-import this script, and need no model.
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from bertjax import losses  # noqa: PLC0415
    from bertjax.model import BertConfig, BertForPreTraining, init_params  # noqa: PLC0415

    model = BertForPreTraining(BertConfig.named("base", vocab_size=VOCAB))
    params = init_params(model, jax.random.PRNGKey(0))
    batch = {k: jnp.asarray(v) for k, v in synthetic_batch(np.random.default_rng(1), batch_size, True).items()}

    def loss_fn(params, batch, key):
        out = model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                          batch["masked_lm_positions"], deterministic=False, rngs={"dropout": key})
        return losses.pretraining_loss(out["mlm_logits"], out["nsp_logits"], batch)

    step = jax.jit(jax.value_and_grad(loss_fn))
    start = time.perf_counter()
    jax.block_until_ready(step(params, batch, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - start
    times = []
    for i in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(params, batch, jax.random.PRNGKey(2 + i)))
        times.append(time.perf_counter() - start)
    return {"batch_size": batch_size, "compile_and_first_step_s": compile_s, "step_s_median": float(np.median(times)),
            "step_s_all": times}


def write_markdown(results: dict, path: str) -> None:
    """The human-readable results table."""
    p = results["pipeline"]
    lines = [
        "# Input pipeline throughput vs. BERT-base train step",
        "",
        f"Run: {results['date_utc']} UTC, `python bench/pipeline_throughput.py {results['argv']}`, "
        f"{results['machine']['cpus']} CPUs ({results['machine']['processor']}), load average before the run "
        f"{results['machine']['loadavg_before']}. Global batch {GLOBAL_BATCH}, seq {SEQ}, {PREDS} predictions, "
        f"{results['num_examples']} examples in 4 ArrayRecord shards, shuffled, one host.",
        "",
        "| what | batches/s | examples/s |",
        "|---|---|---|",
    ]
    for name, r in p.items():
        lines.append(f"| pipeline, {name} | {r['batches_per_s']:.1f} | {r['examples_per_s']:.0f} |")
    lines += [
        "",
        f"Shard writing (features.ShardWriter.write_batch: serialize + ArrayRecord, one process): "
        f"{results['write_examples_per_s']['static']:.0f} examples/s.",
        "",
        "| BERT-base forward+backward (jit, float32, dropout) | s/step (median) | compile + first step (s) |",
        "|---|---|---|",
    ]
    for s in results["train_step"]:
        lines.append(f"| batch {s['batch_size']} | {s['step_s_median']:.2f} | {s['compile_and_first_step_s']:.0f} |")
    lines += [
        f"| batch {GLOBAL_BATCH}, scaled linearly from batch {results['train_step'][-1]['batch_size']} (estimate) | "
        f"**{results['step_s_at_256_estimate']:.1f}** | |",
        "",
        "| pipeline setting | batches the pipeline delivers per train step (target >= 20) |",
        "|---|---|",
    ]
    for name, ratio in results["speedup_vs_step"].items():
        lines.append(f"| {name} | {ratio:.0f}x |")
    lines += ["", "Note: other jobs shared the 2 cores during the run, so absolute numbers are noisy (the ratio is far "
              "above the target either way)." if results["machine"]["loadavg_before"][0] > 0.5 else ""]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def main() -> None:
    """Run the benchmark and write the results files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=12288)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--step_batch_sizes", default="8,32", help="comma-separated; the largest is scaled to 256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip_train_step", action="store_true")
    args = parser.parse_args()

    results = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "argv": " ".join(sys.argv[1:]),
               "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
               "num_examples": args.examples, "global_batch_size": GLOBAL_BATCH, "seq_length": SEQ,
               "max_predictions_per_seq": PREDS, "pipeline": {}, "write_examples_per_s": {}}
    with tempfile.TemporaryDirectory() as root:
        vocab = write_vocab(root)
        with open(vocab, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        for masking in ("static", "dynamic"):
            data_dir, write_rate = make_dataset(root, masking, args.examples, vocab, sha)
            results["write_examples_per_s"][masking] = write_rate
            for workers in (0, 2):
                name = f"{masking} masks, " + ("2 threads" if workers == 0 else f"{workers} worker processes")
                results["pipeline"][name] = time_pipeline(data_dir, args.batches, workers)
                print(name, results["pipeline"][name], flush=True)
    print("write examples/s", results["write_examples_per_s"], flush=True)
    if not args.skip_train_step:
        sizes = sorted(int(x) for x in args.step_batch_sizes.split(","))
        results["train_step"] = [time_train_step(size, args.steps) for size in sizes]
        step = results["train_step"][-1]
        results["step_s_at_256_estimate"] = step["step_s_median"] * GLOBAL_BATCH / step["batch_size"]
        results["speedup_vs_step"] = {name: r["batches_per_s"] * results["step_s_at_256_estimate"]
                                      for name, r in results["pipeline"].items()}
        print("train step", results["train_step"], "\nspeedup", results["speedup_vs_step"], flush=True)
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(os.path.join(RESULTS_DIR, "pipeline_throughput.json"), "w") as f:
            json.dump(results, f, indent=2)
        write_markdown(results, os.path.join(RESULTS_DIR, "pipeline_throughput.md"))


if __name__ == "__main__":
    main()
