"""Benchmark: tokens/s, step time and MFU of bertjax's real train step, beside transformers and KerasHub.

    python bench/train_throughput.py                       # mini + base, seq 128, float32 (~10 min, 2 idle cores)
    python bench/train_throughput.py --full                # tiny/mini/small/base x seq 128/512 x float32/bfloat16
    python bench/train_throughput.py --sizes base --seqs 512 --dtypes bfloat16 --steps 3
    python bench/train_throughput.py --ablations           # bertjax variants by config flag, side by side
    python bench/train_throughput.py --breakdown           # forward / forward+backward / optimizer / full step
    python bench/train_throughput.py --profile             # per-op thread time of the base step (jax.profiler)

What runs, for each size/seq/dtype, interleaved round by round (bertjax, HF, KerasHub, peak, bertjax, HF, ...) so
that the machine's load hits all alike; each number is the median of --steps timed steps after --warmup ones:
- bertjax: `bertjax.train.Trainer(config, bert_config, mesh).jit_train_step`, built as `train.py` builds it from
  configs/base.py (bert_adam, clip 1.0, dropout 0.1, vocab padded as configured) with the size, seq, P, batch and
  dtype set, on all JAX devices; lowered and compiled once (`.lower(state, batch).compile()`, the same executable
  `jit_train_step` runs), then called with the state donated as in the loop.
- HF: transformers' `BertForPreTraining` on PyTorch (CPU), train mode; the MLM head runs at the P masked positions
  only, as bertjax's (`model.bert` -> gather -> `model.cls.predictions`, weighted NLL; NSP on the pooled output);
  AdamW (lr 1e-4, wd 0.01, eps 1e-6), clip 1.0, `zero_grad(set_to_none=True)`; bfloat16 = `torch.autocast`.
  `--frameworks ...,hf_allpos` adds HF's own loss (`labels` at all T positions, -100 elsewhere).
- KerasHub: `BertMaskedLM` (no NSP head) on the JAX backend with `model.compile(AdamW, jit_compile=True)` and
  `train_on_batch` (a jitted stateless train step); bfloat16 = the "mixed_bfloat16" dtype policy.
- peak: a jitted `jnp.dot` of two --peak_size square matrices in the run's dtype (3 per round); MFU = formula FLOP/s
  / its best round. Ratios between frameworks are paired: the median over rounds of the step-time ratio in a round.

FLOPs: `objective.flops_per_example` (`bertjax.model.flops_per_example`: 6x the matmul FLOPs of the encoder at all
T positions, of the MLM transform and tied decoder at the P positions (padded vocab), and the pooler) is the
useful work; XLA's `compiled.cost_analysis()["flops"]` of the whole compiled step is printed beside it.
Batches are synthetic (random ids, all tokens real, P distinct sorted masked positions), the same for all three.
Writes bench/results/train_throughput.{md,json} (or --output STEM; `--append` keeps the other rows already there);
--ablations/--breakdown/--profile write STEM_<mode>.json, and every mode re-renders STEM.md from the JSON files.

This file is the CLI; the work is in bench/throughput/ (common, peers, grid, ablations, breakdown, op_profile,
report: one job each).
"""
from __future__ import annotations

import argparse
import os

from throughput.ablations import run_ablations
from throughput.breakdown import run_breakdown
from throughput.common import RESULTS, machine_info, torch_threads
from throughput.grid import run_grid
from throughput.op_profile import run_profile
from throughput.report import write_outputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="mini,base", type=lambda s: s.split(","))
    parser.add_argument("--seqs", default="128", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--dtypes", default="float32", type=lambda s: s.split(","))
    parser.add_argument("--full", action="store_true", help="tiny,mini,small,base x 128,512 x float32,bfloat16")
    parser.add_argument("--batch", type=int, default=0, help="0: ~4k tokens per step (1k for base)")
    parser.add_argument("--frameworks", default="bertjax,hf,kerashub", type=lambda s: s.split(","))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak_size", type=int, default=2048)
    parser.add_argument("--ablations", action="store_true", help="bertjax config variants (first size/seq/dtype)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None, help="ablation names to run")
    parser.add_argument("--breakdown", action="store_true", help="forward/backward/optimizer timings")
    parser.add_argument("--profile", action="store_true", help="per-op thread time from a jax.profiler trace")
    parser.add_argument("--override", action="append", help="(--profile) config override, e.g. train.rng_impl=rbg")
    parser.add_argument("--append", action="store_true", help="(grid) keep the other rows of the existing results")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", default=os.path.join(RESULTS, "train_throughput"))
    args = parser.parse_args(argv)
    if args.full:
        args.sizes, args.seqs, args.dtypes = ["tiny", "mini", "small", "base"], [128, 512], ["float32", "bfloat16"]
    args.torch_threads = torch_threads()
    info = machine_info()

    def log(message):
        print(message, flush=True)

    log(f"{info['cpu']}, {info['cores']} cores, load {info['load_average_start']}, torch threads {args.torch_threads}")
    mode = "ablations" if args.ablations else "breakdown" if args.breakdown else "profile" if args.profile else "grid"
    stem = args.output if mode == "grid" else f"{args.output}_{mode}"
    result = {"ablations": run_ablations, "breakdown": run_breakdown, "profile": run_profile,
              "grid": run_grid}[mode](args, log, lambda partial: write_outputs(stem, mode, info, args, partial))
    write_outputs(stem, mode, info, args, result)


if __name__ == "__main__":
    main()
