"""bertjax.aot: the train step compiled for a TPU slice on the CPU (libtpu's compile-only devices), its memory and
FLOPs per chip, the exit statuses; bertjax.hardware: slice names and the chip table behind the MFU estimate."""
import math
import os
import subprocess
import sys
import time
import types

import jax
import pytest

from _train_helpers import tiny_config
from bertjax import aot, hardware, metrics_writer, objectives, run_config
from bertjax.errors import BertjaxError
from bertjax.model import BertForPreTraining, abstract_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m bertjax.aot ...` in the repository, with the test's environment minus the CPU device count."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run([sys.executable, "-m", "bertjax.aot", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name, topology_name, chips", [
    ("v4-32", "v4:2x2x4", 16), ("v4-8", "v4:2x2x1", 4), ("v5p-128", "v5p:4x4x4", 64), ("v5e-16", "v5e:4x4", 16),
    ("v5e-256", "v5e:16x16", 256), ("v6e-64", "v6e:8x8", 64), ("v5e:16x16", "v5e:16x16", 256),
    ("v5litepod-8", "v5e:2x4", 8), ("v4:2x2x1", "v4:2x2x1", 4), ("v3-32", "v3:4x4", 16)])
def test_slice_names(name, topology_name, chips):
    topology = hardware.parse_topology(name)
    assert (topology.topology_name, topology.num_chips) == (topology_name, chips)


@pytest.mark.parametrize("name", ["v7-8", "tpu", "v5e-3", "v4-12", "v5e:2x2x2x2", "v5e:2x2x2"])
def test_bad_slice_names(name):
    with pytest.raises(BertjaxError, match="--topology"):
        hardware.parse_topology(name)


def test_mfu_uses_the_chip_table(monkeypatch):
    monkeypatch.setattr(jax, "devices", lambda *a: [types.SimpleNamespace(device_kind="TPU v5 lite")])
    peak = metrics_writer.peak_flops_per_device()
    assert peak == hardware.CHIPS["TPU v5 lite"].peak_flops == 197e12
    meter = metrics_writer.Throughput(flops_per_step=1e15, tokens_per_step=1, total_steps=100, peak_flops=peak)
    meter.reset(0)
    time.sleep(0.02)
    speed = meter.measure(1)
    assert speed["mfu"] == pytest.approx(1e15 * speed["steps_per_sec"] / (197e12 * jax.device_count()))
    monkeypatch.setattr(jax, "devices", lambda *a: [types.SimpleNamespace(device_kind="Some Accelerator 9000")])
    assert metrics_writer.peak_flops_per_device() is None
    assert metrics_writer.peak_flops_per_device(1e12) == 1e12


def test_find_batch_bisects_to_the_largest_fitting_power_of_two():
    compiled = []

    def compile_at(batch_size):  # a fake compiler: 1 GiB fixed + 0.1 GiB per example, 16 GiB of HBM
        compiled.append(batch_size)
        temporaries = int(0.1 * batch_size * hardware.GiB)
        return aot.StepReport("fake", "fake model", "TPU v5 lite", 4, {}, batch_size, {
            "arguments": hardware.GiB, "outputs": 0, "aliased": 0, "temporaries": temporaries, "generated_code": 0},
            16 * hardware.GiB, None, 1.0)

    for start in (1, 4, 64, 128, 1024):
        compiled.clear()
        best, refused = aot.find_batch(compile_at, unit=4, start=start)
        assert (best.batch_size, refused.batch_size) == (128, 256), start
        assert len(compiled) <= 4, (start, compiled)
    best, refused = aot.find_batch(lambda b: compile_at(b * 1000), unit=4)
    assert best is None and refused.batch_size == 4000


@pytest.fixture(scope="module")
def tiny_report():
    """The tests' tiny BERT (_train_helpers.tiny_config, BERT's vocab) with fsdp 2 compiled for a 2x2 v5e slice (4
    chips): (the report, the config, the BertConfig)."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other test processes may hold libtpu
    topology = hardware.parse_topology("v5e:2x2")
    devices = aot.topology_devices(topology)
    assert len(devices) == 4 and devices[0].device_kind == "TPU v5 lite"
    config = tiny_config()
    config.mesh.fsdp = 2
    bert_config = run_config.bert_config(config, aot.DEFAULT_VOCAB_SIZE)
    return aot.compile_step(config, topology, devices), config, bert_config


@pytest.mark.slow
def test_memory_report_is_plausible(tiny_report):
    report, _, bert_config = tiny_report
    assert report.fits and report.hbm_bytes == 16 * hardware.GiB and report.mesh_shape == {"data": 2, "fsdp": 2}
    assert all(value > 0 for value in report.memory.values())
    params = abstract_params(BertForPreTraining(bert_config))
    param_bytes = sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))
    state_bytes = 3 * param_bytes  # params + Adam's two moments, float32
    # fsdp 2 splits the big leaves over 2 chips; small ones stay replicated
    # (plus the batch, and a few vocab rows when config.model.vocab_pad_multiple pads the vocab)
    assert state_bytes / 2 <= report.memory["arguments"] <= 1.05 * state_bytes
    assert report.memory["aliased"] >= 0.9 * state_bytes / 2  # the donated state is updated in place
    assert report.needed_bytes < report.hbm_bytes


@pytest.mark.slow
def test_flops_report_matches_the_formula(tiny_report):
    report, config, bert_config = tiny_report
    objective = objectives.Pretraining(config.data.max_predictions_per_seq, config.model.vocab_pad_multiple)
    assert report.model_flops == pytest.approx(
        objective.flops_per_example(bert_config, config.data.max_seq_length) * config.train.batch_size / 4)
    # XLA counts one chip's program: the formula's share plus the optimizer, softmax, LayerNorm, ...
    assert 0.9 < report.cost_flops / report.model_flops < 2.0
    lines = aot.format_report(report, config)
    assert lines[1].startswith(f"BERT L2 H32 V{aot.DEFAULT_VOCAB_SIZE}")
    assert lines[3].startswith("fits: needs") and "FLOPs per chip per step" in lines[4]


@pytest.mark.slow
def test_cli_huge_batch_does_not_fit_exit_1():
    result = run_cli("--config=configs/base.py", "--topology=v5e:2x2", "--config.model.size=tiny",
                     "--config.train.batch_size=1048576", "--config.eval.batch_size=8")
    assert result.returncode == 1, result.stderr
    assert "does not fit" in result.stdout and "Traceback" not in result.stderr


def test_cli_bad_topology_is_one_line_exit_2():
    result = run_cli("--config=configs/base.py", "--topology=v9-8")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: --topology='v9-8' is not a TPU topology")


def test_cli_bad_config_is_one_line_exit_2():
    result = run_cli("--config=configs/base.py", "--topology=v5e-4", "--config.train.batch_size=6")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--config.train.batch_size=6 must be divisible by the number of devices (4)" in result.stderr
