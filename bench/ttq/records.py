"""time_to_quality's records: run keys, the finished runs kept in <workdir>/records/, metric lines, the machine."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import machine_info  # bench/
from ttq.tables import ORIGINAL_CONFIG, REPO



def flag_value(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def run_key(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def configs_digest(config: str = ORIGINAL_CONFIG) -> str:
    """The contents of the config files a run loads (base, demo, and budget for the budget recipe's runs), so that
    a run is redone when one of them changes."""
    names = ("base", "demo", "budget") if "budget" in Path(config).name else ("base", "demo")
    files = [REPO / "configs" / f"{name}.py" for name in names]
    return run_key({f.name: f.read_text() for f in files if f.is_file()})


def load_record(path: Path, key: str) -> dict | None:
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("key") == key:
            return record
    return None


def save_record(path: Path, record: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return record


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parse_metrics(text: str) -> dict:
    """'loss 6.4 masked_lm_accuracy 0.15 ... (constant-prediction mlm baseline 0.0597)' -> {name: value}."""
    metrics = {}
    baseline = re.search(r"\(constant-prediction mlm baseline ([\d.eE+-]+)\)", text)
    if baseline:
        metrics["masked_lm_accuracy_baseline"] = float(baseline.group(1))
        text = text[:baseline.start()]
    tokens = text.split()
    for name, value in zip(tokens[::2], tokens[1::2]):
        try:
            metrics[name] = float(value)
        except ValueError:
            pass
    return metrics


def machine() -> dict:
    info = machine_info.describe(("jax", "jaxlib", "flax", "optax", "grain", "torch", "transformers", "numpy"))
    try:
        info["bertjax_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "bertjax", "configs"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        info["bertjax_uncommitted_changes"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        pass
    return info
