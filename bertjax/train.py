"""The training run: set up mesh, model, optimizer, data and checkpoints; loop with periodic eval and logging.

`train_and_evaluate(config, workdir)` is what main.py calls, for pretraining and fine-tuning alike: the door
(`run_config`) gives the run's Task (objective and data), and everything here works on that. It resumes from the
latest checkpoint in the workdir automatically, saves and exits cleanly on SIGTERM/preemption, and finishes with an
evaluation and a params-only export (the names of the workdir: `bertjax.workdir_layout`).
"""
import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from bertjax import (batch_ramp, checkpoint, distributed, objectives, paths, run_config, sharding, train_clock,
                     train_step, workdir_layout)
from bertjax.data import pipeline
from bertjax.errors import BertjaxError
from bertjax.formatting import format_duration
from bertjax.metrics_writer import MetricsWriter, Throughput, peak_flops_per_device
from bertjax.model import BertConfig
from bertjax.task import DataSource, Task
from bertjax.train_state import TrainState, create_optimizer, nonfinite_counts


@dataclasses.dataclass
class StepInfo:
    """What a hook sees after each train step (and after the step's checkpoint save was started)."""

    step: int
    state: Any
    metrics: dict            # this step's metric sums and grad_norm (device arrays)
    host_batch: dict
    checkpointer: checkpoint.Checkpointer


class Trainer:
    """The model, optimizer, shardings and jitted steps of one run of `objective` (its Task's)."""

    def __init__(self, config: ml_collections.ConfigDict, bert_config: BertConfig, mesh: jax.sharding.Mesh,
                 objective: objectives.Objective):
        self.config = config
        self.mesh = mesh
        self.bert_config = bert_config
        self.vocab_size = bert_config.vocab_size
        self.objective = objective
        self.model = self.objective.build_model(
            self.bert_config, dtype=jnp.dtype(config.dtype), param_dtype=jnp.float32,
            scan_layers=config.model.scan_layers, remat=config.model.remat and config.model.remat_policy,
            dropout_bits=config.model.dropout_bits, attention_impl=config.model.attention_impl)
        self.tx, self.schedule = create_optimizer(config.optimizer, config.train.num_train_steps)
        self.batch_sharding = sharding.batch_sharding(mesh)
        replicated = sharding.replicated(mesh)

        rng_impl = config.train.rng_impl

        def init_state(rng):
            init_rng, dropout_rng = jax.random.split(rng)
            inputs = self.objective.init_inputs(config.data.max_seq_length)
            params = self.model.init({"params": init_rng}, *inputs)["params"]
            if rng_impl != "threefry":  # dropout's key only: params are initialised as with threefry
                dropout_rng = jax.random.key(jax.random.bits(dropout_rng, dtype=jnp.uint32), impl=rng_impl)
            return TrainState.create(params, self.tx, dropout_rng)

        rng = jax.random.key(config.train.seed)
        self.abstract_state = jax.eval_shape(init_state, rng)
        self.state_shardings = sharding.state_shardings(self.abstract_state, mesh, config.mesh.min_shard_size)
        self._init = jax.jit(init_state, out_shardings=self.state_shardings)
        self._rng = rng
        self._replicated = replicated
        self._train_steps = {}
        self.jit_train_step = self._jitted_train_step(config.train.micro_batches, timed=False)
        self.jit_eval_step = jax.jit(train_step.make_eval_step(self.model, self.objective),
                                     in_shardings=(self.state_shardings.params, self.batch_sharding),
                                     out_shardings=replicated)

    def _jitted_train_step(self, micro_batches: int, timed: bool):
        """The jitted train step with `micro_batches` micro-batches; `timed`: it takes a schedule position."""
        key = (micro_batches, timed)
        if key not in self._train_steps:
            step_fn = train_step.make_train_step(self.model, self.tx, self.objective, micro_batches)
            in_shardings = (self.state_shardings, self.batch_sharding) + ((self._replicated,) if timed else ())
            self._train_steps[key] = jax.jit(step_fn, in_shardings=in_shardings,
                                             out_shardings=(self.state_shardings, self._replicated), donate_argnums=0)
        return self._train_steps[key]

    def train_step(self, state, batch: dict, schedule_position: float | None = None):
        """One update on a global batch of any ramp size (`batch_ramp`), with the learning rate at the optimizer's
        step count, or at `schedule_position` (the time-budget schedule's)."""
        micro = batch_ramp.micro_batches_at(self.config.train, batch["input_ids"].shape[0])
        step_fn = self._jitted_train_step(micro, timed=schedule_position is not None)
        if schedule_position is None:
            return step_fn(state, batch)
        return step_fn(state, batch, jnp.float32(schedule_position))

    def initial_state(self):
        """A freshly initialised, sharded TrainState."""
        return self._init(self._rng)

    def abstract_state_with_shardings(self):
        """ShapeDtypeStructs carrying the target shardings (restore targets)."""
        return sharding.with_shardings(self.abstract_state, self.state_shardings)

    def global_batch(self, host_batch: dict) -> dict:
        """Host-local numpy batch -> global jax.Arrays sharded over the batch axes."""
        self.objective.check_batch(host_batch, self.vocab_size)
        return pipeline.to_global_batch(host_batch, self.batch_sharding)

    def evaluate(self, params, batches: Iterator[dict], max_batches: int) -> tuple[dict, list]:
        """(metrics, the eval outputs of every batch) over up to `max_batches` batches (-1 = all)."""
        outputs = []
        for host_batch in batches:
            if 0 <= max_batches <= len(outputs):
                break
            outputs.append(jax.device_get(self.jit_eval_step(params, self.global_batch(host_batch))))
        if not outputs:
            raise BertjaxError(
                f"the eval split --config.data.eval_split={self.config.data.eval_split!r} gave no batch of "
                f"--config.eval.batch_size={self.config.eval.batch_size}; use a smaller eval batch size or a dataset "
                "with more eval examples.")
        metrics = self.objective.score(outputs)
        metrics["eval_batches"] = len(outputs)
        return metrics, outputs


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, data: DataSource | None = None,
                       hooks: Sequence[Callable[[StepInfo], None]] = (),
                       devices: Sequence[jax.Device] | None = None) -> dict:
    """Train (resuming from <workdir>) with periodic eval, or only evaluate; return the last eval metrics.

    `data` replaces the config's dataset (tests); `hooks` run after every step; `devices` restricts the mesh.
    Nothing is written to the workdir before the checks pass and the training data opens.
    """
    devices = list(jax.devices() if devices is None else devices)
    spec = run_config.check_run_on_every_host(config, workdir, num_devices=len(devices),
                                              process_count=jax.process_count(),
                                              vocab_size=None if data is None else data.vocab_size)
    config = spec.config
    task = spec.task if data is None else dataclasses.replace(spec.task, data=data)
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp, devices)
    with jax.set_mesh(mesh):
        trainer = Trainer(config, spec.bert_config, mesh, task.objective)
        train_iter = None if config.train.eval_only else task.data.train_iterator()  # opens (and checks) the data
        paths.path(workdir).mkdir(parents=True, exist_ok=True)
        checkpointer = checkpoint.Checkpointer(
            workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
            async_save=config.checkpoint.async_save)
        try:
            return _run(trainer, task, train_iter, checkpointer, config, workdir, spec, hooks)
        finally:
            checkpointer.close()


def _check_compatible(checkpointer: checkpoint.Checkpointer, step: int, config: ml_collections.ConfigDict) -> None:
    saved = checkpointer.saved_config(step)
    if not saved:
        return
    current = config.to_dict()
    sections = {"model": ("size", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "intermediate_size", "scan_layers", "vocab_pad_multiple"),
                "data": ("max_seq_length", "max_predictions_per_seq"), "optimizer": ("name",)}
    saved.setdefault("model", {}).setdefault("vocab_pad_multiple", 1)  # checkpoints from before the field: unpadded
    for section, fields in sections.items():
        for field in fields:
            old, new = saved.get(section, {}).get(field), current[section].get(field)
            if old != new:
                raise BertjaxError(
                    f"--workdir {checkpointer.workdir} holds a checkpoint (step {step}) from an incompatible run: "
                    f"config.{section}.{field} was {old!r}, now {new!r}; use a new --workdir, or the old value.")


def _restore_or_init(trainer: Trainer, checkpointer: checkpoint.Checkpointer, config, data: DataSource,
                     train_iter):
    """(state, train iterator): the latest readable checkpoint's, or fresh ones (`train_iter` is a fresh one).

    An unreadable latest checkpoint is a BertjaxError, or with `config.checkpoint.fallback` is moved to
    <workdir>/corrupt_checkpoints/ (kept, and out of the way of the next save of its step) and the previous one is
    tried, down to a fresh start.
    """
    new_iter = (lambda: None) if config.train.eval_only else data.train_iterator
    for step in reversed(checkpointer.all_steps()):
        try:
            _check_compatible(checkpointer, step, config)
            _log_process_0("Restoring checkpoint step %d from %s", step, checkpointer.directory)
            if train_iter is not None and not checkpointer.can_restore_data(step) and jax.process_index() == 0:
                logging.warning("Checkpoint step %d has no input pipeline state this run can continue: the model "
                                "and optimizer state are restored, the input pipeline starts its order afresh.", step)
            return checkpointer.restore(step, trainer.abstract_state_with_shardings(), train_iter), train_iter
        except checkpoint.CorruptCheckpointError as e:
            if not config.checkpoint.fallback:
                raise
            moved = checkpointer.set_aside(step)
            if jax.process_index() == 0:
                logging.warning("Skipping checkpoint step %d: %s. Moved it to %s; trying the previous checkpoint.",
                                step, e, moved)
                print(f"skipped unreadable checkpoint step {step} (moved to {moved}); falling back", flush=True)
            train_iter = new_iter()  # a failed restore may have moved the iterator
    if config.train.eval_only and not config.train.init_from:
        raise BertjaxError(
            f"--config.train.eval_only=true but --workdir {checkpointer.workdir} has no checkpoint; point --workdir "
            "at a trained run or set --config.train.init_from.")
    state = trainer.initial_state()
    if config.train.init_from:
        abstract_params = trainer.abstract_state_with_shardings().params
        loaded = checkpoint.load_params(config.train.init_from, abstract_params, type(trainer.model).__name__)
        state = state.replace(params={**state.params, **loaded})
        _log_process_0("Initialised params from %s", config.train.init_from)
    return state, train_iter


def _log_process_0(message: str, *args) -> None:
    if jax.process_index() == 0:
        logging.info(message, *args)


def _run(trainer: Trainer, task: Task, train_iter, checkpointer: checkpoint.Checkpointer,
         config: ml_collections.ConfigDict, workdir: str, spec: run_config.RunSpec, hooks) -> dict:
    data = task.data
    state, train_iter = _restore_or_init(trainer, checkpointer, config, data, train_iter)
    step = int(jax.device_get(state.step))
    saved_clock = checkpointer.saved_clock(step) if step in checkpointer.all_steps() else None
    clock = train_clock.TrainClock(config.train.time_budget_hours,
                                   (saved_clock or {}).get("train_seconds", 0.0))
    if jax.process_index() == 0:  # only now: an incompatible workdir must keep its config.json and features/
        task.write_pending()
        paths.write_text_atomically(workdir_layout.path(workdir, workdir_layout.CONFIG_JSON),
                                    config.to_json_best_effort(indent=2))
    exported = checkpoint.Exported(trainer.model, task.labels)
    best = _BestExport(workdir, task, exported)
    checkpoint.write_model_description(workdir, trainer.bert_config, spec.vocab_file, spec.do_lower_case,
                                       spec.strip_accents, exported)
    writer = MetricsWriter(workdir, tensorboard=config.log.tensorboard, total_steps=config.train.num_train_steps,
                           initial_step=step)
    writer.write_config(config.to_json_best_effort())

    def evaluate(params, at_step: int) -> dict:
        metrics, outputs = trainer.evaluate(params, data.eval_iterator(), config.eval.num_batches)
        # The training clock at this evaluation (time-to-quality curves), logged beside the metrics.
        clocked = {} if config.train.eval_only else {"train_seconds": clock.seconds()}
        writer.write_scalars(at_step, {**metrics, **clocked}, "eval")
        writer.log(f"eval step {at_step}: " + _format_eval({**metrics, **clocked}, trainer.objective))
        if jax.process_index() == 0:
            written = trainer.objective.write_predictions(outputs, str(workdir_layout.predictions_stem(
                workdir, task.eval_split)))
            if written:
                writer.log(f"predictions written to {written}")
        if not config.train.eval_only:
            best.update(params, metrics, at_step, writer)
        return metrics

    try:
        if config.train.eval_only:
            return evaluate(state.params, step)
        state, preempted = _train_loop(trainer, state, train_iter, checkpointer, config, writer, evaluate, hooks,
                                       clock)
        if preempted:
            return {}
        metrics = evaluate(state.params, int(jax.device_get(state.step)))
        checkpointer.wait()
        export_dir = checkpoint.export_params(state.params, workdir, exported)
        writer.log(f"done: step {int(jax.device_get(state.step))}; params exported to {export_dir}")
        return metrics
    finally:
        writer.close()


def _train_loop(trainer: Trainer, state, train_iter, checkpointer: checkpoint.Checkpointer,
                config: ml_collections.ConfigDict, writer: MetricsWriter, evaluate, hooks,
                clock: train_clock.TrainClock):
    """Train from state.step to num_train_steps (with a time budget: until the clock reaches it); returns (state,
    whether it stopped for a preemption). The clock runs while training, not while evaluating."""
    num_steps = config.train.num_train_steps
    step = start_step = int(jax.device_get(state.step))
    seq = config.data.max_seq_length
    throughput = Throughput(
        flops_per_step=trainer.objective.flops_per_example(trainer.bert_config, seq) * config.train.batch_size,
        tokens_per_step=config.train.batch_size * seq, total_steps=num_steps,
        peak_flops=peak_flops_per_device(config.log.peak_flops_per_device))
    config_dict = config.to_dict()
    totals, interval_steps, saved = None, 0, True
    guard = _NonfiniteGuard(config.optimizer.max_consecutive_nonfinite)
    budget = (f", time budget {format_duration(clock.budget_seconds)} ({format_duration(clock.seconds())} used)"
              if clock.timed else "")
    writer.log(f"training from step {step} to {'the time budget' if clock.timed else num_steps} on "
               f"{distributed.device_summary()}, mesh {dict(trainer.mesh.shape)}, {jax.process_count()} "
               f"processes{budget}")
    clock.start()
    learning_rate = _ScheduleReader(trainer, clock, num_steps)
    done = _finished(step, num_steps, clock, learning_rate)
    while not done:
        host_batch = batch_ramp.next_batch(train_iter, config.train, step)
        state, metrics = trainer.train_step(state, trainer.global_batch(host_batch), learning_rate.position(step))
        throughput.add_tokens(int(host_batch["input_mask"].sum()) * jax.process_count())  # this host's rows x hosts
        step += 1
        interval_steps += 1
        guard.check()  # the previous step's count: it is done or nearly so, this step stays queued
        guard.watch(state, step)
        totals = metrics if totals is None else train_step.add_sums(totals, metrics)
        if step == start_step + 1:
            jax.block_until_ready(metrics)
            throughput.reset(step)  # keep compilation out of the first interval
        saved = checkpointer.save(step, state, train_iter, config_dict, clock=clock.state())
        for hook in hooks:
            hook(StepInfo(step=step, state=state, metrics=metrics, host_batch=host_batch, checkpointer=checkpointer))
        writer.advance()
        done = _finished(step, num_steps, clock, learning_rate)
        if step % config.log.every_steps == 0 or done:
            _log_train(writer, trainer, state, totals, interval_steps, step, throughput, config,
                       learning_rate.last_rate(), clock)
            totals, interval_steps = None, 0
        if step % config.eval.every_steps == 0 and not done:
            clock.pause()
            evaluate(state.params, step)
            clock.start()
            throughput.reset(step)
        if checkpointer.preemption_requested(step):
            if not saved:
                checkpointer.save(step, state, train_iter, config_dict, force=True, clock=clock.state())
            checkpointer.wait()
            writer.log(f"preempted: saved checkpoint at step {step}; exiting. Rerun to resume.")
            return state, True
    clock.pause()
    guard.check()
    if not saved:
        checkpointer.save(step, state, train_iter, config_dict, force=True, clock=clock.state())
    return state, False


class _ScheduleReader:
    """Where each step reads the learning-rate schedule: at its step count, or with a time budget at the clock's
    position (`train_clock`; process 0's clock on every process, read once per step by `_finished`)."""

    def __init__(self, trainer: Trainer, clock: train_clock.TrainClock, num_train_steps: int):
        self.trainer, self.clock, self.num_train_steps = trainer, clock, num_train_steps
        self.seconds = None          # the agreed clock before the next step (time budget only)
        self._last_position = None   # where the latest step read the schedule

    def agreed_seconds(self) -> float:
        """The clock, the same on every process; read once per step (it may broadcast)."""
        self.seconds = self.clock.agreed_seconds()
        return self.seconds

    def position(self, step: int) -> float | None:
        """The schedule position of the step from `step` (None: the optimizer's own count)."""
        if not self.clock.timed:
            self._last_position = step
            return None
        self._last_position = self.clock.schedule_position(self.seconds, self.num_train_steps)
        return self._last_position

    def last_rate(self) -> float:
        """The learning rate of the latest step."""
        return float(self.trainer.schedule(self._last_position))


def _finished(step: int, num_steps: int, clock: train_clock.TrainClock, reader: _ScheduleReader) -> bool:
    """Whether training is over: the clock reached the time budget, or without one, num_train_steps are done."""
    if clock.timed:
        return clock.expired(reader.agreed_seconds())
    return step >= num_steps


class _NonfiniteGuard:
    """Aborts when `limit` steps in a row had a non-finite gradient, checked after every step (not only at log
    steps) one step late: each step's counter is copied off the (donated) state and read after the next step is
    dispatched, so the host never waits for the step it just queued."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self._pending = None

    def watch(self, state, step: int) -> None:
        if self.limit:
            self._pending = (step, jnp.copy(nonfinite_counts(state.opt_state)[0]))

    def check(self) -> None:
        if self._pending is not None:
            step, consecutive = self._pending
            self._pending = None
            _check_nonfinite(int(jax.device_get(consecutive)), self.limit, step)


def _check_nonfinite(consecutive: int, limit: int | None, step: int) -> None:
    if limit and consecutive >= limit:
        raise BertjaxError(
            f"training diverged: {consecutive} consecutive steps with non-finite gradients at step {step} "
            f"(limit --config.optimizer.max_consecutive_nonfinite={limit}); lower --config.optimizer.learning_rate "
            "or resume from an earlier checkpoint.")


class _BestExport:
    """A task with a main metric (fine-tuning's) keeps the params of the best evaluation as <workdir>/best/, a
    Hugging Face directory like the final export, with best/metrics.json (which also survives a resume)."""

    def __init__(self, workdir: str, task: Task, exported: checkpoint.Exported):
        self.workdir, self.task, self.exported = workdir, task, exported
        self.path = workdir_layout.path(workdir, workdir_layout.BEST_DIR, workdir_layout.BEST_METRICS)
        self.value = None
        if task.main_metric is not None and self.path.exists():
            self.value = json.loads(self.path.read_text()).get(task.main_metric)

    def update(self, params, metrics: dict, step: int, writer: MetricsWriter) -> None:
        """Export `params` if `metrics` are the best so far (every process calls this: the export gathers)."""
        if self.task.main_metric not in metrics:
            return
        value = metrics[self.task.main_metric]
        if self.value is not None and not value > self.value:
            return
        self.value = value
        directory = checkpoint.export_params(params, self.workdir, self.exported, name=workdir_layout.BEST_DIR)
        if jax.process_index() == 0:
            self.path.write_text(json.dumps({**metrics, "step": step}, indent=2))
        writer.log(f"best {self.task.main_metric} so far ({value:.4f}): exported to {directory}")


def _log_train(writer, trainer, state, totals, interval_steps, step, throughput, config, learning_rate,
               clock: train_clock.TrainClock) -> None:
    consecutive, total_skipped = (int(x) for x in jax.device_get(nonfinite_counts(state.opt_state)))
    _check_nonfinite(consecutive, config.optimizer.max_consecutive_nonfinite, step)
    totals = jax.device_get(totals)
    grad_norm = float(totals.pop("grad_norm")) / interval_steps
    metrics = {name: float(value) for name, value in trainer.objective.compute_metrics(totals).items()}
    metrics.update(grad_norm=grad_norm, learning_rate=float(learning_rate), nonfinite_skipped=total_skipped)
    speed = throughput.measure(step)
    if clock.timed:
        speed["eta_seconds"] = max(clock.budget_seconds - clock.seconds(), 0.0)
    writer.write_scalars(step, {**metrics, **{k: v for k, v in speed.items() if k != "eta_seconds"}}, "train")
    mfu = "n/a" if speed["mfu"] is None else f"{100 * speed['mfu']:.1f}%"
    tokens = "n/a" if speed["tokens_per_sec"] is None else f"{speed['tokens_per_sec']:,.0f}"
    eta = "n/a" if speed["eta_seconds"] is None else format_duration(speed["eta_seconds"])
    shown = " ".join(f"{SHORT_NAMES.get(name, name)} {metrics[name]:.4f}" for name in trainer.objective.log_metrics)
    writer.log(f"step {step}: {shown} lr {metrics['learning_rate']:.3g} grad_norm {grad_norm:.3f} tokens/s {tokens} "
               f"mfu {mfu} eta {eta}")


SHORT_NAMES = {"masked_lm_accuracy": "mlm_acc", "next_sentence_accuracy": "nsp_acc"}
_EVAL_ORDER = ("loss", "masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy", "next_sentence_loss",
               "perplexity")


def _format_eval(metrics: dict, objective: objectives.Objective) -> str:
    names = [name for name in _EVAL_ORDER if name in metrics]
    names += sorted(name for name in metrics if name not in names and name not in (
        "eval_batches", "masked_lm_accuracy_baseline"))
    text = " ".join(f"{name} {metrics[name]:.4f}" for name in names)
    if "masked_lm_accuracy_baseline" in metrics:
        text += f" (constant-prediction mlm baseline {metrics['masked_lm_accuracy_baseline']:.4f})"
    return text
