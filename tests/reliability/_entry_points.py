"""Running bertjax's command-line entry points in-process, as their command lines do, for the bad-input table.

`run_entry(entry, args)` calls main.py / `python -m bertjax.aot` through absl's `parse_flags` and their
`exit_on_bad_input`-wrapped main, or the argparse mains of create_pretraining_data, the vocab trainer, the
converter and the attention viewer's command with their argv, and returns the exit status; `snapshot` records every file under some directories, so a
test can assert that a failed run changed nothing.
"""
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from absl import flags

from _train_helpers import REPO_ROOT
from bertjax.errors import parse_flags

MAIN_FLAGS = ("config", "workdir", "coordinator_address", "num_processes", "process_id", "distributed",
              "distributed_timeout")
AOT_FLAGS = ("config", "topology", "find_batch")
BENCHMARK_FLAGS = ("suite", "data_dir", "model", "workdir", "reference", "tasks", "max_train_examples",
                   "max_eval_examples", "learning_rates", "seeds", "epochs", "strict")


def _fresh_absl_flags(entry: str):
    """Forget the flags of the previous absl run (its --config.* overrides and its entry point's flags), define
    `entry`'s flags and return its main."""
    names = [name for name in flags.FLAGS if name.startswith("config.")] + list(MAIN_FLAGS + AOT_FLAGS +
                                                                                 BENCHMARK_FLAGS)
    for name in dict.fromkeys(names):
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    if entry == "main":
        spec = importlib.util.spec_from_file_location("bertjax_main_script", REPO_ROOT / "main.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main
    if entry == "benchmark":
        from bertjax.benchmark import __main__ as benchmark  # noqa: PLC0415

        benchmark.define_flags()
        return benchmark.main
    from bertjax import aot  # noqa: PLC0415

    aot.define_flags()
    return aot.main


def run_entry(entry: str, args: list[str]) -> int:
    """Run `entry` (main, aot, benchmark, cpd, vocab, convert, visualize) with command-line `args` in this process; its exit status."""
    saved_argv, saved_env = sys.argv, dict(os.environ)
    try:
        if entry in ("main", "aot", "benchmark"):
            main = _fresh_absl_flags(entry)
            argv = [f"{entry}.py", *args] + (["--distributed=false"] if entry == "main" else [])
            sys.argv = argv  # ml_collections reads the --config.* overrides from sys.argv
            main(parse_flags(argv))
        else:
            from bertjax import visualize  # noqa: PLC0415
            from bertjax.convert import __main__ as convert  # noqa: PLC0415
            from bertjax.data import create_pretraining_data, vocab  # noqa: PLC0415

            {"cpd": create_pretraining_data.main, "vocab": vocab.main, "convert": convert.main,
             "visualize": visualize.main}[entry](args)
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)  # aot sets libtpu's variables
        flags.FLAGS.unparse_flags()  # a parsed --verbose must not leak into the next entry point
    return 0


def snapshot(*roots) -> dict:
    """{path: (sha256, mtime_ns)} of every file under `roots`, and {path: "dir"} of every directory."""
    state = {}
    for root in map(Path, roots):
        for p in sorted(root.rglob("*")):
            if p.is_file():
                state[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            else:
                state[str(p)] = "dir"
    return state


def forget_flags_defined_since(before: set) -> None:
    """Remove the absl flags defined after `before` was taken (main.py's, aot's, --config.* overrides, --verbose),
    so that later tests in this process define or parse them afresh."""
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
