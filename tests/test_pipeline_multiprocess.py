"""Pipelines across processes, each run in subprocesses with a timeout so a hang fails the test instead of CI:
two JAX processes (4 CPU devices each) split each global batch of one epoch exactly; Grain worker processes give the
same batches."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import portpicker
import pytest

import _tiny_dataset as tiny
from bertjax.data import pipeline

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(TESTS_DIR, "_pipeline_worker.py")
TIMEOUT_S = 120


def _run(argvs: list[list[str]], tmp_path) -> None:
    """Run `_pipeline_worker.py argv` for every argv at once; fail (never hang) on error or timeout.

    Each worker gets its own session and writes its log to a file: nothing waits for a pipe that a stray grandchild
    (a Grain worker process) might hold open, and the whole process group is killed at the end.
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    env.pop("XLA_FLAGS", None)
    logs = [tmp_path / f"worker{i}.log" for i in range(len(argvs))]
    procs = []
    try:
        for argv, log in zip(argvs, logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen([sys.executable, WORKER, *argv], env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "\n".join(log.read_text() for log in logs)
    assert [p.returncode for p in procs] == [0] * len(procs), text[-4000:]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_split_one_epoch_exactly(tmp_path):
    data_dir = tiny.write_dataset(str(tmp_path / "ds"), {"train": [20, 21]})      # 41 examples: 5 batches of 8
    port = str(portpicker.pick_unused_port())
    outs = [str(tmp_path / f"report{i}.json") for i in range(2)]
    _run([["distributed", data_dir, port, str(i), "2", "8", outs[i]] for i in range(2)], tmp_path)

    reports = [json.load(open(path)) for path in outs]
    assert [(r["process_index"], r["process_count"], r["local_devices"], r["devices"]) for r in reports] == [
        (0, 2, 4, 8), (1, 2, 4, 8)]
    # Global batches of 8, 4 rows from each host: 5 batches each.
    assert [len(r["rows"]) for r in reports] == [5, 5] == [r["batches_per_epoch"] for r in reports]
    assert all(shape == [8, 16] for r in reports for shape in r["global_shapes"])
    # Host 0 has rows 0-3 and host 1 rows 4-7 of every global batch of the one-process order: the same sequence.
    one_process = pipeline.create_iterator(data_dir, "train", 8, seed=7, num_epochs=1, process_index=0,
                                           process_count=1)
    want = [[tiny.example_id({k: v[j] for k, v in b.items()}) for j in range(8)] for b in one_process]
    assert [a + b for a, b in zip(reports[0]["rows"], reports[1]["rows"])] == want
    assert len(set(sum(want, []))) == 40 and sum(want, []) != sorted(sum(want, []))     # each once, shuffled
    # Both processes see the same global batches: the label sums over the global arrays agree.
    assert reports[0]["global_label_sums"] == reports[1]["global_label_sums"]
    assert reports[0]["global_label_sums"] == [sum(i % 2 for i in rows) for rows in want]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_grain_worker_processes_give_the_same_batches_and_resume(tmp_path):
    """Same rows and the same dynamic masks (input_ids hold the [MASK]s) with 2 Grain worker processes."""
    data_dir = tiny.write_dataset(str(tmp_path / "ds"), {"train": [12, 12]}, masking="dynamic")
    _run([["prefetch", data_dir, str(tmp_path / "prefetch.json")]], tmp_path)
    got = json.load(open(tmp_path / "prefetch.json"))["batches"]
    it = pipeline.create_iterator(data_dir, "train", 4, seed=6, process_index=0, process_count=1)
    assert got == [next(it)["input_ids"].tolist() for _ in range(8)]
