"""time_to_quality's bertjax runs (main.py in a subprocess): calibration, the original and budget recipes, the
ablations' generated configs, NSMC fine-tuning."""
from __future__ import annotations

import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ttq.tables import (BATCH_SIZE, BUDGET_CONFIG, DONE_LINE, ENV, EVAL_BATCH_SIZE, EVAL_LINE, FINETUNE, NUM_STEPS,
                        ORIGINAL_CONFIG, REPO, SIZES, TIME_BUDGET, WARMUP_FRACTION, WARMUP_STEPS)
from ttq.records import configs_digest, flag_value, load_average, load_record, parse_metrics, run_key, save_record



def common_overrides(data: dict, size: str, eval_batches: int) -> dict:
    seq = SIZES[size]["seq"]
    return {"data.dir": data["datasets"][seq]["dir"], "data.vocab_file": data["vocab_file"], "model.size": size,
            "data.max_seq_length": seq, "data.max_predictions_per_seq": SIZES[size]["max_predictions"],
            "eval.batch_size": EVAL_BATCH_SIZE, "eval.num_batches": eval_batches,
            "checkpoint.every_steps": 10**9, "log.tensorboard": False}


def config_file(base: str, unset: list[str], args) -> str:
    """`base`, or a generated config file that loads it and unsets fields (--config flags cannot pass None)."""
    if not unset:
        return base
    module = Path(base).stem
    name = f"{module}__unset_" + "__".join(f.replace(".", "_") for f in sorted(unset))
    path = args.workdir / "configs" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"    config.{field} = None\n" for field in sorted(unset))
    path.write_text(f'"""Made by bench/time_to_quality.py: {base} with {", ".join(sorted(unset))} unset."""\n'
                    f"from configs import {module}\n\n\ndef get_config():\n    config = {module}.get_config()\n"
                    f"{body}    return config\n")
    return str(path)


def bertjax_command(config: str, workdir: Path, overrides: dict, args) -> list[str]:
    unset = [k for k, v in overrides.items() if v is None]
    command = [sys.executable, "main.py", f"--config={config_file(config, unset, args)}", f"--workdir={workdir}"]
    command += [f"--config.{k}={flag_value(v)}" for k, v in overrides.items() if v is not None]
    return command


def reusable(name: str, key: str, args) -> dict | None:
    """The record of a finished run with this key, if there is one."""
    path = args.workdir / "records" / f"{name}.json"
    record = load_record(path, key)
    if record is not None:
        print(f"[{name}] reusing the finished run ({path})", flush=True)
    return record


def run_logged(name: str, command: list[str], workdir: Path, log_name: str | None = None):
    """Run `command` in a fresh `workdir` with its output in <workdir>/../<name>.log; (log, its text, wall seconds,
    load average before). A failed run stops the bench with the log's end."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    log = workdir.parent / f"{log_name or name}.log"
    print(f"[{name}] {shlex.join(command)}", flush=True)
    load_before = load_average()
    start = time.perf_counter()
    with open(log, "w") as f:
        result = subprocess.run(command, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    text = log.read_text()
    if result.returncode:
        raise SystemExit(f"[{name}] failed (exit {result.returncode}); {log}:\n{text[-4000:]}")
    return log, text, wall, load_before


def run_bertjax(name: str, config: str, overrides: dict, args, meta: dict, key: str | None = None) -> dict:
    """Run main.py (or reuse a finished run with the same key: by default the command and the config files);
    returns the run's record with its eval curve. key="" never reuses."""
    workdir = args.workdir / "runs" / name
    command = bertjax_command(config, workdir, overrides, args)
    record_path = args.workdir / "records" / f"{name}.json"
    key = run_key([command, configs_digest(config)]) if key is None else key
    record = reusable(name, key, args) if key else None
    if record is not None:
        return record
    log, text, wall, load_before = run_logged(name, command, workdir)
    curve = []
    for match in EVAL_LINE.finditer(text):
        metrics = parse_metrics(match.group(2))
        metrics["step"] = int(match.group(1))
        if "train_seconds" not in metrics:
            raise SystemExit(f"[{name}] its eval lines carry no train_seconds (bertjax too old?): {match.group(0)}")
        curve.append(metrics)
    if not curve:
        raise SystemExit(f"[{name}] no eval lines in {log}")
    done = DONE_LINE.search(text)
    record = {"key": key, "name": name, "framework": "bertjax", **meta, "command": shlex.join(command),
              "config_file": command[2].split("=", 1)[1], "curve": curve, "final": curve[-1],
              "final_step": int(done.group(1)) if done else curve[-1]["step"], "wall_seconds": round(wall, 1),
              "load_before": load_before, "load_after": load_average(), "log": str(log),
              "export": str(workdir / "export"), "workdir": str(workdir)}
    print(f"[{name}] step {record['final_step']}, {curve[-1]['train_seconds']:.0f} s training, "
          f"mlm accuracy {curve[-1]['masked_lm_accuracy']:.4f} ({wall:.0f} s wall)", flush=True)
    return save_record(record_path, record)


def calibrate(corpus: str, size: str, data: dict, args, eval_batches: int) -> dict:
    """A short run of the original recipe: steps/s between its two evaluations, and the start-up cost."""
    steps = args.calib_steps or SIZES[size]["calib_steps"]
    steps -= steps % 2
    overrides = {**common_overrides(data, size, 1), "train.batch_size": BATCH_SIZE, NUM_STEPS: steps,
                 WARMUP_STEPS: max(1, round(WARMUP_FRACTION * steps)), "eval.every_steps": steps // 2,
                 "log.every_steps": steps // 2}
    record = run_bertjax(f"{corpus}-{size}-calibration", ORIGINAL_CONFIG, overrides, args,
                         {"corpus": corpus, "size": size, "recipe": "calibration"}, key="")  # always measured anew
    (s1, t1), (s2, t2) = [(p["step"], p["train_seconds"]) for p in record["curve"][:2]]
    rate = (s2 - s1) / (t2 - t1)
    startup = max(0.0, t1 - s1 / rate)
    num_steps = max(10, round(rate * (args.budget_minutes * 60 - startup)))
    return {"steps_per_second": rate, "startup_seconds": startup, "steps": s2, "original_steps": num_steps,
            "load_before": record["load_before"], "name": record["name"]}


def original_key(cell: str, data_dir: str, eval_batches: int, args) -> str:
    """What makes an original-recipe run reusable: not its calibrated step count (measured anew each time)."""
    return run_key({"recipe": "original", "cell": cell, "data": data_dir, "W": args.budget_minutes,
                    "eval_batches": eval_batches, "evals": args.evals, "configs": configs_digest(),
                    "calib_steps": args.calib_steps})


def original_overrides(data: dict, size: str, num_steps: int, eval_batches: int, evals: int) -> dict:
    every = max(1, math.ceil(num_steps / evals))
    return {**common_overrides(data, size, eval_batches), "train.batch_size": BATCH_SIZE, NUM_STEPS: num_steps,
            WARMUP_STEPS: max(1, round(WARMUP_FRACTION * num_steps)), "eval.every_steps": every,
            "log.every_steps": every}


def budget_steps_estimate(original_steps: int) -> int:
    """The budget recipe's steps in W, about: the original's full-batch steps, where the batch-size ramp's first
    steps count as the fraction of a full batch they are (their cost), so the ramp adds its steps minus that."""
    from bertjax import batch_ramp  # noqa: PLC0415

    train = budget_config().train
    if not batch_ramp.enabled(train):
        return original_steps
    ramp = min(int(train.batch_size_ramp_steps), original_steps)
    full_batch_equivalent = sum(batch_ramp.batch_size_at(train, s) for s in range(ramp)) / int(train.batch_size)
    return round(original_steps + ramp - full_batch_equivalent)


def budget_overrides(data: dict, size: str, minutes: float, expected_steps: int, eval_batches: int,
                     evals: int) -> dict:
    """The budget recipe: configs/budget.py's tricks, batch size and schedule scale, the time budget W; evaluations
    spaced by its expected steps in W (`budget_steps_estimate`)."""
    every = max(1, math.ceil(budget_steps_estimate(expected_steps) / evals))
    return {**common_overrides(data, size, eval_batches), TIME_BUDGET: minutes / 60.0, "eval.every_steps": every,
            "log.every_steps": every}


def budget_config():
    """configs/budget.py's config (read, never changed): its schedule scale, and which tricks it switches on."""
    import importlib  # noqa: PLC0415

    return importlib.import_module("configs." + Path(BUDGET_CONFIG).stem).get_config()


def config_field(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config





def run_finetune(name: str, size: str, init: dict, seed: int, args, vocab_file: str) -> dict:
    workdir = args.workdir / "finetune" / name
    seq = SIZES[size]["seq"]
    overrides = {"task": "classification", "data.dir": str(args.nsmc_dir / "finetune"),
                 "data.text_columns": "sentence", "data.label_column": "label", "data.max_seq_length": seq,
                 "data.features_dir": str(args.workdir / "finetune" / f"features-{size}"),
                 "train.batch_size": FINETUNE["batch_size"], "train.num_epochs": args.ft_epochs,
                 "optimizer.learning_rate": FINETUNE["lr"][size], "train.seed": seed, "data.seed": seed,
                 "log.tensorboard": False}
    if args.ft_length_buckets:
        overrides["data.length_buckets"] = args.ft_length_buckets
    if init["from"] is None:  # random init: the same size and vocab, no init_from
        overrides.update({"data.vocab_file": vocab_file, "data.do_lower_case": False, "model.size": size})
    else:
        overrides["train.init_from"] = init["from"]
    command = [sys.executable, "main.py", "--config=configs/finetune_glue.py", f"--workdir={workdir}",
               *[f"--config.{k}={flag_value(v)}" for k, v in overrides.items()]]
    record_path = args.workdir / "records" / f"ft-{name}.json"
    key = run_key([command, init.get("key")])
    record = load_record(record_path, key)
    if record is not None:
        print(f"[ft {name}] reusing the finished run", flush=True)
        return record
    log, text, wall, load_before = run_logged(f"ft {name}", command, workdir, log_name=name)
    evals = [parse_metrics(m.group(2)) | {"step": int(m.group(1))} for m in EVAL_LINE.finditer(text)]
    record = {"key": key, "name": name, "size": size, "init": init["label"], "seed": seed,
              "command": shlex.join(command),
              "evals": evals, "final": evals[-1], "wall_seconds": round(wall, 1),
              "load_before": load_before, "log": str(log)}
    print(f"[ft {name}] dev accuracy {evals[-1].get('accuracy', float('nan')):.4f}", flush=True)
    return save_record(record_path, record)
