"""Fault injection: the workdir's checkpoints directory becomes read-only mid-run (mode 0555, and the training
process without root's permission override, so the OS refuses its writes with EACCES).

The next save is one error line (exit 2) naming the workdir, that it is not writable, and the last finished
checkpoint; the earlier checkpoints stay intact and a rerun, once write access is back, resumes from them.
"""
import os

import pytest

from test_fault_disk_full import _run  # _disk_full_worker.py, which also injects this fault


def _files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_read_only_workdir_during_a_save_is_one_error_line_and_earlier_checkpoints_resume(tmp_path):
    workdir = tmp_path / "run"
    checkpoints = workdir / "checkpoints"
    result = _run(workdir, "--read_only_after", 4)
    assert oct(checkpoints.stat().st_mode & 0o777) == "0o555"  # the fault really happened
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"--workdir {workdir}: writing a checkpoint failed" in errors[0], errors[0]
    assert "Permission denied" in errors[0] or "os_error_code='13'" in errors[0], errors[0]
    assert "is not writable" in errors[0] and "checkpoints up to step 4 are intact" in errors[0], errors[0]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2", "4"]  # no half-written step 6 either
    kept = _files(checkpoints)

    os.chmod(checkpoints, 0o755)  # write access restored
    result = _run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training from step 4 to 8" in result.stdout and "FINISHED" in result.stdout
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["4", "6", "8"]
    assert {k: v for k, v in _files(checkpoints).items() if k.startswith("4/")} == {
        k: v for k, v in kept.items() if k.startswith("4/")}  # step 4 was read, not rewritten
