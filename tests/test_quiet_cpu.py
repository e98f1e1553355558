"""main.py as a newcomer runs it: on a machine without a TPU, with libtpu installed (the [tpu] extra) and no
JAX_PLATFORMS, a run prints no libtpu start-up errors and trains on the CPU; --help says what main.py does and lists
every config."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from bertjax import distributed

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MAIN = str(REPO_ROOT / "main.py")
CONFIGS = sorted(path.stem for path in (REPO_ROOT / "configs").glob("*.py") if not path.name.startswith("_"))
TINY = ["--config.model.size=tiny", "--config.model.hidden_size=32", "--config.model.num_attention_heads=2",
        "--config.model.intermediate_size=64", "--config.dtype=float32", "--config.train.batch_size=8",
        "--config.eval.batch_size=8", "--config.eval.num_batches=1", "--config.optimizer.warmup_steps=1",
        "--config.log.every_steps=1"]
# What libtpu prints when it starts up off a TPU: its own lines, and absl-style C++ log lines (E0000 00:00:...).
LIBTPU_NOISE = re.compile(r"libtpu|INVALID_ARGUMENT|unexpected worker hostname|TPU accelerator type|"
                          r"Source Location Trace|InitGoogle|lockfile|jellyfish|^[EWF]\d{4} ", re.MULTILINE)


def _plain_env() -> dict:
    """This environment as a user's shell has it: no platform choice, no TPU variables (conftest sets
    JAX_PLATFORMS=cpu for the test process). ALLOW_MULTIPLE_LIBTPU_LOAD=1: libtpu holds /tmp/libtpu_lockfile for the
    life of a process that loaded it, and a second one then fails at the lock, quietly; with it, a run that loads
    libtpu prints its start-up errors whatever else runs on this machine, so the test does not depend on that."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("JAX_PLATFORMS", "XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "PJRT_NAMES_AND_LIBRARY_PATHS")
           and name not in distributed._TPU_ENVIRONMENT}
    return {**env, "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}


def _run(args, env, timeout=120):
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{args[:2]} timed out: {e.stdout}\n{e.stderr}")


@pytest.fixture(scope="module")
def no_tpu():
    if distributed.tpu_signs() is not None:
        pytest.skip(f"this machine has a TPU ({distributed.tpu_signs()}): JAX is meant to use it")


@pytest.mark.slow
def test_a_plain_run_without_a_tpu_is_quiet_and_uses_the_cpu(tmp_path, no_tpu):
    result = _run([MAIN, f"--workdir={tmp_path / 'demo'}", "--config=configs/demo.py",
                   "--config.train.num_train_steps=2", "--config.data.build.dupe_factor=1",
                   "--config.data.build.vocab_size=2000", *TINY], _plain_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "on 1 devices (1 cpu)" in result.stdout and "eval step 2:" in result.stdout, output[-3000:]
    noise = LIBTPU_NOISE.findall(output)
    assert not noise, f"libtpu start-up lines on a machine without a TPU ({noise}):\n{output[-3000:]}"


_PROBE = """
import jax
from jax._src import xla_bridge
from jax._src.lib import xla_client
from bertjax import distributed
restricted = distributed.use_cpu_without_tpu()
platforms = jax.config.jax_platforms
if restricted:
    print([d.platform for d in jax.devices()], xla_client.pjrt_plugin_loaded("tpu"), sorted(xla_bridge._backend_errors))
print(restricted, repr(platforms))
"""


@pytest.mark.parametrize("extra_env, expected", [
    ({}, "['cpu'] False []\nTrue 'cpu'"),                                   # libtpu never loaded
    ({"JAX_PLATFORMS": "cpu"}, "False 'cpu'"),                               # the user's choice stands
    ({"JAX_PLATFORMS": ""}, "False ''"),                                      # ... even "choose for me"
    ({"TPU_ACCELERATOR_TYPE": "v5litepod-8"}, "False None"),                 # libtpu is told there is a TPU
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, "False None"),           # a TPU pod slice's environment
])
def test_jax_is_restricted_to_the_cpu_only_without_a_tpu_or_a_choice(no_tpu, extra_env, expected):
    result = _run(["-c", _PROBE], {**_plain_env(), **extra_env}, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == expected, result.stdout + result.stderr[-3000:]


def test_tpu_signs_name_libtpus_environment(monkeypatch):
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v4-32")
    assert distributed.tpu_signs() == "TPU_ACCELERATOR_TYPE is set"
    monkeypatch.delenv("TPU_ACCELERATOR_TYPE")
    monkeypatch.setenv("JAX_FORCE_TPU_INIT", "1")
    assert distributed.tpu_signs() == "JAX_FORCE_TPU_INIT is set"


def test_help_says_what_main_does_and_lists_every_config():
    result = _run([MAIN, "--help"], _plain_env(), timeout=60)
    assert result.returncode == 1, result.stderr[-3000:]  # absl's --help exits with 1
    text = result.stdout
    first = text.splitlines()[0]
    assert "Pretrain BERT" in first and "fine-tune" in first, first
    for words in ("masked LM", "next-sentence prediction", "GLUE", "tagging", "SQuAD", "resume", "--workdir"):
        assert words in text, words
    assert "worker process" not in text  # an implementation note, kept as a comment in main.py
    assert len(CONFIGS) >= 8
    for name in CONFIGS:
        line = next((line for line in text.splitlines() if line.split()[:1] == [name]), None)
        assert line is not None, f"configs/{name}.py is not listed:\n{text}"
        assert len(line.split()) > 3, line  # with its docstring's first line
    assert "--workdir: Directory for checkpoints" in text  # absl's flag list follows
