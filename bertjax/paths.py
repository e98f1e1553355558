"""Where files live: local paths and Cloud Storage URLs (`gs://bucket/...`), through one layer, etils `epath`.

Every path a user gives (workdir, dataset, vocab, init_from, corpus globs, conversion inputs and outputs) goes
through `path()`; epath's `gs://` backend is gcsfs (installed with bertjax), which also honours
`STORAGE_EMULATOR_HOST`. Tools that can only write local files (ArrayRecord writers, `tokenizers`, safetensors)
write into a local staging directory that `upload_tree` copies up; readers that need a local file get one from
`local_copy`. ArrayRecord shards are read from `gs://` directly by array_record's own GCS client (Grain); Orbax
writes checkpoints through tensorstore's.

A Cloud Storage "directory" is a name prefix: there is no atomic rename of a prefix, so a finished output is made
visible by writing its marker file last (`upload_tree(..., last=...)`), not by renaming.
"""
from __future__ import annotations

import contextlib
import glob as local_glob
import io
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence

import fsspec
from etils import epath

from bertjax.errors import BertjaxError

PathLike = str | os.PathLike
_WILDCARDS = frozenset("*?[")

# gcsfs keeps object listings forever by default; other processes (every host of a pod) and tensorstore (Orbax's
# array writes) change the bucket behind its back, so a cached listing would hide a new checkpoint or dataset.
fsspec.config.conf.setdefault("gcs", {}).setdefault("cache_timeout", 0)
# gcsfs logs a traceback when it gives up retrying, and a warning per bucket it cannot classify without
# credentials; the failure itself reaches the user as one BertjaxError line naming the path.
logging.getLogger("gcsfs").setLevel(logging.CRITICAL)


def is_remote(location: PathLike) -> bool:
    """True for a URL such as gs://bucket/dir (handled by epath's fsspec backends), False for a local path."""
    return "://" in os.fspath(location)


def path(location: PathLike) -> epath.Path:
    """The epath.Path of a user-given location: a URL as it is, a local path with ~ expanded and made absolute."""
    location = os.fspath(location)
    if is_remote(location):
        return epath.Path(location)
    return epath.Path(os.path.abspath(os.path.expanduser(location)))


def glob(pattern: PathLike) -> list[epath.Path]:
    """The files (not directories) matching a glob, sorted; `**` matches across directories, local or remote."""
    pattern = os.fspath(pattern)
    if not is_remote(pattern):
        return [path(m) for m in sorted(local_glob.glob(os.path.expanduser(pattern), recursive=True))
                if os.path.isfile(m)]
    scheme, rest = pattern.split("://", 1)
    parts = rest.split("/")
    fixed = next((i for i, part in enumerate(parts) if _WILDCARDS & set(part)), len(parts))
    if fixed == len(parts):
        single = path(pattern)
        return [single] if single.is_file() else []
    base = epath.Path(f"{scheme}://" + "/".join(parts[:fixed]))
    wanted = _glob_regex("/".join(parts[fixed:]))
    return [f for f in files_under(base) if wanted.fullmatch(os.fspath(f.relative_to(base)))]


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob over relative paths as a regex: `**/` any directories (or none), `*` and `?` within one name."""
    out = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern):
        if token == "**/":
            out.append("(?:.*/)?")
        elif token == "**":
            out.append(".*")
        elif token == "*":
            out.append("[^/]*")
        elif token == "?":
            out.append("[^/]")
        elif token.startswith("[") and token.endswith("]") and len(token) > 2:
            out.append("[" + ("^" + token[2:-1] if token[1] == "!" else token[1:-1]) + "]")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def files_under(directory: PathLike, *, max_depth: int | None = None,
                skip_dir: Callable[[str], bool] | None = None) -> list[epath.Path]:
    """Every file below a directory, sorted: recursively, or `max_depth` directory levels down, not entering the
    directories whose name `skip_dir` accepts; one listing per directory, local or remote."""
    directory = path(directory)
    # epath's walk() yields remote roots without their scheme (gs://b/d -> b/d): rebuild them from `directory`.
    prefix = os.fspath(directory).split("://", 1)[-1].rstrip("/")
    found = []
    for root, dirs, names in directory.walk():
        relative = os.fspath(root).split("://", 1)[-1][len(prefix):].strip("/")
        depth = relative.count("/") + 1 if relative else 0
        dirs[:] = [] if max_depth is not None and depth >= max_depth else [
            d for d in dirs if not (skip_dir and skip_dir(d))]
        found.extend((directory / relative / name) if relative else (directory / name) for name in names)
    return sorted(found)


def open_text(location: PathLike, newline: str | None = None) -> io.TextIOWrapper:
    """A UTF-8 text file opened for reading, local or remote, with open()'s `newline` handling; a leading byte-order
    mark is dropped (GLUE's MRPC files start with one)."""
    return io.TextIOWrapper(path(location).open("rb"), encoding="utf-8-sig", newline=newline)


def write_text_atomically(location: PathLike, text: str) -> None:
    """Write a text file whole: locally through a temporary file and a rename; remotely in one object upload
    (an object appears whole or not at all)."""
    target = path(location)
    if is_remote(target):
        target.write_text(text)
        return
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text)
    os.replace(tmp, target)


def upload_tree(local_dir: PathLike, target: PathLike, last: Sequence[str] = ()) -> None:
    """Copy the files under `local_dir` to `target` (local or remote), keeping relative paths; the files named in
    `last` (relative paths) are copied after all the others, so a reader that waits for them sees a whole tree."""
    local_dir, target = epath.Path(os.fspath(local_dir)), path(target)
    files = files_under(local_dir)
    ordered = ([p for p in files if os.fspath(p.relative_to(local_dir)) not in last]
               + [local_dir / name for name in last if (local_dir / name).is_file()])
    for source in ordered:
        destination = target / os.fspath(source.relative_to(local_dir))
        destination.parent.mkdir(parents=True, exist_ok=True)
        source.copy(destination, overwrite=True)


@contextlib.contextmanager
def local_copy(location: PathLike) -> Iterator[epath.Path]:
    """A local path holding the file or directory tree at `location`: the path itself when local, else a copy in
    a temporary directory, removed on leaving."""
    source = path(location)
    if not is_remote(source):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="bertjax-") as tmp:
        local = epath.Path(tmp) / source.name
        if source.is_dir():
            for remote_file in files_under(source):
                destination = local / os.fspath(remote_file.relative_to(source))
                destination.parent.mkdir(parents=True, exist_ok=True)
                remote_file.copy(destination)
        else:
            source.copy(local)
        yield local


def check_writable(directory: PathLike, what: str) -> epath.Path:
    """Prove that files can be written in `directory` (a probe file written and removed) without creating it: a
    local directory that does not exist yet is checked at its nearest existing parent. BertjaxError naming it and
    the fix if not; returns its epath.Path."""
    target = path(directory)
    where = target
    try:
        if not is_remote(target):
            while not where.exists() and where != where.parent:
                where = where.parent
            if not where.is_dir():
                inside = "" if where == target else f" (inside the file {where})"
                raise BertjaxError(f"{what} {directory} is a file{inside}, not a directory; choose a directory")
        probe = where / f".bertjax-write-check-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except BertjaxError:
        raise
    except Exception as e:  # noqa: BLE001  (OSError locally; gcsfs and google-auth raise their own types)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BertjaxError(f"{what} {directory} is not writable ({reason}); choose a directory you can write to, "
                           "or fix its permissions (for gs://: the bucket, and the VM's service account)") from None
    return target
