"""main.py as users run it: one clear error line for bad input; a tiny run end to end; the demo's first-use build."""
import json
import os
import subprocess
import sys

import pytest

from _train_helpers import REPO_ROOT

MAIN = str(REPO_ROOT / "main.py")
TIMEOUT = 240
TINY = ["--config.model.size=tiny", "--config.model.hidden_size=32", "--config.model.num_attention_heads=2",
        "--config.model.intermediate_size=64", "--config.dtype=float32", "--config.train.batch_size=8",
        "--config.eval.batch_size=8", "--config.eval.num_batches=2", "--config.optimizer.warmup_steps=1",
        "--config.log.every_steps=2"]


def _main(*args, workdir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"}
    env.pop("XLA_FLAGS", None)
    try:
        return subprocess.run([sys.executable, MAIN, f"--workdir={workdir}", *map(str, args)], capture_output=True,
                              text=True, timeout=TIMEOUT, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"main.py timed out: {e.stdout}\n{e.stderr}")


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.parametrize("flag, expected", [
    ("--config.train.batchsize=3", 'unknown config field "batchsize" (did you mean "batch_size"?)'),
    ("--config.train.batch_size=3.5", "--config.train.batch_size=3.5"),
    ("--config.data.dir=/does/not/exist", "--config.data.dir=/does/not/exist does not exist"),
    ("--config=configs/nope.py", "--config=configs/nope.py cannot be loaded ([Errno 2] No such file or directory"),
    ("--config=README.md", "--config=README.md is not a bertjax config file (SyntaxError line 3"),
    ("--config=configs", "--config=configs cannot be loaded ([Errno 21] Is a directory"),
    ("--config=configs/base.py:extra", "--config=configs/base.py:extra failed in get_config() (TypeError"),
])
def test_bad_input_is_one_clear_line(tmp_path, flag, expected):
    config = [] if flag.startswith("--config=") else ["--config=configs/base.py"]
    line = _one_error_line(_main(*config, flag, workdir=tmp_path))
    assert expected in line


def test_phase2_requires_init_from(tmp_path):
    line = _one_error_line(_main("--config=configs/phase2.py", workdir=tmp_path))
    assert "--config.train.init_from is required" in line


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    import _tiny_dataset

    return _tiny_dataset.write_dataset(str(tmp_path_factory.mktemp("data") / "dataset"),
                                       {"train": [64], "eval": [16]})


@pytest.mark.slow
def test_train_then_evaluate_only_then_refuse_mismatches(tmp_path, dataset_dir):
    workdir = tmp_path / "run"
    run = ["--config=configs/base.py", f"--config.data.dir={dataset_dir}", "--config.data.max_seq_length=16",
           "--config.data.max_predictions_per_seq=4", "--config.train.num_train_steps=4",
           "--config.checkpoint.every_steps=2", *TINY]
    result = _main(*run, workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 4: loss" in result.stdout and "mfu n/a" in result.stdout
    assert "constant-prediction mlm baseline" in result.stdout
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert json.loads((workdir / "config.json").read_text())["model"]["vocab_size"] == 5000
    assert json.loads((workdir / "export" / "config.json").read_text())["hidden_size"] == 32
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir / "tensorboard"))

    result = _main(*run, "--config.train.eval_only=true", workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval step 4:" in result.stdout and "step 2: loss" not in result.stdout

    line = _one_error_line(_main(*run, "--config.model.hidden_size=64", workdir=workdir))
    assert "incompatible run: config.model.hidden_size was 32, now 64" in line and "--workdir" in line
    line = _one_error_line(_main(*run[:-len(TINY)], *TINY, "--config.data.max_predictions_per_seq=5",
                                 workdir=tmp_path / "other"))
    assert "--config.data.max_predictions_per_seq=5 does not match the dataset manifest" in line
    line = _one_error_line(_main(*run, "--config.train.batch_size=7", workdir=tmp_path / "other"))
    assert "--config.train.batch_size=7 must be divisible by the number of devices (2)" in line


@pytest.mark.slow
def test_demo_builds_vocab_and_data_on_first_use_and_reuses_them(tmp_path):
    workdir = tmp_path / "demo"
    demo = ["--config=configs/demo.py", "--config.train.num_train_steps=3", "--config.data.build.dupe_factor=1",
            "--config.data.build.vocab_size=2000", *TINY]
    result = _main(*demo, workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    vocab = workdir / "data" / "vocab" / "vocab.txt"
    manifest_mtime = max(p.stat().st_mtime for p in (workdir / "data" / "dataset").rglob("*"))
    vocab_mtime = vocab.stat().st_mtime
    assert "eval step 3:" in result.stdout

    result = _main(*demo, "--config.train.num_train_steps=5", workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training from step 3 to 5" in result.stdout
    assert vocab.stat().st_mtime == vocab_mtime
    assert max(p.stat().st_mtime for p in (workdir / "data" / "dataset").rglob("*")) == manifest_mtime


def test_a_dataset_missing_a_shard_file_is_one_line(tmp_path):
    import _tiny_dataset

    data_dir = _tiny_dataset.write_dataset(str(tmp_path / "dataset"), {"train": [32, 32], "eval": [16]})
    shard = sorted(p for p in (tmp_path / "dataset").iterdir() if "train.array_record-00001" in p.name)[0]
    shard.unlink()
    line = _one_error_line(_main("--config=configs/base.py", f"--config.data.dir={data_dir}",
                                 "--config.data.max_seq_length=16", "--config.data.max_predictions_per_seq=4", *TINY,
                                 workdir=tmp_path / "run"))
    assert f"lacks 1 of its 3 shard files ({shard.name} missing or empty)" in line
    assert not (tmp_path / "run" / "checkpoints").exists()
