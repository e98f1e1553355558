"""A fine-tuning process for the multi-process tests: `train_and_evaluate` of a config given as JSON.

Process 0 writes a JSON report: the final dev metrics, the process count and the config's task. Every
process prints `FINISHED process <i>` when the run returns; a BertjaxError exits 2 with one line.
"""
import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True, help="a JSON file of the ConfigDict (config.to_json())")
parser.add_argument("--workdir", required=True)
parser.add_argument("--report", required=True)
parser.add_argument("--devices", type=int, default=1, help="CPU devices of this process")
parser.add_argument("--coordinator", default=None)
parser.add_argument("--num_processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
args = parser.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", args.devices)
if args.coordinator:
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

import ml_collections  # noqa: E402

from bertjax.errors import exit_on_bad_input  # noqa: E402
from bertjax.train import train_and_evaluate  # noqa: E402

with open(args.config) as f:
    config = ml_collections.ConfigDict(json.load(f))
metrics = exit_on_bad_input(train_and_evaluate)(config, args.workdir)
if jax.process_index() == 0:
    with open(args.report, "w") as f:
        json.dump({"metrics": metrics, "process_count": jax.process_count(),
                   "task": config.task}, f, default=float)
print(f"FINISHED process {jax.process_index()}", flush=True)
