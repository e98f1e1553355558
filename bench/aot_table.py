"""Per-chip memory and FLOPs of the BERT-base and BERT-large train steps on TPU slices, compiled on this CPU.

  python bench/aot_table.py [--topologies v4-32,v5e-16,v5e-256] [--out bench/results/aot.md]

For each slice, model (configs/base.py, configs/large.py as they are: fsdp 1, base unrolled, large scanned and
rematerialised) and sequence length (128 with 20 predictions, 512 with 80), `bertjax.aot` searches the largest
global batch (devices x 2^k) the TPU compiler accepts within the chip's HBM, and the table records that batch's
memory and FLOPs per chip and the batch that was refused. The search on a slice starts from the per-chip batch
found on an earlier slice of the same chip (or of another chip, scaled by their HBM; for the first, --start_per_chip). The file is rewritten after every row, so a partial run leaves a
partial table.
"""
import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

from bertjax import aot, hardware  # noqa: E402
from configs import base, large  # noqa: E402

MODELS = {"base": base.get_config, "large": large.get_config}
SEQS = {128: 20, 512: 80}


def config_for(model: str, seq: int, num_devices: int):
    """The model's config at a sequence length, with an eval batch the slice divides (the step ignores it)."""
    config = MODELS[model]()
    config.data.max_seq_length = seq
    config.data.max_predictions_per_seq = SEQS[seq]
    config.eval.batch_size = num_devices
    return config


def compile_in_subprocess(name: str, model: str, seq: int, batch_size: int) -> aot.StepReport:
    """One compile in a child process (this script with --one), so that a libtpu crash is a refused batch with the
    crash's first line, not the end of the run."""
    result = subprocess.run([sys.executable, __file__, "--one", name, model, str(seq), str(batch_size)],
                            capture_output=True, text=True)
    if result.returncode == 0:
        return aot.StepReport(**json.loads(result.stdout.strip().splitlines()[-1]))
    crash = next((line.strip() for line in result.stderr.splitlines() if line.startswith(("PC:", "***"))),
                 f"exit status {result.returncode}")
    return aot.StepReport(name, model, "", 0, {}, batch_size, None, None, None, 0.0,
                          compile_error=f"libtpu crashed (exit status {result.returncode}): {crash}")


def compile_one(name: str, model: str, seq: int, batch_size: int) -> None:
    """--one: compile and print the StepReport as one JSON line."""
    topology = hardware.parse_topology(name)
    devices = aot.topology_devices(topology)
    config = config_for(model, seq, len(devices))
    config.train.batch_size = batch_size
    print(json.dumps(dataclasses.asdict(aot.compile_step(config, topology, devices))), flush=True)


def _gib(num_bytes) -> str:
    return f"{num_bytes / hardware.GiB:.2f}" if num_bytes is not None else ""


def row(topology, model, seq, best, refused, seconds) -> str:
    """One markdown row."""
    refused_how = ""
    if refused is not None and refused.compile_error:
        refused_how = f"{refused.batch_size} ({refused.compile_error if 'crashed' in refused.compile_error else 'compiler: out of HBM'})"
    elif refused is not None:
        refused_how = f"{refused.batch_size} (needs {_gib(refused.needed_bytes)} GiB)"
    if best is None:
        return f"| {topology} | {model} | {seq} | none fits | | | | | | | | {refused_how} | {seconds:.0f} |"
    m = best.memory
    ratio = best.cost_flops / best.model_flops if best.cost_flops else float("nan")
    return (f"| {topology} | {model} | {seq} | {best.batch_size} ({best.batch_size // best.num_devices}) | "
            f"{_gib(best.needed_bytes)} / {_gib(best.hbm_bytes)} | {_gib(m['arguments'])} | {_gib(m['temporaries'])} | "
            f"{_gib(m['generated_code'])} | {best.cost_flops:.3e} | {best.model_flops:.3e} | {ratio:.2f} | "
            f"{refused_how} | {seconds:.0f} |")


def write(path: str, rows: list[str], failures: list[str], started: str, command: str) -> None:
    """The results file: provenance, the table, what failed."""
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("jax", "jaxlib", "libtpu"))
    lines = [
        "# The train step compiled for TPU slices on a CPU (`bertjax.aot`)", "",
        f"Made by `{command}` on {started} UTC ({versions}; {os.cpu_count()}-core x86_64 CPU, no TPU). Each row: the "
        "largest global batch of the form devices x 2^k that the TPU compiler accepts and that fits the chip's HBM "
        "(per chip in brackets), its memory per chip (GiB: needed = arguments + outputs - aliased + temporaries + "
        "generated code, against the spec HBM), and FLOPs per chip per step: XLA's cost analysis of one device's "
        "program, and the model formula (`bertjax.model.flops_per_example` x batch / chips). The configs as they "
        "are (mesh fsdp 1: params and Adam state replicated; bfloat16 compute, float32 params; base unrolled; large "
        "scanned and rematerialised with `nothing_saveable`; vocab padded to a multiple of "
        f"{MODELS['base']().model.get('vocab_pad_multiple', 1)}); seq 128 with 20 predictions, 512 with 80. "
        "'refused' is the next batch (twice as large) and why. Each compile runs in its own process. With scan_layers "
        "(large), XLA's cost analysis counts the scanned layer loop's body once, so its FLOPs cover 1 of the 24 "
        "encoder layers and the ratio is far below 1.", "",
        "| slice | model | seq | batch (per chip) | needed / HBM GiB | arguments GiB | temporaries GiB | code GiB | "
        "XLA FLOPs/chip | model FLOPs/chip | ratio | refused | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows]
    if failures:
        lines += ["", "Failed:", *[f"- {failure}" for failure in failures]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def seed_batch(per_chip_batch: dict, key: tuple, num_devices: int) -> int | None:
    """Where the search starts: the per-chip batch found for this chip, else for another chip scaled by the HBM
    ratio, else None (the config's batch size)."""
    kind, model, seq = key
    if key in per_chip_batch:
        return per_chip_batch[key] * num_devices
    for (other, other_model, other_seq), batch in per_chip_batch.items():
        if (other_model, other_seq) == (model, seq):
            ratio = hardware.CHIPS[kind].hbm_bytes / hardware.CHIPS[other].hbm_bytes
            return max(1, int(batch * ratio)) * num_devices
    return None


def main() -> None:
    """Search every (slice, model, seq) and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topologies", default="v5e-16,v5e-256,v4-32")
    parser.add_argument("--models", default="large,base")
    parser.add_argument("--seqs", default="128,512")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "aot.md"))
    parser.add_argument("--start_per_chip", type=int, default=None,
                        help="per-chip batch the first search starts from (e.g. one found by an earlier run)")
    parser.add_argument("--one", nargs=4, metavar=("SLICE", "MODEL", "SEQ", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    jax.config.update("jax_platforms", "cpu")
    if args.one:
        aot.compile_only_environment(args.one[0])
        compile_one(args.one[0], args.one[1], int(args.one[2]), int(args.one[3]))
        return
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    command = "python bench/aot_table.py " + " ".join(sys.argv[1:])
    rows, failures, per_chip_batch = [], [], {}
    aot.compile_only_environment(args.topologies.split(",")[0])
    slices = {}
    for name in args.topologies.split(","):
        try:
            topology = hardware.parse_topology(name)
            slices[name] = topology, aot.topology_devices(topology)
        except Exception as e:  # noqa: BLE001  (recorded in the table's file)
            failures.append(f"{name}: {e}")
    for model, seq in ((m, int(s)) for s in args.seqs.split(",") for m in args.models.split(",")):
        for name, (_, devices) in slices.items():
            key = (devices[0].device_kind, model, seq)
            start = seed_batch(per_chip_batch, key, len(devices))
            if start is None and args.start_per_chip:
                start = args.start_per_chip * len(devices)
            began = time.time()

            def compile_at(batch_size, model=model, seq=seq, name=name):
                t = time.time()
                report = compile_in_subprocess(name, model, seq, batch_size)
                print(f"  {name} {model} seq {seq} batch {batch_size}: "
                      f"{'fits' if report.fits else report.compile_error or 'does not fit'} ({time.time() - t:.0f} s)",
                      flush=True)
                return report

            try:
                config = config_for(model, seq, len(devices))
                best, refused = aot.find_batch(compile_at, aot.batch_unit(config, devices),
                                               start or config.train.batch_size)
            except Exception as e:  # noqa: BLE001  (recorded in the table's file)
                failures.append(f"{name} {model} seq {seq}: {type(e).__name__}: {str(e).splitlines()[0]}")
                write(args.out, rows, failures, started, command)
                continue
            if best is not None:
                per_chip_batch[key] = best.batch_size // len(devices)
            rows.append(row(name, model, seq, best, refused, time.time() - began))
            print(rows[-1], flush=True)
            write(args.out, rows, failures, started, command)
    write(args.out, rows, failures, started, command)


if __name__ == "__main__":
    main()
