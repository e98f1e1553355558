"""Pretrain BERT (masked LM + next-sentence prediction) or fine-tune it (GLUE/classification, tagging, SQuAD).

  python main.py --config=configs/demo.py --workdir=/tmp/demo [--config.a.b=value ...]

The config decides which: the pretraining configs train both heads on a dataset (the demos build theirs from a
shipped corpus on first use); the finetune_* configs start from --config.train.init_from. Training evaluates
periodically and checkpoints into --workdir; rerun the same command to resume from its last checkpoint
(--config.train.eval_only=true only evaluates). Each config file's docstring says how to run it.
"""
# Kept short on purpose: flags, platform and multi-host setup, then bertjax.train.train_and_evaluate. JAX and the
# trainer are imported inside the functions: the data-building worker processes re-import this script
# (multiprocessing does so with the main module), and they should not pay for JAX.
import ast
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bertjax.errors import BertjaxError, exit_on_bad_input, parse_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/demo.py", "Training config file; override fields with --config.a.b=value.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the exported params.", required=True)
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs outside TPU pods/Slurm: host:port of process 0 for jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: the number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's id (0 .. num_processes-1).")
flags.DEFINE_bool("distributed", None,
                  "Call jax.distributed.initialize(); default: with the flags above, or when JAX detects a cluster "
                  "(TPU pod slice, Slurm, Open MPI, Kubernetes).")
flags.DEFINE_integer("distributed_timeout", 300, "Multi-process runs: seconds to wait for all processes to join.")


@exit_on_bad_input
def main(argv) -> None:
    """Entry point."""
    import jax  # noqa: PLC0415  (not at the top: see the module docstring)

    from bertjax import distributed, train  # noqa: PLC0415  (imports JAX)

    if len(argv) > 1:
        raise BertjaxError(f"unexpected arguments {argv[1:]}; flags take the form --name=value (see --help)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress goes to stdout; Orbax's INFO lines only with -v 0
    if distributed.use_cpu_without_tpu():  # before JAX's first backend use: libtpu off a TPU is noise, then the CPU
        logging.info("libtpu is installed but this machine has no TPU: JAX uses the CPU (JAX_PLATFORMS overrides)")
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           enabled=FLAGS.distributed, timeout_s=FLAGS.distributed_timeout)
    logging.info("JAX process %d / %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
    train.train_and_evaluate(_CONFIG.value, FLAGS.workdir)


def usage() -> str:
    """--help's text (absl prints the main module's __doc__): the docstring, then one line per config in configs/.

    Each config's line is the first line of its docstring, read with `ast` (nothing imported), so the list follows
    the directory.
    """
    lines = [__doc__.rstrip(), "", "Configs (--config=configs/NAME.py):"]
    for path in sorted((pathlib.Path(__file__).resolve().parent / "configs").glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (OSError, SyntaxError, ValueError):
            doc = ""
        summary = doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"
        lines.append(f"  {path.stem:<16}{summary}")
    return "\n".join(lines).replace("%", "%%") + "\n"  # absl formats the usage text with %


if __name__ == "__main__":
    import jax  # noqa: PLC0415  (only when run as a script, not when data workers re-import it)

    sys.modules["__main__"].__doc__ = usage()
    jax.config.config_with_absl()
    app.run(main, flags_parser=parse_flags)
