"""A training process for the subprocess tests (kill -9 / SIGTERM resume, 2-process runs).

Writes a JSON report (process 0): per-step losses, per-step digests of the global batch, and the final params
digest. Every process prints `STOPPED process <i> step <last step>` when the run returns; a BertjaxError exits 2
with one line.
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
parser.add_argument("--vocab_file", default=None, help="--config.data.vocab_file (checked against the dataset)")
parser.add_argument("--hang_after_checkpoint", type=int, default=0,
                    help="after this step's checkpoint is on disk, print CHECKPOINTED and sleep (to be killed)")
parser.add_argument("--step_delay", type=float, default=0.0, help="seconds to sleep after each step")
parser.add_argument("--devices", type=int, default=1, help="CPU devices of this process")
parser.add_argument("--coordinator", default=None)
parser.add_argument("--num_processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
parser.add_argument("--fsdp", type=int, default=1)
parser.add_argument("--params_out", default=None, help="process 0 writes the final params here (.npz)")
parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files")
args = parser.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", args.devices)
if args.coordinator:
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from _train_helpers import params_digest, synthetic_data, tiny_config  # noqa: E402
from bertjax import losses  # noqa: E402
from bertjax.errors import exit_on_bad_input  # noqa: E402
from bertjax.train import train_and_evaluate  # noqa: E402

config = tiny_config(num_train_steps=args.steps)
config.checkpoint.every_steps = args.checkpoint_every
config.mesh.fsdp = args.fsdp
config.log.tensorboard = args.tensorboard
report = {"losses": {}, "batches": {}, "params": None}
last_step = [None]


def record(info) -> None:
    """Hook: remember this step's loss and batch; at the end, the params digest; maybe hang to be killed."""
    last_step[0] = info.step
    loss = float(losses.compute_metrics(jax.device_get(info.metrics))["loss"])
    report["losses"][info.step] = loss
    batch = info.host_batch
    if jax.process_count() > 1:  # the global batch (hosts' rows in process order), comparable across process counts
        batch = multihost_utils.process_allgather(batch, tiled=True)
    digest = hashlib.sha256()
    for key in sorted(batch):
        digest.update(np.ascontiguousarray(batch[key]).tobytes())
    report["batches"][info.step] = digest.hexdigest()
    if info.step == args.steps:
        params = info.state.params
        if jax.process_count() > 1:  # params may be sharded across processes (fsdp)
            params = multihost_utils.process_allgather(params, tiled=True)
        digest = hashlib.sha256()
        for path, data in sorted(params_digest(params).items()):
            digest.update(path.encode() + data)
        report["params"] = digest.hexdigest()
        if args.params_out and jax.process_index() == 0:
            flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
            np.savez(args.params_out, **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat})
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
    config.data.vocab_file = args.vocab_file
    config.model.vocab_size = None
    data = None
else:
    data = synthetic_data(config)
exit_on_bad_input(train_and_evaluate)(config, args.workdir, data=data, hooks=[record])
print(f"STOPPED process {jax.process_index()} step {last_step[0]}", flush=True)
print("FINISHED", flush=True)
