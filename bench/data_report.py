"""The results of bench/data_throughput.py: speed-ups, the machine and versions, and the markdown and JSON files."""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"




def _ratio_cells(run: dict, keys: tuple[str, ...]) -> str:
    return " | ".join("" if run.get(k) is None else f"{run[k]:.1f}x" for k in keys)


def write_report(results: dict, name: str = "data_throughput") -> Path:
    """bench/results/<name>.json and a short .md table; returns the .md path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# create_pretraining_data throughput", "",
        f"{results['machine']}; vocab {results['vocab_size']} pieces ({results.get('vocab_source', 'trained on the corpus')}, read by every "
        f"implementation); max_seq_length 128, max_predictions_per_seq 20, dupe_factor {results['dupe_factor']}; "
        f"load average at the start {results['load_average_at_start']}, at the end {results['load_average_at_end']}. "
        f"Made by `python bench/data_throughput.py {results['arguments']}` ({results['date']}).", "",
        f"Corpus: {results['corpus_source']}. Tokenization: do_lower_case={results['do_lower_case']}, "
        f"strip_accents={results['strip_accents']}. CPU: {results['cpu']}. Versions: {results['versions']}.", "",
        "| implementation | workers | corpus MB | instances | import s | work s | CPU s | instances/s | instances/CPU-s | "
        "vs original: instances/s | vs original: per CPU-s | vs reference: instances/s | vs reference: per CPU-s | "
        "peak RSS MB (tree) | output bytes/instance | cores free before | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        label = run["implementation"]
        if "min_mb_per_worker" in run:
            label += f" (min_mb_per_worker={run['min_mb_per_worker']:g})"
        if run["implementation"] == "baseline":
            label += f" (bertjax of {results['baseline_tree']})"
        if "import_rss_mb" in run:
            label += f" (TensorFlow: {run['import_rss_mb']:.0f} MB RSS after the import)"
        lines.append(f"| {label} | {run['workers']} | {run['corpus_mb']} | {run['instances']:,} | "
                     f"{run.get('import_s', '')} | {run['run_s']} | {run['cpu_s']} | {run['instances_per_s']:,.0f} | "
                     f"{run['instances_per_cpu_s']:,.0f} | "
                     f"{_ratio_cells(run, ('speedup_vs_original', 'speedup_per_cpu_vs_original'))} | "
                     f"{_ratio_cells(run, ('speedup_vs_reference', 'speedup_per_cpu_vs_reference'))} | "
                     f"{run['peak_rss_mb_tree']} | {run.get('bytes_per_instance', '')} | {run['available_cores_before']} | "
                     f"{run['load_average_before']} |")
    lines.append("")
    for run in results["runs"]:
        if "speedup_vs_baseline" in run:
            lines.append(f"ours with {run['workers']} worker(s), {run['corpus_mb']} MB, against the baseline: "
                         f"{run['speedup_vs_baseline']:.2f}x the instances/s, "
                         f"{run['speedup_per_cpu_vs_baseline']:.2f}x the instances per CPU-second.")
    lines += [
        "",
        f"Fastest of {results['repeats']} runs each (the original: 1). "
        "import s: the child's top-level imports (TensorFlow and the script's module for the original; the "
        "bertjax module for the others), not counted in the rates. work s: wall time of the run itself (the "
        "original's main(); create_pretraining_data(), its worker start-up and dataset finalisation included; the "
        "reference's functions). CPU s: user+sys of the run, the worker processes' included. Output bytes/instance: "
        "the record files (ArrayRecord, snappy, for bertjax and the reference; the original's uncompressed TFRecord). "
        "Instances per CPU-second is the per-core rate; it stays meaningful when other processes share "
        "the machine, wall-clock rates do not. 'cores free before': CPU seconds per second that one busy process "
        "per core got just before the run (2.0 = both cores free).",
        "",
        "`original` is google-research/bert's create_pretraining_data.py (PyPI bert-tensorflow 1.0.4, on "
        "tensorflow-cpu via tensorflow.compat.v1), run from a virtualenv made by --with-original. `reference` is "
        "tests/reference_original.py: the original algorithm in pure Python without TensorFlow. "
        "`min_mb_per_worker=0` uses every core even for a small corpus (by default, one process per "
        f"{results['min_mb_per_worker']:g} MB of text; the main process works on shards too).",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    return RESULTS / f"{name}.md"


def cpu_description() -> str:
    """The CPU model and its vector-instruction flags (from /proc/cpuinfo where there is one)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = [f for f in fields.get("flags", "").split() if f.startswith(("sse", "ssse", "avx", "fma", "bmi", "popcnt"))]
    return f"{fields.get('model name', platform.machine())}; flags {' '.join(flags)}"


def versions() -> str:
    """Versions of what the runs use (bertjax: the git commit, '+ changes' when the tree differs from it)."""
    import numpy  # noqa: PLC0415  (not at the top: the --child runs re-run this file; keep them lean)
    import tokenizers  # noqa: PLC0415

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (f"bertjax {commit}{' + changes' if dirty else ''}, Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, tokenizers {tokenizers.__version__}")


def add_speedups(runs: list[dict], baseline: str, suffix: str) -> None:
    base = {r["corpus_mb"]: r for r in runs if r["implementation"] == baseline}
    for run in runs:
        ref = base.get(run["corpus_mb"])
        if run["implementation"] in ("ours", "baseline") and ref is not None and run is not ref:
            run[f"speedup_vs_{suffix}"] = round(run["instances_per_s"] / ref["instances_per_s"], 2)
            run[f"speedup_per_cpu_vs_{suffix}"] = round(run["instances_per_cpu_s"] / ref["instances_per_cpu_s"], 2)
