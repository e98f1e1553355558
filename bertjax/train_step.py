"""The pure train and eval steps of any objective (no I/O), with gradient accumulation over micro-batches.

Gradient accumulation: the global batch of B examples is split into k micro-batches of B/k (example i goes to
micro-batch i mod k, so no data moves between devices) and `jax.lax.scan` runs forward+backward on each,
summing gradients and metric sums in float32. Every objective's loss is a weighted mean whose denominators depend
only on the data; for pretraining, the loss of the whole batch is

    masked_lm_loss + next_sentence_loss = sum_i w_i * nll_i / (sum_i w_i + 1e-5) + sum_b nsp_nll_b / B,

(B the number of sentence pairs: the rows, or the real pairs of packed rows),

whose denominators are computed once from the whole batch
before the scan, and each micro-batch contributes (its MLM nll sum) / (whole-batch denominator) + (its NSP nll
sum) / B. Hence the summed micro-batch gradients equal the gradient of the whole-batch loss exactly (up to
float summation order) — not the mean of per-micro-batch mean losses, which would weigh micro-batches with
fewer masked tokens too much. With dropout on, the equivalence holds in distribution only: each micro-batch
draws its dropout masks from fold_in(fold_in(state.rng, state.step), micro_batch_index).
"""
import functools

import jax
import jax.numpy as jnp
import optax

from bertjax import sharding


def split_micro_batches(batch: dict, num_micro_batches: int) -> dict:
    """[B, ...] -> [k, B/k, ...] with example i in micro-batch i mod k (keeps each device's rows local)."""
    def split(x):
        x = x.reshape((x.shape[0] // num_micro_batches, num_micro_batches) + x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec(None, sharding.BATCH_AXES))
    return jax.tree.map(split, batch)


def make_train_step(model, tx: optax.GradientTransformation, objective, num_micro_batches: int = 1):
    """A function (state, batch[, schedule_position]) -> (new_state, metrics) to be jitted; metrics hold float32
    sums and grad_norm.

    `objective` (`bertjax.objectives`) gives the forward pass, the metric sums and the loss from them.
    `schedule_position` (a float32 scalar, in steps; the time-budget schedule's) sets where the learning-rate
    schedule is read; without it, at the optimizer's step count.
    """

    def micro_batch_loss(params, micro_batch, dropout_rng, denominators):
        outputs = objective.forward(model, params, micro_batch, deterministic=False, dropout_rng=dropout_rng)
        sums = objective.metric_sums(outputs, micro_batch)
        return objective.loss(sums, denominators), sums

    grad_fn = jax.value_and_grad(micro_batch_loss, has_aux=True)

    def train_step(state, batch, schedule_position=None):
        # The whole batch's denominators, so each micro-batch's loss is its exact share of the batch loss.
        denominators = objective.denominators(batch)
        step_rng = jax.random.fold_in(state.rng, state.step)
        if num_micro_batches == 1:
            (_, sums), grads = grad_fn(state.params, batch, jax.random.fold_in(step_rng, 0), denominators)
        else:
            micro_batches = split_micro_batches(batch, num_micro_batches)

            def accumulate(carry, xs):
                index, micro_batch = xs
                (_, sums), grads = grad_fn(state.params, micro_batch, jax.random.fold_in(step_rng, index),
                                           denominators)
                return jax.tree.map(jnp.add, carry, (grads, sums)), None

            zero_sums = jax.eval_shape(
                lambda: grad_fn(state.params, jax.tree.map(lambda x: x[0], micro_batches), step_rng,
                                denominators)[0][1])
            init = (jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params),
                    jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), zero_sums))
            (grads, sums), _ = jax.lax.scan(
                accumulate, init, (jnp.arange(num_micro_batches), micro_batches))
        metrics = dict(sums)
        metrics["grad_norm"] = optax.tree.norm(grads)
        extra = {} if schedule_position is None else {"schedule_position": schedule_position}
        return state.apply_gradients(grads, tx, **extra), metrics

    return train_step


def make_eval_step(model, objective):
    """A function (params, batch) -> the objective's eval outputs of the batch, to be jitted."""

    def eval_step(params, batch):
        outputs = objective.forward(model, params, batch, deterministic=True)
        return objective.eval_outputs(outputs, batch)

    return eval_step


@functools.partial(jax.jit, donate_argnums=0)
def add_sums(total: dict, new: dict) -> dict:
    """Add two dicts of metric sums on device (float32)."""
    return jax.tree.map(jnp.add, total, new)
