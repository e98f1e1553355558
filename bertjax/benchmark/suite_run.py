"""`python -m bertjax.benchmark`'s work: check everything named on the command line, then run the suite's runs in
order (finished ones skipped), rewriting the results after each."""
from __future__ import annotations

import dataclasses
import re

import jax

from bertjax import paths
from bertjax.benchmark import references, report, runner, suites
from bertjax.benchmark.runner import Model, Options
from bertjax.convert import sources
from bertjax.errors import BertjaxError


def run(*, suite: str, data_dir: str, models: list[str], workdir: str, references_named: list[str] = (),
        tasks: list[str] = (), max_train_examples: int = 0, max_eval_examples: int = 0,
        learning_rates: list[str] = (), seeds: list[str] = (), epochs: float | None = None, strict: bool = False,
        log=print) -> dict:
    """Run (or continue) a suite for `models` ("PATH" or "LABEL=PATH") and write <workdir>/results.*; returns the
    results.json content. Everything named is checked before the first run: a bad one is a BertjaxError."""
    chosen = _select(suites.load(suite), tasks, learning_rates, seeds, epochs)
    published = [references.reference(name, chosen) for name in references_named]
    if not paths.path(data_dir).is_dir():
        raise BertjaxError(f"--data_dir={data_dir} is not a directory; point it at the folder of the suite's task "
                           "directories")
    for name, value in (("max_train_examples", max_train_examples), ("max_eval_examples", max_eval_examples)):
        if value < 0:
            raise BertjaxError(f"--{name}={value} is negative; use 0 for every example")
    if strict:
        absent = [t.data for t in chosen.tasks if not (paths.path(data_dir) / t.data).is_dir()]
        if absent:
            raise BertjaxError(f"--strict: {paths.path(data_dir) / absent[0]} does not exist (tasks' data missing: "
                               f"{', '.join(dict.fromkeys(absent))}); add the files, or leave out --strict to report "
                               "them as missing")
    model_list = [_model(text) for text in models]
    _check_labels(model_list)
    for model in model_list:
        _check_model(model)
    paths.path(workdir).mkdir(parents=True, exist_ok=True)
    paths.check_writable(workdir, "--workdir")
    _share_compiled_steps(workdir)
    options = Options(data_dir, max_train_examples, max_eval_examples, strict)
    runs = runner.plan(chosen, model_list, workdir)
    settings = {"data_dir": data_dir, "max_train_examples": max_train_examples,
                "max_eval_examples": max_eval_examples, "suite_source": suite}
    progress = runner.Progress(runs, log)
    records = []
    log(f"benchmark: {chosen.name} suite, {len(chosen.tasks)} tasks x {len(model_list)} models = {len(runs)} runs "
        f"in {workdir}")
    for item in runs:
        record = runner.finished(item, options)
        skipped = record is not None
        if not skipped:
            progress.start(item)
            record = runner.execute(item, options, workdir)
        records.append(record)
        progress.finish(item, record, skipped)
        content = report.write(workdir, chosen, model_list, records, published, settings)  # after every run
    log(f"benchmark: results in {paths.path(workdir) / report.RESULTS_MD}")
    return content


def _select(suite: suites.Suite, tasks, learning_rates, seeds, epochs) -> suites.Suite:
    """The suite narrowed to `tasks` (and the tasks they evaluate), with the command line's recipe overrides."""
    if tasks:
        unknown = [name for name in tasks if name not in {t.name for t in suite.tasks}]
        if unknown:
            raise BertjaxError(f"--tasks names {', '.join(unknown)}, not in the {suite.name} suite; its tasks: "
                               f"{', '.join(t.name for t in suite.tasks)}")
        wanted = set(tasks) | {suite.task(name).evaluate for name in tasks if suite.task(name).evaluate}
        suite = dataclasses.replace(suite, tasks=tuple(t for t in suite.tasks if t.name in wanted))
    changes = {}
    try:
        if learning_rates:
            changes["learning_rates"] = tuple(float(v) for v in learning_rates)
        if seeds:
            changes["seeds"] = tuple(int(v) for v in seeds)
    except ValueError as e:
        raise BertjaxError(f"--learning_rates / --seeds: {e}; give comma-separated numbers") from e
    if epochs is not None:
        if epochs <= 0:
            raise BertjaxError(f"--epochs={epochs} must be positive")
        changes["epochs"] = epochs
    if changes:
        suite = dataclasses.replace(suite, tasks=tuple(dataclasses.replace(t, **changes) for t in suite.tasks))
    return suite


def _model(text: str) -> Model:
    label, sep, path = text.partition("=")
    if not sep:
        label, path = "", text
    path = path.rstrip("/")
    label = label or paths.path(path).name or "model"
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", label):
        raise BertjaxError(f"--model={text}: the label {label!r} is used as a directory name; use letters, digits "
                           "and . _ + - (LABEL=PATH)")
    return Model(label, path)


def _check_labels(models: list[Model]) -> None:
    seen = {}
    for model in models:
        if model.label in seen:
            raise BertjaxError(f"--model={model.path} and --model={seen[model.label]} share the label "
                               f"{model.label!r}; name them with LABEL=PATH")
        seen[model.label] = model.path


def _check_model(model: Model) -> None:
    """The model loads (config, vocab and weights): a model that does not load fails before any run."""
    try:
        sources.load_pretrained(model.path, allow_missing_heads=True)
    except BertjaxError as e:
        raise BertjaxError(f"--model={model.label}={model.path} does not load: {e}") from e


def _share_compiled_steps(workdir: str) -> None:
    """JAX's persistent compilation cache in <workdir>/xla_cache (unless one is configured): runs of the same shapes
    (a task's seeds, models of one size) load each other's compiled steps instead of compiling them again."""
    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(paths.path(workdir) / runner.XLA_CACHE_DIR))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
