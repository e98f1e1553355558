"""The comparison (default mode): bertjax, HF and KerasHub interleaved over sizes x seqs x dtypes; FLOPs and MFU."""
from __future__ import annotations

import datetime
import json
import os
import statistics
import time

from .common import PREDICTIONS, BertjaxRunner, PeakRunner, default_batch, interleave
from .peers import HfRunner, KerasHubRunner


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


def format_row_line(row: dict) -> str:
    parts = [f"{label} {entry['tokens_per_sec']:,.0f} tok/s ({1000 * entry['step_seconds']:.0f} ms"
             + (f", MFU {100 * entry['mfu']:.0f}%" if "mfu" in entry else "") + ")"
             for label, entry in row["frameworks"].items()]
    return "; ".join(parts) + (f"; peak {row['peak_max_flops'] / 1e9:.0f} GFLOP/s "
                               f"(median round {row['peak_flops'] / 1e9:.0f})")
