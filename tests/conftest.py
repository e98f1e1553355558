"""Test setup: JAX on the CPU with 8 virtual devices, so sharding code is exercised without accelerators; one XLA
compilation cache for the whole test session; the fixtures that several test modules share."""
import os
import shutil
import tempfile
from types import SimpleNamespace

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Most of the suite's time is XLA compiling the same few tiny programs again: every Trainer (and every training
# process a test starts) jits its own step. JAX's persistent compilation cache in a fresh directory of this session
# lets each program compile once. The xdist workers and the processes the tests start inherit it through the
# environment (set here, in the first process, before xdist starts its workers); a size limit turns on JAX's file
# lock, so that concurrent processes never read a half-written entry. A cache dir set by the caller is kept as it is.
_OWN_CACHE_DIR = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _OWN_CACHE_DIR = tempfile.mkdtemp(prefix="bertjax-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE_DIR
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 * 2**30))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import uuid  # noqa: E402

import pytest  # noqa: E402

import _gcs_emulator  # noqa: E402


def pytest_unconfigure(config):
    if _OWN_CACHE_DIR is not None:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def gcs_env():
    """A Cloud Storage emulator for this test process; every gs:// client is pointed at it (os.environ, and the
    returned variables for subprocesses)."""
    process, env = _gcs_emulator.start()
    os.environ.update(env)
    yield env
    _gcs_emulator.stop(process)


@pytest.fixture
def gcs_dir(gcs_env):
    """A fresh gs:// directory in the emulator's bucket."""
    return f"gs://{_gcs_emulator.BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tokenizer(request, tmp_path):
    """An uncased BertTokenizer on a vocab.txt in tmp_path: the special tokens (ids 0-4), then the test module's
    WORDS."""
    from bertjax.data.tokenizer import BertTokenizer  # noqa: PLC0415
    from bertjax.data.vocab_files import SPECIAL_TOKENS  # noqa: PLC0415

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *request.module.WORDS]) + "\n", encoding="utf-8")
    return BertTokenizer.from_vocab(vocab, do_lower_case=True)


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory):
    """A vocab directory of test_instances.small_vocab() (uncased), shared by the tests: do not change it."""
    from test_instances import write_small_vocab  # noqa: PLC0415

    return write_small_vocab(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """A finished tiny pretraining run on the synthetic data (_train_helpers.checkpointed_config(): 6 steps,
    checkpoints 2, 4 and 6), trained once per test process for the tests that need a trained workdir: read it, and
    copy it (shutil.copytree) to change it. Its `workdir`, `config` (a copy of the one it ran), `metrics` (the final
    evaluation) and `params` (params_digest of the params after step 6)."""
    from _train_helpers import checkpointed_config, params_digest, synthetic_data  # noqa: PLC0415
    from bertjax.train import train_and_evaluate  # noqa: PLC0415

    config = checkpointed_config()
    final = {}

    def keep_final_params(info):
        if info.step == config.train.num_train_steps:
            final["params"] = params_digest(info.state.params)

    workdir = tmp_path_factory.mktemp("synthetic_run") / "run"
    metrics = train_and_evaluate(config.copy_and_resolve_references(), str(workdir), data=synthetic_data(config),
                                 hooks=[keep_final_params])
    return SimpleNamespace(workdir=workdir, config=config, metrics=metrics, params=final["params"])
