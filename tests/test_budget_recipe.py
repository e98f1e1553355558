"""The budget recipe's tricks (configs/budget.py): each is off by default and does exactly what it claims.

The schedules are tested in test_train_state.py, the pipeline's masking rate in test_pipeline.py, NSP's weight in
test_losses.py; here: the batch-size ramp, the time budget and its clock, dropout off, the training batches'
masking rate against eval's, and the config switches.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import batch_ramp, run_config, task as task_lib, train_clock
from bertjax.errors import BertjaxError
from bertjax.task import DataSource
from bertjax.train import train_and_evaluate

import _tiny_dataset as tiny
from _batches import VOCAB_SIZE, make_batch
from _train_helpers import grain_batches, load_config, params_digest, run_steps, tiny_config

ONE_DEVICE = jax.devices()[:1]   # (the tests' 8 virtual CPU devices compile slower, and a ramp must split over them)

BUDGET_TRICKS = {
    ("data", "train_masked_lm_prob"): 0.3,
    ("model", "hidden_dropout_prob"): 0.0,
    ("model", "attention_probs_dropout_prob"): 0.0,
    ("optimizer", "schedule"): "wsd",
    ("optimizer", "warmup_steps"): 50,          # 5% of the demo's 1000-step schedule
    ("train", "time_budget_hours"): 0.05,
}


def test_the_original_recipe_is_the_default_and_budget_switches_every_trick_on():
    base, budget = load_config("base"), load_config("budget")
    assert base.data.train_masked_lm_prob is None and base.train.time_budget_hours is None
    assert base.train.batch_size_ramp_start is None and base.train.nsp_weight == 1.0
    assert (base.optimizer.schedule, base.model.hidden_dropout_prob) == ("bert", 0.1)
    for (section, field), value in BUDGET_TRICKS.items():
        assert budget[section][field] == value, (section, field)
    assert budget.data.build.masking == "dynamic"                         # masking at 30% needs dynamic masks
    assert budget.train.batch_size_ramp_start == budget.train.batch_size // 4
    assert budget.model.size == "tiny" and budget.train.nsp_weight == 1.0  # still BERT, NSP kept


# ----------------------------------------------------------------------------------------------------------------------
# Batch-size ramp


def _ramp(start=4, steps=4, batch_size=16, micro_batches=1):
    return tiny_config(batch_size=batch_size, batch_size_ramp_start=start, batch_size_ramp_steps=steps,
                       micro_batches=micro_batches).train


def test_the_ramp_doubles_in_equal_stages_and_scales_micro_batches():
    assert [batch_ramp.batch_size_at(_ramp(), s) for s in range(7)] == [4, 4, 8, 8, 16, 16, 16]
    assert [batch_ramp.batch_size_at(_ramp(start=2, steps=6), s) for s in range(7)] == [2, 2, 4, 4, 8, 8, 16]
    assert [batch_ramp.micro_batches_at(_ramp(micro_batches=4), b) for b in (4, 8, 16)] == [1, 2, 4]
    assert batch_ramp.batch_size_at(tiny_config().train, 0) == 16         # no ramp: batch_size from step 0
    assert batch_ramp.read_batch_size(_ramp()) == 4


@pytest.mark.parametrize("start, steps, devices, message", [
    (6, 4, 1, "batch_size_ramp_start=6 must divide"),
    (32, 4, 1, "batch_size_ramp_start=32 must divide"),
    (4, 0, 1, "batch_size_ramp_steps=0 must be a positive"),
    (4, 4, 8, "the ramp's batch of 4 does not split over 8 devices"),
])
def test_a_bad_ramp_is_one_line(start, steps, devices, message):
    with pytest.raises(BertjaxError, match=message):
        batch_ramp.validate(_ramp(start, steps), devices, 1)


def test_a_ramped_run_takes_the_unramped_examples_in_order_and_exports_a_transformers_bert(tmp_path):
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415
    from bertjax.model import BertForPreTraining  # noqa: PLC0415

    # The budget tricks that synthetic data allows (tiny_config has no dropout): ramp and one-cycle schedule.
    config = tiny_config(num_train_steps=6, batch_size_ramp_start=4, batch_size_ramp_steps=4)
    config.optimizer.schedule = "one_cycle"
    data = DataSource(VOCAB_SIZE, lambda: grain_batches(4, num_batches=64, seed=0, repeat=True),
                      lambda: grain_batches(16, num_batches=1, seed=1, repeat=False))
    seen, final = [], {}

    def keep(info):
        seen.append(info.host_batch["input_ids"])
        final["params"] = jax.device_get(info.state.params)

    train_and_evaluate(config, str(tmp_path / "run"), data=data, devices=ONE_DEVICE, hooks=[keep])
    assert [len(batch) for batch in seen] == [4, 4, 8, 8, 16, 16]
    reads = grain_batches(4, num_batches=64, seed=0, repeat=True)
    expected = np.concatenate([next(reads)["input_ids"] for _ in range(14)])  # 56 examples, in pipeline order
    np.testing.assert_array_equal(np.concatenate(seen), expected)

    # Its export is a BertForPreTraining for transformers, with bertjax's logits.
    batch = make_batch(3)
    bert_config = run_config.bert_config(config, VOCAB_SIZE)
    ours = BertForPreTraining(bert_config, vocab_pad_multiple=config.model.vocab_pad_multiple).apply(
        {"params": final["params"]}, *(batch[k] for k in ("input_ids", "input_mask", "segment_ids",
                                                          "masked_lm_positions")), deterministic=True)
    hf_model = transformers.BertForPreTraining.from_pretrained(tmp_path / "run" / "export").eval()
    with torch.no_grad():
        theirs = hf_model(input_ids=torch.tensor(batch["input_ids"]).long(),
                          attention_mask=torch.tensor(batch["input_mask"]).long(),
                          token_type_ids=torch.tensor(batch["segment_ids"]).long())
    positions = torch.tensor(batch["masked_lm_positions"]).long()
    mlm = torch.take_along_dim(theirs.prediction_logits, positions[..., None], dim=1).numpy()
    np.testing.assert_allclose(np.asarray(ours["mlm_logits"]), mlm, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours["nsp_logits"]), theirs.seq_relationship_logits.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Time budget


@pytest.fixture
def ticking_clock(monkeypatch):
    """The training clock's time source advances one second per reading: runs are deterministic."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(train_clock, "now", lambda: float(next(ticks)))


def _budget_config():
    # Budget 21 s of a clock read twice per step (checkpoint, budget check): 10 steps, whatever num_train_steps.
    config = tiny_config(num_train_steps=8, time_budget_hours=21 / 3600)
    config.checkpoint.every_steps = 2
    config.log.every_steps = 1000
    return config


def _synthetic(config):
    return DataSource(VOCAB_SIZE, lambda: grain_batches(config.train.batch_size, num_batches=64, seed=0, repeat=True),
                      lambda: grain_batches(16, num_batches=1, seed=1, repeat=False))


class _Crash(Exception):
    pass


def test_a_time_budget_stops_on_the_clock_and_resumes_exactly_from_the_saved_clock(tmp_path, ticking_clock):
    config = _budget_config()
    final = {}

    def keep(info):
        final["step"], final["params"] = info.step, params_digest(info.state.params)

    train_and_evaluate(config.copy_and_resolve_references(), str(tmp_path / "straight"), data=_synthetic(config),
                       hooks=[keep], devices=ONE_DEVICE)
    straight = dict(final)
    assert straight["step"] == 10                 # past num_train_steps = 8: the budget decides

    def crash_at_4(info):
        keep(info)
        if info.step == 4:
            raise _Crash()

    with pytest.raises(_Crash):
        train_and_evaluate(config.copy_and_resolve_references(), str(tmp_path / "resumed"), data=_synthetic(config),
                           hooks=[crash_at_4], devices=ONE_DEVICE)
    from bertjax import checkpoint  # noqa: PLC0415

    saved = checkpoint.Checkpointer(str(tmp_path / "resumed"), every_steps=2, keep=3)
    try:
        assert saved.all_steps() == [2, 4] and saved.saved_clock(4) == {"train_seconds": 8.0}
    finally:
        saved.close()
    train_and_evaluate(config.copy_and_resolve_references(), str(tmp_path / "resumed"), data=_synthetic(config),
                       hooks=[keep], devices=ONE_DEVICE)
    assert final == straight                      # same steps, bitwise the same params


def test_the_time_budget_schedule_follows_the_clock(tmp_path, ticking_clock, monkeypatch):
    import bertjax.train as train_module  # noqa: PLC0415
    from bertjax.train_state import create_optimizer  # noqa: PLC0415

    config = tiny_config(num_train_steps=20, time_budget_hours=20 / 3600)   # 20 schedule steps over 20 s
    config.optimizer.schedule, config.optimizer.warmup_steps = "warmup_linear", 4
    config.log.every_steps = 1
    rates, log_train = [], train_module._log_train

    def record(*args):
        rates.append(args[-2])
        log_train(*args)

    monkeypatch.setattr(train_module, "_log_train", record)
    train_and_evaluate(config, str(tmp_path / "run"), data=_synthetic(config), devices=ONE_DEVICE)
    # The clock is read at each step's save, budget check and log line; a step reads the schedule at the budget
    # check before it: 1 s, then 3, 6, 9, ... and the check after step 7 (21 s) ends the run, at 7 of 20 steps.
    _, schedule = create_optimizer(config.optimizer, 20)
    np.testing.assert_allclose(rates, [float(schedule(p)) for p in (1, 3, 6, 9, 12, 15, 18)], rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Dropout off, masking rate of training batches


def test_with_dropout_off_training_outputs_do_not_depend_on_the_dropout_key():
    from bertjax.model import BertForPreTraining, init_params  # noqa: PLC0415

    batch = make_batch(4)
    inputs = [batch[name] for name in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")]

    def training_outputs(dropout):
        config = run_config.bert_config(tiny_config(), VOCAB_SIZE).replace(
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        model = BertForPreTraining(config)
        params = init_params(model, jax.random.PRNGKey(0))
        return [model.apply({"params": params}, *inputs, deterministic=False,
                            rngs={"dropout": jax.random.key(seed)})["mlm_logits"] for seed in (1, 2)]

    first, second = training_outputs(0.0)
    np.testing.assert_array_equal(first, second)
    first, second = training_outputs(0.1)
    assert not np.allclose(first, second)


def test_training_batches_mask_at_the_training_rate_and_eval_at_the_datasets(tmp_path):
    data_dir = tiny.write_dataset(str(tmp_path / "ds"), {"train": [24], "eval": [16]}, masking="dynamic")
    config = tiny_config(batch_size=8)
    config.data.train_masked_lm_prob = 0.5
    config.eval.batch_size = 8
    task = task_lib.pretraining(config, data_dir, tiny.VOCAB_SIZE)
    assert task_lib.train_predictions_per_seq(config) == 8 == task.objective.max_predictions_per_seq
    assert next(task.data.train_iterator())["masked_lm_positions"].shape == (8, 8)
    assert next(task.data.eval_iterator())["masked_lm_positions"].shape == (8, 4)   # the dataset's P at 0.15


@pytest.mark.parametrize("section, field, value, message", [
    ("data", "train_masked_lm_prob", 0.0, "train_masked_lm_prob=0.0 must be in"),
    ("data", "train_masked_lm_prob", 1.5, "train_masked_lm_prob=1.5 must be in"),
    ("train", "time_budget_hours", -1.0, "time_budget_hours=-1.0 must be a positive"),
])
def test_bad_budget_fields_are_one_line(section, field, value, message):
    config = tiny_config()
    config[section][field] = value
    with pytest.raises(BertjaxError, match=message):
        run_config.validate(config, 1, 1)


def test_pretraining_only_tricks_are_refused_for_fine_tuning():
    config = load_config("finetune_glue")
    config.train.batch_size_ramp_start = 8
    config.train.batch_size_ramp_steps = 10
    with pytest.raises(BertjaxError, match="batch_size_ramp_start applies to pretraining only"):
        run_config.validate(config, 1, 1)
