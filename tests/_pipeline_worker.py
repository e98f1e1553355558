"""Pipeline runs in a separate process (so a test can put a timeout on them), reporting what they saw as JSON.

    python _pipeline_worker.py distributed DATA_DIR COORDINATOR_PORT PROCESS_ID NUM_PROCESSES GLOBAL_BATCH OUT_JSON
        one JAX process of test_pipeline_multiprocess: one shuffled epoch of "train", global arrays
    python _pipeline_worker.py prefetch DATA_DIR OUT_JSON
        "train" with 2 Grain worker processes: input_ids of 5 batches, then of 3 more after a resume
"""
import faulthandler
import json
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _tiny_dataset as tiny  # noqa: E402

from bertjax.data import pipeline  # noqa: E402


def distributed(data_dir: str, port: str, process_id: str, num_processes: str, global_batch: str,
                out_path: str) -> None:
    """Initialise jax.distributed, iterate one shuffled epoch, build global arrays, write the report."""
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=int(num_processes), process_id=int(process_id))
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    rows, global_shapes, global_label_sums = [], [], []
    for local in pipeline.create_iterator(data_dir, "train", int(global_batch), seed=7, num_epochs=1):
        rows.append([tiny.example_id({k: v[j] for k, v in local.items()}) for j in range(len(local["input_ids"]))])
        batch = pipeline.to_global_batch(local, sharding)
        global_shapes.append(list(batch["input_ids"].shape))
        everything = multihost_utils.process_allgather(batch["next_sentence_labels"], tiled=True)
        global_label_sums.append(int(np.sum(everything)))
    report = {
        "process_index": jax.process_index(), "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(), "devices": jax.device_count(),
        "rows": rows, "global_shapes": global_shapes, "global_label_sums": global_label_sums,
        "batches_per_epoch": pipeline.batches_per_epoch(data_dir, "train", int(global_batch)),
    }
    with open(out_path, "w") as f:
        json.dump(report, f)
    jax.distributed.shutdown()


def prefetch(data_dir: str, out_path: str) -> None:
    """Batches 0-4 from one iterator with worker_count=2, batches 5-7 from a second one restored from its state."""
    def run(count, state=None):
        it = pipeline.create_iterator(data_dir, "train", 4, seed=6, process_index=0, process_count=1, worker_count=2)
        try:
            if state is not None:
                it.set_state(state)
            return [next(it)["input_ids"].tolist() for _ in range(count)], it.get_state()
        finally:
            it.close()

    first, state = run(5)
    second, _ = run(3, state)
    with open(out_path, "w") as f:
        json.dump({"batches": first + second}, f)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(100, exit=True)      # a hang prints where it is, before the test's timeout
    {"distributed": distributed, "prefetch": prefetch}[sys.argv[1]](*sys.argv[2:])
