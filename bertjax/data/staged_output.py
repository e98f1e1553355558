"""create_pretraining_data's output directory: reusing a dataset already there, and replacing it atomically.

A run writes into a staging directory, a hidden sibling of the output directory, and renames it to the output
directory only once the dataset is complete, so a failed run leaves nothing that looks like a dataset. An old
dataset at the output directory is removed only after the new one has taken its place.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bertjax.data import catalog
from bertjax.errors import BertjaxError


def existing_dataset(output: Path, settings: Mapping[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The manifest of a dataset already at `output` made with the same settings (reuse it), else None.

    `settings` is everything that determines the dataset's content, as its manifest stores it under "settings". A
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
    if manifest.get("settings") == json.loads(json.dumps(settings)) and not overwrite:
        return manifest
    if not overwrite:
        raise BertjaxError(f"output_dir {output} already holds a dataset made with other settings or inputs; "
                           "pass --overwrite to replace it, or choose another --output_dir")
    return None


@contextlib.contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """A new, empty staging directory beside `output`, removed on leaving (unless `replace_dir` moved it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.incomplete-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, output: Path) -> None:
    """Move the finished staging directory to `output` (an old dataset there is removed only after the move)."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, old)
    os.replace(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
