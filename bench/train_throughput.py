"""Benchmark: tokens/s, step time and MFU of bertjax's real train step, beside transformers and KerasHub.

    python bench/train_throughput.py                       # mini + base, seq 128, float32 (~10 min, 2 idle cores)
    python bench/train_throughput.py --full                # tiny/mini/small/base x seq 128/512 x float32/bfloat16
    python bench/train_throughput.py --sizes base --seqs 512 --dtypes bfloat16 --steps 3
    python bench/train_throughput.py --ablations           # bertjax variants by config flag, side by side
    python bench/train_throughput.py --breakdown           # forward / forward+backward / optimizer / full step
    python bench/train_throughput.py --profile             # per-op thread time of the base step (jax.profiler)

What runs, for each size/seq/dtype, interleaved round by round (bertjax, HF, KerasHub, peak, bertjax, HF, ...) so
that the machine's load hits all alike; each number is the median of --steps timed steps after --warmup ones:
- bertjax: `bertjax.train.Trainer(config, bert_config, mesh).jit_train_step`, built as `train.py` builds it from
  configs/base.py (bert_adam, clip 1.0, dropout 0.1, vocab padded as configured) with the size, seq, P, batch and
  dtype set, on all JAX devices; lowered and compiled once (`.lower(state, batch).compile()`, the same executable
  `jit_train_step` runs), then called with the state donated as in the loop.
- HF: transformers' `BertForPreTraining` on PyTorch (CPU), train mode; the MLM head runs at the P masked positions
  only, as bertjax's (`model.bert` -> gather -> `model.cls.predictions`, weighted NLL; NSP on the pooled output);
  AdamW (lr 1e-4, wd 0.01, eps 1e-6), clip 1.0, `zero_grad(set_to_none=True)`; bfloat16 = `torch.autocast`.
  `--frameworks ...,hf_allpos` adds HF's own loss (`labels` at all T positions, -100 elsewhere).
- KerasHub: `BertMaskedLM` (no NSP head) on the JAX backend with `model.compile(AdamW, jit_compile=True)` and
  `train_on_batch` (a jitted stateless train step); bfloat16 = the "mixed_bfloat16" dtype policy.
- peak: a jitted `jnp.dot` of two --peak_size square matrices in the run's dtype (3 per round); MFU = formula FLOP/s
  / its best round. Ratios between frameworks are paired: the median over rounds of the step-time ratio in a round.

FLOPs: `objective.flops_per_example` (`bertjax.model.flops_per_example`: 6x the matmul FLOPs of the encoder at all
T positions, of the MLM transform and tied decoder at the P positions (padded vocab), and the pooler) is the
useful work; XLA's `compiled.cost_analysis()["flops"]` of the whole compiled step is printed beside it.
Batches are synthetic (random ids, all tokens real, P distinct sorted masked positions), the same for all three.
Writes bench/results/train_throughput.{md,json} (or --output STEM; `--append` keeps the other rows already there);
--ablations/--breakdown/--profile write STEM_<mode>.json, and every mode re-renders STEM.md from the JSON files.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import glob
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("KERAS_BACKEND", "jax")  # KerasHub's backend; must be set before keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bertjax import run_config, sharding, train  # noqa: E402
from bertjax.model import BertConfig  # noqa: E402
from configs import base as base_config  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
VOCAB = 30522  # BERT's uncased WordPiece vocab
PREDICTIONS = {128: 20, 512: 80}  # max_predictions_per_seq of the BERT recipes
BATCH_AT_128 = {"tiny": 64, "mini": 32, "small": 16, "medium": 8, "base": 8, "large": 4}
ABLATIONS = {  # name -> config overrides of the bertjax step (--ablations)
    "default": {},
    "no dropout": {"model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0},
    "rng_impl=rbg": {"train.rng_impl": "rbg"},
    "rng_impl=unsafe_rbg": {"train.rng_impl": "unsafe_rbg"},
    "scan_layers": {"model.scan_layers": True},
    "remat (dots_saveable)": {"model.remat": True, "model.remat_policy": "dots_saveable"},
    "vocab_pad_multiple=1": {"model.vocab_pad_multiple": 1},
}


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


# ----------------------------------------------------------------------------------------------------------------
# Runners: step() runs one train step to completion.


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
            self.trainer = train.Trainer(config, self.bert_config, self.mesh)
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


class HfRunner:
    """transformers BertForPreTraining on PyTorch; MLM at the masked positions (or at all, `all_positions`)."""

    framework = "hf"

    def __init__(self, size: str, seq: int, dtype: str, batch: int, all_positions: bool = False):
        import torch  # noqa: PLC0415  (optional: only for this comparison)
        import transformers  # noqa: PLC0415
        self.torch = torch
        self.label = "HF (all positions)" if all_positions else "HF"
        self.all_positions = all_positions
        bert = BertConfig.named(size, vocab_size=VOCAB)
        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=bert.hidden_size, num_hidden_layers=bert.num_hidden_layers,
            num_attention_heads=bert.num_attention_heads, intermediate_size=bert.intermediate_size,
            max_position_embeddings=512, hidden_act="gelu", hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1)
        self.model = transformers.BertForPreTraining(config).train()
        self.attention = getattr(self.model.config, "_attn_implementation", "?")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
        host = synthetic_batch(batch, seq, PREDICTIONS.get(seq, round(0.15 * seq)), VOCAB)
        self.t = {name: torch.from_numpy(value).long() if value.dtype == np.int32 else torch.from_numpy(value)
                  for name, value in host.items()}
        labels = torch.full((batch, seq), -100, dtype=torch.long)
        labels.scatter_(1, self.t["masked_lm_positions"], self.t["masked_lm_ids"])
        self.labels_all_positions = labels
        self.autocast = dtype == "bfloat16"
        self.tokens_per_step = batch * seq
        self.hidden = bert.hidden_size

    def _loss(self):
        torch, t = self.torch, self.t
        if self.all_positions:
            return self.model(input_ids=t["input_ids"], attention_mask=t["input_mask"],
                              token_type_ids=t["segment_ids"], labels=self.labels_all_positions,
                              next_sentence_label=t["next_sentence_labels"]).loss
        out = self.model.bert(input_ids=t["input_ids"], attention_mask=t["input_mask"],
                              token_type_ids=t["segment_ids"])
        sequence_output, pooled_output = out[0], out[1]
        index = t["masked_lm_positions"][..., None].expand(-1, -1, self.hidden)
        mlm_logits = self.model.cls.predictions(torch.gather(sequence_output, 1, index)).float()
        nsp_logits = self.model.cls.seq_relationship(pooled_output).float()
        nll = torch.nn.functional.cross_entropy(mlm_logits.reshape(-1, VOCAB), t["masked_lm_ids"].reshape(-1),
                                                reduction="none")
        weights = t["masked_lm_weights"].reshape(-1)
        mlm_loss = (nll * weights).sum() / (weights.sum() + 1e-5)
        return mlm_loss + torch.nn.functional.cross_entropy(nsp_logits, t["next_sentence_labels"])

    def step(self):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self._loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


class KerasHubRunner:
    """keras_hub.models.BertMaskedLM on the JAX backend: compile(AdamW, jit_compile=True) + train_on_batch."""

    framework = "kerashub"

    def __init__(self, size: str, seq: int, dtype: str, batch: int):
        import keras  # noqa: PLC0415  (optional: only for this comparison)
        import keras_hub  # noqa: PLC0415
        self.label = "KerasHub"
        keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
        keras.utils.set_random_seed(0)
        bert = BertConfig.named(size, vocab_size=VOCAB)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB, num_layers=bert.num_hidden_layers, num_heads=bert.num_attention_heads,
            hidden_dim=bert.hidden_size, intermediate_dim=bert.intermediate_size, dropout=0.1,
            max_sequence_length=512)
        self.model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        self.model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[], jit_compile=True)
        keras.config.set_dtype_policy("float32")
        host = synthetic_batch(batch, seq, PREDICTIONS.get(seq, round(0.15 * seq)), VOCAB)
        self.x = {"token_ids": host["input_ids"], "padding_mask": host["input_mask"],
                  "segment_ids": host["segment_ids"], "mask_positions": host["masked_lm_positions"]}
        self.y, self.weights = host["masked_lm_ids"], host["masked_lm_weights"]
        self.tokens_per_step = batch * seq

    def step(self):
        self.model.train_on_batch(self.x, self.y, sample_weight=self.weights)  # returns host floats: synchronous


class PeakRunner:
    """A jitted square jnp.dot in `dtype`, `repeats` per step: the machine's matmul FLOP/s."""

    framework = "peak"

    def __init__(self, dtype: str, size: int, repeats: int = 3):
        self.label = f"jnp.dot {size} {dtype}"
        keys = jax.random.split(jax.random.key(0))
        self.a, self.b = (jax.random.normal(k, (size, size), jnp.float32).astype(dtype) for k in keys)
        self.dot = jax.jit(jnp.dot)
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


# ----------------------------------------------------------------------------------------------------------------
# Machine description


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


# ----------------------------------------------------------------------------------------------------------------
# Modes


def build_runners(size, seq, dtype, batch, frameworks, log) -> tuple[list, dict]:
    """The comparison's runners (bertjax first); skipped frameworks -> reasons."""
    runners, skipped = [], {}
    factories = {"bertjax": lambda: BertjaxRunner(size, seq, dtype, batch),
                 "hf": lambda: HfRunner(size, seq, dtype, batch),
                 "hf_allpos": lambda: HfRunner(size, seq, dtype, batch, all_positions=True),
                 "kerashub": lambda: KerasHubRunner(size, seq, dtype, batch)}
    for name in frameworks:
        start = time.perf_counter()
        try:
            runner = factories[name]()
        except ImportError as e:
            skipped[name] = f"skipped: {e.name or e} is not installed"
            log(f"  {name}: {skipped[name]}")
            continue
        runners.append(runner)
        log(f"  {runner.label}: built in {time.perf_counter() - start:.1f}s")
    return runners, skipped


def run_grid(args, log, save) -> dict:
    rows = []
    if args.append and os.path.exists(args.output + ".json"):  # keep the rows of earlier runs this one does not redo
        wanted = {(size, seq, dtype) for size in args.sizes for seq in args.seqs for dtype in args.dtypes}
        rows = [row for row in json.load(open(args.output + ".json"))["result"]["rows"]
                if (row["size"], row["seq"], row["dtype"]) not in wanted]
    for size in args.sizes:
        for seq in args.seqs:
            for dtype in args.dtypes:
                batch = args.batch or default_batch(size, seq)
                log(f"{size} seq {seq} {dtype} batch {batch}:")
                runners, skipped = build_runners(size, seq, dtype, batch, args.frameworks, log)
                peak = PeakRunner(dtype, args.peak_size)
                times = interleave(runners + [peak], args.warmup, args.steps, log)
                rows.append(summarise(size, seq, dtype, batch, runners, peak, times, skipped))
                log("  " + format_row_line(rows[-1]))
                save({"rows": rows})  # after every row: an interrupted grid keeps what it measured
                del runners, peak
    return {"rows": rows}


def summarise(size, seq, dtype, batch, runners, peak, times, skipped) -> dict:
    peak_seconds = statistics.median(times[peak.label])
    peak_flops = peak.flops_per_step / peak_seconds
    row = {"size": size, "seq": seq, "dtype": dtype, "batch": batch,
           "predictions": PREDICTIONS.get(seq, round(0.15 * seq)), "peak_flops": peak_flops,
           "peak_max_flops": peak.flops_per_step / min(times[peak.label]), "frameworks": {}, "skipped": skipped,
           "load_average": os.getloadavg()[0],
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "timed_steps": len(times[peak.label])}
    formula = None
    for runner in runners:
        seconds = statistics.median(times[runner.label])
        entry = {"step_seconds": seconds, "step_seconds_all": times[runner.label],
                 "tokens_per_sec": runner.tokens_per_step / seconds}
        if isinstance(runner, BertjaxRunner):
            formula = runner.flops_per_step
            entry.update(formula_flops_per_step=formula, xla_flops_per_step=runner.xla_flops_per_step,
                         compile_seconds=runner.compile_seconds)
        if formula:  # against the best peak round: a loaded machine slows a short matmul burst most
            entry["mfu"] = formula / seconds / row["peak_max_flops"]
            entry["mfu_best_step"] = formula / min(times[runner.label]) / row["peak_max_flops"]
        if isinstance(runner, HfRunner):
            entry["attention"] = runner.attention
        row["frameworks"][runner.label] = entry
    return row


def paired_ratio(slow: list, fast: list) -> float:
    """Median over rounds of slow[i] / fast[i]: the interleaved steps of one round saw the same machine load."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def format_row_line(row: dict) -> str:
    parts = [f"{label} {entry['tokens_per_sec']:,.0f} tok/s ({1000 * entry['step_seconds']:.0f} ms"
             + (f", MFU {100 * entry['mfu']:.0f}%" if "mfu" in entry else "") + ")"
             for label, entry in row["frameworks"].items()]
    return "; ".join(parts) + (f"; peak {row['peak_max_flops'] / 1e9:.0f} GFLOP/s "
                               f"(median round {row['peak_flops'] / 1e9:.0f})")


def run_ablations(args, log, save=None) -> dict:
    size, seq, dtype = args.sizes[0], args.seqs[0], args.dtypes[0]
    batch = args.batch or default_batch(size, seq)
    log(f"ablations: bertjax {size} seq {seq} {dtype} batch {batch}")
    runners = []
    for name, overrides in ABLATIONS.items():
        if args.only and name not in args.only and name != "default":
            continue
        runners.append(BertjaxRunner(size, seq, dtype, batch, overrides, label=name))
        log(f"  {name}: compiled in {runners[-1].compile_seconds:.1f}s")
    peak = PeakRunner(dtype, args.peak_size)
    times = interleave(runners + [peak], args.warmup, args.steps, log)
    row = summarise(size, seq, dtype, batch, runners, peak, times, {})
    default_seconds = row["frameworks"]["default"]["step_seconds_all"]
    for label, entry in row["frameworks"].items():
        entry["speedup_vs_default"] = paired_ratio(default_seconds, entry["step_seconds_all"])
        entry["overrides"] = ABLATIONS[label]
        log(f"  {label}: {1000 * entry['step_seconds']:.0f} ms, x{entry['speedup_vs_default']:.2f}")
    return {"rows": [row]}


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


def categorise(name: str, hlo_text: str) -> str:
    """Coarse kind of one executed thunk, from its name and the HLO of the fusion it runs."""
    if "rng" in name or "threefry" in name or "random" in name:
        return "random bits (dropout)"
    body = _fusion_bodies(hlo_text).get(name)
    text = body if body is not None else name
    if " dot(" in text or "ynn" in name or name.startswith("dot") or "convolution" in text:
        return "matmul (dot / dot fusion)"
    if "shift-right-logical" in text or "xor(" in text and "shift-left" in text:
        return "random bits (dropout)"
    if "reduce(" in text or "reduce-window" in text:
        return "reductions (softmax, LayerNorm, loss, grad norm)"
    if "copy" in name or "transpose" in name or "bitcast" in name or "concatenate" in name or "slice" in name:
        return "copies / transposes / slices"
    return "other elementwise fusions"


_BODIES: dict = {}


def _fusion_bodies(hlo_text: str) -> dict:
    """instruction name -> the text of the computation it calls (fusions), or its own line."""
    if _BODIES.get("key") is hlo_text:
        return _BODIES["map"]
    computations = {}
    for block in re.split(r"\n(?=\S)", hlo_text):
        match = re.match(r"(?:ENTRY )?%?([\w.\-]+)", block)
        if match:
            computations[match.group(1)] = block
    mapping = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?calls=%?([\w.\-]+)", line)
        if match:
            mapping[match.group(1)] = computations.get(match.group(2), line)
        else:
            match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
            if match:
                mapping.setdefault(match.group(1), match.group(2))
    _BODIES.update(key=hlo_text, map=mapping)
    return mapping


PARTS = (  # (keywords in an op's metadata op_name, the part of the model it belongs to), first match wins
    (("Dropout", "random_bits", "threefry", "rbg", "bernoulli", "random_wrap", "random_unwrap"), "dropout"),
    (("cls/predictions", "log_softmax", "take_along_axis", "argmax"), "MLM head + loss"),
    (("LayerNorm",), "LayerNorm"),
    (("self/query", "self/key", "self/value"), "Q/K/V projections"),
    (("attention/self",), "attention scores, softmax, context"),
    (("attention/output/dense",), "attention output projection"),
    (("intermediate",), "FFN in (dense + GELU)"),
    (("output/dense",), "FFN out"),
    (("embeddings",), "embeddings"),
    (("pooler", "seq_relationship"), "pooler + NSP"),
)


def op_part(op_name: str) -> tuple[str, str]:
    """(phase, part) of an HLO op from its metadata op_name (phase: forward, backward, optimizer and other)."""
    phase = ("backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name
             else "optimizer, metrics, other")
    for keywords, part in PARTS:
        if any(keyword in op_name for keyword in keywords):
            return phase, part
    return phase, "other"


def op_names(hlo_text: str) -> dict:
    """instruction name -> its metadata op_name."""
    names = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"", line)
        if match:
            names.setdefault(match.group(1), match.group(2))
    return names


def run_profile(args, log, save=None) -> dict:
    """jax.profiler trace of a few steps; thunk thread-time summed by name and by kind."""
    size, seq, dtype = args.sizes[0], args.seqs[0], args.dtypes[0]
    batch = args.batch or default_batch(size, seq)
    runner = BertjaxRunner(size, seq, dtype, batch, parse_overrides(args.override))
    for _ in range(args.warmup):
        runner.step()
    trace_dir = tempfile.mkdtemp(prefix="bertjax_profile_")
    jax.profiler.start_trace(trace_dir)
    wall = []
    for _ in range(args.steps):
        start = time.perf_counter()
        runner.step()
        wall.append(time.perf_counter() - start)
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    profile = jax.profiler.ProfileData.from_file(path)
    by_name = defaultdict(float)
    skip = ("ThreadpoolListener", "ThunkExecutor", "end: ")
    for plane in profile.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue
            for event in line.events:
                if not event.name.startswith(skip):
                    by_name[event.name] += event.duration_ns / 1e9 / args.steps
    hlo_text = runner.compiled.as_text()
    by_kind = defaultdict(float)
    for name, seconds in by_name.items():
        by_kind[categorise(name, hlo_text)] += seconds
    total = sum(by_name.values())
    top = sorted(by_name.items(), key=lambda item: -item[1])[:args.top]
    metadata = op_names(hlo_text)
    by_part = defaultdict(float)
    for name, seconds in by_name.items():
        phase, part = op_part(metadata.get(name, ""))
        matmul = categorise(name, hlo_text).startswith("matmul")
        by_part[f"{part} | {phase} | {'matmul' if matmul else 'other'}"] += seconds
    log(f"profile {size} seq {seq} {dtype} batch {batch}: wall {1000 * statistics.median(wall):.0f} ms/step, "
        f"thunk thread-time {1000 * total:.0f} ms/step")
    for kind, seconds in sorted(by_kind.items(), key=lambda item: -item[1]):
        log(f"  {kind}: {1000 * seconds:.0f} ms ({100 * seconds / total:.1f}%)")
    for name, seconds in top:
        log(f"    {name}: {1000 * seconds:.1f} ms")
    for key, seconds in sorted(by_part.items(), key=lambda item: -item[1]):
        log(f"  {key}: {1000 * seconds:.0f} ms ({100 * seconds / total:.1f}%)")
    return {"size": size, "seq": seq, "dtype": dtype, "batch": batch, "overrides": args.override or [],
            "wall_seconds": wall, "thread_seconds_per_step": total, "by_kind": dict(by_kind),
            "top_ops": top, "by_part": dict(by_part),
            "by_name": {name: seconds for name, seconds in by_name.items() if seconds >= 0.005},  # ops >= 5 ms "trace_dir": trace_dir,
            "load_average": os.getloadavg()[0]}


# ----------------------------------------------------------------------------------------------------------------
# Output


def write_outputs(stem: str, mode: str, info: dict, args, result: dict) -> None:
    info = {**info, "load_average_end": os.getloadavg(), "torch_threads": args.torch_threads,
            "steps": args.steps, "warmup": args.warmup,
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "mode": mode}
    with open(stem + ".json", "w") as f:
        json.dump({"machine": info, "result": result}, f, indent=2, default=str)
    markdown_stem = args.output
    grid = json.load(open(markdown_stem + ".json")) if os.path.exists(markdown_stem + ".json") else None
    if grid and grid["machine"].get("mode") == "grid":
        with open(markdown_stem + ".md", "w") as f:
            f.write(grid_markdown(grid["machine"], grid["result"]) + extra_markdown(markdown_stem))
    print(f"wrote {stem}.json and {markdown_stem}.md")


def header_markdown(info: dict) -> str:
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in info["cpu_flags"].items())
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in info["versions"].items())
    load = lambda values: " / ".join(f"{v:.2f}" for v in values)  # noqa: E731
    return (f"Date: {info['date']}. Command: `{info['command']}`.\n\n"
            f"Machine: {info['cpu']}, {info['cores']} cores ({info['jax_devices']}); flags: {flags}.\n"
            f"Versions: Python {info['python']}, {versions}. torch threads: {info['torch_threads']}; "
            f"XLA_FLAGS: `{info['xla_flags'] or '(none)'}`.\n"
            f"Load average (1/5/15 min) at start {load(info['load_average_start'])}, at end "
            f"{load(info['load_average_end'])} (2 cores shared with other jobs: absolute numbers are noisy, the "
            "interleaved ratios less so).\n")


def grid_markdown(info: dict, result: dict) -> str:
    lines = ["# Train step throughput: bertjax vs transformers (PyTorch) vs KerasHub (JAX)", "",
             header_markdown(info), "",
             "Median of the timed steps (after 1-2 warm-up steps), interleaved step by step "
             "(bertjax, HF, KerasHub, peak, ...). tokens/s = batch x seq / median step time; the ratios are paired: "
             "the median over rounds of (other's step time / bertjax's step time) in the same round. MFU = formula "
             "FLOP/s / `jnp.dot` peak of the same dtype, the best of the same rounds (a short matmul burst suffers most "
             "from other jobs); in brackets the MFU of the best step. HF: MLM head at the P masked positions "
             "(as bertjax). KerasHub: BertMaskedLM, MLM only (no NSP head, no pooler).", "",
             "| size | seq | dtype | batch | bertjax tok/s | HF tok/s | KerasHub tok/s | bertjax/HF | bertjax/Keras "
             "| bertjax ms/step | jnp.dot peak GFLOP/s best (median) | bertjax MFU median (best) step "
             "| formula GFLOP/step | XLA GFLOP/step | XLA/formula | load | timed steps | measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = list(BATCH_AT_128)
    for row in sorted(result["rows"], key=lambda r: (r["seq"], order.index(r["size"]), r["dtype"] != "float32")):
        fw = row["frameworks"]
        bj, hf, kh = fw.get("bertjax"), fw.get("HF"), fw.get("KerasHub")
        tok = lambda e: f"{e['tokens_per_sec']:,.0f}" if e else "—"  # noqa: E731
        ratio = lambda e: (f"{paired_ratio(e['step_seconds_all'], bj['step_seconds_all']):.2f}x"  # noqa: E731
                           if e and bj else "—")
        lines.append(
            f"| {row['size']} | {row['seq']} | {row['dtype']} | {row['batch']} | {tok(bj)} | {tok(hf)} | {tok(kh)} "
            f"| {ratio(hf)} | {ratio(kh)} | {1000 * bj['step_seconds']:.0f} "
            f"| {row['peak_max_flops'] / 1e9:.0f} ({row['peak_flops'] / 1e9:.0f}) "
            f"| {100 * bj['mfu']:.0f}% ({100 * bj.get('mfu_best_step', bj['mfu']):.0f}%) "
            f"| {bj['formula_flops_per_step'] / 1e9:.1f} "
            f"| {bj['xla_flops_per_step'] / 1e9:.1f} | {bj['xla_flops_per_step'] / bj['formula_flops_per_step']:.2f} "
            f"| {row['load_average']:.1f} | {row.get('timed_steps', '?')} | {row.get('date', info['date'])} |")
    skipped = {name: why for row in result["rows"] for name, why in row["skipped"].items()}
    for name, why in skipped.items():
        lines.append(f"\n{name}: {why}")
    return "\n".join(lines) + "\n"


def extra_markdown(stem: str) -> str:
    """Tables of the --ablations, --breakdown and --profile results saved beside the grid's (if any)."""
    parts = []
    loaded = {mode: json.load(open(f"{stem}_{mode}.json")) for mode in ("ablations", "breakdown", "profile")
              if os.path.exists(f"{stem}_{mode}.json")}
    if "ablations" in loaded:
        info, row = loaded["ablations"]["machine"], loaded["ablations"]["result"]["rows"][0]
        parts += [f"\n## bertjax step variants (config flags), {row['size']} seq {row['seq']} {row['dtype']} batch "
                  f"{row['batch']}\n", f"`{info['command']}` ({info['date']}; load {row['load_average']:.1f}; "
                  f"XLA_FLAGS `{info['xla_flags'] or '(none)'}`). Median of {info['steps']} interleaved steps after "
                  f"{info['warmup']}; jnp.dot peak {row['peak_max_flops'] / 1e9:.0f} GFLOP/s (best round). Speed vs "
                  "default = median over rounds of (default step time / variant step time) in the same round.\n",
                  "| variant | overrides | ms/step | tokens/s | speed vs default (paired) | MFU | XLA GFLOP/step |",
                  "|---|---|---|---|---|---|---|"]
        for label, entry in row["frameworks"].items():
            overrides = " ".join(f"`{k}={v}`" for k, v in entry["overrides"].items()) or "—"
            parts.append(f"| {label} | {overrides} | {1000 * entry['step_seconds']:.0f} | "
                         f"{entry['tokens_per_sec']:,.0f} | {entry['speedup_vs_default']:.2f}x | "
                         f"{100 * entry['mfu']:.0f}% | {entry['xla_flops_per_step'] / 1e9:.1f} |")
    if "breakdown" in loaded:
        info, result = loaded["breakdown"]["machine"], loaded["breakdown"]["result"]
        full = result["median_seconds"]["full step"]
        parts += [f"\n## Parts of the step, {result['size']} seq {result['seq']} {result['dtype']} batch "
                  f"{result['batch']}\n", f"`{info['command']}` ({info['date']}; load {result['load_average']:.1f}). "
                  "Each part is its own jitted function on the same params and batch, interleaved with the full "
                  "step.\n", "| part | ms | share of the full step |", "|---|---|---|"]
        for label, seconds in result["median_seconds"].items():
            parts.append(f"| {label} | {1000 * seconds:.0f} | {100 * seconds / full:.0f}% |")
    if "profile" in loaded:
        info, result = loaded["profile"]["machine"], loaded["profile"]["result"]
        total = result["thread_seconds_per_step"]
        parts += [f"\n## Per-op profile, {result['size']} seq {result['seq']} {result['dtype']} batch "
                  f"{result['batch']}\n", f"`{info['command']}` ({info['date']}; load {result['load_average']:.1f}). "
                  "jax.profiler trace of the compiled step; the XLA CPU runtime's per-thunk events summed over "
                  f"threads ({1000 * total:.0f} ms thread time per step, wall "
                  f"{1000 * statistics.median(result['wall_seconds']):.0f} ms), grouped by what the fused HLO "
                  "computation contains.\n", "| kind | ms thread time / step | share |", "|---|---|---|"]
        for kind, seconds in sorted(result["by_kind"].items(), key=lambda item: -item[1]):
            parts.append(f"| {kind} | {1000 * seconds:.0f} | {100 * seconds / total:.1f}% |")
        columns = [(phase, kind) for phase in ("forward", "backward", "optimizer, metrics, other")
                   for kind in ("matmul", "other")]
        table = defaultdict(lambda: defaultdict(float))
        for key, seconds in result.get("by_part", {}).items():
            part, phase, kind = (field.strip() for field in key.split("|"))
            table[part][(phase, kind)] += seconds
        if table:
            parts += ["", "By part of the model (from each op's metadata: its module path, and jvp/transpose for "
                      "forward/backward; ops outside both are the optimizer update, grad norm and metrics), % of "
                      "the step's thread time:", "",
                      "| part | total | " + " | ".join(f"{phase} {kind}" for phase, kind in columns) + " |",
                      "|---|---|" + "---|" * len(columns)]
            for part, cells in sorted(table.items(), key=lambda item: -sum(item[1].values())):
                parts.append(f"| {part} | {100 * sum(cells.values()) / total:.1f}% | " + " | ".join(
                    f"{100 * cells[column] / total:.1f}%" if cells[column] else "—" for column in columns) + " |")
            parts.append("| all | 100% | " + " | ".join(
                f"{100 * sum(cells[column] for cells in table.values()) / total:.1f}%" for column in columns) + " |")
        parts += ["", "| top ops (thunk name) | ms / step | share |", "|---|---|---|"]
        for name, seconds in result["top_ops"][:8]:
            parts.append(f"| `{name}` | {1000 * seconds:.1f} | {100 * seconds / total:.1f}% |")
    return "\n".join(parts) + ("\n" if parts else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="mini,base", type=lambda s: s.split(","))
    parser.add_argument("--seqs", default="128", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--dtypes", default="float32", type=lambda s: s.split(","))
    parser.add_argument("--full", action="store_true", help="tiny,mini,small,base x 128,512 x float32,bfloat16")
    parser.add_argument("--batch", type=int, default=0, help="0: ~4k tokens per step (1k for base)")
    parser.add_argument("--frameworks", default="bertjax,hf,kerashub", type=lambda s: s.split(","))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak_size", type=int, default=2048)
    parser.add_argument("--ablations", action="store_true", help="bertjax config variants (first size/seq/dtype)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None, help="ablation names to run")
    parser.add_argument("--breakdown", action="store_true", help="forward/backward/optimizer timings")
    parser.add_argument("--profile", action="store_true", help="per-op thread time from a jax.profiler trace")
    parser.add_argument("--override", action="append", help="(--profile) config override, e.g. train.rng_impl=rbg")
    parser.add_argument("--append", action="store_true", help="(grid) keep the other rows of the existing results")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", default=os.path.join(RESULTS, "train_throughput"))
    args = parser.parse_args(argv)
    if args.full:
        args.sizes, args.seqs, args.dtypes = ["tiny", "mini", "small", "base"], [128, 512], ["float32", "bfloat16"]
    args.torch_threads = torch_threads()
    info = machine_info()

    def log(message):
        print(message, flush=True)

    log(f"{info['cpu']}, {info['cores']} cores, load {info['load_average_start']}, torch threads {args.torch_threads}")
    mode = "ablations" if args.ablations else "breakdown" if args.breakdown else "profile" if args.profile else "grid"
    stem = args.output if mode == "grid" else f"{args.output}_{mode}"
    result = {"ablations": run_ablations, "breakdown": run_breakdown, "profile": run_profile,
              "grid": run_grid}[mode](args, log, lambda partial: write_outputs(stem, mode, info, args, partial))
    write_outputs(stem, mode, info, args, result)


if __name__ == "__main__":
    main()
