"""create_pretraining_data's output directory: reusing a dataset already there, and replacing it atomically.

A run writes into a staging directory, a hidden sibling of the output directory, and renames it to the output
directory only once the dataset is complete, so a failed run leaves nothing that looks like a dataset. An old
dataset at the output directory is removed only after the new one has taken its place.

A Cloud Storage output (gs://) is staged in a local temporary directory (ArrayRecord writers write local files)
and uploaded once complete, dataset_info.json last: a reader sees a dataset only when all of it is there. An old
dataset there (--overwrite) stops being one first (its dataset_info.json goes), then is deleted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from etils import epath

from bertjax import paths
from bertjax.data import catalog
from bertjax.errors import BertjaxError

DATASET_MARKER = "dataset_info.json"  # TFDS reads a directory as a dataset when this file is there


def existing_dataset(output: epath.Path, settings: Mapping[str, Any], overwrite: bool,
                     defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest of a dataset already at `output` made with the same settings (reuse it), else None.

    `settings` is everything that determines the dataset's content, as its manifest stores it under "settings";
    `defaults` fill in the settings a dataset made before they existed does not store. A
    dataset made with other settings needs overwrite=True; a non-empty directory that is not a bertjax dataset is
    never touched.
    """
    if not output.exists():
        return None
    if not output.is_dir():
        raise BertjaxError(f"output_dir {output} exists and is not a directory; choose another --output_dir")
    if not any(output.iterdir()):
        return None
    try:
        manifest = catalog.read_manifest(output)
    except BertjaxError:
        raise BertjaxError(f"output_dir {output} is not empty and holds no bertjax dataset; choose an empty or "
                           "new --output_dir (nothing there was changed)") from None
    stored = {**(defaults or {}), **(manifest.get("settings") or {})}
    if stored == json.loads(json.dumps(settings)) and not overwrite:
        return manifest
    if not overwrite:
        raise BertjaxError(f"output_dir {output} already holds a dataset made with other settings or inputs; "
                           "pass --overwrite to replace it, or choose another --output_dir")
    return None


@contextlib.contextmanager
def staging_dir(output: epath.Path) -> Iterator[epath.Path]:
    """A new, empty staging directory beside `output` (a local temporary one for a remote output), removed on
    leaving (unless `replace_dir` moved it)."""
    if paths.is_remote(output):
        paths.check_writable(output, "--output_dir")
        with tempfile.TemporaryDirectory(prefix="bertjax-dataset-") as local:
            yield epath.Path(local)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.incomplete-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: epath.Path, output: epath.Path) -> None:
    """Move the finished staging directory to `output` (an old dataset there is removed only after the move; for
    a remote output, see the module docstring)."""
    if paths.is_remote(output):
        if (output / DATASET_MARKER).exists():
            (output / DATASET_MARKER).unlink()
        for old_file in paths.files_under(output):
            old_file.unlink()
        paths.upload_tree(staging, output, last=[DATASET_MARKER])
        return
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, old)
    os.replace(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
