"""Accelerators in one table: peak FLOP/s and HBM of one JAX device, and the names of TPU slices.

`CHIPS` is keyed by `jax.Device.device_kind` as JAX reports it (compile-only TPU devices report the same strings).
Numbers are per JAX device: one chip for TPU v4 and later (v4 and v5p run as one "megacore" device per chip) and
GPUs, but one TensorCore (half a chip) for TPU v2 and v3. Peak FLOP/s are dense bfloat16 from public spec sheets;
HBM is the spec-sheet capacity (the runtime reserves a little of it).

TPU slices are named as Cloud TPU names them: `v4-32`, `v5p-128` (the number counts TensorCores, two per chip),
`v5e-256`, `v6e-64` (the number counts chips), or given as a topology, `v5e:16x16`, `v4:2x2x4`.
"""
import dataclasses
import math
import re

from bertjax.errors import BertjaxError

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One JAX device of an accelerator: its dense bf16 peak FLOP/s and its HBM bytes."""

    name: str
    peak_flops: float
    hbm_bytes: int


CHIPS = {
    "TPU v2": Chip("TPU v2 (one core)", 22.5e12, 8 * GiB),
    "TPU v3": Chip("TPU v3 (one core)", 61.5e12, 16 * GiB),
    "TPU v4": Chip("TPU v4", 275e12, 32 * GiB),
    "TPU v5 lite": Chip("TPU v5e", 197e12, 16 * GiB),
    "TPU v5": Chip("TPU v5p", 459e12, 95 * GiB),
    "TPU v5p": Chip("TPU v5p", 459e12, 95 * GiB),
    "TPU v6 lite": Chip("TPU v6e", 918e12, 32 * GiB),
    "NVIDIA A100-SXM4-40GB": Chip("A100 40GB", 312e12, 40 * GiB),
    "NVIDIA A100-PCIE-40GB": Chip("A100 40GB", 312e12, 40 * GiB),
    "NVIDIA A100-SXM4-80GB": Chip("A100 80GB", 312e12, 80 * GiB),
    "NVIDIA A100 80GB PCIe": Chip("A100 80GB", 312e12, 80 * GiB),
    "NVIDIA H100 80GB HBM3": Chip("H100 SXM", 989e12, 80 * GiB),
    "NVIDIA H100 PCIe": Chip("H100 PCIe", 756e12, 80 * GiB),
    "NVIDIA L4": Chip("L4", 121e12, 24 * GiB),
}


def chip(device_kind: str) -> Chip | None:
    """The table entry of a `device_kind`, or None for an unknown one (CPU)."""
    return CHIPS.get(device_kind)


def peak_flops(device_kind: str) -> float | None:
    """Peak dense bf16 FLOP/s of one device of this kind, or None when unknown."""
    entry = chip(device_kind)
    return entry.peak_flops if entry else None


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
    """How a TPU generation's slices are named and laid out."""

    topology_prefix: str      # the generation in libtpu's topology names ("v5e" in "v5e:4x4")
    device_kind: str
    dims: int                 # 2-D torus (v2, v3, v5e, v6e) or 3-D (v4, v5p)
    cores_per_chip_in_name: int  # v4-32 counts TensorCores: 16 chips
    chip_config_name: str | None  # libtpu's "megacore": one device per chip


TPU_GENERATIONS = {
    "v2": TpuGeneration("v2", "TPU v2", 2, 2, None),
    "v3": TpuGeneration("v3", "TPU v3", 2, 2, None),
    "v4": TpuGeneration("v4", "TPU v4", 3, 2, "megacore"),
    "v5e": TpuGeneration("v5e", "TPU v5 lite", 2, 1, None),
    "v5litepod": TpuGeneration("v5e", "TPU v5 lite", 2, 1, None),
    "v5p": TpuGeneration("v5p", "TPU v5", 3, 2, "megacore"),
    "v6e": TpuGeneration("v6e", "TPU v6 lite", 2, 1, None),
}


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice resolved for `jax.experimental.topologies.get_topology_desc`."""

    name: str                 # as given
    topology_name: str        # "v5e:16x16"
    chip_config_name: str | None
    generation: TpuGeneration

    @property
    def num_chips(self) -> int:
        """Chips in the slice."""
        return math.prod(int(d) for d in self.topology_name.split(":")[1].split("x"))


def _torus(num_chips: int, dims: int) -> list[int]:
    """Cloud TPU's slice shape for a power-of-two chip count: 4 chips 2x2(x1), then double the smallest axis (the
    last of equals): v4-32 (16 chips) 2x2x4, v5e-256 16x16."""
    shape = [1] * dims
    if num_chips == 1:
        return shape
    shape[0] = shape[1] = 2
    while math.prod(shape) < num_chips:
        smallest = min(shape)
        axis = max(i for i, size in enumerate(shape) if size == smallest)
        shape[axis] *= 2
    return shape


def parse_topology(name: str) -> Topology:
    """`v5e-256`, `v4-32`, `v5p-128`, `v6e-64` or `v5e:16x16`, `v4:2x2x4` -> a Topology; BertjaxError otherwise."""
    known = ", ".join(TPU_GENERATIONS)
    fix = (f"name a TPU slice as GENERATION-SIZE (v4-32, v5e-16, v5e-256, v5p-128, v6e-64) or GENERATION:AxB[xC] "
           f"(v5e:4x4, v4:2x2x4); generations: {known}")
    sized = re.fullmatch(r"(v\w+?)-(\d+)", name)
    shaped = re.fullmatch(r"(v\w+?):(\d+(?:x\d+){1,2})", name)
    match = sized or shaped
    if not match or match.group(1) not in TPU_GENERATIONS:
        raise BertjaxError(f"--topology={name!r} is not a TPU topology; {fix}.")
    generation = TPU_GENERATIONS[match.group(1)]
    if shaped:
        shape = [int(d) for d in match.group(2).split("x")]
    else:
        size = int(match.group(2))
        num_chips, rest = divmod(size, generation.cores_per_chip_in_name)
        if rest or num_chips < 1 or num_chips & (num_chips - 1) or (num_chips == 2):
            unit = "TensorCores (two per chip)" if generation.cores_per_chip_in_name == 2 else "chips"
            raise BertjaxError(f"--topology={name!r}: the size counts {unit} and must give 1 or a power of two "
                               f"of at least 4 chips; {fix}.")
        shape = _torus(num_chips, generation.dims)
    if len(shape) == 2 and generation.dims == 3:
        shape.append(1)
    if len(shape) != generation.dims and not (generation.dims == 2 and len(shape) == 3 and shape[2] == 1):
        raise BertjaxError(f"--topology={name!r}: {match.group(1)} slices are {generation.dims}-D; {fix}.")
    topology_name = f"{generation.topology_prefix}:{'x'.join(str(d) for d in shape)}"
    return Topology(name, topology_name, generation.chip_config_name, generation)
