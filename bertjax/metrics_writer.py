"""Where metrics go: console lines (absl logging), TensorBoard event files (tensorboardX), a tqdm bar.

Everything is a no-op on processes other than 0. TensorBoard via tensorboardX because CLU's writers need
TensorFlow.
"""
import json
import os
import sys
import time

import jax
from absl import logging

from bertjax import hardware, workdir_layout


def peak_flops_per_device(configured: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the configured value, else the known accelerator's (`hardware.CHIPS`), else None
    (CPU, or an accelerator not in the table)."""
    if configured:
        return configured
    return hardware.peak_flops(jax.devices()[0].device_kind)


class MetricsWriter:
    """Writes scalars to the console and TensorBoard, and drives a progress bar, on process 0 only."""

    def __init__(self, workdir: str, *, tensorboard: bool = True, total_steps: int = 0, initial_step: int = 0,
                 progress_bar: bool | None = None):
        self.active = jax.process_index() == 0
        self._summary = None
        self._bar = None
        if not self.active:
            return
        if tensorboard:
            from tensorboardX import SummaryWriter  # noqa: PLC0415  (import cost only where used)

            self._summary = SummaryWriter(os.path.join(workdir, workdir_layout.TENSORBOARD_DIR))
        if progress_bar is None:
            progress_bar = sys.stderr.isatty()
        if progress_bar and total_steps:
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

    def write_config(self, config_json: str) -> None:
        """Record the resolved config as TensorBoard text."""
        if self._summary is not None:
            self._summary.add_text("config", "```\n" + json.dumps(json.loads(config_json), indent=2) + "\n```", 0)

    def write_scalars(self, step: int, scalars: dict, prefix: str) -> None:
        """Write {name: value} as TensorBoard scalars `<prefix>/<name>`."""
        if self._summary is None:
            return
        for name, value in scalars.items():
            if value is not None:
                self._summary.add_scalar(f"{prefix}/{name}", float(value), step)
        self._summary.flush()

    def log(self, message: str) -> None:
        """One console line on stdout (through tqdm when a bar is shown, so the bar is not broken) and the log."""
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)
        logging.info("%s", message)

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar."""
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        """Flush and close."""
        if self._bar is not None:
            self._bar.close()
        if self._summary is not None:
            self._summary.close()


class Throughput:
    """Tokens/s, MFU and ETA over the interval since the last call.

    Tokens are the real (non-padding) tokens the loop reports with `add_tokens` (packed rows hold several pairs, and
    unpacked rows padding); without such reports, `tokens_per_step` per step. MFU counts the step's FLOPs, padding
    included: what the hardware does.
    """

    def __init__(self, *, flops_per_step: float, tokens_per_step: int, total_steps: int,
                 peak_flops: float | None):
        self.flops_per_step = flops_per_step
        self.tokens_per_step = tokens_per_step
        self.total_steps = total_steps
        self.peak_flops = peak_flops
        self._last_time = time.perf_counter()
        self._last_step = None
        self._tokens = 0

    def add_tokens(self, count: int) -> None:
        """Count the real tokens of a step of the current interval (all hosts' rows)."""
        self._tokens += count

    def reset(self, step: int) -> None:
        """Start a new interval at `step` (after compilation, eval or a checkpoint)."""
        self._last_time = time.perf_counter()
        self._last_step = step
        self._tokens = 0

    def measure(self, step: int) -> dict:
        """{steps_per_sec, tokens_per_sec, mfu (or None), eta_seconds} since the last reset/measure."""
        now = time.perf_counter()
        steps = step - (self._last_step if self._last_step is not None else step)
        elapsed = max(now - self._last_time, 1e-9)
        tokens = self._tokens or self.tokens_per_step * steps
        self.reset(step)
        if steps <= 0:
            return {"steps_per_sec": None, "tokens_per_sec": None, "mfu": None, "eta_seconds": None}
        steps_per_sec = steps / elapsed
        mfu = None
        if self.peak_flops:
            mfu = self.flops_per_step * steps_per_sec / (self.peak_flops * jax.device_count())
        return {"steps_per_sec": steps_per_sec, "tokens_per_sec": tokens / elapsed,
                "mfu": mfu, "eta_seconds": (self.total_steps - step) / steps_per_sec}
