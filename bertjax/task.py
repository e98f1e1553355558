"""What a run trains and on what: the `Task` the door (`run_config.check_run`) returns for every run.

    task.objective      the model, loss, metrics and scoring (`bertjax.objectives`)
    task.data           a DataSource: train and eval iterators of host-local numpy batches, and their vocab size
    task.labels         the class names a head predicts (None: pretraining, regression, span QA)
    task.main_metric    the eval metric that picks <workdir>/best/ (None: no best export, as in pretraining)
    task.eval_split     the name of the evaluated split, for predictions_<split>.*

Pretraining's Task is built here (`pretraining`), from a dataset the door checked; fine-tuning's by
`bertjax.finetune.prepare` from the task's files. The train loop takes either without asking which it is.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from bertjax import batch_ramp, objectives
from bertjax.data import masking, pipeline

PRETRAINING = "pretraining"  # config.task of a pretraining run; anything else names a fine-tuning task


def is_pretraining(config: ml_collections.ConfigDict) -> bool:
    """Whether `config.task` is pretraining (masked LM + next sentence) rather than a fine-tuning task."""
    return config.task == PRETRAINING


@dataclasses.dataclass
class DataSource:
    """Iterators of host-local numpy batches for one run, and the vocab size the data was made with."""

    vocab_size: int
    train_iterator: Callable[[], object]   # endless, checkpointable (get_state/set_state)
    eval_iterator: Callable[[], object]    # fresh, deterministic, finite or endless


@dataclasses.dataclass
class Task:
    """A run's objective and data (see the module docstring)."""

    objective: objectives.Objective
    data: DataSource | None                # None when the caller brings its own (tests, `bertjax.aot`)
    eval_split: str
    labels: list[str] | None = None
    main_metric: str | None = None
    num_train_examples: int | None = None  # fine-tuning: what `train.num_epochs` counts
    pending_writes: list[Callable[[], None]] = dataclasses.field(default_factory=list)

    def write_pending(self) -> None:
        """Write what preparing the task computed for the workdir (fine-tuning's encoded features): called once the
        run's checks passed, so a refused run leaves the workdir as it was."""
        for write in self.pending_writes:
            write()
        self.pending_writes.clear()


def train_predictions_per_seq(config: ml_collections.ConfigDict) -> int:
    """The prediction slots of a pretraining config's training batches: config.data.max_predictions_per_seq, or
    more when --config.data.train_masked_lm_prob masks at a higher rate (eval batches keep the dataset's)."""
    rate = config.data.train_masked_lm_prob
    if rate is None:
        return config.data.max_predictions_per_seq
    return masking.predictions_per_seq_at_rate(config.data.max_predictions_per_seq, config.data.max_seq_length, rate)


def pretraining_objective(config: ml_collections.ConfigDict) -> objectives.Pretraining:
    """The masked LM + next sentence objective of a pretraining config."""
    return objectives.Pretraining(train_predictions_per_seq(config), config.model.vocab_pad_multiple,
                                  config.train.nsp_weight)


def pretraining(config: ml_collections.ConfigDict, data_dir: str | None, vocab_size: int) -> Task:
    """The pretraining Task of a config: its objective, and iterators over the dataset in `data_dir` (which the door
    checked against its manifest; None: no data, the caller brings its own)."""
    def iterator(split: str, batch_size: int, shuffle: bool, num_epochs: int | None, masked_lm_prob=None):
        return pipeline.create_iterator(data_dir, split=split, global_batch_size=batch_size, seed=config.data.seed,
                                        shuffle=shuffle, num_epochs=num_epochs, masked_lm_prob=masked_lm_prob)

    # Training reads batches of the ramp's first size (all of batch_size without a ramp), concatenated per step.
    data = None if data_dir is None else DataSource(
        vocab_size=vocab_size,
        train_iterator=lambda: iterator(config.data.train_split, batch_ramp.read_batch_size(config.train), True,
                                        None, config.data.train_masked_lm_prob),
        eval_iterator=lambda: iterator(config.data.eval_split, config.eval.batch_size, False, 1))
    return Task(pretraining_objective(config), data, eval_split=config.data.eval_split)
