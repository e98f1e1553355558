"""Fault injection: a train shard's bytes overwritten in the middle (not truncated): its index is intact, so the
dataset opens and training starts; the checksum of the damaged chunk fails when the pipeline reads that record. The
run stops with ONE line `error: <shard file> is corrupt at record N ...; ... rebuild the dataset with
create_pretraining_data --overwrite`, exit 2 from main.py, no traceback, no hang, the dataset untouched; resumed
from an earlier run, its checkpoints and export are left as they were.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

import _tiny_dataset as tiny
from _entry_points import forget_flags_defined_since, run_entry, snapshot
from _train_helpers import REPO_ROOT
from bertjax.data import features
from test_bad_inputs import DATA, TINY

BATCHES_PER_EPOCH = (64 + 400) // 8     # TINY's batch of 8 over the train split below
TIMEOUT = 180


@pytest.fixture(scope="module", autouse=True)
def _restore_absl_flags():
    """Remove the flags the in-process main.py run defined, so later tests in this process start afresh."""
    before = set(flags.FLAGS)
    yield
    forget_flags_defined_since(before)


def _main_args(data_dir, workdir, steps: int, *extra) -> list[str]:
    return [f"--config={REPO_ROOT / 'configs' / 'base.py'}", f"--workdir={workdir}", f"--config.data.dir={data_dir}",
            *DATA, *TINY, f"--config.train.num_train_steps={steps}", *extra]


def _main_process(*args) -> subprocess.CompletedProcess:
    """main.py as a real process (one CPU device); fails, never hangs, on a timeout."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "main.py", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny dataset (train shards of 64 and 400 records), a run trained on it intact to step 2 (its checkpoint,
    export), then shard 1's bytes at 50% of the file overwritten with garbage."""
    root = tmp_path_factory.mktemp("corrupt_shard")
    data_dir = Path(tiny.write_dataset(str(root / "dataset"), {"train": [64, 400], "eval": [16]}))
    run = root / "resumed"
    status = run_entry("main", _main_args(data_dir, run, 2, "--config.checkpoint.every_steps=2",
                                          "--config.eval.num_batches=1"))
    assert status == 0 and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2"]

    shard = next(data_dir.glob("*-train.array_record-00001-of-00002"))
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes((i * 151 + 7) % 256 for i in range(64))
    shard.write_bytes(bytes(data))
    # Corrupt in the middle, not at the end: the footer and index still read (the file opens; 400 records: the
    # middle is record data, not the padding before the footer), only reading the damaged records fails.
    assert features.count_records(shard) == 400
    with pytest.raises(RuntimeError, match="Corrupted Riegeli"):
        features.read_shard(shard)
    return data_dir, shard, run


def _one_error_line(result: subprocess.CompletedProcess, shard: Path) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert f"{shard} is corrupt at record " in lines[0], lines[0]
    assert "Corrupted Riegeli/records file" in lines[0], lines[0]
    assert lines[0].endswith("rebuild the dataset with create_pretraining_data --overwrite"), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def new_run(world, tmp_path_factory):
    """main.py on the corrupt dataset in a new workdir, two epochs (every record is read): its result, workdir
    and the dataset's files before it."""
    data_dir, *_ = world
    workdir = tmp_path_factory.mktemp("new_run") / "run"
    before = snapshot(data_dir)
    return _main_process(*_main_args(data_dir, workdir, 2 * BATCHES_PER_EPOCH)), workdir, before


@pytest.mark.slow
def test_a_shard_corrupt_in_the_middle_stops_a_new_run_with_one_line_naming_it(world, new_run):
    data_dir, shard, *_ = world
    result, workdir, before = new_run
    _one_error_line(result, shard)
    assert snapshot(data_dir) == before                                 # the dataset is read, never written


@pytest.mark.slow
def test_a_new_run_stopped_by_a_corrupt_shard_leaves_no_checkpoints_directory(new_run):
    _, workdir, _ = new_run
    assert not (workdir / "checkpoints").exists(), sorted(p.name for p in workdir.iterdir())


@pytest.mark.slow
def test_a_resumed_run_stops_at_the_corrupt_shard_and_keeps_its_checkpoints(world):
    data_dir, shard, run = world
    kept = snapshot(run / "checkpoints", run / "export")
    result = _main_process(*_main_args(data_dir, run, 2 * BATCHES_PER_EPOCH, "--config.checkpoint.every_steps=1000"))
    _one_error_line(result, shard)
    assert "training from step 2 to" in result.stdout                 # it resumed, then met the damaged record
    assert snapshot(run / "checkpoints", run / "export") == kept       # its checkpoint and export untouched
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2"]
