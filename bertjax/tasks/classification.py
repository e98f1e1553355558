"""Sentence(-pair) classification and regression data (GLUE and generic TSV/CSV/JSONL files).

Encoding follows google-research/bert `run_classifier.py`: `convert_single_example` ([CLS] a [SEP] b [SEP],
segment ids 0 then 1, zero padding) and `_truncate_seq_pair` (trim the longer text one piece at a time).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from etils.epath import Path
from typing import Iterator, Sequence

import numpy as np

from bertjax import paths
from bertjax.errors import BertjaxError
from bertjax.tasks import metrics
from bertjax.tasks._common import bad_input, check_max_seq_length, pack_row, stack_rows

Column = str | int  # a header name, or a 0-based index for files without a header


@dataclass(frozen=True)
class Example:
    """One input: guid, first text, optional second text, label (str; None for unlabelled test data)."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task's data is and how to read and score it. `labels` None means regression (num_labels=1)."""

    name: str
    text_columns: tuple[Column, ...]
    label_column: Column
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    dev_files: tuple[str, ...] = ("dev.tsv",)
    test_files: tuple[str, ...] = ("test.tsv",)
    has_header: bool = True
    test_text_columns: tuple[Column, ...] | None = None  # when test.tsv names its text columns differently
    train_file: str = "train.tsv"

    @property
    def num_labels(self) -> int:
        """Output size of the head: number of classes, 1 for regression."""
        return 1 if self.labels is None else len(self.labels)


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", (3,), 1, _BINARY, ("matthews",), has_header=False, test_text_columns=("sentence",)),
    GlueTask("sst2", ("sentence",), "label", _BINARY, ("accuracy",)),
    GlueTask("mrpc", ("#1 String", "#2 String"), "Quality", _BINARY, ("accuracy", "f1")),
    GlueTask("qqp", ("question1", "question2"), "is_duplicate", _BINARY, ("accuracy", "f1")),
    GlueTask("stsb", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
    GlueTask("mnli", ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"),
             ("accuracy",), dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
             test_files=("test_matched.tsv", "test_mismatched.tsv")),
    GlueTask("qnli", ("question", "sentence"), "label", _ENTAILMENT, ("accuracy",)),
    GlueTask("rte", ("sentence1", "sentence2"), "label", _ENTAILMENT, ("accuracy",)),
    GlueTask("wnli", ("sentence1", "sentence2"), "label", _BINARY, ("accuracy",)),
]}


def glue_task(name: str) -> GlueTask:
    """The registry entry of a GLUE task (case-insensitive, "sst-2"/"sts-b" accepted)."""
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise BertjaxError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def read_glue(task: str | GlueTask, data_dir: str | os.PathLike, split: str = "train") -> list[Example]:
    """Examples of a GLUE split: "train", "dev" (MNLI: dev_matched; "dev_mismatched" too) or "test"
    ("test_mismatched" for MNLI). Test files have no labels; their guid is the `index` (QQP: `id`) column."""
    task = glue_task(task) if isinstance(task, str) else task
    files = {"train": task.train_file, "dev": task.dev_files[0], "test": task.test_files[0]}
    files.update({Path(f).stem: f for f in task.dev_files + task.test_files})
    if split not in files:
        raise BertjaxError(f"unknown split {split!r} of GLUE task {task.name}; choose one of {', '.join(files)}")
    path = paths.path(data_dir) / files[split]
    if split.startswith("test"):
        guid = "id" if task.name == "qqp" else "index"
        return read_examples(path, task.test_text_columns or task.text_columns, None, guid_column=guid)
    return read_examples(path, task.text_columns, task.label_column, label_list=task.labels,
                         regression=task.labels is None, has_header=task.has_header)


def glue_metrics(task: str | GlueTask, predictions, labels) -> dict[str, float]:
    """The task's metrics: {name: value} (predictions: class ids, or scores for STS-B)."""
    task = glue_task(task) if isinstance(task, str) else task
    return {name: metrics.METRICS[name](predictions, labels) for name in task.metrics}


def _rows(path: Path) -> Iterator[tuple[int, list[str] | dict]]:
    """(1-based line number, fields) of a .tsv/.csv (a list; the header row included) or .jsonl (a dict) file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BertjaxError(f"{str(path)!r} does not exist; check the data directory and file name")
    with paths.open_text(path, newline="\n" if suffix == ".tsv" else "") as f:
        if suffix == ".tsv":  # GLUE's format: tab-separated, no quoting (the original reads with quotechar=None)
            for number, line in enumerate(f, 1):
                if line.strip("\r\n"):  # blank lines (a trailing one, say) are skipped
                    yield number, line.rstrip("\r\n").split("\t")
        elif suffix == ".csv":
            reader = csv.reader(f)
            line = 1
            for row in reader:
                yield line, row
                line = reader.line_num + 1
        elif suffix in (".jsonl", ".json"):
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise bad_input(path, number, f"not a JSON object ({e})", "write one JSON object per line") from e
                if not isinstance(record, dict):
                    raise bad_input(path, number, "not a JSON object", "write one JSON object per line")
                yield number, record
        else:
            raise BertjaxError(f"{str(path)!r}: unknown file type {suffix!r}; use .tsv, .csv or .jsonl")


def _locate(path: Path, header: list[str] | None, columns: Sequence[Column]) -> list[int | str]:
    """Field index (TSV/CSV) of each column; BertjaxError naming file:1 for a header name that is missing."""
    if header is None:
        return list(columns)
    found = []
    for column in columns:
        if isinstance(column, int):
            found.append(column)
        elif column in header:
            found.append(header.index(column))
        else:
            raise bad_input(path, 1, f"no column {column!r}; the header has {header}",
                            "name one of these columns (or fix the header line)")
    return found


def _field(path: Path, line: int, row, where, column: Column) -> str:
    """The text of one field; JSONL: a missing key is an error naming the line and the keys it has."""
    if isinstance(row, dict):
        if column not in row:
            raise bad_input(path, line, f"no field {column!r}; the record has {sorted(row)}",
                            "name one of these fields or add it to every line")
        value = row[column]
        return value if isinstance(value, str) else json.dumps(value)
    return row[where]


def read_examples(path: str | os.PathLike, text_columns: Sequence[Column], label_column: Column | None = None,
                  label_list: Sequence[str] | None = None, *, regression: bool = False, has_header: bool = True,
                  guid_column: Column | None = None) -> list[Example]:
    """Examples of a .tsv, .csv or .jsonl file (by extension): one or two text columns and an optional label column,
    by header name (or 0-based index when has_header=False). Labels must be in `label_list` when given, a number when
    `regression`. Errors name file:line: a missing column, a wrong field count, an empty text, a bad label."""
    path = paths.path(path)
    if not 1 <= len(text_columns) <= 2:
        raise BertjaxError(f"{len(text_columns)} text columns given for {str(path)!r}; give one or two")
    wanted = [*text_columns, *([label_column] if label_column is not None else []),
              *([guid_column] if guid_column is not None else [])]
    labels = set(label_list) if label_list is not None else None
    examples: list[Example] = []
    where: list = list(wanted)
    n_fields = None
    for line, row in _rows(path):
        if isinstance(row, list):
            if n_fields is None:
                n_fields = len(row)
                if has_header:
                    where = _locate(path, row, wanted)
                    continue
                where = _locate(path, None, wanted)
            if len(row) != n_fields:
                raise bad_input(path, line, f"{len(row)} fields where the first line has {n_fields}",
                                "remove stray tabs/newlines inside the texts or fix the row")
            if max(where) >= n_fields:
                raise bad_input(path, line, f"no column {max(where)} (0-based); the row has {n_fields} fields",
                                "give column indices within the row")
        values = [_field(path, line, row, w, c) for w, c in zip(where, wanted)]
        texts = values[:len(text_columns)]
        for column, text in zip(text_columns, texts):
            if not text.strip():
                raise bad_input(path, line, f"empty text in column {column!r}", "fill in the text or drop the row")
        label = values[len(text_columns)] if label_column is not None else None
        if label is not None:
            label = label.strip()
            if regression:
                try:
                    if not math.isfinite(float(label)):
                        raise ValueError
                except ValueError:
                    raise bad_input(path, line, f"label {label!r} is not a number",
                                    "a regression label must be a finite number") from None
            elif labels is not None and label not in labels:
                raise bad_input(path, line, f"label {label!r} is not in the label set {sorted(labels)}",
                                "fix the label or pass a label_list that includes it")
        guid = values[-1] if guid_column is not None else f"{path.stem}-{line}"
        examples.append(Example(guid, texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def labels_of(examples: Sequence[Example]) -> list[str]:
    """The label list of training examples: the distinct labels, sorted (stable across runs)."""
    return sorted({e.label for e in examples if e.label is not None})


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Trim in place, one token at a time from the longer list, until len(a) + len(b) <= max_length
    (run_classifier.py `_truncate_seq_pair`; on a tie, b is trimmed)."""
    while len(tokens_a) + len(tokens_b) > max_length:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def encode(examples: Sequence[Example], tokenizer, max_seq_length: int,
           label_list: Sequence[str] | None) -> dict[str, np.ndarray]:
    """{input_ids, input_mask, segment_ids: int32[B, T], labels: [B]} as run_classifier.py convert_single_example.

    `label_list` None means regression: float32 labels (NaN for unlabelled examples); otherwise int32 label ids
    (-1 for unlabelled examples)."""
    check_max_seq_length(max_seq_length)
    label_ids = {label: i for i, label in enumerate(label_list)} if label_list is not None else None
    rows, labels = [], []
    for example in examples:
        a = tokenizer.encode(example.text_a).tolist()
        b = tokenizer.encode(example.text_b).tolist() if example.text_b is not None else None
        if b is not None:
            truncate_seq_pair(a, b, max_seq_length - 3)
        else:
            a = a[:max_seq_length - 2]
        ids = [tokenizer.cls_id, *a, tokenizer.sep_id]
        segments = [0] * len(ids)
        if b is not None:
            ids += [*b, tokenizer.sep_id]
            segments += [1] * (len(b) + 1)
        rows.append(pack_row(ids, segments, max_seq_length, tokenizer.pad_id))
        labels.append(_label_value(example, label_ids))
    out = stack_rows(rows, max_seq_length)
    out["labels"] = np.array(labels, np.float32 if label_ids is None else np.int32).reshape(len(examples))
    return out


def _label_value(example: Example, label_ids: dict[str, int] | None) -> float | int:
    """The label's id (classification) or value (regression); -1 / NaN without a label."""
    if example.label is None:
        return math.nan if label_ids is None else -1
    if label_ids is None:
        return float(example.label)
    if example.label not in label_ids:
        raise BertjaxError(f"example {example.guid}: label {example.label!r} is not in the label list "
                           f"{list(label_ids)}; pass the training label list (labels_of(train_examples))")
    return label_ids[example.label]
