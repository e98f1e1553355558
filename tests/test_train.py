"""The training run as a process: exact resume after kill -9, clean exit on SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_train_worker.py")
TIMEOUT = 180


def _worker(report, workdir, *extra, **popen_kwargs):
    command = [sys.executable, WORKER, "--workdir", str(workdir), "--report", str(report), *map(str, extra)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            **popen_kwargs)


def _finish(process) -> str:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"worker timed out:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def _wait_for_line(process, prefix: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(prefix):
            return
    process.kill()
    pytest.fail(f"worker never printed {prefix!r}:\n{''.join(lines)[-3000:]}")


def _read(report) -> dict:
    with open(report) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A small real dataset (dynamic masking, so every epoch's batches differ) read by the Grain pipeline."""
    import _tiny_dataset

    return _tiny_dataset.write_dataset(str(tmp_path_factory.mktemp("data") / "dataset"),
                                       {"train": [40, 40], "eval": [32]}, masking="dynamic")


@pytest.mark.slow
def test_kill_9_and_restart_gives_bitwise_identical_params_and_batches(tmp_path, dataset_dir):
    steps = 12  # 80 training examples, batches of 16: 5 per epoch, so the run crosses epochs
    common = ("--steps", steps, "--checkpoint_every", steps // 2, "--data_dir", dataset_dir)
    straight = _worker(tmp_path / "straight.json", tmp_path / "straight", *common)
    _finish(straight)

    first = _worker(tmp_path / "first.json", tmp_path / "resumed", *common, "--hang_after_checkpoint", steps // 2)
    _wait_for_line(first, "CHECKPOINTED")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    _finish(_worker(tmp_path / "second.json", tmp_path / "resumed", *common))

    reference, before, after = (_read(tmp_path / name) for name in ("straight.json", "first.json", "second.json"))
    assert sorted(map(int, after["batches"])) == list(range(steps // 2 + 1, steps + 1))  # resumed at N + 1
    assert {**before["batches"], **after["batches"]} == reference["batches"]
    assert len(set(reference["batches"].values())) == steps
    assert after["params"] == reference["params"] is not None
    assert {**before["losses"], **after["losses"]} == reference["losses"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    workdir = tmp_path / "run"
    process = _worker(tmp_path / "report.json", workdir, "--steps", 1000, "--checkpoint_every", 1000,
                      "--step_delay", 0.05)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not (tmp_path / "report.json").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = _finish(process)
    assert "preempted: saved checkpoint at step" in output
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and 0 < saved[0] < 1000


def test_throughput_reports_tokens_mfu_and_eta():
    import jax

    from bertjax.formatting import format_duration
    from bertjax.metrics_writer import Throughput, peak_flops_per_device

    assert peak_flops_per_device() is None  # CPU: MFU is printed as n/a
    meter = Throughput(flops_per_step=1e12, tokens_per_step=1000, total_steps=110, peak_flops=1e12)
    meter.reset(10)
    time.sleep(0.05)
    speed = meter.measure(20)
    assert 0 < speed["steps_per_sec"] <= 10 / 0.05
    assert speed["tokens_per_sec"] == pytest.approx(1000 * speed["steps_per_sec"])
    assert speed["mfu"] == pytest.approx(speed["steps_per_sec"] / jax.device_count())
    assert speed["eta_seconds"] == pytest.approx(90 / speed["steps_per_sec"])
    assert format_duration(3725) == "1:02:05"
    meter.reset(20)  # real (non-padding) tokens, as the loop reports them, replace batch x seq
    meter.add_tokens(300)
    meter.add_tokens(200)
    time.sleep(0.05)
    speed = meter.measure(22)
    assert speed["tokens_per_sec"] == pytest.approx(500 * speed["steps_per_sec"] / 2)
