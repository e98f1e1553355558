"""Compile the train step for a TPU slice on any machine, and say whether it fits: memory and FLOPs per chip.

  python -m bertjax.aot --config=configs/large.py --topology=v5e-256 [--config.train.batch_size=4096] [--find_batch]

libtpu's compile-only devices (`jax.experimental.topologies.get_topology_desc`) stand in for the slice, so this
runs on a laptop CPU with `pip install -e ".[tpu]"`. The step is main.py's: the config passes the same door
(`run_config.check_run`, with the vocab size of `--config.model.vocab_size` or 30522 instead of a dataset), the mesh
comes from `config.mesh` (`sharding.create_mesh`), and `train.Trainer(...).jit_train_step` is lowered with abstract
state and batch (ShapeDtypeStructs carrying the Trainer's shardings), then compiled by the TPU compiler.

Per chip it prints the compiled step's memory (`compiled.memory_analysis()`) against the chip's HBM, and its FLOPs
(`compiled.cost_analysis()`, which counts the FLOPs of one device's partitioned program) against the model's FLOPs
formula (`model.flops_per_example` x batch / devices); with scan_layers XLA counts the scanned loop's body once,
so its count covers one encoder layer. Exit status 1 when the step does not fit in HBM (the TPU
compiler refuses it, or the needed bytes exceed the chip's HBM), 2 for bad input (unknown topology, bad config).
"""
import dataclasses
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence

import jax
import ml_collections
from absl import app, flags
from jax.experimental import topologies
from ml_collections import config_flags

from bertjax import hardware, run_config, sharding, task, train
from bertjax.data import features
from bertjax.errors import BertjaxError, exit_on_bad_input, parse_flags

DEFAULT_VOCAB_SIZE = 30522
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What compiling one train step for a slice gave, per device (chip)."""

    topology: str
    model: str                  # "L24 H1024 V30522, 335.1M params"
    device_kind: str
    num_devices: int
    mesh_shape: dict
    batch_size: int
    memory: dict | None         # bytes: arguments, outputs, aliased, temporaries, generated_code
    hbm_bytes: int | None       # the chip's HBM (hardware.CHIPS)
    cost_flops: float | None    # XLA's count for one device's program
    model_flops: float          # the model formula's share of one device
    compile_error: str = ""     # the compiler's out-of-memory message, when it refused the step

    @property
    def needed_bytes(self) -> int | None:
        """HBM the step needs on one chip: arguments + outputs - aliased (donated) + temporaries + code."""
        m = self.memory
        if m is None:
            return None
        return m["arguments"] + m["outputs"] - m["aliased"] + m["temporaries"] + m["generated_code"]

    @property
    def fits(self) -> bool:
        """The compiler accepted the step and it needs no more than the chip's HBM."""
        if self.compile_error:
            return False
        return self.hbm_bytes is None or self.needed_bytes <= self.hbm_bytes


def topology_devices(topology: hardware.Topology) -> list[jax.Device]:
    """libtpu's compile-only devices of the slice (no TPU needed); BertjaxError when libtpu cannot make them."""
    kwargs = {}
    if topology.chip_config_name:
        kwargs["chip_config_name"] = topology.chip_config_name
    shape = [int(d) for d in topology.topology_name.split(":")[1].split("x")]
    if topology.num_chips < 4:  # libtpu's default host is 2x2 chips
        kwargs["chips_per_host_bounds"] = tuple(shape + [1] * (3 - len(shape)))
    if importlib.util.find_spec("libtpu") is None:
        raise BertjaxError('bertjax.aot compiles with libtpu, which is not installed: pip install -e ".[tpu]"')
    try:
        return list(topologies.get_topology_desc(topology_name=topology.topology_name, platform="tpu",
                                                  **kwargs).devices)
    except (RuntimeError, ValueError, NotImplementedError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BertjaxError(
            f"--topology={topology.name}: libtpu cannot make the slice {topology.topology_name} ({detail}); name "
            "another slice.") from e


def abstract_batch(config: ml_collections.ConfigDict, batch_size: int, batch_sharding) -> dict:
    """ShapeDtypeStructs of one global pretraining batch (the dataset's features), sharded like real batches; the
    training batches' prediction slots (more with --config.data.train_masked_lm_prob)."""
    shapes = features.example_shapes(config.data.max_seq_length, task.train_predictions_per_seq(config))
    return {name: jax.ShapeDtypeStruct((batch_size, *shape), features.feature_dtype(name), sharding=batch_sharding)
            for name, shape in shapes.items()}


def check_config(config: ml_collections.ConfigDict, devices: Sequence[jax.Device]) -> run_config.RunSpec:
    """main.py's door for a run without a dataset: the vocab size is --config.model.vocab_size or 30522."""
    if not task.is_pretraining(config):
        raise BertjaxError(f"--config.task={config.task}: bertjax.aot compiles the pretraining step only; use a "
                           "pretraining config (configs/base.py, configs/large.py, configs/phase2.py).")
    process_count = len({device.process_index for device in devices})
    return run_config.check_run(config, workdir="", num_devices=len(devices), process_count=process_count,
                                vocab_size=config.model.vocab_size or DEFAULT_VOCAB_SIZE)


def compile_step(config: ml_collections.ConfigDict, topology: hardware.Topology,
                 devices: Sequence[jax.Device]) -> StepReport:
    """Compile main.py's train step for `devices` and report its memory and FLOPs per chip."""
    spec = check_config(config, devices)
    config = spec.config
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp, devices)
    # Built outside the mesh context: the Trainer makes its init key on this machine, not on compile-only devices.
    trainer = train.Trainer(config, spec.bert_config, mesh, spec.task.objective)
    batch_size = config.train.batch_size
    model_flops = trainer.objective.flops_per_example(spec.bert_config, config.data.max_seq_length) * batch_size
    kind = devices[0].device_kind
    chip = hardware.chip(kind)
    num_params = sum(leaf.size for leaf in jax.tree.leaves(trainer.abstract_state.params))
    model = (f"L{spec.bert_config.num_hidden_layers} H{spec.bert_config.hidden_size} V{spec.bert_config.vocab_size}, "
             f"{num_params / 1e6:.1f}M params")
    report = StepReport(topology.name, model, kind, len(devices), dict(mesh.shape), batch_size, None,
                        chip.hbm_bytes if chip else None, None, model_flops / len(devices))
    with jax.set_mesh(mesh):
        lowered = trainer.jit_train_step.lower(trainer.abstract_state_with_shardings(),
                                               abstract_batch(config, batch_size, trainer.batch_sharding))
        try:
            compiled = lowered.compile()
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            return dataclasses.replace(report, compile_error=str(e).strip().splitlines()[0])
    stats = compiled.memory_analysis()
    memory = {"arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
              "aliased": stats.alias_size_in_bytes, "temporaries": stats.temp_size_in_bytes,
              "generated_code": stats.generated_code_size_in_bytes}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return dataclasses.replace(report, memory=memory, cost_flops=(cost or {}).get("flops"))


def batch_unit(config: ml_collections.ConfigDict, devices: Sequence[jax.Device]) -> int:
    """The smallest global batch the door accepts: devices x micro_batches (a multiple of the hosts)."""
    hosts = len({device.process_index for device in devices})
    return math.lcm(len(devices) * config.train.micro_batches, hosts)


def find_batch(compile_at: Callable[[int], StepReport], unit: int,
               start: int = 1) -> tuple[StepReport | None, StepReport | None]:
    """(the largest fitting report, the smallest refused one) over global batches unit x 2^k, by bisection on k.

    From `start`, a fitting batch's memory estimates how far up to jump (its temporaries taken as proportional to
    the batch, which overestimates the per-example cost); once a fitting and a refused batch bracket the boundary,
    bisection closes it. Every candidate is compiled.
    """
    reports = {}

    def fits(exponent: int) -> bool:
        if exponent not in reports:
            reports[exponent] = compile_at(unit * 2**exponent)
        return reports[exponent].fits

    exponent = int(math.log2(max(start // unit, 1)))
    fitting, refused = None, None
    while fitting is None or refused is None or refused - fitting > 1:
        if fits(exponent):
            fitting = exponent
        else:
            refused = exponent
            if exponent == 0:
                return None, reports[0]
        if fitting is not None and refused is not None:
            exponent = (fitting + refused) // 2
        elif refused is None:
            exponent = max(fitting + 1, _estimated_exponent(reports[fitting], unit))
        else:
            exponent = refused - 1
    return reports[fitting], reports[refused]


def _estimated_exponent(report: StepReport, unit: int) -> int:
    """log2 of the batches (in units) the HBM left over by a fitting report would hold, if temporaries grow
    linearly with the batch."""
    m = report.memory
    if not report.hbm_bytes or not m or m["temporaries"] <= 0:
        return 0
    per_example = m["temporaries"] / report.batch_size
    batch = report.batch_size + (report.hbm_bytes - report.needed_bytes) / per_example
    return int(math.log2(max(batch / unit, 1)))


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / hardware.GiB:.2f} GiB"


def format_report(report: StepReport, config: ml_collections.ConfigDict) -> list[str]:
    """The report's lines: slice, step, memory per chip against HBM, FLOPs per chip against the formula."""
    chip = hardware.chip(report.device_kind)
    mesh = " x ".join(f"{axis} {size}" for axis, size in report.mesh_shape.items())
    hbm = _gib(report.hbm_bytes) if report.hbm_bytes else "unknown"
    lines = [f"{report.topology}: {report.num_devices} x {report.device_kind} (HBM {hbm} each), mesh {mesh}",
             f"BERT {report.model}; batch {report.batch_size} ({report.batch_size // report.num_devices} per chip) x "
             f"seq {config.data.max_seq_length}, {config.dtype}, micro_batches {config.train.micro_batches}"]
    if report.compile_error:
        lines.append(f"does not fit: the TPU compiler refused the step: {report.compile_error}")
        return lines
    m = report.memory
    lines.append(f"memory per chip: arguments {_gib(m['arguments'])}, outputs {_gib(m['outputs'])} "
                 f"({_gib(m['aliased'])} aliased to donated arguments), temporaries {_gib(m['temporaries'])}, "
                 f"generated code {_gib(m['generated_code'])}")
    needed = report.needed_bytes
    if report.hbm_bytes:
        verdict = "fits" if report.fits else "does not fit"
        lines.append(f"{verdict}: needs {_gib(needed)} of {hbm} HBM per chip ({needed / report.hbm_bytes:.0%})")
    else:
        lines.append(f"needs {_gib(needed)} per chip (HBM of {report.device_kind} unknown)")
    ratio = f" (ratio {report.cost_flops / report.model_flops:.2f})" if report.cost_flops else ""
    cost = f"{report.cost_flops:.3e}" if report.cost_flops else "n/a"
    flops_line = f"FLOPs per chip per step: XLA cost analysis {cost}, model formula {report.model_flops:.3e}{ratio}"
    if chip:
        flops_line += (f"; at the peak {chip.peak_flops / 1e12:.0f} TFLOP/s, {report.model_flops / chip.peak_flops:.4f} "
                       "s/step is 100% MFU")
    lines.append(flops_line)
    if config.model.scan_layers:
        lines.append("  (scan_layers: XLA's cost analysis counts the scanned loop's body once, one encoder layer of "
                     "L; --config.model.scan_layers=false counts them all)")
    return lines


def run(config: ml_collections.ConfigDict, topology_name: str, search: bool = False) -> int:
    """Compile and print the report (and with `search` the largest batch that fits); returns the exit status."""
    topology = hardware.parse_topology(topology_name)
    devices = topology_devices(topology)

    reports = {}

    def compile_at(batch_size: int) -> StepReport:
        if batch_size not in reports:
            trial = ml_collections.ConfigDict(config.to_dict())
            trial.train.batch_size = batch_size
            reports[batch_size] = compile_step(trial, topology, devices)
        return reports[batch_size]

    report = compile_at(config.train.batch_size)
    for line in format_report(report, config):
        print(line, flush=True)
    if search:
        best, refused = find_batch(compile_at, batch_unit(config, devices), config.train.batch_size)
        print(f"largest batch that fits: {best.batch_size if best else 'none'}"
              f"{f' (needs {_gib(best.needed_bytes)})' if best else ''}; {refused.batch_size} does not fit", flush=True)
    return 0 if report.fits else 1


def compile_only_environment(topology_name: str) -> None:
    """Set libtpu's environment for compiling only, unless it is set already: other processes may hold libtpu (the
    lock protects a real TPU, which compile-only devices never open), and off a TPU VM this machine is described as
    a one-host slice so that libtpu does not warn about missing TPU_* variables. The compiled topology is unaffected."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", topology_name if "-" in topology_name else "v5litepod-4")


def define_flags() -> None:
    """The command line's flags; defined only when run as a script, since the module is also a library."""
    config_flags.DEFINE_config_file("config", "configs/base.py",
                                    "Training config file; override fields with --config.a.b=value.", lock_config=True)
    flags.DEFINE_string("topology", None, "TPU slice: v4-32, v5e-16, v5e-256, v5p-128, v6e-64, or v5e:16x16.",
                        required=True)
    flags.DEFINE_bool("find_batch", False, "Also search the largest global batch of the form devices x 2^k that fits.")


@exit_on_bad_input
def main(argv) -> None:
    """Entry point."""
    if len(argv) > 1:
        raise BertjaxError(f"unexpected arguments {argv[1:]}; flags take the form --name=value (see --help)")
    jax.config.update("jax_platforms", "cpu")  # compile-only TPU devices need no TPU backend
    compile_only_environment(FLAGS.topology)
    sys.exit(run(FLAGS.config, FLAGS.topology, FLAGS.find_batch))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
