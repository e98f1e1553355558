"""--profile: a jax.profiler trace of the compiled bertjax step; thunk thread time by op, kind and model part."""
from __future__ import annotations

import glob
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict

import jax

from .common import BertjaxRunner, default_batch, parse_overrides


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
    (("cls/predictions", "log_softmax", "take_along_axis", "argmax", "_fused_nll_and_correct", "softmax_cross_entropy"),
     "MLM head + loss"),
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
