"""The GLUE suite on real data, on this machine: `python -m bertjax.benchmark` for the given models (continued if its
workdir holds a stopped run), then bench/results/<name>.md and .json with the table, the data's source, the wall
time and the per-run overhead (set-up before the first step against the whole run; first seed against later ones,
which load the shared features and compiled steps).

  python bench/glue_suite.py --data_dir /data/glue --workdir /tmp/glue_bench --data_source "where the TSVs came from" \
      --model MiniLM-L6=/models/minilm --model demo-BERT-tiny=workdir/demo -- --max_train_examples=1000 ...

Arguments after `--` go to `python -m bertjax.benchmark` unchanged.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Run (or continue) the suite, then write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--data_source", required=True, help="provenance of the data, for the report")
    parser.add_argument("--suite", default="glue")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "glue_suite"))
    parser.add_argument("--report_only", action="store_true", help="do not run; report the workdir as it is")
    args, passed = parser.parse_known_args()
    passed = [a for a in passed if a != "--"]
    command = [sys.executable, "-m", "bertjax.benchmark", f"--suite={args.suite}", f"--data_dir={args.data_dir}",
               f"--workdir={args.workdir}", *[f"--model={m}" for m in args.model], *passed]
    started = time.time()
    if not args.report_only:
        subprocess.run(command, cwd=REPO, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    results = json.loads((Path(args.workdir) / "results.json").read_text())
    table = (Path(args.workdir) / "results.md").read_text()
    overhead = overhead_rows(results["runs"])
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "command": " ".join(command), "data_source": args.data_source,
            "this_invocation_s": round(time.time() - started, 1), "overhead": overhead, "results": results}
    Path(args.output + ".json").write_text(json.dumps(info, indent=1) + "\n")
    Path(args.output + ".md").write_text(markdown(info, table))
    print(f"wrote {args.output}.md and .json")


def machine() -> str:
    """CPU model, cores, Python and JAX versions."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax  # noqa: PLC0415

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, jax {jax.__version__}"


def overhead_rows(runs: list[dict]) -> list[dict]:
    """Per model and task: the first run's and the later runs' set-up and wall seconds, and training steps."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if run["status"] == "done" and run.get("setup_s") is not None and run.get("steps"):
            groups.setdefault((run["model"], run["task"]), []).append(run)
    rows = []
    for (model, task), group in sorted(groups.items()):
        group.sort(key=lambda r: (r["learning_rate"], r["seed"]))
        first, later = group[0], group[1:]
        rows.append({"model": model, "task": task, "runs": len(group), "steps": first["steps"],
                     "first_setup_s": first["setup_s"], "first_wall_s": first["wall_s"],
                     "later_setup_s": statistics.median(r["setup_s"] for r in later) if later else None,
                     "later_wall_s": statistics.median(r["wall_s"] for r in later) if later else None})
    return rows


def markdown(info: dict, table: str) -> str:
    """The report: provenance, the suite's own results.md, the overhead table."""
    runs = info["results"]["runs"]
    wall = sum(r.get("wall_s") or 0 for r in runs)
    lines = ["# GLUE suite on real data (CPU)", "",
             f"Made by `bench/glue_suite.py` on {info['date']}: {info['machine']}. The suite's command: "
             f"`{info['command']}`.", "",
             f"Data: {info['data_source']}", "",
             f"Wall time: {wall / 60:.1f} min of runs ({sum(r['status'] == 'done' for r in runs)} finished runs, "
             "each counted once; the machine's 2 cores were shared with other work, so times are upper bounds).",
             "", "## The table (the suite's results.md)", "", table.replace("# Benchmark:", "### Benchmark:"),
             "## Overhead per run", "",
             "Set-up: from the run's start to its first step's end (reading and encoding the task's files or "
             "loading them from the shared features cache, loading the model, building the Trainer, compiling the "
             "steps or loading them from the shared compilation cache, the first step). The first run of a model "
             "and task pays the encoding and the compilation; the later runs (other seeds) load both.", "",
             "| model | task | runs | steps | first run: set-up / wall s | later runs: set-up / wall s (median) | "
             "set-up share of later runs |", "|---|---|---|---|---|---|---|"]
    for row in info["overhead"]:
        later = ("—" if row["later_setup_s"] is None else f"{row['later_setup_s']:.1f} / {row['later_wall_s']:.1f}")
        share = ("—" if row["later_setup_s"] is None else f"{100 * row['later_setup_s'] / row['later_wall_s']:.0f}%")
        lines.append(f"| {row['model']} | {row['task']} | {row['runs']} | {row['steps']} | "
                     f"{row['first_setup_s']:.1f} / {row['first_wall_s']:.1f} | {later} | {share} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
