"""--ablations: bertjax step variants by config override (ABLATIONS), interleaved, speed vs the default paired."""
from __future__ import annotations

from .common import BertjaxRunner, PeakRunner, default_batch, interleave, paired_ratio
from .grid import summarise

ABLATIONS = {  # name -> config overrides of the bertjax step (--ablations)
    "default": {},
    "no dropout": {"model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0},
    "rng_impl=rbg": {"train.rng_impl": "rbg"},
    "rng_impl=unsafe_rbg": {"train.rng_impl": "unsafe_rbg"},
    "scan_layers": {"model.scan_layers": True},
    "remat (dots_saveable)": {"model.remat": True, "model.remat_policy": "dots_saveable"},
    "vocab_pad_multiple=1": {"model.vocab_pad_multiple": 1},
    "dropout_bits=16": {"model.dropout_bits": 16},
    "dropout_bits=8": {"model.dropout_bits": 8},
}


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
