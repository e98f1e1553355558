"""Checkpoints of a training run (Orbax CheckpointManager), its model description and its export, in the workdir
layout of `bertjax.workdir_layout` (checkpoints/<step>/{state,data,config}, model/, export/, best/).
The export is a Hugging Face BERT directory (`convert.hf.save_pretrained`): the files of model/ plus
model.safetensors; transformers' BertForPreTraining and BertTokenizerFast load it.

Saves are asynchronous, every `every_steps` steps or when a preemption is announced; the newest `keep`
checkpoints are kept. A restore uses the shardings of the target, so a checkpoint written on one device
count loads onto another, and the data iterator state is process-count independent (`shared_data_state`), so a
checkpoint written by N processes continues on M on exactly the next global batch.
"""
import dataclasses
import errno
import json
import os
import re
import signal
import tempfile
import threading
import uuid
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from flax import traverse_util
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from bertjax import paths, workdir_layout
from bertjax.convert import hf, hf_heads, sources
from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import VOCAB_PARAM_PATHS, pad_vocab, stack_layers

_FIX = "start a new run with a different --workdir (or delete the checkpoints directory to start over)"


class CorruptCheckpointError(BertjaxError):
    """A checkpoint step whose files cannot be read (truncated, corrupt, missing): `--config.checkpoint.fallback`
    sets it aside and restores the previous step instead."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def _corrupt_message(workdir: str, step: int, what: str, error: BaseException) -> str:
    return (f"--workdir {workdir}: checkpoint step {step} {what} (corrupt or partially written: "
            f"{type(error).__name__}: {_first_line(error)}); rerun with --config.checkpoint.fallback=True to resume "
            f"from the previous checkpoint (step {step} is then moved to {workdir_layout.path(workdir, workdir_layout.CORRUPT_DIR)}), "
            f"or {_FIX}.")


class SigtermFlag:
    """Remembers that SIGTERM arrived, so the loop can save and exit at the next step boundary.

    Only used in single-process runs; with jax.distributed the JAX preemption service catches SIGTERM and
    Orbax's PreemptionCheckpointingPolicy agrees on a common step across processes.
    """

    def __init__(self):
        self.received = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True

    def restore(self) -> None:
        """Put back the previous SIGTERM handler."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class Checkpointer:
    """Saves and restores {train state, data iterator, config} under <workdir>/checkpoints."""

    def __init__(self, workdir: str, *, every_steps: int, keep: int, async_save: bool = True):
        self.workdir = str(workdir)
        self.directory = workdir_layout.path(self.workdir, workdir_layout.CHECKPOINTS_DIR)
        policies = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.AnySavePolicy([
                policies.PreemptionCheckpointingPolicy(),
                policies.FixedIntervalPolicy(every_steps),
            ]),
            preservation_policy=policies.LatestN(keep),
            enable_async_checkpointing=async_save,
            create=False,  # made by the first save (`_make_directory`): a run that stops earlier leaves none
        )
        self._every_steps = every_steps
        self._directory_made = self.directory.is_dir()
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._write_failed = False
        self._sigterm = SigtermFlag() if jax.process_count() == 1 else None
        if self._sigterm is None and not jax.config.jax_enable_preemption_service and jax.process_index() == 0:
            logging.warning("jax_enable_preemption_service is off: a SIGTERM will not make the processes save and "
                            "stop together.")

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of all finished checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def set_aside(self, step: int) -> epath.Path:
        """Move checkpoint `step` (unreadable) to <workdir>/corrupt_checkpoints/<step>[.N], so that it is neither
        restored nor overwritten by the next save of that step, and is kept for inspection; returns where."""
        corrupt = workdir_layout.path(self.workdir, workdir_layout.CORRUPT_DIR)
        target = corrupt / str(step)
        suffix = 0
        while target.exists():
            suffix += 1
            target = corrupt / f"{step}.{suffix}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bertjax_set_aside_{step}")
        self._manager.reload()
        return target

    def preemption_requested(self, step: int) -> bool:
        """True when the run should save now and stop (SIGTERM, or a preemption notice on a pod)."""
        if self._sigterm is not None and self._sigterm.received:
            return True
        return self._manager.reached_preemption(step)

    def save(self, step: int, state, data_iter=None, config: dict | None = None, force: bool = False,
             clock: dict | None = None) -> bool:
        """Start an asynchronous save if the policy says so (or `force`); returns whether one started. `clock` is
        the training clock's state (`train_clock.TrainClock.state`)."""
        items = {workdir_layout.STATE_ITEM: ocp.args.StandardSave(state)}
        if data_iter is not None:
            items[workdir_layout.DATA_ITEM] = grain.checkpoint.CheckpointSave(data_iter)
        if config is not None:
            items[workdir_layout.CONFIG_ITEM] = ocp.args.JsonSave(config)
        if clock is not None:
            items[workdir_layout.CLOCK_ITEM] = ocp.args.JsonSave(clock)
        if not self._directory_made and (force or step % self._every_steps == 0
                                         or self._manager.reached_preemption(step)):
            self._writing(lambda: self.directory.mkdir(parents=True, exist_ok=True))
            self._directory_made = True
        self._writing(self._check_writable)
        return self._writing(lambda: self._manager.save(step, args=ocp.args.Composite(**items), force=force))

    def _check_writable(self) -> None:
        """Orbax (0.12) hangs instead of failing when it cannot create a step's temporary directory (a workdir that
        became read-only), so a save is preceded by this: a local checkpoints directory that this process may not
        write to (access(2)) fails here, with the OS's reason from a probe file (removed, if it was written). One
        system call per step when the directory is writable."""
        local = not paths.is_remote(self.directory) and os.path.isdir(self.directory)  # (made by process 0)
        if not local or os.access(self.directory, os.W_OK | os.X_OK):
            return
        probe = self.directory / f".bertjax-write-check-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()

    def _writing(self, write):
        """Run `write` (a save, or waiting for one); a failed write (disk full, file too large, permissions) is one
        BertjaxError line naming the finished checkpoints, which it leaves intact."""
        try:
            return write()
        except BertjaxError:
            raise
        except Exception as e:  # noqa: BLE001  (tensorstore/IO errors of an async save surface here, many types)
            self._write_failed = True
            finished = workdir_layout.finished_steps(self.workdir)
            intact = f"checkpoints up to step {finished[-1]} are intact" if finished else "no checkpoint finished"
            refused = isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
            where = f"{self.directory} is not writable: " if refused else ""
            raise BertjaxError(
                f"--workdir {self.workdir}: writing a checkpoint failed ({where}{type(e).__name__}: {_describe(e)}); "
                f"{intact}: free disk space or fix the workdir's permissions, then rerun to resume.") from e

    def saved_config(self, step: int) -> dict | None:
        """The config JSON stored with checkpoint `step` (None if it has none)."""
        return self._saved_json(step, workdir_layout.CONFIG_ITEM)

    def saved_clock(self, step: int) -> dict | None:
        """The training clock stored with checkpoint `step` (None if it has none: checkpoints older than it)."""
        return self._saved_json(step, workdir_layout.CLOCK_ITEM)

    def _saved_json(self, step: int, name: str) -> dict | None:
        if not (self.directory / str(step) / name).is_dir():
            return None
        try:
            item = {name: ocp.args.JsonRestore()}
            return self._manager.restore(step, args=ocp.args.Composite(**item))[name]
        except Exception as e:  # noqa: BLE001
            raise CorruptCheckpointError(
                _corrupt_message(self.workdir, step, f"has an unreadable {name}", e), step) from e

    def has_data_state(self, step: int) -> bool:
        """Whether checkpoint `step` holds this process's data iterator state (same process count)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (self.directory / str(step) / workdir_layout.DATA_ITEM / name).exists()

    def shared_data_state(self, step: int) -> dict | None:
        """The data iterator state of checkpoint `step` when every process that wrote it saved the same one (the
        bertjax pipeline's state is the next global batch's index), whatever their number; else None."""
        directory = self.directory / str(step) / workdir_layout.DATA_ITEM
        files = sorted(directory.glob("process_*-of-*.json")) if directory.is_dir() else []
        try:
            states = [json.loads(path.read_text()) for path in files]
        except (OSError, json.JSONDecodeError):
            return None
        if not states or any(state != states[0] for state in states):
            return None
        return states[0]

    def can_restore_data(self, step: int) -> bool:
        """Whether `restore` continues the data iterator of checkpoint `step` (same process count, or a state
        shared by all the processes that wrote it)."""
        return self.has_data_state(step) or self.shared_data_state(step) is not None

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restore checkpoint `step` onto the shardings in `abstract_state` (and the iterator, in place).

        The iterator continues on exactly the next global batch: from this process's saved state, or, when the
        checkpoint was written by another number of processes, from the state they all saved (see
        `shared_data_state`); if neither exists it starts afresh.

        A checkpoint that does not fit `abstract_state` (another model shape or optimizer) or cannot be read
        raises BertjaxError naming the workdir (CorruptCheckpointError for unreadable files).
        """
        items = {workdir_layout.STATE_ITEM: ocp.args.StandardRestore(abstract_state)}
        shared_state = None
        if data_iter is not None and self.has_data_state(step):
            items[workdir_layout.DATA_ITEM] = grain.checkpoint.CheckpointRestore(data_iter)
        elif data_iter is not None:
            shared_state = self.shared_data_state(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001  (Orbax/tensorstore/IO errors have many types)
            if _is_mismatch(e) and self._state_metadata_readable(step):
                raise BertjaxError(
                    f"--workdir {self.workdir} holds a checkpoint (step {step}) from an incompatible run: "
                    f"{_first_line(e)}; {_FIX}.") from e
            raise CorruptCheckpointError(
                _corrupt_message(self.workdir, step, "is unreadable", e), step) from e
        if shared_state is not None:
            data_iter.set_state(shared_state)
        return restored[workdir_layout.STATE_ITEM]

    def _state_metadata_readable(self, step: int) -> bool:
        """Whether the state's tree metadata is there and parses (without it Orbax reports a structure mismatch)."""
        try:
            json.loads((self.directory / str(step) / workdir_layout.STATE_ITEM / "_METADATA").read_text())
        except (OSError, ValueError):
            return False
        return True

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._writing(self._manager.wait_until_finished)

    def close(self) -> None:
        """Finish pending saves and release resources (after a failed write, whose error was raised: quietly)."""
        failed_before = self._write_failed
        try:
            self._writing(self._manager.wait_until_finished)
            self._manager.close()
        except Exception:  # noqa: BLE001
            if not failed_before:
                raise
        finally:
            if self._sigterm is not None:
                self._sigterm.restore()


def _is_mismatch(error: BaseException) -> bool:
    """Whether a restore error says the checkpoint has other shapes/structure (vs. unreadable files)."""
    if not isinstance(error, (ValueError, KeyError, TypeError)) or isinstance(error, json.JSONDecodeError):
        return False
    text = str(error)
    if re.search(r"reading|local file|ocdbt|tensorstore|decod|compress|corrupt|checksum|DATA_LOSS|opening", text,
                 re.IGNORECASE):
        return False  # a file that does not read, whatever else the message says
    return re.search(r"shape|structure|mismatch|not found|dtype", text, re.IGNORECASE) is not None


# The OS's reason inside a long tensorstore message ("File too large [os_error_code='27']", maybe JSON-escaped), or
# a Python OSError's ("[Errno 13] Permission denied").
_OS_REASON = re.compile(r"[A-Z][A-Za-z ]*[a-z] \[os_error_code=\\*'?\d+\\*'?\]|\[Errno \d+\] [^'\"\]\n]+")


def _describe(error: BaseException) -> str:
    """The first line of an error; when long, its start and the OS's reason (else its end): tensorstore's messages
    are a path, then the reason, sometimes followed by a long JSON spec."""
    text = str(error).strip().splitlines()
    text = text[0] if text else type(error).__name__
    if len(text) <= 300:
        return text
    reason = _OS_REASON.search(text)
    return f"{text[:120]} ... {reason.group(0) if reason else text[-180:]}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


@dataclasses.dataclass(frozen=True)
class Exported:
    """What a run's model is exported as: its linen module (BertForPreTraining, or a `bertjax.heads` head, then
    written as its transformers class) and the head's label names."""

    model: Any
    labels: list[str] | None = None

    def hf_kwargs(self) -> dict:
        """`hf.save_pretrained`'s head_model and labels (none for the pretraining model)."""
        return {"head_model": self.model, "labels": self.labels} if hf_heads.is_head(self.model) else {}


def write_model_description(workdir: str, bert_config, vocab_file: str | None, do_lower_case: bool | None,
                            strip_accents: bool | None, exported: Exported) -> None:
    """Write <workdir>/model/ (config.json, vocab.txt, tokenizer_config.json) on process 0: what the run trains,
    so that any of its checkpoints converts on its own (`python -m bertjax.convert to-hf`)."""
    if jax.process_index() == 0:
        with tempfile.TemporaryDirectory() as local:  # write locally, then copy: the workdir may be gs://
            hf.save_pretrained(local, bert_config, vocab_file=vocab_file, do_lower_case=do_lower_case,
                               strip_accents=strip_accents, **exported.hf_kwargs())
            paths.upload_tree(local, workdir_layout.path(workdir, workdir_layout.MODEL_DIR))


def export_params(params, workdir: str, exported: Exported, *, name: str = workdir_layout.EXPORT_DIR) -> epath.Path:
    """Write <workdir>/<name>/ (export/ by default), a Hugging Face BERT directory (weights, config, vocab, casing)
    of `params`: BertForPreTraining, or the head's transformers class.

    `params` are global arrays; every process calls this (gathering them is a collective), process 0 writes.
    """
    export_dir = workdir_layout.path(workdir, name)
    model_dir = workdir_layout.path(workdir, workdir_layout.MODEL_DIR)
    host_params = multihost_utils.process_allgather(params, tiled=True)
    if jax.process_index() == 0:
        with tempfile.TemporaryDirectory() as local:
            local = epath.Path(local)
            for description in paths.files_under(model_dir):  # config.json, vocab.txt, tokenizer_config.json
                description.copy(local / description.name)
            hf.save_pretrained(local, hf.read_config(local), host_params, **exported.hf_kwargs())
            paths.upload_tree(local, export_dir, last=[hf.CONFIG_NAME])
    return export_dir


def _vocab_resizable(restore_args: dict) -> dict:
    """Orbax restore args whose vocab leaves (`model.VOCAB_PARAM_PATHS`) take the target's rows: zeros appended
    or padded rows dropped (`strict=False`), so a workdir with another vocab_pad_multiple loads. The door has
    checked that the checkpoint's real vocab size is the run's."""
    flat = traverse_util.flatten_dict(restore_args)
    for path in VOCAB_PARAM_PATHS:
        if ("params", *path) in flat:
            flat[("params", *path)] = dataclasses.replace(flat[("params", *path)], strict=False)
    return traverse_util.unflatten_dict(flat)


def load_params(init_from: str, abstract_params, head_name: str | None = None) -> dict:
    """Params for `abstract_params`' shapes/shardings from `init_from`: a bertjax workdir (its latest checkpoint),
    or any checkpoint `convert.sources` reads (a bertjax export, a Hugging Face or an original TF directory).

    For a pretraining model all params are loaded; for a fine-tuning head (no `cls` scope, class `head_name`) the
    encoder (`bert`), which the caller puts beside its freshly initialised head, or all of them when `init_from` is
    a fine-tuned model of the same head class.

    Vocab padding is matched to the target: the word embeddings and MLM output bias are zero-padded to its W rows
    or cut to its V rows, whatever the checkpoint has (a padded workdir, an unpadded export or HF/TF directory).
    """
    root = paths.path(init_from)
    try:
        source_head = sources.load_pretrained(str(root), read_params=False).head
    except BertjaxError as e:
        raise BertjaxError(f"config.train.init_from={init_from}: {e}") from e
    same_head = source_head is not None and type(source_head).__name__ == head_name  # the door checked its labels
    wanted = abstract_params if "cls" in abstract_params or same_head else {"bert": abstract_params["bert"]}
    checkpoints = root / workdir_layout.CHECKPOINTS_DIR
    if checkpoints.is_dir():
        with ocp.CheckpointManager(checkpoints, options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
            step = manager.latest_step()
            if step is not None:
                restore_args = _vocab_resizable(ocp.checkpoint_utils.construct_restore_args({"params": wanted}))
                try:
                    state = ocp.args.PyTreeRestore(item={"params": wanted}, restore_args=restore_args,
                                                   partial_restore=True)
                    restored = manager.restore(step, args=ocp.args.Composite(**{workdir_layout.STATE_ITEM: state}))
                except ValueError as e:
                    raise BertjaxError(
                        f"config.train.init_from={init_from}: checkpoint step {step} does not fit this model "
                        f"({_first_line(e)}); use the same model size and vocab as the run that wrote it.") from e
                return restored[workdir_layout.STATE_ITEM]["params"]
    try:
        pretrained = sources.load_pretrained(str(root), allow_missing_heads="cls" not in wanted)
    except BertjaxError as e:
        raise BertjaxError(f"config.train.init_from={init_from}: {e}") from e
    params = pretrained.head_params if same_head else pretrained.params  # same head: continue with its classifier
    params = pad_vocab(params, wanted["bert"]["embeddings"]["word_embeddings"]["embedding"].shape[0])
    scanned = wanted["bert"]["encoder"].get(SCANNED_LAYERS_NAME)
    if scanned is not None:
        params = stack_layers(params, jax.tree.leaves(scanned)[0].shape[0])
    flat = traverse_util.flatten_dict(params)
    try:
        return traverse_util.unflatten_dict({
            path: jax.device_put(flat[path].astype(target.dtype), target.sharding)
            for path, target in traverse_util.flatten_dict(wanted).items()})
    except (KeyError, ValueError) as e:
        raise BertjaxError(f"config.train.init_from={init_from}: its params do not fit this model "
                           f"({_first_line(e)}); use the model size and vocab of the checkpoint.") from e
