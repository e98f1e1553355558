"""Korean benchmark tasks in their official files: NSMC (github.com/e9t/nsmc) and KLUE v1.1 (github.com/
KLUE-benchmark/KLUE, CC BY-SA 4.0) topic classification (YNAT), STS, NLI, NER and MRC.

Sentence(-pair) tasks are `GlueTask` entries (`KOREAN_TASKS`, scored by `classification.glue_metrics`) read into
`Example`s; a KLUE text or label field may be a dotted path into a record ("labels.real-label"). NER is read into
`tagging.Sentence`s whose "words" are characters, so the tagging pipeline's first-piece labels apply unchanged.
KLUE-MRC is SQuAD v2.0's layout, read into `squad.SquadExample`s by `squad.read_squad_examples` (`read_klue_mrc`).
None of these tasks has a public labelled test set: dev is NSMC's ratings_test.txt and KLUE's _dev files.
"""
from __future__ import annotations

import json
import math
import os

from bertjax import paths
from bertjax.errors import BertjaxError
from bertjax.tasks import squad
from bertjax.tasks._common import bad_input
from bertjax.tasks.classification import Example, GlueTask
from bertjax.tasks.tagging import OUTSIDE, Sentence

YNAT_LABELS = ("정치", "경제", "사회", "생활문화", "세계", "IT과학", "스포츠")  # KLUE-baseline's order
NER_TYPES = ("PS", "LC", "OG", "DT", "TI", "QT")  # person, location, organisation, date, time, quantity
KLUE_NER_LABELS = (OUTSIDE, *sorted(f"{bio}-{kind}" for kind in NER_TYPES for bio in "BI"))


def _klue(name: str, stem: str, text_fields, label_field: str, labels, task_metrics) -> GlueTask:
    return GlueTask(name, text_fields, label_field, labels, task_metrics, dev_files=(f"{stem}_dev.json",),
                    test_files=(), train_file=f"{stem}_train.json")


KOREAN_TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("nsmc", ("document",), "label", ("0", "1"), ("accuracy",), dev_files=("ratings_test.txt",),
             test_files=(), train_file="ratings_train.txt"),
    _klue("klue_tc", "ynat-v1.1", ("title",), "label", YNAT_LABELS, ("macro_f1",)),
    _klue("klue_sts", "klue-sts-v1.1", ("sentence1", "sentence2"), "labels.real-label", None,
          ("pearson", "sts_f1")),
    _klue("klue_nli", "klue-nli-v1.1", ("premise", "hypothesis"), "gold_label",
          ("entailment", "neutral", "contradiction"), ("accuracy",)),
]}
KLUE_NER = "klue_ner"
KLUE_NER_FILE = "klue-ner-v1.1_{split}.tsv"
KLUE_MRC = "klue_mrc"
KLUE_MRC_FILE = "klue-mrc-v1.1_{split}.json"


def read_korean(task: GlueTask, data_dir: str | os.PathLike, split: str = "train") -> list[Example]:
    """Examples of a Korean sentence(-pair) task's "train" or "dev" split from its official file in `data_dir`."""
    if split not in ("train", "dev"):
        raise BertjaxError(f"{task.name} has no public labelled {split!r} split; use --config.eval.split=dev")
    path = paths.path(data_dir) / (task.train_file if split == "train" else task.dev_files[0])
    return read_nsmc(path) if task.name == "nsmc" else read_klue_json(path, task)


def _open(path):
    if not path.is_file():
        raise BertjaxError(f"{str(path)!r} does not exist; put the task's official files in --config.data.dir")
    return paths.open_text(path, newline="\n")


def read_nsmc(path: str | os.PathLike) -> list[Example]:
    """Examples of an NSMC file (ratings_train.txt / ratings_test.txt): tab-separated, header `id document label`,
    label 0 (negative) or 1 (positive); guid = id. An empty document is kept as empty text ([CLS] [SEP]), not an
    error: a few published rows have one, and published NSMC accuracies count every row."""
    path = paths.path(path)
    examples = []
    with _open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
            if number == 1:
                if fields != ["id", "document", "label"]:
                    raise bad_input(path, 1, f"header {fields}", "NSMC files start with `id<TAB>document<TAB>label`")
                continue
            if fields == [""]:
                continue
            if len(fields) != 3:
                raise bad_input(path, number, f"{len(fields)} fields", "write `id<TAB>document<TAB>label`")
            if fields[2] not in ("0", "1"):
                raise bad_input(path, number, f"label {fields[2]!r}", "the label is 0 (negative) or 1 (positive)")
            examples.append(Example(fields[0], fields[1], None, fields[2]))
    return examples


def _value(record: dict, field: str):
    """The value at a dotted path ("labels.real-label"), KeyError when a step is missing."""
    for key in field.split("."):
        if not isinstance(record, dict):
            raise KeyError(key)
        record = record[key]
    return record


def read_klue_json(path: str | os.PathLike, task: GlueTask) -> list[Example]:
    """Examples of a KLUE v1.1 JSON file (one JSON array of records): texts and label from the task's fields,
    guid = the record's guid. A label must be one of the task's labels, or a finite number for STS (real-label).
    Errors name the file and the record (0-based index and guid)."""
    path = paths.path(path)
    with _open(path) as f:
        try:
            records = json.load(f)
        except ValueError as e:
            raise bad_input(path, getattr(e, "lineno", None), f"not JSON ({e})", "use the KLUE v1.1 file as "
                            "published") from e
    if not isinstance(records, list):
        raise bad_input(path, None, f"a JSON {type(records).__name__}, not an array of records",
                        "use the KLUE v1.1 file as published (one JSON array)")
    examples = []
    for index, record in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise bad_input(path, None, f"{where} is not a JSON object", "each array element is one example")
        where += f" (guid {record.get('guid')!r})"
        values = []
        for field in ("guid", *task.text_columns, task.label_column):
            try:
                values.append(_value(record, field))
            except KeyError:
                raise bad_input(path, None, f"{where} has no field {field!r}", f"give every record "
                                f"{', '.join(('guid', *task.text_columns, task.label_column))}") from None
        guid, *texts, label = values
        if not all(isinstance(text, str) for text in texts):
            raise bad_input(path, None, f"{where}: a text is not a string", "write the texts as JSON strings")
        if task.labels is None:
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                raise bad_input(path, None, f"{where}: {task.label_column} {label!r} is not a number",
                                "a similarity score is a finite number")
        elif label not in task.labels:
            raise bad_input(path, None, f"{where}: label {label!r} is not one of {list(task.labels)}",
                            f"fix the {task.label_column} field")
        examples.append(Example(str(guid), texts[0], texts[1] if len(texts) > 1 else None, str(label)))
    return examples


def read_klue_ner(path: str | os.PathLike) -> list[Sentence]:
    """Sentences of a KLUE-NER file (klue-ner-v1.1_{train,dev}.tsv): `##` comment lines (the last one before a
    sentence holds its guid, then a tab and the tagged sentence), one `character<TAB>tag` line per character (IOB2,
    tags of KLUE_NER_LABELS), a blank line (or a lone tab) between sentences.

    A space character (its own line, tagged O) is dropped, from the model input and from the metric alike, as
    KLUE-baseline drops it; so the words are the sentence's other characters, and Sentence.line is the line of its
    first character only (word k is not on line + k)."""
    path = paths.path(path)
    sentences: list[Sentence] = []
    chars: list[str] = []
    tags: list[str] = []
    first_line, guid = 0, ""

    def flush():
        if chars:
            sentences.append(Sentence(tuple(chars), tuple(tags), str(path), first_line, guid))
            chars.clear()
            tags.clear()

    with _open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.startswith("##"):
                flush()
                guid = line[2:].split("\t")[0].strip()
                continue
            if not line.strip(" \t"):
                flush()
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0]:
                raise bad_input(path, number, f"{line!r} is not `character<TAB>tag`",
                                "write one character, a tab and its tag per line")
            char, tag = fields
            if tag not in KLUE_NER_LABELS:
                raise bad_input(path, number, f"tag {tag!r} is not one of {list(KLUE_NER_LABELS)}",
                                "use KLUE-NER's IOB2 tags")
            if char == " ":
                continue
            if not chars:
                first_line = number
            chars.append(char)
            tags.append(tag)
    flush()
    return sentences


def read_klue_mrc(path: str | os.PathLike, is_training: bool) -> list[squad.SquadExample]:
    """Questions of a KLUE-MRC file (klue-mrc-v1.1_{train,dev}.json): SQuAD v2.0's layout {"data": [{"title",
    "paragraphs": [{"context", "qas": [{"question", "answers", "plausible_answers", "question_type",
    "is_impossible", "guid"}]}], "news_category", "source"}]}, read as KLUE-baseline's klue_baseline/data/klue_mrc.py
    reads it: the id is "guid", an `is_impossible` question has no answer (its plausible_answers are not used), a
    training question learns its first answer, and evaluation keeps every gold answer text.

    The context is split into whitespace words and the answer mapped onto them exactly as SQuAD's (run_squad.py), as
    KLUE-baseline does through transformers' squad_convert_examples_to_features. Korean needs nothing else there:
    an answer that is part of a word (a noun before its particle, 페이스북 in 페이스북이) starts and ends inside that
    word, the training span is narrowed to the answer's own WordPiece pieces (`_improve_answer_span`) when the vocab
    splits the word there, and a predicted span is cut back out of the word's text by `get_final_text`. Where the
    vocab does not split at the answer's edge, the target stays the pieces of the answer's whole words
    (run_squad.py's fallback), for KLUE-baseline's WordPiece models too."""
    return squad.read_squad_examples(path, is_training, version_2=True, id_field="guid", first_answer=True)
