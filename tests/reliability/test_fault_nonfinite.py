"""Fault injection: NaN in a batch (masked_lm_weights, the batch's float input) makes the gradient non-finite.

Such a step is skipped (params and optimizer moments unchanged) and counted; `max_consecutive_nonfinite` in a row
abort the run with one line, checked after every step, not only at log steps.
"""
import grain
import jax
import numpy as np
import pytest

from _batches import VOCAB_SIZE, make_batch
from _train_helpers import grain_batches, params_digest, tiny_config
from bertjax.errors import BertjaxError
from bertjax.task import DataSource
from bertjax.train import train_and_evaluate
from bertjax.train_state import nonfinite_counts


def _data(config, nan_steps):
    """Synthetic batches; the batches of `nan_steps` (1-based train steps) get NaN in masked_lm_weights."""
    size = config.train.batch_size

    def batch(index):
        rows = make_batch(size, start=index * size)
        if index + 1 in nan_steps:
            rows["masked_lm_weights"][0, 0] = np.nan
        return rows

    return DataSource(
        vocab_size=VOCAB_SIZE,
        train_iterator=lambda: iter(grain.MapDataset.range(10_000).map(batch).to_iter_dataset()),
        eval_iterator=lambda: grain_batches(config.eval.batch_size, num_batches=2, seed=1, repeat=False))


def _config(steps, limit):
    config = tiny_config(num_train_steps=steps)
    config.optimizer.max_consecutive_nonfinite = limit
    config.log.every_steps = 100  # no log step inside the run: the guard must not depend on them
    return config


@pytest.mark.slow
def test_nan_steps_are_skipped_and_counted(tmp_path):
    config = _config(steps=8, limit=3)
    seen = {}

    def hook(info):
        seen[info.step] = (params_digest(info.state.params),
                           tuple(int(x) for x in jax.device_get(nonfinite_counts(info.state.opt_state))))

    train_and_evaluate(config, str(tmp_path / "run"), data=_data(config, nan_steps={3, 4, 6}), hooks=[hook])
    assert sorted(seen) == list(range(1, 9))
    assert seen[4][0] == seen[3][0] == seen[2][0] != seen[1][0]  # steps 3, 4 left the params alone
    assert seen[6][0] == seen[5][0] != seen[4][0] and seen[7][0] != seen[6][0]
    counts = {step: counts for step, (_, counts) in seen.items()}
    assert counts == {1: (0, 0), 2: (0, 0), 3: (1, 1), 4: (2, 2), 5: (0, 2), 6: (1, 3), 7: (0, 3), 8: (0, 3)}


@pytest.mark.slow
def test_consecutive_nan_steps_abort_between_log_steps(tmp_path):
    config = _config(steps=20, limit=3)
    seen = []
    with pytest.raises(BertjaxError) as raised:
        train_and_evaluate(config, str(tmp_path / "run"), data=_data(config, nan_steps={3, 4, 5, 6, 7}),
                           hooks=[lambda info: seen.append(info.step)])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("training diverged: 3 consecutive steps with non-finite gradients at step 5 ")
    assert "--config.optimizer.max_consecutive_nonfinite=3" in message
    assert max(seen) == 5  # noticed one step late at most (read while step 6 is queued), long before a log step
