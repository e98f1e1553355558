"""--breakdown: forward, forward+backward and the optimizer update, each jitted on its own, beside the full step."""
from __future__ import annotations

import os
import statistics

import jax
import jax.numpy as jnp
import optax

from .ablations import ABLATIONS
from .common import BertjaxRunner, default_batch, interleave


class _Part:
    """A jitted piece of the bertjax step, timed as a runner."""

    framework = "part"

    def __init__(self, label, fn, *args):
        self.label, self.fn, self.args = label, fn, args
        jax.block_until_ready(fn(*args))

    def step(self):
        jax.block_until_ready(self.fn(*self.args))


def run_breakdown(args, log, save=None) -> dict:
    """Forward, forward+backward and the optimizer update of the bertjax step, beside the full step."""
    size, seq, dtype = args.sizes[0], args.seqs[0], args.dtypes[0]
    batch = args.batch or default_batch(size, seq)
    full = BertjaxRunner(size, seq, dtype, batch, label="full step")
    no_dropout = BertjaxRunner(size, seq, dtype, batch, ABLATIONS["no dropout"], label="full step, no dropout")
    trainer, objective = full.trainer, full.trainer.objective
    model = trainer.model

    def loss(params, batch, rng, deterministic):
        outputs = objective.forward(model, params, batch, deterministic=deterministic, dropout_rng=rng)
        return objective.loss(objective.metric_sums(outputs, batch), objective.denominators(batch))

    rng = jax.random.key(1)
    with jax.set_mesh(full.mesh):
        state = jax.tree.map(jnp.copy, full.state)  # the full step donates full.state: the parts use copies
        params = state.params
        grads = jax.jit(jax.grad(loss), static_argnums=3)(params, full.batch, rng, False)
        parts = [
            full, no_dropout,
            _Part("forward (dropout)", jax.jit(loss, static_argnums=3), params, full.batch, rng, False),
            _Part("forward (no dropout)", jax.jit(loss, static_argnums=3), params, full.batch, rng, True),
            _Part("forward+backward (dropout)", jax.jit(jax.grad(loss), static_argnums=3), params, full.batch, rng,
                  False),
            _Part("optimizer update + grad norm", jax.jit(
                lambda state, grads: (state.apply_gradients(grads, trainer.tx), optax.tree.norm(grads))),
                state, grads),
        ]
        times = interleave(parts, args.warmup, args.steps, log)
    result = {label: statistics.median(values) for label, values in times.items()}
    for label, seconds in result.items():
        log(f"  {label}: {1000 * seconds:.0f} ms")
    return {"size": size, "seq": seq, "dtype": dtype, "batch": batch, "median_seconds": result,
            "all_seconds": dict(times), "load_average": os.getloadavg()[0]}
