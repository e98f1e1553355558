"""A suite's runs: planned (task x model x learning rate x seed), each a `bertjax.train.train_and_evaluate` run in
its own sub-workdir, skipped when finished, resumed exactly when interrupted.

<workdir>/
  runs/<model>/<task>/lr<lr>-seed<seed>/   a fine-tuning workdir (checkpoints/, best/, export/, config.json, ...)
      benchmark_run.json                   written last: the run's recipe, metrics, steps and times (finished)
  features/<task>/                         encoded features shared by the task's runs (same vocab and settings)
  xla_cache/                               compiled steps shared by runs of the same shapes (JAX's persistent cache)
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
import sys
import time
from collections.abc import Callable

import ml_collections

from bertjax import paths, train, workdir_layout
from bertjax.benchmark.suites import TYPES, Suite, SuiteTask
from bertjax.errors import BertjaxError
from bertjax.formatting import format_duration

RUN_RECORD = "benchmark_run.json"
RUNS_DIR = "runs"
FEATURES_DIR = "features"
XLA_CACHE_DIR = "xla_cache"
CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


@dataclasses.dataclass(frozen=True)
class Model:
    """A model under test: its row label and its checkpoint (anything `--config.train.init_from` takes)."""

    label: str
    path: str


@dataclasses.dataclass(frozen=True)
class Options:
    """What applies to every run: where the data is, subsets, and overrides of the suite's recipes."""

    data_dir: str
    max_train_examples: int = 0
    max_eval_examples: int = 0
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
    """One fine-tuning (or, for an `evaluate` task, one evaluation of another task's run)."""

    model: Model
    task: SuiteTask
    learning_rate: float
    seed: int
    workdir: str
    source: str | None = None    # the run whose final model an `evaluate` task scores

    @property
    def name(self) -> str:
        """How progress lines name it."""
        return f"{self.model.label} {self.task.name} lr {self.learning_rate:g} seed {self.seed}"


def plan(suite: Suite, models: list[Model], workdir: str) -> list[Run]:
    """Every run of the suite, task by task (so the table fills column by column), then model, lr, seed."""
    runs: list[Run] = []
    for task in suite.tasks:
        source = suite.task(task.evaluate) if task.evaluate else None
        recipe = source or task
        for model in models:
            for lr in recipe.learning_rates:
                for seed in recipe.seeds:
                    directory = run_dir(workdir, model, task, lr, seed)
                    origin = run_dir(workdir, model, source, lr, seed) if source else None
                    runs.append(Run(model, task, lr, seed, directory, origin))
    return runs


def run_dir(workdir: str, model: Model, task: SuiteTask, lr: float, seed: int) -> str:
    """The sub-workdir of one run."""
    return str(paths.path(workdir) / RUNS_DIR / model.label / task.name / f"lr{lr:g}-seed{seed}")


def run_config(run: Run, options: Options, workdir: str) -> ml_collections.ConfigDict:
    """The run's config: the task type's configs/ file with the suite's recipe, the model and the seed."""
    task = run.task
    config = _config_file(task.config_file)
    config.task = task.task or _generic_task(task)
    config.data.dir = str(paths.path(options.data_dir) / task.data)
    config.data.max_seq_length = task.max_seq_length
    config.data.seed = run.seed
    config.data.features_dir = str(paths.path(workdir) / FEATURES_DIR / (task.evaluate or task.name))
    config.data.max_train_examples = options.max_train_examples
    config.data.max_eval_examples = options.max_eval_examples
    config.train.seed = run.seed
    config.train.batch_size = task.batch_size
    config.train.num_epochs = task.epochs
    config.train.init_from = run.model.path
    config.optimizer.learning_rate = run.learning_rate
    config.log.tensorboard = False
    if task.type == "regression":
        config.data.regression = True
    if task.type in ("classification", "regression") and not task.task:
        config.data.metrics = ",".join(task.metrics)
    for dotted, value in task.config.items():
        _set(config, dotted, value, task)
    if run.source:
        config.train.eval_only = True
        config.train.init_from = str(workdir_layout.path(run.source, workdir_layout.EXPORT_DIR))
    return config


def _generic_task(task: SuiteTask) -> str:
    return TYPES[task.type][1]


def _config_file(name: str) -> ml_collections.ConfigDict:
    """get_config() of configs/<name> (the files main.py runs; they import `configs.*`, so the repo root is on the
    path while they load)."""
    root = str(CONFIGS_DIR.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"configs.{pathlib.Path(name).stem}").get_config()


def _set(config: ml_collections.ConfigDict, dotted: str, value, task: SuiteTask) -> None:
    *parents, field = dotted.split(".")
    node = config
    for parent in parents:
        if parent not in node:
            raise BertjaxError(f"task {task.name!r}: config override {dotted!r} names no config field")
        node = node[parent]
    if field not in node:
        raise BertjaxError(f"task {task.name!r}: config override {dotted!r} names no config field")
    node[field] = value


def recipe_of(run: Run, options: Options) -> dict:
    """What decides a run's result: a finished run is reused only when this is unchanged."""
    task = run.task
    return {"model": run.model.path, "task": task.task or task.type, "data": task.data, "type": task.type,
            "learning_rate": run.learning_rate, "seed": run.seed, "epochs": task.epochs,
            "batch_size": task.batch_size, "max_seq_length": task.max_seq_length, "config": dict(task.config),
            "evaluates": run.source, "max_train_examples": options.max_train_examples,
            "max_eval_examples": options.max_eval_examples}


def finished(run: Run, options: Options) -> dict | None:
    """The record of a finished run, None when it has not finished; a record of another recipe is an error."""
    path = paths.path(run.workdir) / RUN_RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as e:
        raise BertjaxError(f"{path} is not readable JSON ({e}); delete it to rerun that run") from e
    if record.get("recipe") != recipe_of(run, options):
        raise BertjaxError(f"{run.workdir} holds a finished run of another recipe (model, data, subset or "
                           "settings changed); use a new --workdir, or delete that run's directory to redo it")
    return record


def execute(run: Run, options: Options, workdir: str) -> dict:
    """Train and evaluate one run (resuming it if it was interrupted), and write its record last."""
    data_dir = paths.path(options.data_dir) / run.task.data
    if run.source and not (paths.path(run.source) / RUN_RECORD).exists():
        return _unfinished(run, "missing", f"the run it evaluates ({run.source}) did not finish")
    if not data_dir.is_dir():
        return _unfinished(run, "missing", f"{data_dir} does not exist")
    config = run_config(run, options, workdir)
    resumed = workdir_layout.latest_step(run.workdir) is not None
    started = time.perf_counter()
    first_step: list[float] = []

    def on_step(info: train.StepInfo) -> None:
        if not first_step:
            first_step.append(time.perf_counter() - started)

    try:
        metrics = train.train_and_evaluate(config, run.workdir, hooks=[on_step])
    except BertjaxError as e:  # a task's file absent or bad: reported, and the suite goes on (unless --strict)
        status = "missing" if "does not exist" in str(e) else "failed"
        if options.strict:
            raise BertjaxError(f"{run.name}: {e} (--strict)") from e
        return _unfinished(run, status, str(e))
    wall = time.perf_counter() - started
    if not metrics:  # preempted: saved, to be resumed by the next invocation
        raise BertjaxError(f"{run.name} was stopped (preemption); rerun the same command to continue")
    resolved = json.loads(workdir_layout.path(run.workdir, workdir_layout.CONFIG_JSON).read_text())
    record = {
        "model": run.model.label, "task": run.task.name, "learning_rate": run.learning_rate, "seed": run.seed,
        "status": "done", "metrics": {k: float(v) for k, v in metrics.items() if _is_number(v)},
        "steps": 0 if run.source else resolved["train"]["num_train_steps"],
        "train_examples": _train_examples(resolved), "wall_s": round(wall, 2),
        "setup_s": round(first_step[0], 2) if first_step else None, "resumed": resumed,
        "workdir": run.workdir, "recipe": recipe_of(run, options)}
    paths.write_text_atomically(str(paths.path(run.workdir) / RUN_RECORD), json.dumps(record, indent=1) + "\n")
    return record


def _train_examples(resolved: dict) -> int | None:
    steps, batch = resolved["train"]["num_train_steps"], resolved["train"]["batch_size"]
    epochs = resolved["train"].get("num_epochs")
    return int(round(steps * batch / epochs)) if epochs else None


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _unfinished(run: Run, status: str, why: str) -> dict:
    return {"model": run.model.label, "task": run.task.name, "learning_rate": run.learning_rate, "seed": run.seed,
            "status": status, "error": why, "workdir": run.workdir}


class Progress:
    """One line per run: where the suite is, the run's result and time, and the whole suite's ETA (each remaining
    run estimated by the mean wall time of the finished runs, skipped ones included, of the same model and task,
    else of the same model, else of the same task, else of all)."""

    def __init__(self, runs: list[Run], log: Callable[[str], None] = print):
        self.total = len(runs)
        self.done = 0
        self.log = log
        self.seconds: dict[tuple[str, str], list[float]] = {}
        self.remaining = list(runs)

    def start(self, run: Run) -> None:
        """Before a run."""
        self.log(f"benchmark [{self.done + 1}/{self.total}] {run.name}: running in {run.workdir}")

    def finish(self, run: Run, record: dict, skipped: bool) -> None:
        """After a run (or its skip)."""
        self.done += 1
        self.remaining.remove(run)
        if record["status"] == "done" and record.get("wall_s"):  # a skipped run's time is from its own invocation
            self.seconds.setdefault((run.model.label, run.task.name), []).append(record["wall_s"])
        if record["status"] == "done":
            value = record["metrics"].get(run.task.metric)
            shown = f"{run.task.metric} {value:.4f}" if value is not None else "no score"
            how = "finished earlier, skipped" if skipped else f"in {format_duration(record['wall_s'])}"
            outcome = f"{shown} ({how})"
        else:
            outcome = f"{record['status']}: {record['error']}"
        self.log(f"benchmark [{self.done}/{self.total}] {run.name}: {outcome}; suite ETA {self.eta()}")

    def eta(self) -> str:
        """The estimated time left, H:MM:SS, or n/a before the first finished run."""
        if not self.remaining:
            return "0:00:00"
        if not self.seconds:
            return "n/a"
        return format_duration(sum(self._estimate(run) for run in self.remaining))

    def _estimate(self, run: Run) -> float:
        for matches in (lambda m, t: (m, t) == (run.model.label, run.task.name),
                        lambda m, t: m == run.model.label, lambda m, t: t == run.task.name, lambda m, t: True):
            times = [s for (m, t), values in self.seconds.items() if matches(m, t) for s in values]
            if times:
                return sum(times) / len(times)
        return 0.0
