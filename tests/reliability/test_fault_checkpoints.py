"""Fault injection: a corrupt, truncated or incomplete latest checkpoint (any of its files, array data included).

Without `--config.checkpoint.fallback` the restore is one BertjaxError line naming the step and the fix (exit 2
from a process); with it, the step is moved to <workdir>/corrupt_checkpoints/ (kept, not deleted) and the run
resumes from the previous step and ends on the uninterrupted run's params, bitwise.
"""
import os
import shutil
import subprocess
import sys

import pytest

from _train_helpers import checkpointed_config, params_digest, synthetic_data
from bertjax import checkpoint, workdir_layout
from bertjax.errors import BertjaxError
from bertjax.train import train_and_evaluate

STEPS, EVERY = 6, 2  # checkpoints 2, 4, 6: the latest is corrupted, 4 is the fallback
HERE = os.path.dirname(os.path.abspath(__file__))


def _config(fallback: bool):
    config = checkpointed_config(STEPS, EVERY)
    config.checkpoint.fallback = fallback
    return config


def _train(workdir, fallback: bool = False) -> dict:
    """Run to STEPS in `workdir`; return {"params": digest at the last step, "steps": the steps trained}."""
    seen = {"steps": [], "params": None}

    def hook(info):
        seen["steps"].append(info.step)
        if info.step == STEPS:
            seen["params"] = params_digest(info.state.params)

    config = _config(fallback)
    train_and_evaluate(config, str(workdir), data=synthetic_data(config), hooks=[hook])
    return seen


@pytest.fixture(scope="module")
def finished_run(synthetic_run):
    """An uninterrupted run's workdir (checkpoints 2, 4, 6) and its final params: the shared synthetic run
    (conftest.py), which the tests copy before they corrupt it."""
    assert synthetic_run.config.to_dict() == _config(fallback=False).to_dict()  # what _train resumes it with
    workdir = synthetic_run.workdir
    assert sorted(checkpoint.Checkpointer(str(workdir), every_steps=EVERY, keep=3).all_steps()) == [2, 4, 6]
    return workdir, synthetic_run.params


def _files(step_dir, pattern):
    found = sorted(p for p in step_dir.rglob(pattern) if p.is_file())
    assert found, f"no {pattern} under {step_dir}"
    return found


def _array_data(step_dir):
    """The OCDBT data file the restore reads (state/d/*: the params and optimizer moments, merged there from the
    per-process state/ocdbt.process_0/d/* files at the end of the save)."""
    return max((step_dir / "state" / "d").iterdir(), key=lambda p: p.stat().st_size)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 16):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# (name, corrupt(step_dir)): each one is detected by the restore.
CORRUPTIONS = {
    "truncated_array_data": lambda d: _truncate(_array_data(d)),
    "flipped_bytes_in_array_data": lambda d: _flip_middle(_array_data(d)),
    "deleted_array_data": lambda d: _array_data(d).unlink(),
    "truncated_ocdbt_manifest": lambda d: _truncate(d / "state" / "manifest.ocdbt"),
    "truncated_state_metadata": lambda d: _truncate(d / "state" / "_METADATA"),
    "deleted_state_metadata": lambda d: (d / "state" / "_METADATA").unlink(),
    "truncated_data_iterator_json": lambda d: _truncate(d / "data" / "process_0-of-1.json"),
    "truncated_config_json": lambda d: _truncate(d / "config" / "metadata"),
}


def _corrupted_copy(finished_run, tmp_path, corruption):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run[0], workdir)
    CORRUPTIONS[corruption](workdir / "checkpoints" / str(STEPS))
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_latest_checkpoint_is_one_error_line(finished_run, tmp_path, corruption):
    workdir = _corrupted_copy(finished_run, tmp_path, corruption)
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(BertjaxError) as raised:
        _train(workdir)
    message = str(raised.value)
    assert "\n" not in message
    assert f"checkpoint step {STEPS} " in message and "--config.checkpoint.fallback=True" in message
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before  # nothing touched


# Recovery is the same whatever was detected (every kind is detected above): one kind per part of a step.
FALLBACK_CASES = ("flipped_bytes_in_array_data", "truncated_ocdbt_manifest", "deleted_state_metadata",
                  "truncated_data_iterator_json")


@pytest.mark.slow
@pytest.mark.parametrize("corruption", FALLBACK_CASES)
def test_fallback_resumes_from_the_previous_step_and_keeps_the_corrupt_one(finished_run, tmp_path, corruption):
    workdir = _corrupted_copy(finished_run, tmp_path, corruption)
    corrupt_files = sorted(p.relative_to(workdir / "checkpoints" / str(STEPS))
                           for p in (workdir / "checkpoints" / str(STEPS)).rglob("*"))
    seen = _train(workdir, fallback=True)
    assert seen["steps"] == list(range(STEPS - EVERY + 1, STEPS + 1))  # resumed from step 4
    assert seen["params"] == finished_run[1]  # bitwise the uninterrupted run's
    kept = workdir / workdir_layout.CORRUPT_DIR / str(STEPS)
    assert sorted(p.relative_to(kept) for p in kept.rglob("*")) == corrupt_files  # set aside, not deleted
    # The rerun saved a fresh, readable step 6 in its place; resuming again has nothing left to train.
    assert checkpoint.Checkpointer(str(workdir), every_steps=EVERY, keep=3).all_steps() == [2, 4, 6]
    assert _train(workdir)["steps"] == []


@pytest.mark.slow
def test_fallback_skips_several_corrupt_steps(finished_run, tmp_path):
    workdir = _corrupted_copy(finished_run, tmp_path, "truncated_array_data")
    CORRUPTIONS["truncated_config_json"](workdir / "checkpoints" / str(STEPS - EVERY))
    seen = _train(workdir, fallback=True)
    assert seen["steps"] == list(range(STEPS - 2 * EVERY + 1, STEPS + 1))
    assert seen["params"] == finished_run[1]
    assert sorted(p.name for p in (workdir / workdir_layout.CORRUPT_DIR).iterdir()) == [str(STEPS - EVERY), str(STEPS)]


@pytest.mark.slow
def test_corrupt_checkpoint_exits_2_with_one_line_from_a_process(finished_run, tmp_path):
    workdir = _corrupted_copy(finished_run, tmp_path, "truncated_array_data")
    result = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(HERE), "_train_worker.py"), "--workdir", str(workdir),
         "--report", str(tmp_path / "report.json"), "--steps", str(STEPS),
         "--checkpoint_every", str(EVERY)],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "checkpoint step" in line]
    assert len(lines) == 1 and f"checkpoint step {STEPS} is unreadable" in lines[0], result.stderr[-3000:]
