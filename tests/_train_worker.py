"""A training process for the subprocess tests (kill -9 / SIGTERM resume, 2-process runs).

Writes a JSON report (process 0): per-step losses, per-step batch digests, and the final params digest.
"""
import argparse
import hashlib
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--workdir", required=True)
parser.add_argument("--report", required=True)
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--checkpoint_every", type=int, default=4)
parser.add_argument("--data_dir", default=None, help="a dataset directory; default: synthetic batches")
parser.add_argument("--hang_after_checkpoint", type=int, default=0,
                    help="after this step's checkpoint is on disk, print CHECKPOINTED and sleep (to be killed)")
parser.add_argument("--step_delay", type=float, default=0.0, help="seconds to sleep after each step")
parser.add_argument("--devices", type=int, default=1, help="CPU devices of this process")
parser.add_argument("--coordinator", default=None)
parser.add_argument("--num_processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
parser.add_argument("--fsdp", type=int, default=1)
args = parser.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", args.devices)
if args.coordinator:
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

from _train_helpers import params_digest, synthetic_data, tiny_config  # noqa: E402
from bertjax import losses  # noqa: E402
from bertjax.train import train_and_evaluate  # noqa: E402

config = tiny_config(num_train_steps=args.steps)
config.checkpoint.every_steps = args.checkpoint_every
config.mesh.fsdp = args.fsdp
report = {"losses": {}, "batches": {}, "params": None}


def record(info) -> None:
    """Hook: remember this step's loss and batch; at the end, the params digest; maybe hang to be killed."""
    loss = float(losses.compute_metrics(jax.device_get(info.metrics))["loss"])
    report["losses"][info.step] = loss
    digest = hashlib.sha256()
    for key in sorted(info.host_batch):
        digest.update(np.ascontiguousarray(info.host_batch[key]).tobytes())
    report["batches"][info.step] = digest.hexdigest()
    if info.step == args.steps:
        digest = hashlib.sha256()
        for path, data in sorted(params_digest(info.state.params).items()):
            digest.update(path.encode() + data)
        report["params"] = digest.hexdigest()
    _write_report()
    if info.step == args.hang_after_checkpoint:
        info.checkpointer.wait()
        print(f"CHECKPOINTED {info.step}", flush=True)
        time.sleep(600)
    if args.step_delay:
        time.sleep(args.step_delay)


def _write_report() -> None:
    if jax.process_index() == 0:
        with open(args.report + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(args.report + ".tmp", args.report)


if args.data_dir:
    config.data.dir = args.data_dir
    config.model.vocab_size = None
    data = None
else:
    data = synthetic_data(config)
train_and_evaluate(config, args.workdir, data=data, hooks=[record])
print("FINISHED", flush=True)
