"""The fine-tuning Task of a run (`bertjax.task`): its files read (`bertjax.tasks`), encoded once (cached in the
workdir's features/ once the run's checks pass), and turned into the run's Objective and data.

`config.task` names it: a GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), a Korean task (nsmc,
klue_tc, klue_sts, klue_nli, klue_ner, klue_mrc; `bertjax.tasks.korean`), "classification" (any TSV/CSV/JSONL with named text
and label columns), "tagging" (CoNLL-2003-style files) or "squad" (SQuAD v1.1/v2.0 JSON). Sentence-level tasks read
`pooled_output`, token-level tasks `sequence_output` (`bertjax.objectives`).

Batches are host-local numpy dicts with the encoded arrays plus `example_weights` [B]: training batches are shuffled
and repeat over epochs (a checkpointable Grain iterator); evaluation visits every example once, in file order, the
last batch padded with rows of weight 0. With `config.data.length_buckets` (classification and tagging) every batch's
[B, T] arrays are cut to its longest row's bucket (`bertjax.data.length_buckets`): training batches regrouped by
bucket, evaluation batches kept in file order.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable

import grain
import jax
import ml_collections
import numpy as np
from etils.epath import Path

from bertjax import objectives, paths, workdir_layout
from bertjax.task import DataSource, Task
from bertjax.data import length_buckets
from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import vocab_sha256
from bertjax.errors import BertjaxError
from bertjax.tasks import IGNORE_LABEL, classification, korean, metrics, squad, tagging

FAMILIES = ("classification", "tagging", "squad")
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews", "macro_f1")
REGRESSION_METRICS = ("pearson", "spearman", "sts_f1")
NAMED_TASKS = (*classification.GLUE_TASKS, *korean.KOREAN_TASKS, korean.KLUE_NER, korean.KLUE_MRC)


def check_task(config: ml_collections.ConfigDict) -> None:
    """The task's name and data directory, before anything else is read."""
    if config.task not in NAMED_TASKS and config.task not in FAMILIES:
        raise BertjaxError(f"--config.task={config.task!r} is unknown; use pretraining, one of the GLUE or Korean "
                           f"tasks ({', '.join(NAMED_TASKS)}), classification, tagging or squad")
    if not config.data.dir or not paths.path(config.data.dir).is_dir():
        raise BertjaxError(f"--config.data.dir={config.data.dir} is not a directory; point it at the directory of "
                           f"the task's files")


def prepare(config: ml_collections.ConfigDict, workdir: str, tokenizer: BertTokenizer) -> Task:
    """Read, check and encode the task's files (or take the encoded cache), and build its objective and data.

    Newly encoded features are not written yet: `task.write_pending()` caches them in the workdir."""
    check_task(config)
    _check_length_buckets(config)
    pending = []
    build = {"tagging": _tagging, korean.KLUE_NER: _tagging, "squad": _squad,
             korean.KLUE_MRC: _squad}.get(config.task, _classification)
    task = build(config, workdir, tokenizer, pending)
    task.pending_writes.extend(pending)
    return task


def _check_length_buckets(config: ml_collections.ConfigDict) -> None:
    """`config.data.length_buckets` is a valid setting, and not set for span question answering, whose loss and
    n-best search read every position up to max_seq_length (run_squad.py): shorter batches would change them."""
    buckets = length_buckets.parse(config.data.get("length_buckets"), config.data.max_seq_length)
    if buckets is not None and config.task in ("squad", korean.KLUE_MRC):
        raise BertjaxError(f"{length_buckets.FIELD} is not available for --config.task={config.task}: span question "
                           "answering reads every position up to max_seq_length (its loss and n-best search), so "
                           "shorter batches would change the results; leave it unset")


def _file(config: ml_collections.ConfigDict, field: str, default: str) -> Path:
    name = config.data[field] or default
    path = paths.path(config.data.dir) / name
    if not path.is_file():
        raise BertjaxError(f"{path} does not exist; put the {field.replace('_file', '')} file in --config.data.dir "
                           f"or name it with --config.data.{field}")
    return path


def _eval_split(config: ml_collections.ConfigDict) -> str:
    split = config.eval.split
    if split not in ("dev", "test"):
        raise BertjaxError(f"--config.eval.split={split!r} must be dev or test")
    return split


def _subsets(config: ml_collections.ConfigDict, train: list, evaluation: list) -> tuple[list, list]:
    """`config.data.max_train_examples` / `max_eval_examples` (0: all) examples of each split: a sample fixed by
    the counts alone (a permutation seeded with 0, whatever the run's seed), kept in file order."""
    def subset(examples: list, count: int | None) -> list:
        if not count or count >= len(examples):
            return examples
        chosen = np.sort(np.random.default_rng(0).permutation(len(examples))[:count])
        return [examples[i] for i in chosen]
    return (subset(train, config.data.get("max_train_examples")),
            subset(evaluation, config.data.get("max_eval_examples")))


def _glue_split(task: classification.GlueTask, file_name: str | None) -> str:
    """The read_glue split of a GLUE task's eval file named in the config (None: the task's dev file)."""
    if not file_name:
        return "dev"
    known = {name: Path(name).stem for name in task.dev_files}
    if file_name not in known:
        raise BertjaxError(f"--config.data.dev_file={file_name} is not a dev file of GLUE task {task.name}; use "
                           f"one of {', '.join(known)}")
    return known[file_name]


def _metric_names(config: ml_collections.ConfigDict, regression: bool, labels: list | None) -> tuple[str, ...]:
    """The generic classification task's metrics: `config.data.metrics` (comma separated) or the defaults (pearson
    and spearman for regression, accuracy and the positive class's F1 for two labels, else accuracy)."""
    named = tuple(m.strip() for m in (config.data.get("metrics") or "").split(",") if m.strip())
    allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    for name in named:
        if name not in allowed:
            kind = "regression" if regression else "classification"
            raise BertjaxError(f"--config.data.metrics names {name!r}, not a {kind} metric; use {', '.join(allowed)}")
    if named:
        return named
    return ("pearson", "spearman") if regression else (("accuracy", "f1") if len(labels) == 2 else ("accuracy",))


# ----------------------------------------------------------------------------------------------------------------
# Sentence(-pair) classification and regression: pooled_output


def _classification(config, workdir, tokenizer, pending) -> Task:
    split = _eval_split(config)
    if config.task == "classification":
        columns = tuple(c.strip() for c in (config.data.text_columns or "").split(",") if c.strip())
        if not columns or not config.data.label_column:
            raise BertjaxError("--config.task=classification needs --config.data.text_columns (one or two, comma "
                               "separated) and --config.data.label_column")
        regression = config.data.regression

        def read(field, default, labelled, label_list=None):
            return classification.read_examples(_file(config, field, default), columns,
                                                config.data.label_column if labelled else None,
                                                label_list=label_list, regression=regression)

        train = read("train_file", "train.tsv", True)
        labels = None if regression else classification.labels_of(train)
        evaluation = read(f"{split}_file", f"{split}.tsv", split == "dev", labels)
        metric_names = _metric_names(config, regression, labels)

        def scorer(predictions, gold):
            return {name: metrics.METRICS[name](predictions, gold) for name in metric_names}
    else:
        task = korean.KOREAN_TASKS.get(config.task) or classification.glue_task(config.task)
        read = korean.read_korean if task.name in korean.KOREAN_TASKS else classification.read_glue
        # A GLUE dev file named in the config picks that split (MNLI's dev_mismatched.tsv); else the task's own.
        eval_split = _glue_split(task, config.data.dev_file) if read is classification.read_glue and split == "dev" \
            else split
        train, evaluation = (read(task, paths.path(config.data.dir), s) for s in ("train", eval_split))
        labels = list(task.labels) if task.labels is not None else None
        metric_names = task.metrics

        def scorer(predictions, gold):
            return classification.glue_metrics(task, predictions, gold)

    train, evaluation = _subsets(config, train, evaluation)

    def encode(examples):
        return classification.encode(examples, tokenizer, config.data.max_seq_length, labels)

    train_arrays = _cached(workdir, "train", config, tokenizer, lambda: encode(train), pending)
    eval_arrays = _cached(workdir, split, config, tokenizer, lambda: encode(evaluation), pending)

    def writer(predictions, path_stem):
        path = f"{path_stem}.tsv"
        shown = [f"{float(value):.6g}" if labels is None else labels[int(value)] for value in predictions]
        paths.write_text_atomically(path, "index\tprediction\n" + "".join(
            f"{example.guid}\t{value}\n" for example, value in zip(evaluation, shown)))
        return path

    objective = objectives.SequenceClassification(1 if labels is None else len(labels), scorer, writer)
    return Task(objective, _data_source(config, tokenizer, train_arrays, eval_arrays), split, labels,
                metric_names[0], len(train))


# ----------------------------------------------------------------------------------------------------------------
# Token tagging: sequence_output


def _tagging(config, workdir, tokenizer, pending) -> Task:
    split = _eval_split(config)
    klue = config.task == korean.KLUE_NER
    read, name = (korean.read_klue_ner, korean.KLUE_NER_FILE) if klue else (tagging.read_conll, "{split}.txt")
    train = read(_file(config, "train_file", name.format(split="train")))
    evaluation = read(_file(config, f"{split}_file", name.format(split=split)))
    train, evaluation = _subsets(config, train, evaluation)
    labels = list(korean.KLUE_NER_LABELS) if klue else tagging.labels_of(train)
    train_arrays = _cached(workdir, "train", config, tokenizer,
                           lambda: tagging.encode(train, tokenizer, config.data.max_seq_length, labels).arrays, pending)
    eval_encoding = tagging.encode(evaluation, tokenizer, config.data.max_seq_length, labels)

    def scorer(predicted_ids):
        predicted = tagging.decode(predicted_ids, eval_encoding)
        if klue:
            return metrics.klue_ner_scores([s.tags for s in evaluation], predicted, labels)
        scores = metrics.entity_scores([s.tags for s in evaluation], predicted)
        return {f"entity_{name}": value for name, value in scores.items()}

    def writer(predicted_ids, path_stem):
        path = f"{path_stem}.txt"
        tagging.write_predictions(path, evaluation, tagging.decode(predicted_ids, eval_encoding))
        return path

    objective = objectives.TokenClassification(len(labels), scorer, writer)
    return Task(objective, _data_source(config, tokenizer, train_arrays, eval_encoding.arrays), split, labels,
                "entity_macro_f1" if klue else "entity_f1", len(train))


# ----------------------------------------------------------------------------------------------------------------
# Span question answering: sequence_output


def _squad(config, workdir, tokenizer, pending) -> Task:
    split = _eval_split(config)
    klue = config.task == korean.KLUE_MRC   # always SQuAD v2.0's semantics: unanswerable questions
    version_2 = klue or config.data.version_2
    if klue:
        read, name = korean.read_klue_mrc, korean.KLUE_MRC_FILE
    else:
        def read(path, is_training):
            return squad.read_squad_examples(path, is_training, version_2)
        name = "{split}-" + ("v2.0" if version_2 else "v1.1") + ".json"
    train = read(_file(config, "train_file", name.format(split="train")), True)
    evaluation = read(_file(config, f"{split}_file", name.format(split=split)), False)
    train, evaluation = _subsets(config, train, evaluation)
    windows = dict(max_seq_length=config.data.max_seq_length, doc_stride=config.data.doc_stride,
                   max_query_length=config.data.max_query_length)
    train_arrays = _cached(workdir, "train", config, tokenizer, lambda: squad.features_to_arrays(
        squad.convert_examples_to_features(train, tokenizer, is_training=True, **windows)), pending)
    eval_features = squad.convert_examples_to_features(evaluation, tokenizer, is_training=False, **windows)

    def predictions(starts, ends):
        return squad.predict(starts, ends, eval_features, evaluation, n_best_size=config.eval.n_best_size,
                             max_answer_length=config.eval.max_answer_length,
                             null_score_diff_threshold=config.eval.null_score_diff_threshold,
                             version_2=version_2, do_lower_case=tokenizer.do_lower_case,
                             strip_accents=tokenizer.strip_accents)

    def scorer(starts, ends):
        if not any(example.answers for example in evaluation):
            return {}
        if klue:
            scores = metrics.klue_mrc_scores(predictions(starts, ends).answers, squad.gold_answers(evaluation))
            return {f"klue_mrc_{name}": value for name, value in scores.items()}
        scores = metrics.squad_scores(predictions(starts, ends).answers, squad.gold_answers(evaluation))
        shown = [name for name in scores if not name.endswith("total") and (version_2 or "Ans_" not in name)]
        return {f"squad_{name}": scores[name] for name in shown}

    def writer(starts, ends, path_stem):
        path = f"{path_stem}.json"
        paths.write_text_atomically(path, json.dumps(predictions(starts, ends).answers, indent=1,
                                                     ensure_ascii=False) + "\n")
        return path

    objective = objectives.QuestionAnswering(scorer, writer)
    eval_arrays = squad.features_to_arrays(eval_features)
    # KLUE-MRC: ROUGE-W, the metric KLUE-baseline selects checkpoints by (run_all.sh --metric_key rouge_w)
    return Task(objective, _data_source(config, tokenizer, train_arrays, eval_arrays), split, None,
                "klue_mrc_rouge_w" if klue else "squad_f1", len(train_arrays["input_ids"]))


# ----------------------------------------------------------------------------------------------------------------
# Encoded arrays: cache and batches


def _cached(workdir: str, split: str, config, tokenizer: BertTokenizer, encode: Callable[[], dict],
            pending: list[Callable[[], None]]) -> dict:
    """The encoded arrays of a split, from <workdir>/features/ when the inputs and settings are unchanged; else
    encoded, with their write to the cache appended to `pending`."""
    # What decides these arrays: not the seed, the cache's place, nor the other splits' files and subset.
    other = ("dev_file", "test_file", "max_eval_examples") if split == "train" else ("train_file", "max_train_examples")
    data = {name: value for name, value in config.data.to_dict().items()
            if name not in ("seed", "features_dir", "length_buckets", *other)}
    key = hashlib.sha256(json.dumps({
        "task": config.task, "split": split, "data": data, "vocab": tokenizer.vocab_path and
        vocab_sha256(tokenizer.vocab_path), "lower": tokenizer.do_lower_case,
        "strip": tokenizer.strip_accents,
        "files": sorted((p.name, p.stat().length, p.stat().mtime) for p in paths.path(config.data.dir).iterdir()
                        if p.is_file())}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    directory = config.data.get("features_dir")  # shared by runs (the benchmark's seeds and learning rates)
    name = f"{split}-{key}.npz"
    path = paths.path(directory) / name if directory else workdir_layout.path(workdir, workdir_layout.FEATURES_DIR,
                                                                               name)
    if path.is_file():
        with np.load(io.BytesIO(path.read_bytes())) as stored:
            return dict(stored)
    started = time.perf_counter()
    arrays = encode()
    if jax.process_index() == 0:
        seconds = time.perf_counter() - started
        rows = len(arrays["input_ids"])
        print(f"encoded the {split} split: {rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f}/s), "
              f"to be cached in {path.parent}", flush=True)
        pending.append(lambda: _write_cache(path, arrays))
    return arrays


def _write_cache(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()
    np.savez(encoded, **arrays)
    partial = path.with_suffix(".tmp.npz")   # a rename locally; remotely one object appears whole
    partial.write_bytes(encoded.getvalue())
    partial.replace(path)


def _padding_rows(arrays: dict, count: int) -> dict:
    """`count` rows of weight 0 to fill the last eval batch (labels ignored)."""
    rows = {}
    for name, values in arrays.items():
        fill = IGNORE_LABEL if name == "label_ids" else 0
        rows[name] = np.full((count, *values.shape[1:]), fill, values.dtype)
    return rows


def _data_source(config, tokenizer: BertTokenizer, train_arrays: dict, eval_arrays: dict) -> DataSource:
    process_index, process_count = jax.process_index(), jax.process_count()
    train_arrays = {**train_arrays, "example_weights": np.ones(len(train_arrays["input_ids"]), np.float32)}
    eval_arrays = {**eval_arrays, "example_weights": np.ones(len(eval_arrays["input_ids"]), np.float32)}
    num_train = len(train_arrays["input_ids"])
    if num_train < config.train.batch_size:
        raise BertjaxError(f"the training file has {num_train} examples, fewer than --config.train.batch_size="
                           f"{config.train.batch_size}; lower the batch size")
    max_seq_length = config.data.max_seq_length
    buckets = length_buckets.parse(config.data.get("length_buckets"), max_seq_length)
    train_lengths = length_buckets.row_lengths(train_arrays["input_mask"])
    if buckets == length_buckets.AUTO:
        buckets = length_buckets.choose(train_lengths, max_seq_length, config.train.batch_size)
    logged = []

    def rows(arrays: dict, indices: np.ndarray) -> dict:
        return {name: values[indices] for name, values in arrays.items()}

    def global_order():
        """Item s: the row indices of global batch s (shuffled rows, a fresh permutation every epoch)."""
        dataset = grain.MapDataset.range(num_train).seed(config.data.seed).shuffle().repeat(None)
        return dataset.batch(config.train.batch_size, drop_remainder=True)

    def train_iterator():
        """Global batches of shuffled rows; host i takes rows [i B/P, (i+1) B/P) of each, as the pretraining pipeline
        does, so every example meets the same dropout mask on any number of hosts. With length buckets, the same
        order regrouped (`length_buckets.TrainPlan`), every batch cut to its bucket."""
        host_batch = config.train.batch_size // process_count
        first = process_index * host_batch
        order = global_order()
        if buckets is None:
            return iter(order.map(lambda indices: rows(train_arrays, np.asarray(indices)[first:first + host_batch]))
                        .to_iter_dataset())
        plan = length_buckets.TrainPlan(order, length_buckets.bucket_of(train_lengths, buckets),
                                        config.train.batch_size, config.data.seed)
        log_plan(plan)

        def bucketed(s: int, _) -> dict:
            indices, length = plan[s]
            return length_buckets.trim(rows(train_arrays, indices[first:first + host_batch]), length)

        return iter(order.map_with_index(bucketed).to_iter_dataset())

    batch_size = config.eval.batch_size
    num_eval = len(eval_arrays["input_ids"])
    num_eval_batches = max(1, math.ceil(num_eval / batch_size))
    padding = _padding_rows(eval_arrays, num_eval_batches * batch_size - num_eval)
    padded = {name: np.concatenate([values, padding[name]]) for name, values in eval_arrays.items()}
    eval_lengths = length_buckets.row_lengths(padded["input_mask"])
    # Eval batches stay in file order (predictions are written in it); each is cut to its longest row's bucket.
    eval_batch_lengths = ([max_seq_length] * num_eval_batches if buckets is None else length_buckets.bucket_of(
        eval_lengths.reshape(num_eval_batches, batch_size).max(axis=1), buckets).tolist())

    def eval_iterator():
        if buckets is not None:
            log_plan(None)
        host_batch = batch_size // process_count
        for b in range(num_eval_batches):
            start = b * batch_size + process_index * host_batch
            yield length_buckets.trim({name: values[start:start + host_batch] for name, values in padded.items()},
                                      eval_batch_lengths[b])

    def log_plan(plan) -> None:
        """The bucket plan, once, on process 0: the first epoch's training batches (when training) and eval's."""
        if logged or process_index != 0:
            return
        logged.append(True)
        text = f"length buckets {','.join(map(str, buckets))} (max_seq_length {max_seq_length}): "
        if plan is not None:
            indices, lengths = plan.chunk(0)
            described = length_buckets.describe(lengths, config.train.batch_size, max_seq_length,
                                                int(train_lengths[indices].sum()))
            text += f"train, first epoch: {described}; "
        text += "eval: " + length_buckets.describe(eval_batch_lengths, batch_size, max_seq_length,
                                                    int(eval_lengths.sum()))
        print(text, flush=True)

    return DataSource(tokenizer.vocab_size, train_iterator, eval_iterator)


def resolve_schedule(config: ml_collections.ConfigDict, num_train_examples: int) -> ml_collections.ConfigDict:
    """A copy of the config with steps from `train.num_epochs` (when set): num_train_steps, warmup from
    `optimizer.warmup_fraction`, and eval and checkpoints at every epoch's end."""
    config = ml_collections.ConfigDict(config.to_dict())
    epochs = config.train.num_epochs
    if epochs:
        steps_per_epoch = max(1, num_train_examples // config.train.batch_size)
        config.train.num_train_steps = int(epochs * steps_per_epoch)
        config.eval.every_steps = steps_per_epoch
        config.checkpoint.every_steps = steps_per_epoch
    fraction = config.optimizer.warmup_fraction
    if fraction is not None:
        config.optimizer.warmup_steps = int(round(fraction * config.train.num_train_steps))
    return config
