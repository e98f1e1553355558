"""Start-up: the platform JAX uses, and multi-host runs (JAX's multi-controller runtime) that fail loudly and agree.

    distributed.use_cpu_without_tpu()                                   # before JAX's first backend use

    distributed.initialize(coordinator_address, num_processes, process_id, enabled=None, timeout_s=300)
    payloads = distributed.exchange("run_check", {"ok": True, ...})     # every process's payload, by process id

`use_cpu_without_tpu` keeps JAX off libtpu on a machine with libtpu installed but no TPU (see its docstring).

`initialize` calls `jax.distributed.initialize()` with explicit flags, or with JAX's cluster detection (TPU pod
slices, Slurm, Open MPI, Kubernetes). A plain machine stays a quiet single process; when flags are given or the
environment says there are several hosts, every failure is a BertjaxError naming the cause and the fix, never a
hang or a C++ abort: JAX aborts the process when the coordination service cannot be reached in time, so a watchdog
thread prints the one-line error and exits with status 2 just before JAX's own deadline.

`exchange` goes through the coordination service's key-value store (no device collective, with a timeout), so
hosts can compare what they checked before the first collective and all fail together with the same message.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from bertjax.errors import BertjaxError

_FLAGS_FIX = ("start every process with the same --coordinator_address=HOST:PORT (process 0's host, a free port) "
              "and --num_processes, each with its own --process_id")
_exchanges = 0  # exchanges so far in this process; every process makes them in the same order


def multi_host_environment() -> str | None:
    """What in the environment says this is one of several hosts (public environment variables only), or None.

    On a Cloud TPU VM JAX's detection asks the metadata server instead, so a pod slice may not show up here; that
    case is covered by JAX's detection succeeding.
    """
    def count(name: str) -> int:
        try:
            return int(os.environ.get(name, "1").split("(")[0])
        except ValueError:
            return 1

    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return f"JAX_COORDINATOR_ADDRESS={os.environ['JAX_COORDINATOR_ADDRESS']} is set"
    if "SLURM_PROCID" in os.environ and count("SLURM_NTASKS") > 1:
        return f"a Slurm job of {count('SLURM_NTASKS')} tasks (SLURM_NTASKS)"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return f"an Open MPI job of {count('OMPI_COMM_WORLD_SIZE')} ranks (OMPI_COMM_WORLD_SIZE)"
    for name in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        hosts = [host for host in os.environ.get(name, "").split(",") if host]
        if len(hosts) > 1:
            return f"a TPU pod slice of {len(hosts)} hosts ({name})"
    return None


# libtpu's environment: GKE TPU pods and TPU VM images set it, users set it to aim libtpu at a TPU; JAX_FORCE_TPU_INIT
# makes `import jax` treat the machine as a Cloud TPU VM.
_TPU_ENVIRONMENT = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "TPU_PROCESS_ADDRESSES",
                    "TPU_TOPOLOGY", "TPU_HOST_BOUNDS", "TPU_CHIPS_PER_PROCESS_BOUNDS", "TPU_VISIBLE_CHIPS",
                    "TPU_NAME", "JAX_FORCE_TPU_INIT")


def tpu_signs() -> str | None:
    """What says this machine has a TPU or is set up for one, or None (then JAX's TPU backend can only fail).

    Any one of: a TPU chip on the PCI bus (Google's vendor id with a TPU device id, the check `import jax` makes to
    decide it runs on a Cloud TPU VM: jax._src.hardware_utils, whose table of TPU generations comes with the pinned
    JAX); a TPU device file, /dev/accel* (older generations) or a VFIO group /dev/vfio/N (newer ones; /dev/vfio/vfio
    alone is the VFIO control file of any host with the vfio module); one of libtpu's environment variables
    (_TPU_ENVIRONMENT). A GCE VM without a TPU has none of them: libtpu would ask its metadata server and find no TPU.
    """
    for name in _TPU_ENVIRONMENT:
        if os.environ.get(name):
            return f"{name} is set"
    accel = sorted(glob.glob("/dev/accel*"))
    if accel:
        return f"{accel[0]} exists"
    groups = sorted(path for path in glob.glob("/dev/vfio/*") if os.path.basename(path) != "vfio")
    if groups:
        return f"{groups[0]} exists"
    try:
        from jax._src import hardware_utils  # noqa: PLC0415

        chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
    except Exception as e:  # noqa: BLE001  (a JAX without the helper: cannot tell, so assume a TPU may be there)
        return f"cannot look for TPU chips on the PCI bus ({type(e).__name__}: {e})"
    return f"{chips} TPU chips on the PCI bus" if chips else None


def use_cpu_without_tpu() -> bool:
    """Restrict JAX to the CPU when libtpu is installed but the machine has no TPU; True when it did.

    With no platform list JAX initialises every backend it has and keeps the best. With libtpu installed (the [tpu]
    extra, for `python -m bertjax.aot`) that includes the TPU backend even off a TPU: libtpu starts up, prints
    "could not determine TPU accelerator type", "E0000 ... INVALID_ARGUMENT: Error: unexpected worker hostname" and a
    source location trace to stderr, holds /tmp/libtpu_lockfile for the life of the process (a second run meanwhile
    gets a quiet "lockfile" error instead), and only then fails with "No jellyfish device found", after which JAX
    falls back to the CPU. Setting jax_platforms to "cpu" first makes the same choice without loading libtpu.

    JAX is left alone, so behaviour elsewhere is unchanged, when any of these holds:
      - a platform list is given: JAX_PLATFORMS in the environment (even empty: JAX's "choose for me") or
        --jax_platforms; on a Cloud TPU VM `import jax` has already set it to "tpu,cpu" itself;
      - libtpu is not installed (no TPU_LIBRARY_PATH either): JAX's choice is quiet, whatever plugins it has;
      - another PJRT plugin is installed (the jax_plugins namespace or entry points, PJRT_NAMES_AND_LIBRARY_PATHS):
        a GPU's backend must stay reachable;
      - tpu_signs() finds a TPU or TPU environment (GKE TPU pods, TPU VMs, pod slices: multi-host detection in
        `initialize` sees the same environment as before);
      - JAX's backends are already initialised (too late to choose).
    """
    import jax  # noqa: PLC0415
    from absl import flags  # noqa: PLC0415
    from jax._src import xla_bridge  # noqa: PLC0415

    if "JAX_PLATFORMS" in os.environ or jax.config.jax_platforms:
        return False
    if "jax_platforms" in flags.FLAGS and flags.FLAGS.is_parsed() and flags.FLAGS["jax_platforms"].present:
        return False
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        return False
    if _other_pjrt_plugins() or tpu_signs() is not None or xla_bridge.backends_are_initialized():
        return False
    jax.config.update("jax_platforms", "cpu")
    return True


def _other_pjrt_plugins() -> list[str]:
    """PJRT plugins JAX would load besides libtpu (CUDA, ROCm, ...), as JAX discovers them."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    names = [entry.value for entry in entry_points(group="jax_plugins")]
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        import pkgutil  # noqa: PLC0415

        names += [module.name for module in pkgutil.iter_modules(spec.submodule_search_locations)]
    if os.environ.get("PJRT_NAMES_AND_LIBRARY_PATHS"):
        names.append(os.environ["PJRT_NAMES_AND_LIBRARY_PATHS"])
    return names


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, enabled: bool | None = None, timeout_s: int = 300) -> None:
    """jax.distributed.initialize() from explicit flags or JAX's cluster detection; see the module docstring.

    `enabled`: True requires a multi-process setup, False skips it, None (default) initialises when flags are
    given or an environment is detected.
    """
    import jax  # noqa: PLC0415  (main.py's data workers import nothing of JAX)

    explicit = coordinator_address is not None or num_processes is not None or process_id is not None
    if enabled is False and not explicit:
        return
    hint = "the flags" if explicit else multi_host_environment()
    if timeout_s < 1:
        raise BertjaxError(f"--distributed_timeout={timeout_s}; give the seconds to wait for all processes (>= 1)")
    if process_id == 0 and coordinator_address:
        _check_port_free(coordinator_address)  # JAX crashes (SIGSEGV) when process 0 cannot bind the port
    try:
        with _watchdog(coordinator_address, num_processes, process_id, timeout_s):
            # JAX's own deadline comes later: the watchdog speaks first, in one line.
            jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id,
                                       initialization_timeout=timeout_s + 30)
    except (ValueError, TypeError) as e:  # nothing detected, or incomplete / contradictory settings
        if not explicit and not enabled and hint is None:
            return  # a plain machine: one process, quietly
        where = hint or "--distributed=true"
        raise BertjaxError(f"multi-host start-up failed ({where}): jax.distributed.initialize: {_first_line(e)}; "
                           f"{_FLAGS_FIX}, or run on a TPU pod slice / Slurm where JAX detects them") from e
    except RuntimeError as e:  # XlaRuntimeError: bind or connect failed
        raise BertjaxError(f"multi-host start-up failed ({hint or 'detected cluster'}): jax.distributed.initialize: "
                           f"{_first_line(e)}; {_FLAGS_FIX}") from e


@contextlib.contextmanager
def _watchdog(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
              timeout_s: int) -> Iterator[None]:
    """Print one error line and exit 2 if the block runs longer than `timeout_s` (JAX would abort the process)."""
    finished = threading.Event()

    def fire() -> None:
        if finished.wait(timeout_s):
            return
        address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or "the detected coordinator"
        cause = _unreachable(address) if process_id not in (None, 0) else None
        if cause is None:
            cause = (f"not all {num_processes or 'the'} processes joined the coordinator {address} within "
                     f"{timeout_s} s")
        print(f"error: multi-host start-up failed: {cause}; {_FLAGS_FIX} (--distributed_timeout={timeout_s})",
              file=sys.stderr, flush=True)
        os._exit(2)

    watcher = threading.Thread(target=fire, name="distributed-init-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()


def _check_port_free(address: str) -> None:
    """Process 0 serves the coordinator on all addresses at the port of `address`: that port must be free here."""
    port = address.rpartition(":")[2]
    try:
        port_number = int(port)
    except ValueError:
        raise BertjaxError(f"--coordinator_address={address} has no port; give HOST:PORT") from None
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port_number))
                return
            except OSError as e:
                raise BertjaxError(f"multi-host start-up failed: process 0 cannot serve the coordinator on port "
                                   f"{port_number} ({e.strerror or e}); pick a free port for --coordinator_address "
                                   "(the same on every process)") from e


def _unreachable(address: str) -> str | None:
    """Why the coordinator at host:port cannot be reached, or None if it accepts connections."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return None
    except (OSError, ValueError) as e:
        return f"cannot reach the coordinator {address} ({e.strerror or e if isinstance(e, OSError) else e})"


def exchange(name: str, payload: dict[str, Any], *, timeout_s: int = 600) -> list[dict[str, Any]]:
    """Every process's JSON `payload`, in process order, through the coordination service's key-value store.

    One process: [payload]. A process that does not publish within `timeout_s` is a BertjaxError naming it.
    """
    import jax  # noqa: PLC0415
    import orbax.checkpoint as ocp  # noqa: PLC0415

    if jax.process_count() == 1:
        return [payload]
    global _exchanges
    _exchanges += 1
    client = ocp.multihost.get_jax_distributed_client()
    key = f"bertjax/{name}/{_exchanges}"
    client.key_value_set(f"{key}/{jax.process_index()}", json.dumps(payload, sort_keys=True))
    payloads, deadline = [], time.monotonic() + timeout_s
    for index in range(jax.process_count()):
        remaining_ms = max(1000, int(1000 * (deadline - time.monotonic())))
        try:
            payloads.append(json.loads(client.blocking_key_value_get(f"{key}/{index}", remaining_ms)))
        except Exception as e:  # noqa: BLE001  (XlaRuntimeError: DEADLINE_EXCEEDED, or the service went away)
            raise BertjaxError(f"process {index} of {jax.process_count()} did not report its {name} within "
                               f"{timeout_s} s ({_first_line(e)}); see that host's log") from e
    return payloads


def device_summary() -> str:
    """'8 devices (8 cpu)', '32 devices (32 TPU v4)': the global devices by kind."""
    import jax  # noqa: PLC0415

    kinds: dict[str, int] = {}
    for device in jax.devices():
        kinds[device.device_kind] = kinds.get(device.device_kind, 0) + 1
    return f"{jax.device_count()} devices ({', '.join(f'{n} {kind}' for kind, n in kinds.items())})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__
