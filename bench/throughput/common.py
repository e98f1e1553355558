"""Setup and measurement shared by every mode: synthetic batches, the bertjax and jnp.dot runners, interleaved
timing with paired ratios, and the machine description."""
from __future__ import annotations

import ast
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

os.environ.setdefault("KERAS_BACKEND", "jax")  # KerasHub's backend; must be set before keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bertjax import run_config, sharding, task, train  # noqa: E402
from configs import base as base_config  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
VOCAB = 30522  # BERT's uncased WordPiece vocab
PREDICTIONS = {128: 20, 512: 80}  # max_predictions_per_seq of the BERT recipes
BATCH_AT_128 = {"tiny": 64, "mini": 32, "small": 16, "medium": 8, "base": 8, "large": 4}


def default_batch(size: str, seq: int) -> int:
    """Batch size: about 4k tokens for the small sizes, 1k for base, at any seq."""
    return max(1, BATCH_AT_128[size] * 128 // seq)


def synthetic_batch(batch: int, seq: int, predictions: int, vocab: int, seed: int = 0) -> dict:
    """A host batch of the pretraining table's shapes and dtypes (docs/design.md)."""
    rng = np.random.default_rng(seed)
    positions = np.sort(np.stack([rng.choice(np.arange(1, seq), predictions, replace=False)
                                  for _ in range(batch)]), axis=1).astype(np.int32)
    segment_ids = np.zeros((batch, seq), np.int32)
    segment_ids[:, seq // 2:] = 1
    return {"input_ids": rng.integers(1000, vocab, (batch, seq), dtype=np.int32),
            "input_mask": np.ones((batch, seq), np.int32),
            "segment_ids": segment_ids,
            "masked_lm_positions": positions,
            "masked_lm_ids": rng.integers(1000, vocab, (batch, predictions), dtype=np.int32),
            "masked_lm_weights": np.ones((batch, predictions), np.float32),
            "next_sentence_labels": rng.integers(0, 2, (batch,), dtype=np.int32)}


def parse_overrides(items) -> dict:
    """["model.remat=True", ...] -> {"model.remat": True, ...} (values as Python literals, else strings)."""
    overrides = {}
    for item in items or ():
        key, _, text = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return overrides


class BertjaxRunner:
    """The train step main.py runs (configs/base.py + overrides), compiled once."""

    framework = "bertjax"

    def __init__(self, size: str, seq: int, dtype: str, batch: int, overrides: dict | None = None,
                 label: str = "bertjax"):
        self.label = label
        config = base_config.get_config()
        config.model.size = size
        config.model.vocab_size = VOCAB
        config.data.max_seq_length = seq
        config.data.max_predictions_per_seq = PREDICTIONS.get(seq, round(0.15 * seq))
        config.train.batch_size = batch
        config.dtype = dtype
        for key, value in (overrides or {}).items():
            section, field = key.split(".")
            config[section][field] = value
        run_config.validate(config, jax.device_count(), jax.process_count())
        self.config = config
        self.bert_config = run_config.bert_config(config, VOCAB)
        self.mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp)
        self.host_batch = synthetic_batch(batch, seq, config.data.max_predictions_per_seq, VOCAB)
        self.tokens_per_step = batch * seq
        with jax.set_mesh(self.mesh):
            self.trainer = train.Trainer(config, self.bert_config, self.mesh, task.pretraining_objective(config))
            self.state = self.trainer.initial_state()
            self.batch = self.trainer.global_batch(self.host_batch)
            start = time.perf_counter()
            self.compiled = self.trainer.jit_train_step.lower(self.state, self.batch).compile()
            self.compile_seconds = time.perf_counter() - start
        self.flops_per_step = self.trainer.objective.flops_per_example(self.bert_config, seq) * batch
        cost = self.compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        self.xla_flops_per_step = float(cost.get("flops", float("nan"))) if cost else float("nan")

    def step(self):
        self.state, metrics = self.compiled(self.state, self.batch)
        jax.block_until_ready((self.state, metrics))


class PeakRunner:
    """A jitted square jnp.dot in `dtype` accumulating in float32, `repeats` per step: the machine's matmul FLOP/s
    (for bfloat16 the bf16 x bf16 -> float32 form, which XLA:CPU runs about 2x faster than a bfloat16 result)."""

    framework = "peak"

    def __init__(self, dtype: str, size: int, repeats: int = 3):
        self.label = f"jnp.dot {size} {dtype}"
        keys = jax.random.split(jax.random.key(0))
        self.a, self.b = (jax.random.normal(k, (size, size), jnp.float32).astype(dtype) for k in keys)
        self.dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
        self.repeats = repeats
        self.flops_per_step = 2.0 * size**3 * repeats
        self.dot(self.a, self.b).block_until_ready()

    def step(self):
        for _ in range(self.repeats):
            self.dot(self.a, self.b).block_until_ready()


def interleave(runners: list, warmup: int, steps: int, log) -> dict:
    """Run warmup + steps rounds of one step per runner, in order; returns each label's timed step seconds."""
    times = defaultdict(list)
    for round_index in range(warmup + steps):
        last = {}
        for runner in runners:
            start = time.perf_counter()
            runner.step()
            elapsed = last[runner] = time.perf_counter() - start
            if round_index >= warmup:
                times[runner.label].append(elapsed)
        log(f"  round {round_index + 1}/{warmup + steps}" + (" (warm-up)" if round_index < warmup else "") + ": "
            + ", ".join(f"{runner.label} {1000 * seconds:.0f} ms" for runner, seconds in last.items()))
    return times


def paired_ratio(slow: list, fast: list) -> float:
    """Median over rounds of slow[i] / fast[i]: the interleaved steps of one round saw the same machine load."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def machine_info() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16",
              "amx_int8")
    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "keras", "keras-hub"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": fields.get("Model name", platform.processor()).strip(), "cores": os.cpu_count(),
            "cpu_flags": {flag: flag in flags for flag in wanted}, "python": platform.python_version(),
            "versions": versions, "jax_devices": str(jax.devices()),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_average_start": os.getloadavg()}


def torch_threads() -> int | None:
    try:
        import torch  # noqa: PLC0415  (optional)
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count())
    return torch.get_num_threads()
