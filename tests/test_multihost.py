"""Multi-host failures are loud and survivable: start-up errors are one line (exit 2) instead of a hang or an abort,
and hosts that checked different things all stop before the first collective with the same message."""
import os
import shutil
import socket
import subprocess
import sys
import time

import portpicker
import pytest

import _tiny_dataset as tiny
from _train_helpers import REPO_ROOT
from bertjax import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = str(REPO_ROOT / "main.py")
WORKER = os.path.join(HERE, "_train_worker.py")
TIMEOUT = 120


def _main(*args, workdir, env_extra=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    env.pop("XLA_FLAGS", None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, MAIN, f"--workdir={workdir}", *map(str, args)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=env, cwd=REPO_ROOT)
    return result, time.monotonic() - start


def _error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Check failure" not in result.stderr
    return lines[-1]


def test_a_plain_machine_is_not_multi_host(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_PROCID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.multi_host_environment() is None
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed.multi_host_environment() is None                 # a one-task Slurm job is one host
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert "Slurm job of 4 tasks" in distributed.multi_host_environment()
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1v-0,t1v-1")
    assert "TPU pod slice of 2 hosts" in distributed.multi_host_environment()


@pytest.mark.slow
def test_an_unreachable_coordinator_is_one_error_line_within_the_timeout(tmp_path):
    port = portpicker.pick_unused_port()
    result, seconds = _main(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=1",
                            "--distributed_timeout=3", workdir=tmp_path / "run")
    line = _error_line(result)
    assert f"cannot reach the coordinator 127.0.0.1:{port}" in line and "--coordinator_address" in line
    assert seconds < 60


@pytest.mark.slow
def test_process_0_alone_or_on_a_busy_port_is_one_error_line(tmp_path):
    port = portpicker.pick_unused_port()
    result, seconds = _main(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=0",
                            "--distributed_timeout=3", workdir=tmp_path / "run")
    assert f"not all 2 processes joined the coordinator 127.0.0.1:{port} within 3 s" in _error_line(result)
    assert seconds < 60
    with socket.socket() as busy:                       # JAX itself would crash (SIGSEGV) on a port in use
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, _ = _main(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=0",
                          workdir=tmp_path / "run")
    assert f"process 0 cannot serve the coordinator on port {port}" in _error_line(result)


@pytest.mark.slow
@pytest.mark.parametrize("args, env, expected", [
    (["--num_processes=2"], {}, "multi-host start-up failed (the flags): jax.distributed.initialize: "
                                "coordinator_address should be defined"),
    ([], {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, "multi-host start-up failed (a Slurm job of 2 tasks"),
])
def test_incomplete_multi_host_settings_are_one_error_line(tmp_path, args, env, expected):
    result, _ = _main(*args, workdir=tmp_path / "run", env_extra=env)
    assert expected in _error_line(result)


def _run_two(tmp_path, per_process_args) -> list[tuple[int, str]]:
    """Two _train_worker.py processes (4 CPU devices each); [(returncode, output)] within TIMEOUT."""
    port = portpicker.pick_unused_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    processes = [subprocess.Popen(
        [sys.executable, WORKER, "--workdir", str(tmp_path / "run"), "--report", str(tmp_path / "report.json"),
         "--devices", "4", "--coordinator", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i),
         *map(str, per_process_args[i])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(2)]
    try:
        return [(process.wait(timeout=TIMEOUT), process.communicate()[0]) for process in processes]
    except subprocess.TimeoutExpired:
        pytest.fail("the 2-process run hung")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("case", ["one host fails", "hosts disagree"])
def test_hosts_that_checked_different_things_all_stop_with_the_same_message(tmp_path, case):
    data_dir = tiny.write_dataset(str(tmp_path / "ds"), {"train": [40, 40], "eval": [32]}, masking="dynamic")
    if case == "one host fails":
        # Process 1's vocab is not the dataset's: only its own check fails, both hosts stop with its message.
        other_vocab = tmp_path / "other" / "vocab.txt"
        other_vocab.parent.mkdir()
        shutil.copy(os.path.join(data_dir + "-vocab", "vocab.txt"), other_vocab)
        with open(other_vocab, "a") as f:
            f.write("extra\n")
        args = [["--data_dir", data_dir], ["--data_dir", data_dir, "--vocab_file", other_vocab]]
        expected = "process 1 of 2 failed the run checks: --config.data.vocab_file="
    else:
        # Process 1 reads another copy of the dataset with static masks: every check passes, the digests differ.
        other = tiny.write_dataset(str(tmp_path / "ds_static"), {"train": [40, 40], "eval": [32]})
        args = [["--data_dir", data_dir], ["--data_dir", other]]
        expected = "the 2 processes disagree before training: process 1: dataset manifest sha256"
    start = time.monotonic()
    results = _run_two(tmp_path, args)
    assert time.monotonic() - start < 60
    lines = []
    for returncode, output in results:
        assert returncode == 2, output[-3000:]
        assert "Traceback" not in output
        lines.append(output.strip().splitlines()[-1])
    assert lines[0] == lines[1] and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "run" / "checkpoints").exists()
