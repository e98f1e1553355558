"""The batch-size ramp of a budget recipe (`config.train.batch_size_ramp_start`, `batch_size_ramp_steps`).

Training starts with batches of b = batch_size_ramp_start examples and doubles them in equal stages until, at step
R = batch_size_ramp_steps, they reach B = config.train.batch_size (B / b a power of two):

    batch_size_at(s) = b * 2 ** floor(s * k / R)   for s < R,   B from s = R on      (k = log2(B / b))

The input pipeline reads global batches of b (`read_batch_size`), and a step of size m takes the next m / b of them,
concatenated (`next_batch`): the examples come in the order of the unramped pipeline and the iterator state stays
the index of the next b-batch, so a resumed run continues on exactly the next examples. Each size compiles once;
gradient accumulation keeps its micro-batch size (`micro_batches_at`). Without a ramp every step is one batch of B.
"""
from __future__ import annotations

import math

import ml_collections
import numpy as np

from bertjax.errors import BertjaxError


def enabled(train: ml_collections.ConfigDict) -> bool:
    """Whether the config ramps the batch size."""
    return train.get("batch_size_ramp_start") is not None


def read_batch_size(train: ml_collections.ConfigDict) -> int:
    """The global batch size the input pipeline reads: the ramp's first size, else batch_size."""
    return int(train.batch_size_ramp_start) if enabled(train) else int(train.batch_size)


def batch_size_at(train: ml_collections.ConfigDict, step: int) -> int:
    """The global batch size of the update that takes the state from `step` to `step + 1`."""
    if not enabled(train) or step >= train.batch_size_ramp_steps:
        return int(train.batch_size)
    stages = int(math.log2(train.batch_size // train.batch_size_ramp_start))
    return int(train.batch_size_ramp_start) * 2 ** (step * stages // int(train.batch_size_ramp_steps))


def micro_batches_at(train: ml_collections.ConfigDict, batch_size: int) -> int:
    """Gradient-accumulation micro-batches of a step of `batch_size`: those of batch_size's steps, scaled down with
    the batch (at least 1), so micro-batches keep their size while they can."""
    return max(1, int(train.micro_batches) * batch_size // int(train.batch_size))


def next_batch(train_iter, train: ml_collections.ConfigDict, step: int) -> dict[str, np.ndarray]:
    """The host-local batch of the step from `step`: the next batch_size_at(step) / read_batch_size batches of the
    iterator, concatenated along the batch axis."""
    reads = batch_size_at(train, step) // read_batch_size(train)
    if reads == 1:
        return next(train_iter)
    parts = [next(train_iter) for _ in range(reads)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def validate(train: ml_collections.ConfigDict, num_devices: int, process_count: int) -> None:
    """Raise BertjaxError naming the first ramp field that cannot work with the batch size and the devices."""
    if not enabled(train):
        return
    start, full, steps = train.batch_size_ramp_start, train.batch_size, train.batch_size_ramp_steps
    if isinstance(start, bool) or not isinstance(start, int) or not 0 < start <= full or full % start \
            or (full // start) & (full // start - 1):
        raise BertjaxError(f"--config.train.batch_size_ramp_start={start!r} must divide --config.train.batch_size="
                           f"{full} by a power of two (e.g. {max(full // 8, 1)}); unset it for no ramp.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BertjaxError(f"--config.train.batch_size_ramp_steps={steps!r} must be a positive number of steps (the "
                           "step at which batches reach batch_size).")
    size = start
    while size < full:
        micro = micro_batches_at(train, size)
        if size % (num_devices * micro) or size % process_count:
            raise BertjaxError(
                f"--config.train.batch_size_ramp_start={start}: the ramp's batch of {size} does not split over "
                f"{num_devices} devices x {micro} micro-batches and {process_count} processes; start the ramp at a "
                "larger batch.")
        size *= 2
