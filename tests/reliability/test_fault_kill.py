"""Fault injection: kill -9 at random moments (seeded), many of them inside an asynchronous checkpoint save.

With a checkpoint every step and a short delay per step, Orbax is writing almost all the time, so a kill usually
lands in a save. After each kill: no half-written step is ever restored (the restart resumes right after the newest
finished step), every batch is the uninterrupted run's, and the last run ends on its params, bitwise.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from test_train import _finish

WORKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_train_worker.py")
STEPS, DELAY = 16, 0.02  # a save at every step and little else: the process is nearly always saving
DURATION = 2.5  # seconds from the first step to the end of the run, about, on an idle 2-core machine
TIMEOUT = 180


def _env() -> dict:
    """The killed processes keep their XLA compilation cache (conftest.py) apart from the other tests' processes: a
    kill inside JAX's write of an entry would leave it half-written for every later reader."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if "JAX_COMPILATION_CACHE_DIR" in env:
        env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(env["JAX_COMPILATION_CACHE_DIR"], "killed_processes")
    return env


def _start(workdir, report):
    command = [sys.executable, WORKER, "--workdir", str(workdir), "--report", str(report), "--steps", str(STEPS),
               "--checkpoint_every", "1", "--step_delay", str(DELAY)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _read(report) -> dict:
    with open(report) as f:
        return json.load(f)


def _finished_steps(workdir) -> list[int]:
    """Step directories Orbax has committed (a save in progress is a `<step>.orbax-checkpoint-tmp-*` directory)."""
    directory = workdir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def _unfinished(workdir) -> list[str]:
    directory = workdir / "checkpoints"
    return sorted(p.name for p in directory.iterdir() if not p.name.isdigit()) if directory.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's report (per-step batch digests and losses, final params digest)."""
    directory = tmp_path_factory.mktemp("reference")
    _finish(_start(directory / "run", directory / "report.json"))
    return _read(directory / "report.json")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])  # 2 kills each, plus one inside a save below
def test_kill_9_at_random_moments_then_restart_is_bitwise_the_uninterrupted_run(reference, tmp_path, seed):
    workdir = tmp_path / "run"
    # Two kills, at moments after the run's first step (once compiled) drawn from the training time.
    moments = np.random.default_rng(seed).uniform(0.0, DURATION, size=2)
    interrupted_saves = 0
    for attempt, moment in enumerate(moments):
        report = tmp_path / f"killed_{attempt}.json"
        expected_start = (_finished_steps(workdir) or [0])[-1] + 1
        process = _start(workdir, report)
        deadline = time.monotonic() + TIMEOUT
        while not report.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        if process.returncode == 0:  # finished before the kill moment: nothing to recover from
            break
        assert process.returncode == -signal.SIGKILL, output[-3000:]
        killed = _read(report)
        steps = sorted(map(int, killed["batches"]))
        assert steps[0] == expected_start, (steps, expected_start)  # resumed right after the last finished save
        assert all(killed["batches"][str(s)] == reference["batches"][str(s)] for s in steps)
        interrupted_saves += bool(_unfinished(workdir))
        assert all(step <= steps[-1] for step in _finished_steps(workdir))
    final_report = tmp_path / "final.json"
    expected_start = (_finished_steps(workdir) or [0])[-1] + 1
    output = _finish(_start(workdir, final_report))
    if expected_start <= STEPS:
        final = _read(final_report)
        assert min(map(int, final["batches"])) == expected_start
        assert re.search(rf"training from step {expected_start - 1} ", output), output[-3000:]
        assert all(final["batches"][s] == reference["batches"][s] for s in final["batches"])
        assert final["params"] == reference["params"] is not None
    assert _finished_steps(workdir)[-1] == STEPS
    print(f"seed {seed}: kills at {np.round(moments, 2).tolist()} s, {interrupted_saves} inside a save")


@pytest.mark.slow
def test_kill_9_inside_a_save_restores_the_previous_finished_step(reference, tmp_path):
    workdir = tmp_path / "run"
    process = _start(workdir, tmp_path / "killed.json")
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if [name for name in _unfinished(workdir) if name.split(".")[0] not in ("1", "2")]:  # a later save
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    half_written = _unfinished(workdir)
    assert half_written, "the kill missed the save"
    finished = _finished_steps(workdir)
    assert all(int(name.split(".")[0]) > finished[-1] for name in half_written), (half_written, finished)
    output = _finish(_start(workdir, tmp_path / "final.json"))
    assert f"training from step {finished[-1]} " in output  # the half-written step is not taken as the latest
    final = _read(tmp_path / "final.json")
    assert min(map(int, final["batches"])) == finished[-1] + 1
    assert final["params"] == reference["params"] is not None
    assert _finished_steps(workdir)[-1] == STEPS
