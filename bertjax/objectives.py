"""What a run trains: the model, its loss and metrics, and how its evaluation is scored.

One train loop (`train.py`) and one train step (`train_step.py`) serve pretraining and fine-tuning; they differ
only in the Objective:

  Pretraining             BertForPreTraining; masked LM + next sentence (google-research/bert run_pretraining.py)
  SequenceClassification  pooled_output -> classifier: sentence(-pair) classification, regression (run_classifier.py)
  TokenClassification     sequence_output -> classifier: tagging, first word piece of each word labelled
  QuestionAnswering       sequence_output -> qa_outputs: start/end of a span (run_squad.py)

The train step works on float32 sums (`metric_sums`) so micro-batches, devices and eval batches add up exactly; the
loss is `loss(sums, denominators)` with the whole batch's `denominators`. Evaluation collects `eval_outputs` of every
batch on the host and `score`s them (task metrics need all predictions: F1, Matthews, entity F1, SQuAD EM/F1).
Fine-tuning batches carry `example_weights` [B] (0 for the rows that pad the last eval batch).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bertjax import heads, losses
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, flops_per_example
from bertjax.tasks import IGNORE_LABEL


def _wide(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class Objective:
    """The model and loss of a run (see the module docstring); subclasses fill in the task-specific parts."""

    name = ""
    vocab_pad_multiple = 1  # rows of the vocab axis padded to a multiple of this (only Pretraining's model pads)
    batch_keys: tuple[str, ...] = ("input_ids", "input_mask", "segment_ids")
    log_metrics: tuple[str, ...] = ("loss",)  # shown on the step line, in this order

    def build_model(self, bert_config: BertConfig, **module_kwargs) -> nn.Module:
        """The linen module (dtype, param_dtype, scan_layers, remat go to it)."""
        raise NotImplementedError

    def init_inputs(self, seq_length: int) -> tuple:
        """Dummy inputs of one example for `model.init`."""
        ids = jnp.zeros((1, seq_length), jnp.int32)
        return ids, ids, ids

    def forward(self, model: nn.Module, params, batch: dict, *, deterministic: bool, dropout_rng=None) -> dict:
        """The model's outputs on a batch."""
        rngs = None if deterministic else {"dropout": dropout_rng}
        return model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                           deterministic=deterministic, rngs=rngs)

    def denominators(self, batch: dict) -> dict:
        """The whole batch's loss denominators (computed before splitting it into micro-batches)."""
        return {"count": jnp.sum(batch["example_weights"].astype(jnp.float32))}

    def metric_sums(self, outputs: dict, batch: dict) -> dict:
        """Float32 sums of the loss and metrics over the batch."""
        raise NotImplementedError

    def loss(self, sums: dict, denominators: dict) -> jax.Array:
        """The training loss from sums and the whole batch's denominators."""
        return sums["loss_sum"] / jnp.maximum(denominators["count"], 1.0)

    def compute_metrics(self, sums: dict) -> dict:
        """Summed metric sums -> metrics (loss, accuracy, ...)."""
        count = jnp.maximum(jnp.asarray(sums["count"], jnp.float32), 1e-12)
        return {name[:-len("_sum")]: jnp.asarray(value, jnp.float32) / count
                for name, value in sums.items() if name.endswith("_sum")}

    def eval_outputs(self, outputs: dict, batch: dict) -> Any:
        """What one eval batch gives the host (a small pytree)."""
        return {"sums": self.metric_sums(outputs, batch), "weights": batch["example_weights"]}

    def score(self, eval_outputs: Sequence[Any]) -> dict:
        """Metrics over all eval batches (host numpy)."""
        return _summed_metrics(self, eval_outputs)

    def write_predictions(self, eval_outputs: Sequence[Any], path_stem: str) -> str | None:
        """Write the eval predictions in the task's format next to `path_stem`; returns the file written."""
        return None

    def flops_per_example(self, bert_config: BertConfig, seq_length: int) -> float:
        """Approximate training FLOPs of one example (the encoder dominates fine-tuning)."""
        return flops_per_example(bert_config, seq_length, 0)

    def check_batch(self, batch: dict, vocab_size: int) -> None:
        """Raise BertjaxError if a host batch cannot belong to this model (token ids outside the vocab)."""
        _check_ids(batch, ("input_ids",), vocab_size)


def _summed_metrics(objective: Objective, eval_outputs: Sequence[Any]) -> dict:
    totals = jax.tree.map(lambda *xs: np.sum(np.stack(xs), axis=0, dtype=np.float64),
                          *[output["sums"] for output in eval_outputs])
    return {name: float(value) for name, value in objective.compute_metrics(totals).items()}


def _check_ids(batch: dict, keys: Sequence[str], vocab_size: int) -> None:
    for key in keys:
        values = batch[key]
        if values.size and (values.max() >= vocab_size or values.min() < 0):
            raise BertjaxError(
                f"the data has {key} outside [0, {vocab_size}) (max {int(values.max())}); the model's vocab_size "
                "does not fit the data: make the data with the model's vocab.")


class Pretraining(Objective):
    """Masked LM + next-sentence prediction, the original's loss and eval metrics (`bertjax.losses`).

    `vocab_pad_multiple` (config.model.vocab_pad_multiple) pads the model's vocab axis for the MXU
    (`BertForPreTraining`); the fine-tuning objectives ignore it: their heads have no vocab-wide matmul.
    """

    name = "pretraining"
    log_metrics = ("loss", "masked_lm_accuracy", "next_sentence_accuracy")

    def __init__(self, max_predictions_per_seq: int, vocab_pad_multiple: int = 1, nsp_weight: float = 1.0):
        self.max_predictions_per_seq = max_predictions_per_seq
        self.vocab_pad_multiple = vocab_pad_multiple
        self.nsp_weight = nsp_weight  # the NSP term's weight in the training loss (config.train.nsp_weight)

    def build_model(self, bert_config, **module_kwargs):
        return BertForPreTraining(bert_config, vocab_pad_multiple=self.vocab_pad_multiple, **module_kwargs)

    def init_inputs(self, seq_length):
        return (*super().init_inputs(seq_length), jnp.zeros((1, self.max_predictions_per_seq), jnp.int32))

    def forward(self, model, params, batch, *, deterministic, dropout_rng=None):
        """Packed batches (they have pair_ids; `bertjax.data.packing`) also pass the pairs' ids and [CLS] positions."""
        rngs = None if deterministic else {"dropout": dropout_rng}
        return model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                           batch["masked_lm_positions"], deterministic=deterministic, rngs=rngs,
                           pair_ids=batch.get("pair_ids"),
                           next_sentence_positions=batch.get("next_sentence_positions"))

    def denominators(self, batch):
        """The batch's masked-LM weight and its number of sentence pairs (rows, or real pairs of packed rows)."""
        pairs = (jnp.sum(batch["next_sentence_weights"].astype(jnp.float32)) if "next_sentence_weights" in batch
                 else jnp.float32(batch["input_ids"].shape[0]))
        return {"masked_lm_weight_total": jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)),
                "num_examples": pairs}

    def metric_sums(self, outputs, batch):
        # The W-wide logits (padded columns at model.PADDED_LOGIT): no slice, so no padded-back gradient copy.
        return losses.metric_sums(outputs.get("mlm_logits_padded", outputs["mlm_logits"]), outputs["nsp_logits"], batch)

    def loss(self, sums, denominators):
        return losses.loss_from_sums(sums, denominators["masked_lm_weight_total"], denominators["num_examples"],
                                     self.nsp_weight)

    def compute_metrics(self, sums):
        return losses.compute_metrics(sums)

    def eval_outputs(self, outputs, batch):
        """Metric sums and the weight of each masked target id (for the constant-prediction baseline)."""
        ids = batch["masked_lm_ids"].reshape(-1)
        weights = batch["masked_lm_weights"].astype(jnp.float32).reshape(-1)
        id_counts = jnp.zeros((outputs["mlm_logits"].shape[-1],), jnp.float32).at[ids].add(weights)
        return {"sums": self.metric_sums(outputs, batch), "id_counts": id_counts}

    def score(self, eval_outputs):
        metrics = _summed_metrics(self, eval_outputs)
        id_counts = np.sum([np.asarray(output["id_counts"], np.float64) for output in eval_outputs], axis=0)
        metrics["masked_lm_accuracy_baseline"] = float(id_counts.max() / max(id_counts.sum(), 1e-9))
        return metrics

    def flops_per_example(self, bert_config, seq_length):
        return flops_per_example(bert_config, seq_length, self.max_predictions_per_seq, self.vocab_pad_multiple)

    def check_batch(self, batch, vocab_size):
        _check_ids(batch, ("input_ids", "masked_lm_ids"), vocab_size)


class SequenceClassification(Objective):
    """pooled_output -> `classifier`: cross-entropy over C classes, or squared error when C = 1 (regression).

    `scorer(predictions, labels) -> {metric: value}` scores the dev set (e.g. accuracy, F1, Matthews, Pearson);
    `writer(predictions, path_stem) -> path` writes predictions (labels or scores in example order).
    """

    name = "sequence_classification"

    def __init__(self, num_labels: int, scorer: Callable[[np.ndarray, np.ndarray], dict],
                 writer: Callable[[np.ndarray, str], str] | None = None):
        self.num_labels = num_labels
        self.scorer, self.writer = scorer, writer
        self.log_metrics = ("loss",) if num_labels == 1 else ("loss", "accuracy")

    def build_model(self, bert_config, **module_kwargs):
        return heads.BertForSequenceClassification(bert_config, num_labels=self.num_labels, **module_kwargs)

    def _predictions(self, logits_BxC: jax.Array) -> jax.Array:
        return logits_BxC[:, 0] if self.num_labels == 1 else jnp.argmax(logits_BxC, axis=-1)

    def metric_sums(self, outputs, batch):
        logits_BxC = _wide(outputs["logits"])
        weights_B = batch["example_weights"].astype(jnp.float32)
        if self.num_labels == 1:
            labels_B = batch["labels"].astype(jnp.float32)
            labels_B = jnp.where(weights_B > 0, labels_B, 0.0)
            loss_B = jnp.square(logits_BxC[:, 0] - labels_B)
            return {"loss_sum": jnp.sum(weights_B * loss_B), "count": jnp.sum(weights_B)}
        labels_B = jnp.maximum(batch["labels"].astype(jnp.int32), 0)
        loss_B = losses.cross_entropy(logits_BxC, labels_B)
        correct_B = (jnp.argmax(logits_BxC, axis=-1) == labels_B).astype(jnp.float32)
        return {"loss_sum": jnp.sum(weights_B * loss_B), "accuracy_sum": jnp.sum(weights_B * correct_B),
                "count": jnp.sum(weights_B)}

    def eval_outputs(self, outputs, batch):
        return {**super().eval_outputs(outputs, batch), "predictions": self._predictions(_wide(outputs["logits"])),
                "labels": batch["labels"]}

    def score(self, eval_outputs):
        """Loss and the scorer's metrics; nothing for unlabelled data (a test file: labels -1 or NaN)."""
        labels = _real_rows(eval_outputs, "labels")
        if not labels.size or np.isnan(labels.astype(np.float64)).any() or (labels < 0).any():
            return {}
        metrics = {"loss": _summed_metrics(self, eval_outputs)["loss"]}
        return {**metrics, **self.scorer(_real_rows(eval_outputs, "predictions"), labels)}

    def write_predictions(self, eval_outputs, path_stem):
        if self.writer is None:
            return None
        return self.writer(_real_rows(eval_outputs, "predictions"), path_stem)


class TokenClassification(Objective):
    """sequence_output -> `classifier`: cross-entropy over the labelled tokens (`label_ids` != IGNORE_LABEL).

    `scorer(predicted_ids_list) -> metrics` and `writer(predicted_ids_list, path_stem)` get the predicted label ids
    [T] of every real example in order (decoding to words and entity scores is the task's business).
    """

    name = "token_classification"
    log_metrics = ("loss", "accuracy")

    def __init__(self, num_labels: int, scorer: Callable[[np.ndarray], dict],
                 writer: Callable[[np.ndarray, str], str] | None = None):
        self.num_labels, self.scorer, self.writer = num_labels, scorer, writer

    def build_model(self, bert_config, **module_kwargs):
        return heads.BertForTokenClassification(bert_config, num_labels=self.num_labels, **module_kwargs)

    def denominators(self, batch):
        return {"count": jnp.sum((batch["label_ids"] != IGNORE_LABEL).astype(jnp.float32))}

    def metric_sums(self, outputs, batch):
        logits_BxTxC = _wide(outputs["logits"])
        labels_BxT = batch["label_ids"].astype(jnp.int32)
        weights_BxT = (labels_BxT != IGNORE_LABEL).astype(jnp.float32)
        labels_BxT = jnp.maximum(labels_BxT, 0)
        loss_BxT = losses.cross_entropy(logits_BxTxC, labels_BxT)
        correct_BxT = (jnp.argmax(logits_BxTxC, axis=-1) == labels_BxT).astype(jnp.float32)
        return {"loss_sum": jnp.sum(weights_BxT * loss_BxT), "accuracy_sum": jnp.sum(weights_BxT * correct_BxT),
                "count": jnp.sum(weights_BxT)}

    def eval_outputs(self, outputs, batch):
        return {**super().eval_outputs(outputs, batch),
                "predictions": jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)}

    def score(self, eval_outputs):
        metrics = _summed_metrics(self, eval_outputs)
        return {**metrics, **self.scorer(_real_rows(eval_outputs, "predictions"))}

    def write_predictions(self, eval_outputs, path_stem):
        return None if self.writer is None else self.writer(_real_rows(eval_outputs, "predictions"), path_stem)


class QuestionAnswering(Objective):
    """sequence_output -> `qa_outputs`: the mean of the start and end cross-entropies (run_squad.py); position 0
    ([CLS]) marks no answer. `scorer` / `writer` get start and end logits [B, T] of every real window in order."""

    name = "question_answering"

    def __init__(self, scorer: Callable[[np.ndarray, np.ndarray], dict],
                 writer: Callable[[np.ndarray, np.ndarray, str], str] | None = None):
        self.scorer, self.writer = scorer, writer

    def build_model(self, bert_config, **module_kwargs):
        return heads.BertForQuestionAnswering(bert_config, **module_kwargs)

    def metric_sums(self, outputs, batch):
        weights_B = batch["example_weights"].astype(jnp.float32)
        loss_B = 0.5 * (losses.cross_entropy(outputs["start_logits"], batch["start_positions"])
                        + losses.cross_entropy(outputs["end_logits"], batch["end_positions"]))
        return {"loss_sum": jnp.sum(weights_B * loss_B), "count": jnp.sum(weights_B)}

    def eval_outputs(self, outputs, batch):
        return {**super().eval_outputs(outputs, batch), "start_logits": _wide(outputs["start_logits"]),
                "end_logits": _wide(outputs["end_logits"])}

    def score(self, eval_outputs):
        """The scorer's metrics only: eval windows carry no gold positions, so there is no eval loss."""
        return self.scorer(_real_rows(eval_outputs, "start_logits"), _real_rows(eval_outputs, "end_logits"))

    def write_predictions(self, eval_outputs, path_stem):
        if self.writer is None:
            return None
        return self.writer(_real_rows(eval_outputs, "start_logits"), _real_rows(eval_outputs, "end_logits"),
                           path_stem)


def _real_rows(eval_outputs: Sequence[Any], key: str) -> np.ndarray:
    """The rows of `key` over all eval batches, without the rows that pad the last batch (weight 0). Per-token rows
    of batches cut to a length bucket (`config.data.length_buckets`) are padded back with zeros to the longest
    batch's length: positions past every row's tokens, which no scorer reads."""
    arrays = [np.asarray(output[key]) for output in eval_outputs]
    if arrays[0].ndim > 1:
        width = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
    values = np.concatenate(arrays)
    weights = np.concatenate([np.asarray(output["weights"]) for output in eval_outputs])
    return values[weights > 0]
