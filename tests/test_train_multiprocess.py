"""Two JAX processes x 4 CPU devices (gloo collectives on localhost) train exactly like one process."""
import json
import os
import subprocess
import sys

import portpicker
import pytest

import numpy as np

from _train_helpers import make_batch, run_steps, synthetic_data, tiny_config
from bertjax.train import train_and_evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 240


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_match_one_process(tmp_path):
    fsdp = 2  # mesh data=4 x fsdp=2 over both processes: batch and parameter shards cross the process boundary
    steps = 6
    port = portpicker.pick_unused_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_train_worker.py"), "--workdir", str(tmp_path / "run"),
             "--report", str(tmp_path / "report.json"), "--steps", str(steps), "--checkpoint_every", "3",
             "--devices", "4", "--fsdp", str(fsdp), "--coordinator", f"127.0.0.1:{port}", "--num_processes", "2",
             "--process_id", str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(2)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail("2-process run timed out")
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "on 8 devices, mesh {'data': %d, 'fsdp': %d}, 2 processes" % (8 // fsdp, fsdp) in outputs[0]
    report = json.loads((tmp_path / "report.json").read_text())
    two_process = [report["losses"][str(step)] for step in range(1, steps + 1)]
    # Both processes wrote one checkpoint together (Orbax multi-host save).
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]

    config = tiny_config(num_train_steps=steps)
    one_process, _, _ = run_steps(config, steps)
    assert one_process[0] != one_process[-1]
    assert two_process == pytest.approx(one_process, rel=1e-5)

    # The 2-process checkpoint resumes in 1 process on 8 devices. Grain iterator states are per process, so the
    # input order starts afresh (batch 0) while the train state continues at step 7.
    seen = {}
    config = tiny_config(num_train_steps=steps + 2)
    config.checkpoint.every_steps = 3
    train_and_evaluate(config, str(tmp_path / "run"), data=synthetic_data(config),
                       hooks=[lambda info: seen.setdefault(info.step, info.host_batch)])
    assert sorted(seen) == [steps + 1, steps + 2]
    expected = make_batch(config.train.batch_size, start=0)
    for key in expected:
        np.testing.assert_array_equal(seen[steps + 1][key], expected[key])
