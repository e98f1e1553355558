"""A suite's results: every run's record reduced to one number per model and task (`suites.STATISTIC`), written as
results.json (everything), results.md (models as rows, tasks as columns, the average; published rows labelled)
and results.png (grouped bars per task, whiskers from the lowest to the highest seed)."""
from __future__ import annotations

import json
import math
import statistics

from bertjax import paths
from bertjax.benchmark import references, suites
from bertjax.benchmark.runner import Model
from bertjax.benchmark.suites import Suite, SuiteTask

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"


def cell(task: SuiteTask, records: list[dict]) -> dict:
    """One model's result on one task from its runs' records: the reported value (percent) and how it was chosen.

    status "done" with `value`, `learning_rate` (the chosen one), `seeds` (values at it), `spread` (min, max,
    standard deviation over those seeds), `medians` per learning rate and the extra metrics at the chosen rate (an
    undefined correlation, NaN, counts as 0, as for constant predictions);
    or "missing"/"failed" (no run finished) with the reason; "pending" before the task's first run."""
    if not records:
        return {"status": "pending", "reason": "not run yet"}
    done = [r for r in records if r["status"] == "done" and task.metric in r["metrics"]]
    if not done:
        statuses = [r for r in records if r["status"] != "done"]
        status = "failed" if any(r["status"] == "failed" for r in statuses) else "missing"
        reason = statuses[0]["error"] if statuses else "no run"
        return {"status": status, "reason": reason}
    by_lr: dict[float, list[dict]] = {}
    for record in done:
        by_lr.setdefault(record["learning_rate"], []).append(record)
    medians = {lr: statistics.median(_score(r, task.metric) for r in runs) for lr, runs in by_lr.items()}
    best = max(medians, key=lambda lr: (medians[lr], -lr))
    chosen = sorted(by_lr[best], key=lambda r: r["seed"])
    values = [_score(r, task.metric) for r in chosen]
    extra = {metric: statistics.median(_score(r, metric) for r in chosen if metric in r["metrics"])
             for metric in task.extra_metrics if any(metric in r["metrics"] for r in chosen)}
    planned = len(task.seeds) * len(task.learning_rates)
    return {"status": "done", "value": medians[best], "metric": task.metric, "learning_rate": best,
            "seeds": {str(r["seed"]): v for r, v in zip(chosen, values)},
            "spread": {"min": min(values), "max": max(values),
                       "std": statistics.pstdev(values) if len(values) > 1 else 0.0},
            "medians": {f"{lr:g}": v for lr, v in sorted(medians.items())}, "extra": extra,
            "runs_done": len(done), "runs_planned": planned}


def _score(record: dict, metric: str) -> float:
    """A run's metric in percent; an undefined one (a correlation of constant predictions: NaN) counts as 0."""
    value = record["metrics"][metric]
    return 0.0 if math.isnan(value) else 100 * value


def table(suite: Suite, models: list[Model], records: list[dict]) -> dict:
    """{model label: {task name: cell}} and each model's average over the suite's averaged tasks."""
    rows, averages = {}, {}
    for model in models:
        cells = {task.name: cell(task, [r for r in records if r["model"] == model.label and r["task"] == task.name])
                 for task in suite.tasks}
        rows[model.label] = cells
        averages[model.label] = average(suite, {name: c.get("value") for name, c in cells.items()})
    return {"rows": rows, "averages": averages}


def average(suite: Suite, values: dict) -> dict:
    """The mean over the tasks in the average (the BERT paper's: WNLI out), with how many of them it covers."""
    counted = [t.name for t in suite.tasks if t.in_average]
    present = [values[name] for name in counted if values.get(name) is not None]
    return {"value": sum(present) / len(present) if present else None, "tasks": len(present), "of": len(counted)}


def write(workdir: str, suite: Suite, models: list[Model], records: list[dict], published: list[references.Reference],
          settings: dict) -> dict:
    """results.json, results.md and results.png in `workdir` (the plot only where matplotlib is installed);
    returns the JSON's content."""
    result = table(suite, models, records)
    content = {
        "suite": suite.name, "statistic": suites.STATISTIC, "settings": settings,
        "models": [{"label": m.label, "path": m.path} for m in models],
        "tasks": [_recipe(task) for task in suite.tasks],
        "rows": result["rows"], "averages": result["averages"],
        "references": [{"name": r.name, "split": r.split, "source": r.source, "scores": r.scores,
                        "average": average(suite, {t.name: r.scores.get(t.name) for t in suite.tasks})}
                       for r in published],
        "runs": sorted(records, key=lambda r: (r["task"], r["model"], r["learning_rate"], r["seed"]))}
    root = paths.path(workdir)
    paths.write_text_atomically(str(root / RESULTS_JSON), json.dumps(content, indent=1, sort_keys=False) + "\n")
    paths.write_text_atomically(str(root / RESULTS_MD), markdown(suite, content))
    figure = plot(suite, content)
    if figure is not None:
        figure.savefig(str(root / RESULTS_PNG), dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        plt.close(figure)
    return content


def _recipe(task: SuiteTask) -> dict:
    return {"name": task.name, "header": task.header, "type": task.type, "task": task.task, "data": task.data,
            "metric": task.metric, "extra_metrics": list(task.extra_metrics),
            "learning_rates": list(task.learning_rates), "seeds": list(task.seeds), "epochs": task.epochs,
            "batch_size": task.batch_size, "max_seq_length": task.max_seq_length, "in_average": task.in_average,
            "evaluates": task.evaluate or None, "config": dict(task.config)}


def _shown(c: dict | None) -> str:
    if c is None:
        return ""
    if c["status"] != "done":
        return c["status"]
    return f"{c['value']:.1f}"


def _shown_average(a: dict) -> str:
    if a["value"] is None:
        return "—"
    return f"{a['value']:.1f}" + ("" if a["tasks"] == a["of"] else f" ({a['tasks']} of {a['of']})")


def markdown(suite: Suite, content: dict) -> str:
    """results.md: the table, the published rows, the spread across seeds, the protocol and the settings."""
    tasks = suite.tasks
    headers = [f"{t.header} ({_metric_name(t.metric)})" + ("" if t.in_average else "*") for t in tasks]
    lines = [f"# Benchmark: the {suite.name} suite", "",
             f"Scores in percent on each task's dev split; each is the {suites.STATISTIC}. Average: the mean over "
             "the tasks without a `*`" + (" (the BERT paper's GLUE average: WNLI out)" if suite.name == "glue" else
                                          "") + ".", "",
             "| model | " + " | ".join(headers) + " | average |",
             "|---|" + "---|" * (len(tasks) + 1)]
    for label, cells in content["rows"].items():
        lines.append(f"| {label} | " + " | ".join(_shown(cells[t.name]) for t in tasks) + " | "
                     + _shown_average(content["averages"][label]) + " |")
    for ref in content["references"]:
        values = [f"{ref['scores'][t.name]:.1f}" if t.name in ref["scores"] else "" for t in tasks]
        lines.append(f"| {ref['name']} (published, {ref['split']}) | " + " | ".join(values) + " | "
                     + _shown_average(ref["average"]) + " |")
    extra = [(t, m) for t in tasks for m in t.extra_metrics]
    if extra:
        lines += ["", "Other metrics of the same runs (at the chosen learning rate, median over seeds):", "",
                  "| model | " + " | ".join(f"{t.header} ({_metric_name(m)})" for t, m in extra) + " |",
                  "|---|" + "---|" * len(extra)]
        for label, cells in content["rows"].items():
            shown = [f"{cells[t.name]['extra'][m]:.1f}" if cells[t.name]["status"] == "done"
                     and m in cells[t.name]["extra"] else cells[t.name]["status"] for t, m in extra]
            lines.append(f"| {label} | " + " | ".join(shown) + " |")
        for ref in content["references"]:
            shown = [f"{ref['scores'][f'{t.name}:{m}']:.1f}" if f"{t.name}:{m}" in ref["scores"] else ""
                     for t, m in extra]
            lines.append(f"| {ref['name']} (published, {ref['split']}) | " + " | ".join(shown) + " |")
    lines += ["", "Per task and model: the chosen learning rate, every seed's score there, the spread (min–max, "
              "standard deviation) and the median at each learning rate tried:", "",
              "| task | model | lr | seeds | min–max | std | median per lr | runs |", "|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        for label, cells in content["rows"].items():
            c = cells[t.name]
            if c["status"] != "done":
                lines.append(f"| {t.header} | {label} | | {c['status']}: {c['reason']} | | | | |")
                continue
            seeds = ", ".join(f"{v:.1f}" for v in c["seeds"].values())
            medians = ", ".join(f"{lr}: {v:.1f}" for lr, v in c["medians"].items())
            lines.append(f"| {t.header} | {label} | {c['learning_rate']:g} | {seeds} | {c['spread']['min']:.1f}–"
                         f"{c['spread']['max']:.1f} | {c['spread']['std']:.2f} | {medians} | "
                         f"{c['runs_done']}/{c['runs_planned']} |")
    lines += ["", "## Protocol", "", "| task | type | data | lr grid | seeds | epochs | batch | max length |",
              "|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        if t.evaluate:
            lines.append(f"| {t.header} | evaluates {t.evaluate}'s final models | {t.data} | | | | | |")
            continue
        lines.append(f"| {t.header} | {t.type} | {t.data} | {', '.join(f'{lr:g}' for lr in t.learning_rates)} | "
                     f"{len(t.seeds)} | {t.epochs:g} | {t.batch_size} | {t.max_seq_length} |")
    settings = content["settings"]
    subset = [f"a fixed sample of at most {settings[k]:,} {what} examples" for k, what in
              (("max_train_examples", "training"), ("max_eval_examples", "dev")) if settings.get(k)]
    lines += ["", "Models: " + "; ".join(f"{m['label']} = `{m['path']}`" for m in content["models"]) + ".",
              "Data: `" + settings["data_dir"] + "`" + (", a subset of each task: " + " and ".join(subset)
                                                        if subset else ", every example") + "."]
    for ref in content["references"]:
        lines.append(f"Published row {ref['name']}: {ref['source']} ({ref['split']} set: "
                     + ("comparable with these dev scores" if ref["split"] == "dev"
                        else "a different split; a guide, not a like-for-like comparison") + ").")
    wall = sum(r.get("wall_s") or 0 for r in content["runs"])
    lines.append(f"Run time: {wall / 60:.1f} min over {sum(r['status'] == 'done' for r in content['runs'])} "
                 "finished runs (each run's last invocation).")
    return "\n".join(lines) + "\n"


def _metric_name(metric: str) -> str:
    return {"accuracy": "acc", "matthews": "MCC", "spearman": "Spearman", "pearson": "Pearson r",
            "macro_f1": "macro F1", "sts_f1": "F1", "entity_macro_f1": "entity F1", "char_macro_f1": "char F1",
            "f1": "F1", "entity_f1": "entity F1", "squad_f1": "F1", "squad_exact": "EM"}.get(metric, metric)


def plot(suite: Suite, content: dict):
    """A matplotlib Figure of grouped bars: a group per task, a bar per model (published rows hatched), whiskers
    from the lowest to the highest seed; None without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    tasks = suite.tasks
    series = [(label, [cells[t.name].get("value") for t in tasks],
               [(cells[t.name]["spread"]["min"], cells[t.name]["spread"]["max"])
                if cells[t.name]["status"] == "done" else None for t in tasks], False)
              for label, cells in content["rows"].items()]
    series += [(f"{r['name']} (published)", [r["scores"].get(t.name) for t in tasks], [None] * len(tasks), True)
               for r in content["references"]]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks) * max(1, len(series)) ** 0.5 + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for index, (label, values, spreads, published) in enumerate(series):
        xs = [i - 0.4 + width * (index + 0.5) for i in range(len(tasks))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(xs, heights, width, label=label, hatch="//" if published else None,
                        alpha=0.6 if published else 1.0)
        for bar, value, spread, x in zip(bars, values, spreads, xs):
            if value is None:
                bar.set_visible(False)
            elif spread is not None and spread[1] > spread[0]:
                axes.plot([x, x], spread, color="black", linewidth=1)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels([t.header for t in tasks], rotation=30, ha="right")
    axes.set_ylabel("dev score (%)")
    axes.set_title(f"{suite.name}: {suites.STATISTIC}")
    axes.legend(fontsize="small")
    return figure
