"""Fine-tune and score one or more models on a benchmark suite, the way the field reports it.

  python -m bertjax.benchmark --suite=glue --data_dir=glue_data --model=runs/mybert [--model=base=models/bert-base]
      --workdir=runs/glue [--reference=bert-base-cased-hf] [--tasks=rte,mrpc] [--strict]

--suite: glue, korean, or a suite file (.yaml, .json or .py) of your own tasks. --model: a checkpoint (bertjax
workdir or export, Hugging Face directory, original TF checkpoint), optionally LABEL=PATH; one table row each.
Every run is main.py's fine-tuning in its own sub-workdir of --workdir; rerun the same command to continue a
stopped suite (finished runs are skipped, an interrupted one resumes from its checkpoint). The table lands in
<workdir>/results.md, everything in results.json, the plot in results.png. docs/benchmark.md has the protocol.
"""
import os

from absl import app, flags, logging

from bertjax.errors import BertjaxError, exit_on_bad_input, parse_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags (defined when run as a script)."""
    flags.DEFINE_string("suite", None, "glue, korean, or a suite file (.yaml/.yml/.json/.py).", required=True)
    flags.DEFINE_string("data_dir", None, "The directory holding the suite's task directories (GLUE's glue_data/).",
                        required=True)
    flags.DEFINE_multi_string("model", None, "A model to benchmark: PATH or LABEL=PATH (repeat for more rows).",
                              required=True)
    flags.DEFINE_string("workdir", None, "Where the runs, results.md/json/png go; rerun with it to continue.",
                        required=True)
    flags.DEFINE_multi_string("reference", [], "A published row to add (see docs/benchmark.md for the names).")
    flags.DEFINE_list("tasks", [], "Only these tasks of the suite (comma separated names).")
    flags.DEFINE_integer("max_train_examples", 0, "A fixed sample of this many training examples per task (0: all).")
    flags.DEFINE_integer("max_eval_examples", 0, "A fixed sample of this many dev examples per task (0: all).")
    flags.DEFINE_list("learning_rates", [], "Replace every task's learning-rate grid (comma separated).")
    flags.DEFINE_list("seeds", [], "Replace every task's seeds (comma separated integers).")
    flags.DEFINE_float("epochs", None, "Replace every task's number of epochs.")
    flags.DEFINE_bool("strict", False, "A task whose files are missing, or a run that fails, stops the suite.")


@exit_on_bad_input
def main(argv) -> None:
    """Entry point."""
    if len(argv) > 1:
        raise BertjaxError(f"unexpected arguments {argv[1:]}; flags take the form --name=value (see --help)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # the runs' own lines and the suite's progress go to stdout
    from bertjax import distributed  # noqa: PLC0415  (imports JAX: after the flags, so --help stays quick)

    distributed.use_cpu_without_tpu()
    from bertjax.benchmark import suite_run  # noqa: PLC0415

    suite_run.run(suite=FLAGS.suite, data_dir=FLAGS.data_dir, models=FLAGS.model, workdir=FLAGS.workdir,
                  references_named=FLAGS.reference, tasks=FLAGS.tasks, max_train_examples=FLAGS.max_train_examples,
                  max_eval_examples=FLAGS.max_eval_examples, learning_rates=FLAGS.learning_rates, seeds=FLAGS.seeds,
                  epochs=FLAGS.epochs, strict=FLAGS.strict)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    app.run(main, flags_parser=parse_flags)
