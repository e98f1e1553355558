"""Pretrain BERT: `python main.py --config=configs/demo.py --workdir=/tmp/demo` (see each config's docstring).

Kept short on purpose: flags, multi-host setup, then bertjax.train.train_and_evaluate. JAX and the trainer are
imported inside the functions: the data-building worker processes re-import this script (multiprocessing does so
with the main module), and they should not pay for JAX.
"""
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bertjax.errors import exit_on_bad_input

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/demo.py", "Training config file; override fields with --config.a.b=value.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the exported params.", required=True)
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs outside TPU pods/Slurm: host:port of process 0 for jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: the number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's id (0 .. num_processes-1).")
flags.DEFINE_bool("distributed", None,
                  "Call jax.distributed.initialize(); default: when --coordinator_address is given or on a TPU pod.")


def _maybe_initialize_distributed() -> None:
    """jax.distributed.initialize() with explicit flags, or auto-detected on TPU pods / Slurm / k8s."""
    import jax  # noqa: PLC0415  (not at the top: data workers re-import this script and must not pay for JAX)

    if FLAGS.coordinator_address or FLAGS.num_processes:
        jax.distributed.initialize(FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    elif FLAGS.distributed or FLAGS.distributed is None:
        try:
            jax.distributed.initialize()  # auto-detects TPU pods and known cluster environments
        except (ValueError, RuntimeError) as e:
            if FLAGS.distributed:
                raise
            logging.info("Single process (jax.distributed not initialised: %s)", e)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one clear error line (exit 2) for an unknown or ill-typed --config field."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        message = f"{e}; give the field a value of its type (the config file lists every field)"
    except (AttributeError, KeyError) as e:  # ml_collections: no such field in the config
        suggestion = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', str(e))
        detail = (f'"{suggestion.group(2)}" (did you mean "{suggestion.group(1)}"?)' if suggestion
                  else str(e).strip("'\""))
        message = (f"unknown config field {detail} in a --config.* flag; fix the spelling (the fields are in "
                   f"{argv_config(argv)})")
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def argv_config(argv: list[str]) -> str:
    """The --config=FILE argument, for error messages."""
    return next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), "configs/demo.py")


@exit_on_bad_input
def main(argv) -> None:
    """Entry point."""
    import jax  # noqa: PLC0415  (not at the top: see the module docstring)

    from bertjax import train  # noqa: PLC0415  (imports JAX)

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress goes to stdout; Orbax's INFO lines only with -v 0
    _maybe_initialize_distributed()
    logging.info("JAX process %d / %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
    train.train_and_evaluate(_CONFIG.value, FLAGS.workdir)


if __name__ == "__main__":
    import jax  # noqa: PLC0415  (only when run as a script, not when data workers re-import it)

    jax.config.config_with_absl()
    app.run(main, flags_parser=parse_flags)
