"""A training process whose workdir fails under it: from --limit_after on, its files may not grow past
--fsize_limit bytes (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes fail with EFBIG: a full disk, as the writer sees
it); or from --read_only_after on, <workdir>/checkpoints is read-only (mode 0555; the process first gives up root's
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so the mode binds it as it binds any user: writes fail with EACCES).
Tiny model, synthetic data, 8 steps, a checkpoint every 2; a BertjaxError exits 2 with one line."""
import argparse
import ctypes
import os
import resource
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--workdir", required=True)
parser.add_argument("--limit_after", type=int, default=0, help="after this step's checkpoint is on disk; 0 = never")
parser.add_argument("--fsize_limit", type=int, default=50_000)
parser.add_argument("--read_only_after", type=int, default=0,
                    help="after this step's checkpoint is on disk, make the checkpoints directory read-only; 0 = never")
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

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def drop_permission_override() -> None:
    """Remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this process (capset(2), version 3): root then obeys
    file modes like any owner. Nothing to do for a process without them (not root)."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


if args.read_only_after:
    drop_permission_override()


def inject(info) -> None:
    if info.step == args.limit_after:
        info.checkpointer.wait()
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, resource.RLIM_INFINITY))
    if info.step == args.read_only_after:
        info.checkpointer.wait()
        os.chmod(os.path.join(args.workdir, "checkpoints"), 0o555)


exit_on_bad_input(train_and_evaluate)(config, args.workdir, data=synthetic_data(config), hooks=[inject])
print("FINISHED", flush=True)
