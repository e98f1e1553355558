"""The device mesh and how arrays are laid out on it: data parallelism plus optional FSDP.

The mesh has two axes, `data` and `fsdp`, both `AxisType.Auto` (classic GSPMD: XLA inserts the collectives).
- The batch is split over both axes (`P(("data", "fsdp"))`), so every device sees a different slice.
- Parameters and optimizer state are replicated over `data`. With `fsdp > 1`, each leaf with at least
  `min_shard_size` elements is split over `fsdp` along its largest axis divisible by the fsdp size; smaller
  leaves (biases, LayerNorm, counters) stay replicated. The rule looks only at shapes, so Adam moments get
  the same layout as their parameters.
"""
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from bertjax.errors import BertjaxError

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(num_devices: int, data: int = -1, fsdp: int = 1) -> tuple[int, int]:
    """Resolve a (data, fsdp) mesh shape for `num_devices`; -1 on one axis means "all remaining devices"."""
    if data == -1 and fsdp == -1:
        raise BertjaxError("config.mesh: only one of mesh.data and mesh.fsdp may be -1 (auto); set the other.")
    if fsdp == -1:
        fsdp = num_devices // max(data, 1)
    if data == -1:
        data = num_devices // max(fsdp, 1)
    if data < 1 or fsdp < 1 or data * fsdp != num_devices:
        raise BertjaxError(
            f"config.mesh: mesh.data={data} x mesh.fsdp={fsdp} must multiply to the {num_devices} available devices; "
            "set --config.mesh.data=-1 to use all of them.")
    return data, fsdp


def create_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A ('data', 'fsdp') mesh with automatic axis types over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(len(devices), data, fsdp)
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Sharding of a batch: the leading (example) axis over every device."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A fully replicated sharding (scalars, metrics)."""
    return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], fsdp_size: int, min_shard_size: int = 2**14) -> P:
    """PartitionSpec for one leaf: its largest axis divisible by `fsdp_size` goes on 'fsdp', else replicated."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_shard_size:
        return P()
    candidates = [axis for axis, size in enumerate(shape) if size % fsdp_size == 0]
    if not candidates:
        return P()
    axis = max(candidates, key=lambda a: (shape[a], -a))
    return P(*([None] * axis + ["fsdp"]))


def state_shardings(abstract_state, mesh: jax.sharding.Mesh, min_shard_size: int = 2**14):
    """NamedShardings for a pytree of arrays or ShapeDtypeStructs (params, optimizer state, TrainState)."""
    fsdp_size = mesh.shape["fsdp"]

    def leaf_sharding(leaf):
        return NamedSharding(mesh, fsdp_spec(getattr(leaf, "shape", ()), fsdp_size, min_shard_size))

    return jax.tree.map(leaf_sharding, abstract_state)


def with_shardings(abstract_tree, shardings):
    """Attach shardings to a tree of ShapeDtypeStructs (restore targets for Orbax, jit arguments)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_tree, shardings)

