"""The machine a bench script ran on, for its results: Python, cores, platform, CPU model and flags, versions."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")


def usable_cores() -> int:
    """The cores this process may run on (its affinity: `taskset -c 1 python ...` gives 1)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe(packages: tuple[str, ...]) -> dict:
    """{python, cores, cores_used, platform, cpu, cpu_flags, versions: {package: version or None}}; cores_used is
    this process's CPU affinity (fewer than cores under `taskset`)."""
    info = {"python": platform.python_version(), "cores": os.cpu_count(), "cores_used": usable_cores(),
            "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        info["cpu_flags"] = [f for f in CPU_FLAGS if flags and f in flags.group(1).split()]
    except OSError:
        info["cpu"] = platform.processor()
    versions = {}
    for name in packages:
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    info["versions"] = versions
    return info
