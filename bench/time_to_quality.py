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
import itertools
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: bertjax

from ttq.tables import (ABLATIONS, BUDGET_CONFIG, CORPORA, DATASET, FINETUNE, HF_SETTINGS, NUM_STEPS,  # noqa: E402
                        ORIGINAL_CONFIG, REPO, RESULTS, SIZES, WARMUP_FRACTION, WARMUP_STEPS)
from ttq.records import machine  # noqa: E402
from ttq.data import build_data, eval_batch_count  # noqa: E402
from ttq.bertjax_runs import (budget_config, budget_overrides, calibrate, config_field, original_key,  # noqa: E402
                              original_overrides, reusable, run_bertjax, run_finetune)
from ttq.hf_runner import HFRunner, cross_check, run_hf  # noqa: E402
from ttq.report import write_report  # noqa: E402



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
