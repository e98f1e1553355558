"""Test setup: JAX on the CPU with 8 virtual devices, so sharding code is exercised without accelerators."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
