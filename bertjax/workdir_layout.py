"""The layout of a run's workdir: every name in it, and its latest finished checkpoint. Everything lands here.

    <workdir>/
      config.json                 the resolved run config (written once the run has restored or initialised)
      model/                      config.json, vocab.txt, tokenizer_config.json: what the run trains, written at
                                  its start, so any of its checkpoints converts on its own
      checkpoints/<step>/         Orbax, one directory a step: state/ (TrainState), data/ (the Grain iterator
                                  state, one JSON file a process), config/ (the run config as JSON), clock/
                                  (the training clock, `train_clock`)
      corrupt_checkpoints/<step>[.N]   unreadable steps set aside by --config.checkpoint.fallback (never deleted)
      export/                     the final params: a Hugging Face directory (model/'s files + model.safetensors)
      best/                       fine-tuning: the best dev evaluation's params, exported like export/, and
                                  best/metrics.json
      features/                   fine-tuning: the task's files encoded once (`<split>-<key>.npz`), reused
      predictions_<split>.*       fine-tuning: the eval split's predictions in the task's format
      tensorboard/                TensorBoard event files (config.log.tensorboard)
      data/                       configs that build their data on first use (the demo): vocab/ and dataset/

Every module takes these names from here; `paths` does the reading and writing (a workdir may be gs://).
"""
from __future__ import annotations

import os

from etils import epath

from bertjax import paths

CONFIG_JSON = "config.json"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
# The items of checkpoints/<step>/ (clock: absent from checkpoints older than it, which resume at 0 seconds).
STATE_ITEM, DATA_ITEM, CONFIG_ITEM, CLOCK_ITEM = "state", "data", "config", "clock"
CORRUPT_DIR = "corrupt_checkpoints"
EXPORT_DIR = "export"
BEST_DIR = "best"
BEST_METRICS = "metrics.json"
FEATURES_DIR = "features"
PREDICTIONS_PREFIX = "predictions_"
TENSORBOARD_DIR = "tensorboard"
BUILT_DATA_DIR = "data"


def path(workdir: str | os.PathLike, *names: str) -> epath.Path:
    """`<workdir>/<names...>` through the path layer (local or gs://)."""
    return paths.path(workdir).joinpath(*names)


def is_step_dir(directory: epath.Path) -> bool:
    """Whether `directory` is one checkpoint step, `<workdir>/checkpoints/<step>` (it holds state/)."""
    return (directory / STATE_ITEM).is_dir()


def finished_steps(workdir: str | os.PathLike) -> list[int]:
    """The steps of `<workdir>/checkpoints/` whose state was written, oldest first (none: [])."""
    checkpoints = path(workdir, CHECKPOINTS_DIR)
    if not checkpoints.is_dir():
        return []
    return sorted(int(step.name) for step in checkpoints.iterdir() if step.name.isdigit() and is_step_dir(step))


def latest_step(workdir: str | os.PathLike) -> int | None:
    """The newest finished checkpoint's step, or None."""
    steps = finished_steps(workdir)
    return steps[-1] if steps else None


def predictions_stem(workdir: str | os.PathLike, split: str) -> epath.Path:
    """`<workdir>/predictions_<split>`, to which a task's writer adds its file suffix."""
    return path(workdir, f"{PREDICTIONS_PREFIX}{split}")
