"""Test setup: JAX on the CPU with 8 virtual devices, so sharding code is exercised without accelerators."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import uuid  # noqa: E402

import pytest  # noqa: E402

import _gcs_emulator  # noqa: E402


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
