"""Pretrain BERT: `python main.py --config=configs/demo.py --workdir=/tmp/demo` (see each config's docstring).

Kept short on purpose: flags, multi-host setup, then bertjax.train.train_and_evaluate. JAX and the trainer are
imported inside the functions: the data-building worker processes re-import this script (multiprocessing does so
with the main module), and they should not pay for JAX.
"""
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
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           enabled=FLAGS.distributed, timeout_s=FLAGS.distributed_timeout)
    logging.info("JAX process %d / %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
    train.train_and_evaluate(_CONFIG.value, FLAGS.workdir)


if __name__ == "__main__":
    import jax  # noqa: PLC0415  (only when run as a script, not when data workers re-import it)

    jax.config.config_with_absl()
    app.run(main, flags_parser=parse_flags)
