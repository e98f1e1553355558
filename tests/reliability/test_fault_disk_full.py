"""Fault injection: the disk fills up mid-run (RLIMIT_FSIZE in the training process: writes fail with EFBIG).

The failed asynchronous save is one error line (exit 2) naming the last finished checkpoint; the earlier
checkpoints stay intact and a rerun with space resumes from them.
"""
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_disk_full_worker.py")


def _run(workdir, *extra):
    return subprocess.run([sys.executable, WORKER, "--workdir", str(workdir), *map(str, extra)],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_disk_full_during_a_save_is_one_error_line_and_earlier_checkpoints_resume(tmp_path):
    workdir = tmp_path / "run"
    result = _run(workdir, "--limit_after", 4)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    # The OS error (EFBIG, errno 27) is named: as its text, or as tensorstore's code when its message is long.
    assert "writing a checkpoint failed" in errors[0]
    assert "File too large" in errors[0] or "os_error_code='27'" in errors[0], errors[0]
    assert "checkpoints up to step 4 are intact" in errors[0]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]

    result = _run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training from step 4 to 8" in result.stdout and "FINISHED" in result.stdout
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "6", "8"]
