"""Two JAX processes x 4 CPU devices (gloo collectives on localhost) train exactly like one process, stop together
when one of them gets SIGTERM, and leave checkpoints that resume on another number of processes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest

import _tiny_dataset as tiny
from _train_helpers import run_steps, tiny_config

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_train_worker.py")
TIMEOUT = 240


def _start(tmp_path, name: str, *args, processes: int = 2) -> list[subprocess.Popen]:
    """_train_worker.py run `name` (workdir tmp_path/name, report tmp_path/name.json) on 8 CPU devices in total."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    common = [sys.executable, WORKER, "--workdir", str(tmp_path / name), "--report", str(tmp_path / f"{name}.json"),
              *map(str, args)]
    if processes == 1:
        return [subprocess.Popen([*common, "--devices", "8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=env)]
    port = portpicker.pick_unused_port()
    return [subprocess.Popen([*common, "--devices", "4", "--coordinator", f"127.0.0.1:{port}", "--num_processes",
                              "2", "--process_id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
            for i in range(2)]


def _finish(processes: list[subprocess.Popen], returncode: int = 0) -> list[str]:
    """Every process's output; fails (never hangs) on a timeout or another exit status."""
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail("a training process timed out")
    for process, output in zip(processes, outputs):
        assert process.returncode == returncode, output[-3000:]
    return outputs


def _wait_for(predicate, what: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            for process in processes:
                process.kill()
            pytest.fail(f"never saw {what}: {[process.communicate()[0][-2000:] for process in processes]}")
        time.sleep(0.1)


def _report(tmp_path, name: str) -> dict:
    try:
        return json.loads((tmp_path / f"{name}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"losses": {}, "batches": {}}


def _steps(tmp_path, name: str) -> list[int]:
    return sorted(int(p.name) for p in (tmp_path / name / "checkpoints").iterdir() if p.name.isdigit())


def _stopped_at(output: str) -> int:
    return int(next(line for line in output.splitlines() if line.startswith("STOPPED")).split()[-1])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_match_one_process_and_stop_together_on_sigterm_to_one(tmp_path):
    fsdp = 2  # mesh data=4 x fsdp=2 over both processes: batch and parameter shards cross the process boundary
    steps = 6
    common = ("--steps", steps, "--fsdp", fsdp)
    straight = _start(tmp_path, "straight", *common, "--checkpoint_every", 3)
    preempted = _start(tmp_path, "preempted", *common, "--checkpoint_every", 1000, "--step_delay", 0.5)
    _wait_for(lambda: "2" in _report(tmp_path, "preempted")["losses"], "step 2 of the run to preempt", preempted)
    preempted[1].send_signal(signal.SIGTERM)            # one process only: the JAX preemption service tells the other
    one_process, _, _ = run_steps(tiny_config(num_train_steps=steps), steps)   # meanwhile, the same run in 1 process

    outputs = _finish(straight)
    assert "on 8 devices (8 cpu), mesh {'data': %d, 'fsdp': %d}, 2 processes" % (8 // fsdp, fsdp) in outputs[0]
    reference = _report(tmp_path, "straight")
    assert one_process[0] != one_process[-1]
    assert [reference["losses"][str(s)] for s in range(1, steps + 1)] == pytest.approx(one_process, rel=1e-5)
    assert _steps(tmp_path, "straight") == [3, 6]        # both processes wrote each checkpoint together (Orbax)

    # Both processes save the same step and exit 0; exactly one checkpoint, at that step.
    outputs = _finish(preempted)
    stopped = [_stopped_at(output) for output in outputs]
    assert stopped[0] == stopped[1] and 2 <= stopped[0] < steps, stopped
    assert _steps(tmp_path, "preempted") == [stopped[0]]
    assert f"preempted: saved checkpoint at step {stopped[0]}" in outputs[0]

    # Resumed by 2 processes again, the run ends bitwise where the uninterrupted one did.
    _finish(_start(tmp_path, "preempted", *common, "--checkpoint_every", 1000))
    resumed = _report(tmp_path, "preempted")
    assert sorted(map(int, resumed["batches"])) == list(range(stopped[0] + 1, steps + 1))
    assert resumed["batches"] == {str(s): reference["batches"][str(s)] for s in range(stopped[0] + 1, steps + 1)}
    assert resumed["params"] == reference["params"] is not None


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_two_process_checkpoint_resumes_on_one_process_on_exactly_the_next_batch(tmp_path):
    """The global batch sequence does not depend on the process count (real dataset through the Grain pipeline,
    dynamic masks, crossing epochs): 2 processes train steps 1-6, 1 process steps 7-12, like 1 process throughout."""
    data_dir = tiny.write_dataset(str(tmp_path / "dataset"), {"train": [40, 40], "eval": [32]}, masking="dynamic")
    steps, saved = 12, 6  # 80 examples, batches of 16: 5 per epoch
    common = ("--steps", steps, "--checkpoint_every", saved, "--data_dir", data_dir)
    straight = _start(tmp_path, "straight", *common, "--params_out", tmp_path / "straight.npz", processes=1)
    two = _start(tmp_path, "elastic", *common, "--hang_after_checkpoint", saved, "--fsdp", 2)
    _wait_for(lambda: str(saved) in _report(tmp_path, "elastic")["losses"], f"step {saved}", two)
    for line in iter(two[0].stdout.readline, ""):        # process 0 prints it once the checkpoint is on disk
        if line.startswith(f"CHECKPOINTED {saved}"):
            break
    for process in two:
        process.kill()
        process.wait()
    first = _report(tmp_path, "elastic")
    assert _steps(tmp_path, "elastic") == [saved]

    _finish(_start(tmp_path, "elastic", *common, "--params_out", tmp_path / "elastic.npz", processes=1))
    _finish(straight)
    reference, second = _report(tmp_path, "straight"), _report(tmp_path, "elastic")
    assert sorted(map(int, first["batches"])) == list(range(1, saved + 1))
    assert sorted(map(int, second["batches"])) == list(range(saved + 1, steps + 1))   # resumed at step saved + 1
    # Every global batch, the ones of 2 processes and the resumed ones of 1, is bitwise the 1-process run's.
    assert {**first["batches"], **second["batches"]} == reference["batches"]
    assert len(set(reference["batches"].values())) == steps
    # The numbers follow; bitwise only within one process count (2 processes reduce over gloo in another order).
    assert [{**first["losses"], **second["losses"]}[str(s)] for s in range(1, steps + 1)] == pytest.approx(
        [reference["losses"][str(s)] for s in range(1, steps + 1)], rel=1e-5)
    want, got = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "elastic.npz")
    assert sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
