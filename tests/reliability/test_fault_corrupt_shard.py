"""Fault injection: a train shard's bytes overwritten in the middle (not truncated). Its index is intact, so the
dataset opens and training starts; the checksum of the damaged chunk fails when the pipeline reads that record.
The run stops with ONE line `error: <shard file> is corrupt at record N of M (...); restore the file, or rebuild the
dataset with create_pretraining_data --overwrite`, exit 2 from main.py, no traceback, no hang, the dataset
untouched, no checkpoints/ directory left in a new workdir; a run resumed on the damaged dataset leaves its
checkpoint and export as they were.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

import _tiny_dataset as tiny
from _entry_points import forget_flags_defined_since, run_entry, snapshot
from _train_helpers import REPO_ROOT
from bertjax.data import features, pipeline
from bertjax.errors import BertjaxError
from test_bad_inputs import DATA, TINY

SHARDS = {"train": [64, 400], "eval": [16]}  # 400 records: the middle of that file is record data (see _corrupt)
BATCHES_PER_EPOCH = sum(SHARDS["train"]) // 8   # TINY's batch of 8
TIMEOUT = 180


@pytest.fixture(scope="module", autouse=True)
def _restore_absl_flags():
    """Remove the flags the in-process main.py run defined, so later tests in this process start afresh."""
    before = set(flags.FLAGS)
    yield
    forget_flags_defined_since(before)


def _corrupt(data_dir: Path) -> Path:
    """Overwrite 64 bytes at 50% of train shard 1 with garbage; return the shard's path."""
    shard = next(data_dir.glob("*-train.array_record-00001-of-00002"))
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes((i * 151 + 7) % 256 for i in range(64))
    shard.write_bytes(bytes(data))
    # In the middle, not at the end: the footer and index still read (the file opens), reading records fails. (The
    # writer pads the records to a 64 KiB block before the footer; with 400 records 50% falls in record data. A
    # byte overwritten in that zero padding is never read, and harms nothing.)
    assert features.count_records(shard) == SHARDS["train"][1]
    with pytest.raises(RuntimeError, match="Corrupted Riegeli"):
        features.read_shard(shard)
    return shard


def _main_args(data_dir, workdir, steps: int, *extra) -> list[str]:
    return [f"--config={REPO_ROOT / 'configs' / 'base.py'}", f"--workdir={workdir}", f"--config.data.dir={data_dir}",
            *DATA, *TINY, f"--config.train.num_train_steps={steps}", *extra]


def _main_process(*args) -> subprocess.CompletedProcess:
    """main.py as a real process (one CPU device); fails, never hangs, on a timeout."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "main.py", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env, cwd=REPO_ROOT)


def _one_error_line(result: subprocess.CompletedProcess, shard: Path) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert re.search(rf"{re.escape(str(shard))} is corrupt at record \d+ of 400 \(RuntimeError: Corrupted "
                     r"Riegeli/records file: .*\); restore the file, or rebuild the dataset with "
                     r"create_pretraining_data --overwrite$", lines[0]), lines[0]
    return lines[0]


def test_the_pipeline_names_the_shard_and_record_at_the_batch_that_reads_it(tmp_path):
    data_dir = Path(tiny.write_dataset(str(tmp_path / "dataset"), SHARDS))
    shard = _corrupt(data_dir)
    batches = pipeline.create_iterator(str(data_dir), "train", 8, shuffle=False, num_epochs=1, process_index=0,
                                       process_count=1)
    good = 0
    with pytest.raises(BertjaxError, match=rf"^{re.escape(str(shard))} is corrupt at record (\d+) of 400 ") as error:
        for _ in batches:
            good += 1
    record = int(re.search(r"at record (\d+)", str(error.value)).group(1))
    assert good == (SHARDS["train"][0] + record) // 8  # every batch before the damaged record came, in file order
    with pytest.raises(RuntimeError):
        features.read_shard(shard)


@pytest.mark.slow
def test_a_shard_corrupt_in_the_middle_stops_a_new_run_with_one_line_naming_it(tmp_path):
    data_dir = Path(tiny.write_dataset(str(tmp_path / "dataset"), SHARDS))
    shard = _corrupt(data_dir)
    before = snapshot(data_dir)
    workdir = tmp_path / "run"
    result = _main_process(*_main_args(data_dir, workdir, 2 * BATCHES_PER_EPOCH))  # 2 epochs: every record read
    _one_error_line(result, shard)
    assert snapshot(data_dir) == before                                 # the dataset is read, never written
    # A run stopped by bad input leaves no empty checkpoints/ behind (a later run must not take it for a run).
    assert not (workdir / "checkpoints").exists(), sorted(p.name for p in workdir.iterdir())


@pytest.mark.slow
def test_a_resumed_run_stops_at_the_corrupt_shard_and_keeps_its_checkpoint(tmp_path):
    data_dir = Path(tiny.write_dataset(str(tmp_path / "dataset"), SHARDS))
    run = tmp_path / "run"
    status = run_entry("main", _main_args(data_dir, run, 2, "--config.checkpoint.every_steps=2",
                                          "--config.eval.num_batches=1"))     # trained on the intact dataset
    assert status == 0 and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2"]
    kept = snapshot(run / "checkpoints", run / "export")
    shard = _corrupt(data_dir)                                          # then damaged between two runs
    result = _main_process(*_main_args(data_dir, run, 2 * BATCHES_PER_EPOCH, "--config.checkpoint.every_steps=1000"))
    _one_error_line(result, shard)
    assert "training from step 2 to" in result.stdout                 # it resumed, then met the damaged record
    assert snapshot(run / "checkpoints", run / "export") == kept       # its checkpoint and export untouched
