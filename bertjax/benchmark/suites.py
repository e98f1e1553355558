"""Benchmark suites: which tasks, where their files are, how each is fine-tuned and which number is reported.

A suite is a list of `SuiteTask`s. The built-in ones (`glue`, `korean`) follow the field's protocol, each choice
with its source:
- GLUE's recipe is the BERT paper's (Devlin et al. 2019, section 4.1 and appendix A.3): batch 32, 3 epochs,
  max length 128, the learning rate chosen on dev from {5e-5, 4e-5, 3e-5, 2e-5}; BERT-large "was sometimes unstable
  on small datasets", hence random restarts there. The average is the paper's Table 1: MNLI-m and MNLI-mm, QQP,
  QNLI, SST-2, CoLA, STS-B, MRPC, RTE (WNLI excluded), F1 for QQP and MRPC, Spearman for STS-B, Matthews for CoLA,
  accuracy for the rest.
- Several seeds on the small tasks, as MosaicBERT (mosaicml/examples `yamls/finetuning/glue/*.yaml`: 5 seeds for
  RTE, MRPC and STS-B, 4 for CoLA, 3 for SST-2) and Cramming (`cramming/config/eval/GLUE_sane.yaml`: one fixed recipe
  for all tasks) do: run-to-run noise on those tasks is larger than most differences between models (cramming#45,
  academic-budget-bert#18). Here: 5 seeds on CoLA, MRPC, STS-B and RTE, 1 elsewhere.
- The reported number (`STATISTIC`): the median over seeds at the learning rate whose median is best, so one
  diverged seed neither wins nor sinks a task.
- The Korean suite: NSMC (e9t/nsmc; accuracy on ratings_test.txt, as KoBERT and KcBERT report it) and KLUE v1.1's
  TC (macro F1), STS (Pearson's r, and F1 at 3.0), NLI (accuracy), NER (entity and character macro F1) and MRC
  (exact match and ROUGE-W, KLUE's character LCCS F1), the
  metrics of the KLUE paper and KLUE-benchmark/KLUE's README, each dev file in the official layout under --data_dir
  (nsmc/ratings_{train,test}.txt, ynat-v1.1/, klue-sts-v1.1/, klue-nli-v1.1/, klue-ner-v1.1/, klue-mrc-v1.1/). The
  recipe is KLUE-baseline's `run_all.sh` for klue/bert-base (commit 8a03c94): lr 5e-5, batch 32, no weight decay,
  10% warmup, max length 128, 4 epochs (NLI 5; NER 3 at max length 510 without warmup; MRC lr 3e-5, batch 16, 5 epochs at
  max length 510, EM and ROUGE-W), one seed; NSMC takes TC's recipe.

A custom suite is a YAML, JSON or Python file (`load`): tasks with a type (classification, regression, tagging,
squad), a data directory, columns and a metric.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Mapping

import yaml

from bertjax import paths
from bertjax.errors import BertjaxError
from bertjax.tasks import classification, korean

STATISTIC = "median over seeds at the learning rate with the best median"
BERT_PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)
SMALL_TASK_SEEDS = (0, 1, 2, 3, 4)

# The four fine-tuning objectives: the config file each runs with, its config.task for files the user describes,
# and the metrics its evaluation reports (the names of the run's eval metrics).
TYPES = {
    "classification": ("finetune_glue.py", "classification", ("accuracy", "f1", "matthews", "macro_f1")),
    "regression": ("finetune_glue.py", "classification", ("pearson", "spearman", "sts_f1")),
    "tagging": ("finetune_ner.py", "tagging", ("entity_f1", "entity_precision", "entity_recall")),
    "squad": ("finetune_squad.py", "squad", ("squad_exact", "squad_f1")),
}


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One column of the table: how its runs are configured, and which eval metric it reports."""

    name: str                      # column key, also the runs' sub-directory
    type: str                      # a key of TYPES
    data: str                      # its files' directory, relative to --data_dir (or absolute)
    metric: str                    # the reported eval metric (a run's metric name): lr choice, average
    extra_metrics: tuple[str, ...] = ()   # more columns from the same runs (KLUE-STS's F1 beside Pearson's r)
    task: str = ""                 # config.task; "" = TYPES[type]'s generic task
    label: str = ""                # column header; "" = name
    learning_rates: tuple[float, ...] = (2e-5,)
    seeds: tuple[int, ...] = (0,)
    epochs: float = 3
    batch_size: int = 32
    max_seq_length: int = 128
    in_average: bool = True
    evaluate: str = ""             # another task's name: evaluate its runs' final models here instead of training
    config: Mapping = dataclasses.field(default_factory=dict)   # more config overrides, "data.dev_file": "x.tsv"

    @property
    def config_file(self) -> str:
        """The configs/ file its runs start from."""
        return TYPES[self.type][0]

    @property
    def header(self) -> str:
        """The column header."""
        return self.label or self.name

    @property
    def metrics(self) -> tuple[str, ...]:
        """The reported metric, then the extra ones."""
        return (self.metric, *self.extra_metrics)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named list of tasks."""

    name: str
    tasks: tuple[SuiteTask, ...]

    def task(self, name: str) -> SuiteTask:
        """The task called `name`."""
        return next(t for t in self.tasks if t.name == name)


def _glue(name, label, data, metric, task_type="classification", small=False, **fields) -> SuiteTask:
    return SuiteTask(name=name, label=label, type=task_type, task=fields.pop("task", name), data=data, metric=metric,
                     learning_rates=BERT_PAPER_LEARNING_RATES, seeds=SMALL_TASK_SEEDS if small else (0,), **fields)


GLUE = Suite("glue", (
    _glue("mnli", "MNLI-m", "MNLI", "accuracy"),
    _glue("mnli_mm", "MNLI-mm", "MNLI", "accuracy", task="mnli", evaluate="mnli",
          config={"data.dev_file": "dev_mismatched.tsv"}),
    _glue("qqp", "QQP", "QQP", "f1", extra_metrics=("accuracy",)),
    _glue("qnli", "QNLI", "QNLI", "accuracy"),
    _glue("sst2", "SST-2", "SST-2", "accuracy"),
    _glue("cola", "CoLA", "CoLA", "matthews", small=True),
    _glue("stsb", "STS-B", "STS-B", "spearman", "regression", small=True, extra_metrics=("pearson",)),
    _glue("mrpc", "MRPC", "MRPC", "f1", small=True, extra_metrics=("accuracy",)),
    _glue("rte", "RTE", "RTE", "accuracy", small=True),
    _glue("wnli", "WNLI", "WNLI", "accuracy", in_average=False),
))


def _korean(name, label, data, metric, task_type="classification", epochs=4, **fields) -> SuiteTask:
    overrides = {"optimizer.weight_decay": 0.0, **fields.pop("config", {})}
    fields.setdefault("learning_rates", (5e-5,))
    return SuiteTask(name=name, label=label, type=task_type, task=name, data=data, metric=metric, epochs=epochs,
                     config=overrides, **fields)


KOREAN = Suite("korean", (
    _korean("nsmc", "NSMC", "nsmc", "accuracy"),
    _korean("klue_tc", "KLUE-TC", "ynat-v1.1", "macro_f1"),
    _korean("klue_sts", "KLUE-STS", "klue-sts-v1.1", "pearson", "regression", extra_metrics=("sts_f1",)),
    _korean("klue_nli", "KLUE-NLI", "klue-nli-v1.1", "accuracy", epochs=5),
    _korean("klue_ner", "KLUE-NER", "klue-ner-v1.1", "entity_macro_f1", "tagging", epochs=3, max_seq_length=510,
            extra_metrics=("char_macro_f1",), config={"optimizer.warmup_fraction": 0.0}),
    _korean("klue_mrc", "KLUE-MRC", "klue-mrc-v1.1", "klue_mrc_exact_match", "squad", epochs=5, max_seq_length=510,
            batch_size=16, extra_metrics=("klue_mrc_rouge_w",), config={"optimizer.weight_decay": 0.0},
            learning_rates=(3e-5,)),
))

BUILT_IN = {suite.name: suite for suite in (GLUE, KOREAN)}
_FIELDS = {field.name for field in dataclasses.fields(SuiteTask)}


def load(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file (.yaml/.yml/.json, or .py defining TASKS and optionally NAME)."""
    if name_or_path in BUILT_IN:
        return BUILT_IN[name_or_path]
    path = paths.path(name_or_path)
    if not path.is_file():
        raise BertjaxError(f"--suite={name_or_path} is neither a built-in suite ({', '.join(BUILT_IN)}) nor a suite "
                           "file; give a .yaml, .json or .py file that lists the tasks")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            spec = yaml.safe_load(path.read_text())
        elif suffix == ".json":
            spec = json.loads(path.read_text())
        elif suffix == ".py":
            spec = _python_suite(path)
        else:
            raise BertjaxError(f"--suite={name_or_path}: a suite file is .yaml, .yml, .json or .py, not {suffix!r}")
    except (yaml.YAMLError, ValueError, SyntaxError) as e:
        raise BertjaxError(f"--suite={name_or_path} does not parse ({type(e).__name__}: {str(e).splitlines()[0]}); "
                           "fix the file") from e
    if isinstance(spec, list):
        spec = {"tasks": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list) or not spec["tasks"]:
        raise BertjaxError(f"--suite={name_or_path} has no task list; write `tasks:` with one entry per task")
    tasks = tuple(_task(entry, index, name_or_path) for index, entry in enumerate(spec["tasks"]))
    suite = Suite(str(spec.get("name") or path.stem), tasks)
    check(suite, name_or_path)
    return suite


def _python_suite(path) -> dict:
    module_spec = importlib.util.spec_from_file_location(f"_bertjax_suite_{path.stem}", str(path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return {"name": getattr(module, "NAME", path.stem), "tasks": list(getattr(module, "TASKS", []))}


def _task(entry, index: int, source: str) -> SuiteTask:
    where = f"--suite={source}: task {index + 1}"
    if not isinstance(entry, dict):
        raise BertjaxError(f"{where} is not a mapping; give name, type, data and metric")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise BertjaxError(f"{where} has unknown field(s) {', '.join(unknown)}; the fields are "
                           f"{', '.join(sorted(_FIELDS))}")
    missing = [name for name in ("name", "type", "data", "metric") if not entry.get(name)]
    if missing:
        raise BertjaxError(f"{where} lacks {', '.join(missing)}")
    fields = dict(entry)
    for name in ("learning_rates", "seeds", "extra_metrics"):
        if name in fields:
            value = fields[name]
            fields[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    fields["learning_rates"] = tuple(float(v) for v in fields.get("learning_rates", (2e-5,)))
    fields["config"] = dict(fields.get("config") or {})
    return SuiteTask(**fields)


def check(suite: Suite, source: str) -> None:
    """Every task's type and metric known, names unique, `evaluate` naming an earlier task."""
    seen = set()
    for task in suite.tasks:
        where = f"--suite={source}: task {task.name!r}"
        if task.type not in TYPES:
            raise BertjaxError(f"{where} has unknown type {task.type!r}; use one of {', '.join(TYPES)}")
        metrics = _metrics_of(task)
        for metric in (task.metric, *task.extra_metrics):
            if metric not in metrics:
                raise BertjaxError(f"{where} has unknown metric {metric!r} for type {task.type}; use one of "
                                   f"{', '.join(metrics)}")
        if task.name in seen:
            raise BertjaxError(f"{where} appears twice; give every task its own name")
        if task.evaluate and task.evaluate not in seen:
            raise BertjaxError(f"{where} evaluates {task.evaluate!r}, which is not an earlier task of the suite")
        if not task.learning_rates or not task.seeds:
            raise BertjaxError(f"{where} needs at least one learning rate and one seed")
        seen.add(task.name)


def _metrics_of(task: SuiteTask) -> tuple[str, ...]:
    """The eval metrics a task's runs report: the named task's own, else its type's."""
    named = {**classification.GLUE_TASKS, **korean.KOREAN_TASKS}
    if task.task in named:
        return named[task.task].metrics
    if task.task == korean.KLUE_NER:
        return ("entity_macro_f1", "char_macro_f1")
    if task.task == korean.KLUE_MRC:
        return ("klue_mrc_exact_match", "klue_mrc_rouge_w")
    return TYPES[task.type][2]
