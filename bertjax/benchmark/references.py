"""Published rows (`--reference=NAME`): other people's numbers, shown beside the measured rows and labelled as
published, with their source and split. Scores are in percent, keyed by the suite's task names; a metric other
than the task's reported one is keyed "task:metric"."""
from __future__ import annotations

import dataclasses

from bertjax.errors import BertjaxError


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published row."""

    name: str
    suite: str
    split: str              # "dev" or "test": published test numbers are not comparable with dev ones
    source: str
    scores: dict


REFERENCES = {r.name: r for r in [
    Reference(
        "bert-base-cased-hf", "glue", "dev",
        "transformers examples/pytorch/text-classification/README.md (commit 05ce25b), run_glue.py with "
        "bert-base-cased: batch 32, lr 2e-5, 3 epochs (MRPC and WNLI 5), max length 128, one seed",
        {"mnli": 83.91, "mnli_mm": 84.10, "qqp": 87.49, "qqp:accuracy": 90.71, "qnli": 90.66, "sst2": 92.32,
         "cola": 56.53, "stsb": 88.48, "stsb:pearson": 88.64, "mrpc": 88.85, "mrpc:accuracy": 84.07, "rte": 65.70,
         "wnli": 56.34}),
    Reference(
        "bert-base-uncased-paper", "glue", "test",
        "Devlin et al. 2019, BERT, Table 1 (GLUE test server; average 79.6 over the nine columns without WNLI)",
        {"mnli": 84.6, "mnli_mm": 83.4, "qqp": 71.2, "qnli": 90.5, "sst2": 93.5, "cola": 52.1, "stsb": 85.8,
         "mrpc": 88.9, "rte": 66.4}),
    Reference(
        "klue-bert-base", "korean", "test",
        "KLUE-benchmark/KLUE README, Baseline Scores (KLUE paper, Park et al. 2021); KLUE has no NSMC",
        {"klue_tc": 85.73, "klue_sts": 90.85, "klue_sts:sts_f1": 82.84, "klue_nli": 81.63, "klue_ner": 83.97,
         "klue_ner:char_macro_f1": 91.39, "klue_mrc": 62.32, "klue_mrc:klue_mrc_rouge_w": 68.51}),
    Reference(
        "kobert", "korean", "test",
        "SKTBrain/KoBERT README: NSMC test accuracy", {"nsmc": 90.1}),
    Reference(
        "kcbert-base", "korean", "test",
        "Beomi/KcBERT README: NSMC test accuracy", {"nsmc": 89.62}),
]}


def reference(name: str, suite) -> Reference:
    """The published row called `name`, which must score some task of `suite` (a `suites.Suite`: by task names, so
    a suite file whose tasks are named sst2, rte, ... takes GLUE's rows); else one error line listing those that do."""
    names = {task.name for task in suite.tasks}
    fitting = [r.name for r in REFERENCES.values() if names & {key.split(":")[0] for key in r.scores}]
    if name not in fitting:
        listed = ", ".join(fitting) if fitting else "none"
        raise BertjaxError(f"--reference={name} is not a published row of the {suite.name} suite's tasks; known: "
                           f"{listed}")
    return REFERENCES[name]
