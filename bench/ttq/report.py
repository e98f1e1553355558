"""time_to_quality's analysis (when each run reaches a target) and report (.md, .json, .png)."""
from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from ttq.tables import (ABLATIONS, BATCH_SIZE, BUDGET_CONFIG, CORPORA, EVAL_BATCH_SIZE, FINETUNE, HF_SETTINGS,
                        ORIGINAL_CONFIG, TIME_BUDGET)



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
