"""Benchmark: create_pretraining_data vs the original algorithm, side by side in one run.

    python bench/data_throughput.py                      # ~1 MB and ~10 MB corpora, a few minutes
    python bench/data_throughput.py --scales 1,10,100    # bigger (reference skipped above --max_reference_mb)
    python bench/data_throughput.py --with-original      # also google-research/bert's script, under TensorFlow
    python bench/data_throughput.py --nsmc GIT_DIR --base_mb 10 --scales 1 --vocab_size 16000 --no-lowercase \
        --dupe_factor 2 --results_name data_throughput_korean   # real Korean text (Naver movie reviews)
    python bench/data_throughput.py --baseline_tree /tmp/before ...   # also another bertjax tree (before/after)

--with-original makes a virtualenv (default /tmp/bertjax_original_env, or --original_env) with tensorflow-cpu and
bert-tensorflow==1.0.4 (google-research/bert's create_pretraining_data.py and tokenization.py, on
tensorflow.compat.v1), writes a small runner script into it, and runs the original on the same corpus and vocab with
the same settings. Its time excludes the TensorFlow import (reported apart); its CPU seconds are those of the run
only; its peak RSS includes TensorFlow (its RSS after the import is reported apart). Nothing of Google's code is
stored in this repository.

Corpora are whole documents of data/demo/corpus.txt (synthetic text if it is missing), or of --text (a file, or a
directory of *.txt files: one sentence per line, a blank line between documents), or of NSMC (--nsmc: a clone, or the
git directory of one, of github.com/e9t/nsmc; each movie's reviews from raw/*.json, in movie-id order, make one
document, one review per line with its whitespace collapsed). The larger corpora are made by concatenating shuffled
copies of the documents. A WordPiece vocab of about --vocab_size pieces is trained on the
smallest corpus (the others are reshuffled copies of it), or pass --vocab. Each measurement runs in its own
subprocess: `reference_original` (the original algorithm, pure Python, one core), ours with --num_workers=1, and
ours with all cores; with --baseline_tree, also the bertjax of another source tree (for example a
`git worktree add /tmp/before <commit>`) with one worker, as `baseline`. Reported per run: wall time of the work,
CPU seconds of the process tree (worker processes sampled with psutil every 20 ms, so a worker's last few ms may be
missed), instances/s, instances per CPU-second, and peak RSS (sum over the process tree, sampled every 20 ms).
Each measurement is repeated (--repeats) and the fastest run reported, with the largest peak RSS. Results go to
bench/results/data_throughput.json and .md (or --results_name).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from data_corpora import (file_documents, make_corpora, nsmc_documents, synthetic_documents, text_documents,
                          train_bench_vocab)
from data_report import add_speedups, cpu_description, versions, write_report

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "data" / "demo" / "corpus.txt"


# ----------------------------------------------------------------------------------------------------------------
# One measured run (child process)


ORIGINAL_PACKAGES = ("tensorflow-cpu", "bert-tensorflow==1.0.4")
ORIGINAL_RUNNER = """\"\"\"Run google-research/bert's create_pretraining_data (bert-tensorflow); time it without the TF import.\"\"\"
import json, resource, sys, time
started = time.perf_counter()
import tensorflow.compat.v1 as tf
from bert import create_pretraining_data as cpd
import_s = time.perf_counter() - started
import_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tf.flags.FLAGS(sys.argv)
cpu, started = time.process_time(), time.perf_counter()
cpd.main(None)
run_s, run_cpu_s = time.perf_counter() - started, time.process_time() - cpu
count = sum(1 for _ in tf.python_io.tf_record_iterator(tf.flags.FLAGS.output_file))
print(json.dumps({"instances": count, "run_s": run_s, "run_cpu_s": run_cpu_s, "import_s": import_s,
                  "import_rss_mb": import_rss_mb, "tensorflow": tf.__version__}))
"""


def original_env(path: Path) -> Path:
    """A virtualenv at `path` with the original's packages and the runner script; returns the runner's path."""
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    probe = subprocess.run([str(python), "-c", "import tensorflow, bert.create_pretraining_data"],
                           capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ORIGINAL_PACKAGES], check=True)
    runner = path / "run_original.py"
    runner.write_text(ORIGINAL_RUNNER)
    return runner


def original_command(runner: Path, corpus: Path, vocab: Path, dupe_factor: int, out: str, lowercase: bool) -> list[str]:
    """The original's command line with bertjax's bench settings (its own defaults otherwise); its do_lower_case
    also strips accents."""
    return [str(runner.parent / "bin" / "python"), str(runner), f"--input_file={corpus}",
            f"--output_file={Path(out) / 'original.tfrecord'}", f"--vocab_file={vocab}", f"--do_lower_case={lowercase}",
            "--max_seq_length=128", "--max_predictions_per_seq=20", "--masked_lm_prob=0.15", "--short_seq_prob=0.1",
            "--random_seed=12345", f"--dupe_factor={dupe_factor}"]


def child(args: argparse.Namespace) -> None:
    """Run one implementation; print a JSON line with its count, import time and the wall/CPU time of the run."""
    sys.path.insert(0, str(REPO / "tests"))  # reference_original is test support, not part of the package
    sys.path.insert(0, args.tree or str(REPO))  # --tree: the baseline's bertjax
    started = time.perf_counter()  # the imports below are timed (import_s)
    if args.child == "reference":
        import reference_original  # noqa: PLC0415
        from bertjax.data import vocab_files  # noqa: PLC0415
    else:
        from bertjax.data import create_pretraining_data as cpd  # noqa: PLC0415
        from bertjax.data import worker_pool  # noqa: PLC0415

        if args.min_mb_per_worker is not None:
            worker_pool.MIN_MB_PER_WORKER = args.min_mb_per_worker
    import_s = time.perf_counter() - started
    cpu, started = time.process_time(), time.perf_counter()
    if args.child == "reference":
        tokens = vocab_files.read_vocab(args.vocab)
        full = reference_original.FullTokenizer(tokens, do_lower_case=args.lowercase, strip_accents=args.strip_accents)
        made = reference_original.create_training_instances(
            [Path(args.corpus)], full, max_seq_length=128, dupe_factor=args.dupe_factor, max_predictions_per_seq=20)
        count = reference_original.write_instances(made, Path(args.out) / "reference.array_record", full.vocab, 128, 20)
    else:
        summary = cpd.create_pretraining_data(args.corpus, Path(args.out) / "dataset", args.vocab,
                                              dupe_factor=args.dupe_factor, num_workers=args.workers,
                                              show_progress=False)
        count = summary["instances"]
    print(json.dumps({"instances": count, "run_s": time.perf_counter() - started,
                      "run_cpu_s": time.process_time() - cpu, "import_s": import_s}))


def measure(kind: str, corpus: Path, vocab: Path, workers: int, dupe_factor: int, lowercase: bool, strip_accents: bool,
            runner: Path | None = None, min_mb_per_worker: float | None = None, tree: str | None = None) -> dict:
    """Run one child process; sample the RSS of its process tree; return its numbers."""
    with tempfile.TemporaryDirectory(prefix="bench_data_") as out:
        if kind == "original":
            command = original_command(runner, corpus, vocab, dupe_factor, out, lowercase)
        else:
            command = [sys.executable, __file__, "--child", "ours" if kind == "baseline" else kind,
                       "--corpus", str(corpus), "--vocab", str(vocab),
                       "--workers", str(workers), "--dupe_factor", str(dupe_factor), "--out", out,
                       "--lowercase" if lowercase else "--no-lowercase",
                       "--strip_accents" if strip_accents else "--no-strip_accents"]
            if min_mb_per_worker is not None:
                command.append(f"--min_mb_per_worker={min_mb_per_worker}")
            if kind == "baseline":
                command.append(f"--tree={tree}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": tree if kind == "baseline" else str(REPO)})
        peak = 0
        cpu_by_pid: dict[int, float] = {}  # last seen user+sys of every process of the tree (workers included)
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [parent] + parent.children(recursive=True)
            except psutil.Error:
                tree = []
            rss = 0
            for proc in tree:
                try:
                    with proc.oneshot():
                        rss += proc.memory_info().rss
                        times = proc.cpu_times()
                    cpu_by_pid[proc.pid] = times.user + times.system
                except psutil.Error:
                    pass
            peak = max(peak, rss)
            time.sleep(0.02)
        stdout, stderr = process.communicate()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        record_bytes = sum(path.stat().st_size for path in Path(out).rglob("*")
                           if path.is_file() and ("array_record" in path.name or path.suffix == ".tfrecord"))
    if process.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    # CPU of the run: the child's own (measured inside it, imports excluded) plus all of its descendants' (worker
    # processes, sampled); the child's total from rusage bounds the sampled part.
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    descendants = sum(t for pid, t in cpu_by_pid.items() if pid != process.pid)
    if descendants:
        descendants = max(descendants, own - cpu_by_pid.get(process.pid, own))
    cpu = result["run_cpu_s"] + descendants
    extra = {k: round(result[k], 2) for k in ("import_s", "import_rss_mb") if k in result}
    if "tensorflow" in result:
        extra["tensorflow"] = result["tensorflow"]
    if min_mb_per_worker is not None:
        extra["min_mb_per_worker"] = min_mb_per_worker
    return {
        "implementation": kind, "workers": workers, "corpus_mb": round(corpus.stat().st_size / 1e6, 2),
        "instances": result["instances"], "run_s": round(result["run_s"], 2), "process_wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2), "instances_per_s": round(result["instances"] / result["run_s"], 1),
        "instances_per_cpu_s": round(result["instances"] / cpu, 1),
        "peak_rss_mb_tree": round(peak / 2**20, 1),
        "bytes_per_instance": round(record_bytes / max(1, result["instances"]), 1), **extra,
    }


def _burn(seconds: float, out) -> None:
    """Spin for `seconds` of wall time, then report the CPU seconds this process got."""
    started, cpu = time.time(), time.process_time()
    while time.time() - started < seconds:
        pass
    out.put(time.process_time() - cpu)


def available_cores(seconds: float = 1.0) -> float:
    """Cores this benchmark can actually use now: CPU seconds that one busy process per core gets per second.

    Other processes on the machine lower it; parallel wall-clock rates are only comparable at the same value.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_burn, args=(seconds, queue)) for _ in range(os.cpu_count() or 1)]
    for proc in procs:
        proc.start()
    got = sum(queue.get() for _ in procs)
    for proc in procs:
        proc.join()
    return round(got / seconds, 2)


def main() -> None:
    """Build corpora and vocab, measure every implementation, write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10", help="corpus sizes as multiples of --base_mb")
    parser.add_argument("--base_mb", type=float, default=1.0)
    parser.add_argument("--vocab", default=None, help="an existing vocab.txt (default: train one)")
    parser.add_argument("--vocab_size", type=int, default=30522)
    parser.add_argument("--dupe_factor", type=int, default=5)
    parser.add_argument("--max_reference_mb", type=float, default=12.0, help="skip the slow reference above this")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest is reported")
    parser.add_argument("--with-original", dest="with_original", action="store_true",
                        help="also run google-research/bert's script (makes a TensorFlow virtualenv)")
    parser.add_argument("--original_env", default="/tmp/bertjax_original_env", help="virtualenv for --with-original")
    parser.add_argument("--max_original_mb", type=float, default=12.0, help="skip the original above this")
    parser.add_argument("--no_reference", action="store_true", help="skip reference_original")
    parser.add_argument("--results_name", default="data_throughput", help="bench/results/<name>.{json,md}")
    parser.add_argument("--baseline_tree", default=None,
                        help="also measure the bertjax of this source tree (one worker), as `baseline`")
    parser.add_argument("--tree", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--text", default=None, help="corpus documents from this file or directory of *.txt")
    parser.add_argument("--nsmc", default=None, help="corpus documents from NSMC (a clone or its git directory)")
    parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                        help="uncased vocab and tokenization (--no-lowercase: cased)")
    parser.add_argument("--strip_accents", action=argparse.BooleanOptionalAction, default=None,
                        help="strip accents (default: as --lowercase, which the original ties them to)")
    parser.add_argument("--child", choices=["reference", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--min_mb_per_worker", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.strip_accents is None:
        args.strip_accents = args.lowercase
    if args.child:
        child(args)
        return

    from tqdm import tqdm  # noqa: PLC0415  (not at the top: the --child runs re-run this file; keep them lean)

    sys.path.insert(0, str(REPO))
    from bertjax.data.worker_pool import MIN_MB_PER_WORKER  # noqa: PLC0415  (see train_bench_vocab)

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    runner = original_env(Path(args.original_env)) if args.with_original else None
    scales = [int(s) for s in args.scales.split(",")]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench_corpora_") as tmp:
        workdir = Path(tmp)
        if args.nsmc:
            docs, corpus_source = nsmc_documents(Path(args.nsmc), args.base_mb * min(scales))
        elif args.text:
            docs, corpus_source = text_documents(Path(args.text)), args.text
        elif DEMO_CORPUS.is_file():
            docs, corpus_source = file_documents(DEMO_CORPUS), str(DEMO_CORPUS.relative_to(REPO))
        else:
            docs, corpus_source = synthetic_documents(600), "synthetic"
        corpora = make_corpora(workdir, args.base_mb, scales, docs)
        # The larger corpora are reshuffled copies of the smallest: the same text, so the same vocab.
        vocab = Path(args.vocab) if args.vocab else train_bench_vocab(corpora[min(scales)], args.vocab_size,
                                                                      workdir / "vocab", args.lowercase,
                                                                      args.strip_accents)
        vocab_size = sum(1 for _ in open(vocab, encoding="utf-8"))
        plan = []
        for scale in scales:
            mb = corpora[scale].stat().st_size / 1e6
            if runner is not None and mb <= args.max_original_mb:
                plan.append(("original", scale, 1, None))
            if not args.no_reference and mb <= args.max_reference_mb:
                plan.append(("reference", scale, 1, None))
            if args.baseline_tree:
                plan.append(("baseline", scale, 1, None))
            plan += [("ours", scale, 1, None), ("ours", scale, cores, None)]
            if cores > 1 and mb < MIN_MB_PER_WORKER * cores:    # worker processes the default would not start
                plan.append(("ours", scale, cores, 0.0))
        runs = []
        for kind, scale, workers, min_mb in tqdm(plan, desc="data_throughput", unit="run"):
            tries = []
            for _ in range(1 if kind == "original" else args.repeats):
                load = [round(x, 2) for x in os.getloadavg()]
                cores_free = available_cores()
                tries.append({**measure(kind, corpora[scale], vocab, workers, args.dupe_factor, args.lowercase,
                                        args.strip_accents, runner, min_mb, args.baseline_tree),
                              "available_cores_before": cores_free, "load_average_before": load})
            best = min(tries, key=lambda run: run["run_s"])  # least disturbed by other processes
            best["peak_rss_mb_tree"] = max(run["peak_rss_mb_tree"] for run in tries)
            best["repeats"] = len(tries)
            runs.append(best)
            tqdm.write(json.dumps(best))
    add_speedups(runs, "reference", "reference")
    add_speedups(runs, "original", "original")
    add_speedups(runs, "baseline", "baseline")
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "arguments": " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {cores} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, "
                   f"Python {platform.python_version()}",
        "cpu": cpu_description(), "versions": versions(),
        "load_average_at_start": load_at_start, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "vocab_size": vocab_size,
        "vocab_source": f"from {args.vocab}" if args.vocab else "trained on the corpus",
        "dupe_factor": args.dupe_factor, "repeats": args.repeats,
        "min_mb_per_worker": MIN_MB_PER_WORKER,
        "corpus_source": corpus_source, "baseline_tree": args.baseline_tree,
        "do_lower_case": args.lowercase, "strip_accents": args.strip_accents,
        "runs": runs,
    }
    print(write_report(results, args.results_name).read_text())


if __name__ == "__main__":
    main()
