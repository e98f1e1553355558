"""The training clock of a run: wall-clock seconds spent training, the time budget, and the time-budget schedule.

The clock runs from the start of the train loop, includes compilation and checkpoint saves, and stops during the
periodic evaluations (they measure the model, they do not train it). It is saved with every checkpoint
(`checkpoint.Checkpointer.save(..., clock=)`) and continues from there on resume, so the time between a preemption
and the restart does not count.

With `config.train.time_budget_hours` = H, training stops once the clock reaches H, and the learning-rate schedule
follows the clock instead of the step count: at clock t it is read at step N * t / H (N =
config.train.num_train_steps), so warmup_steps and the decay are the same fractions of the budget that they are of
N. This is how academic-budget-bert and Cramming fit a schedule to a time budget. With several processes the clock
of process 0 is sent to all of them once per step, so every process takes the same learning rate and stops at the
same step.
"""
from __future__ import annotations

import time

import jax
import numpy as np

SECONDS_PER_HOUR = 3600.0


def now() -> float:
    """Monotonic seconds (tests replace it to make time deterministic)."""
    return time.monotonic()


class TrainClock:
    """Training seconds so far (restored + this process's running time), with an optional budget."""

    def __init__(self, budget_hours: float | None, restored_seconds: float = 0.0):
        self.budget_seconds = None if budget_hours is None else float(budget_hours) * SECONDS_PER_HOUR
        self._seconds = float(restored_seconds)
        self._started = None

    def start(self) -> None:
        """Start (or continue) counting."""
        if self._started is None:
            self._started = now()

    def pause(self) -> None:
        """Stop counting (an evaluation)."""
        if self._started is not None:
            self._seconds += now() - self._started
            self._started = None

    def seconds(self) -> float:
        """Training seconds so far, as this process measures them."""
        running = 0.0 if self._started is None else now() - self._started
        return self._seconds + running

    def agreed_seconds(self) -> float:
        """Training seconds so far, process 0's on every process (one small broadcast when there are several)."""
        seconds = self.seconds()
        if jax.process_count() == 1:
            return seconds
        from jax.experimental import multihost_utils  # noqa: PLC0415

        return float(multihost_utils.broadcast_one_to_all(np.float64(seconds)))

    @property
    def timed(self) -> bool:
        """Whether the run has a time budget."""
        return self.budget_seconds is not None

    def schedule_position(self, seconds: float, num_train_steps: int) -> float:
        """Where the time-budget schedule is read at clock `seconds`: num_train_steps * seconds / budget."""
        return num_train_steps * seconds / self.budget_seconds

    def expired(self, seconds: float) -> bool:
        """Whether clock `seconds` has reached the budget (never, without one)."""
        return self.timed and seconds >= self.budget_seconds

    def state(self) -> dict:
        """What a checkpoint saves of the clock."""
        return {"train_seconds": self.seconds()}
