"""A training process whose files may not grow past --fsize_limit bytes from --limit_after on (RLIMIT_FSIZE, with
SIGXFSZ ignored, so writes fail with EFBIG: a full disk, as the writer sees it). Tiny model, synthetic data,
8 steps, a checkpoint every 2; a BertjaxError exits 2 with one line."""
import argparse
import os
import resource
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--workdir", required=True)
parser.add_argument("--limit_after", type=int, default=0, help="after this step's checkpoint is on disk; 0 = never")
parser.add_argument("--fsize_limit", type=int, default=50_000)
args = parser.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 1)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _train_helpers import synthetic_data, tiny_config  # noqa: E402
from bertjax.errors import exit_on_bad_input  # noqa: E402
from bertjax.train import train_and_evaluate  # noqa: E402

config = tiny_config(num_train_steps=8)
config.checkpoint.every_steps = 2
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def limit(info) -> None:
    if info.step == args.limit_after:
        info.checkpointer.wait()
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, resource.RLIM_INFINITY))


exit_on_bad_input(train_and_evaluate)(config, args.workdir, data=synthetic_data(config), hooks=[limit])
print("FINISHED", flush=True)
