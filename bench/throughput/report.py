"""The outputs: STEM.json (grid) or STEM_<mode>.json, and STEM.md re-rendered from all of them."""
from __future__ import annotations

import json
import os
import statistics
import sys
from collections import defaultdict

from .common import BATCH_AT_128, paired_ratio


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
             "FLOP/s / `jnp.dot` peak of the same dtype (accumulating in float32), the best of the same rounds (a short matmul burst suffers most "
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
