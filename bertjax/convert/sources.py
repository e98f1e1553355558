"""A pretrained BERT from wherever it is: a bertjax run, a Hugging Face directory, or an original TF checkpoint.

    pretrained = sources.load_pretrained(path)     # .config, .params, .vocab_file, .do_lower_case, .strip_accents

`path` may be
  * a bertjax training workdir (its latest checkpoint) or one checkpoint step directory, `<workdir>/checkpoints/<step>`:
    the model config, vocab and casing come from `<workdir>/model/`, written when the run started;
  * a Hugging Face BERT directory (config.json with model.safetensors or pytorch_model.bin); a bertjax export and
    the output of `to-hf`/`from-*` are such directories;
  * a google-research/bert checkpoint directory (bert_config.json, vocab.txt and `*.ckpt.index` + data files).

Params come back as BertForPreTraining params with unrolled layers, as float32 numpy arrays, with V vocab rows (a
vocab-padded run's padding is cut off). Heads a checkpoint lacks (the pooler and NSP head of a BertForMaskedLM,
every head of a bare BertModel) are an error that lists them, unless
`allow_missing_heads=True`: then they are initialised as in pretraining and listed in `initialized_heads`.

A fine-tuned checkpoint (config.json `architectures[0]` is BertForSequenceClassification, BertForTokenClassification
or BertForQuestionAnswering: a Hugging Face directory, a bertjax export, or a fine-tuning run's workdir) comes back
with `head` (that head model, float32, unrolled), `head_params` (its complete params: `bert` + classifier or
qa_outputs) and `labels` (its class names). `params` then holds only its encoder, `{"bert": ...}` (with the pooler
if the head has one), which is all fine-tuning needs (`heads.load_encoder`); with `allow_missing_heads=True` the
pretraining heads are initialised as for any other checkpoint.
"""
from __future__ import annotations

import dataclasses
import re
from etils.epath import Path
from typing import Any

import jax
import numpy as np
from absl import logging
import orbax.checkpoint as ocp
from flax import traverse_util

from bertjax import paths, workdir_layout
from bertjax.convert import hf, hf_heads, tensor_bundle, tf_checkpoint
from bertjax.data import vocab_files
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, abstract_params, init_params, unpad_vocab, unstack_layers

TF_CONFIG_NAME = "bert_config.json"

BERTJAX_RUN, HUGGING_FACE, ORIGINAL_TF = "bertjax checkpoint", "Hugging Face directory", "original TF checkpoint"


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A loaded BERT: its config, BertForPreTraining params (numpy; None if only described), vocab and casing; for a
    fine-tuned checkpoint also its head model, that head's complete params and its class names (module docstring)."""

    kind: str
    path: Path
    config: BertConfig
    params: dict | None
    vocab_file: Path | None
    do_lower_case: bool | None
    strip_accents: bool | None
    casing_from: str = ""                # how the casing was decided, for messages
    initialized_heads: tuple[str, ...] = ()
    head: Any = None                     # a bertjax.heads model, or None for a pretraining / bare checkpoint
    head_params: dict | None = None      # the head's params (numpy float32, unrolled), when params are read
    labels: tuple[str, ...] = ()         # the head's class names (config.json id2label)


def detect(path: str | Path) -> str:
    """Which kind of checkpoint `path` is (BERTJAX_RUN, HUGGING_FACE or ORIGINAL_TF); BertjaxError if none."""
    path = paths.path(path)
    if not path.exists():
        raise BertjaxError(f"{path} does not exist; pass a bertjax workdir, a Hugging Face BERT directory or an "
                           "original TF checkpoint directory")
    if not path.is_dir():
        raise BertjaxError(f"{path} is a file; pass the directory that holds it")
    if (path / workdir_layout.CHECKPOINTS_DIR).is_dir() or workdir_layout.is_step_dir(path):
        return BERTJAX_RUN
    if (path / hf.CONFIG_NAME).is_file():
        return HUGGING_FACE
    if (path / TF_CONFIG_NAME).is_file() or any(path.glob("*.index")):
        return ORIGINAL_TF
    raise BertjaxError(f"{path} is not a BERT checkpoint: expected a bertjax workdir (checkpoints/), a Hugging Face "
                       f"directory ({hf.CONFIG_NAME} + weights) or an original TF checkpoint ({TF_CONFIG_NAME} + "
                       "*.ckpt.index)")


def read_config(path: str | Path) -> BertConfig:
    """The model config of a checkpoint of any kind, without reading its weights."""
    return load_pretrained(path, read_params=False).config


def load_pretrained(path: str | Path, *, read_params: bool = True, allow_missing_heads: bool = False,
                    seed: int = 0, do_lower_case: bool | None = None) -> Pretrained:
    """Load a checkpoint of any kind (see the module docstring); `do_lower_case` overrides the detected casing."""
    path = paths.path(path)
    loader = {BERTJAX_RUN: _load_bertjax, HUGGING_FACE: _load_hf, ORIGINAL_TF: _load_tf}[detect(path)]
    pretrained = loader(path, read_params)
    flat = pretrained.params
    if flat is not None and pretrained.head is not None:
        pretrained = _split_head(pretrained, str(path))
        flat = traverse_util.flatten_dict(pretrained.params) if allow_missing_heads else None
    if flat is not None:
        params, initialized = complete_heads(flat, pretrained.config, allow_missing_heads, seed, str(path))
        pretrained = dataclasses.replace(pretrained, params=params, initialized_heads=tuple(initialized))
    if do_lower_case is not None:
        pretrained = dataclasses.replace(pretrained, do_lower_case=do_lower_case, strip_accents=do_lower_case,
                                         casing_from="--do_lower_case")
    return pretrained


def complete_heads(flat_params: dict, config: BertConfig, allow_missing_heads: bool, seed: int,
                   source: str) -> tuple[dict, list[str]]:
    """Nested params from {path: array}, with missing heads initialised as in pretraining when allowed.

    A missing encoder weight is always an error; missing heads are an error listing them unless allowed.
    """
    fresh = traverse_util.flatten_dict(jax.device_get(init_params(BertForPreTraining(config),
                                                                  jax.random.PRNGKey(seed))))
    missing = [path for path in fresh if path not in flat_params]
    encoder_missing = [path for path in missing if hf.head_of(path) is None]
    if encoder_missing:
        names = ", ".join("/".join(path) for path in encoder_missing[:6])
        raise BertjaxError(f"{source} lacks encoder weights ({len(encoder_missing)}): {names}; it is not a complete "
                           "BERT checkpoint")
    heads = sorted({hf.head_of(path) for path in missing})
    if heads and not allow_missing_heads:
        raise BertjaxError(f"{source} lacks the head(s) {', '.join(heads)}; pass --allow_missing_heads to "
                           "initialise them as in pretraining")
    merged = {path: np.asarray(flat_params.get(path, fresh[path]), np.float32) for path in fresh}
    return traverse_util.unflatten_dict(merged), heads


def _with_head(pretrained: Pretrained, config_data: dict) -> Pretrained:
    """`pretrained` with the head its config.json names (if it names one)."""
    if hf_heads.hf_architecture(config_data) is None:
        return pretrained
    return dataclasses.replace(pretrained, head=hf_heads.head_from_hf_config(config_data),
                               labels=hf_heads.hf_labels(config_data))


def _split_head(pretrained: Pretrained, source: str) -> Pretrained:
    """A fine-tuned checkpoint's {path: array} -> head_params (all of the head's) and params ({"bert": encoder})."""
    architecture = hf_heads.head_spec(pretrained.head).architecture
    template = traverse_util.flatten_dict(abstract_params(pretrained.head))
    missing = sorted("/".join(p) for p in set(template) - set(pretrained.params))
    unexpected = sorted("/".join(p) for p in set(pretrained.params) - set(template))
    if missing or unexpected:
        raise BertjaxError(f"{source} is not a complete {architecture} (its config.json architectures): missing "
                           f"{missing[:6]}, unexpected {unexpected[:6]}; fix config.json or re-export the checkpoint")
    head_params = traverse_util.unflatten_dict({p: np.asarray(pretrained.params[p], np.float32) for p in template})
    return dataclasses.replace(pretrained, params={"bert": head_params["bert"]}, head_params=head_params)


# ----------------------------------------------------------------------------------------------------------------
# bertjax runs


def _run_paths(path: Path) -> tuple[Path, Path | None]:
    """(the run's workdir, the checkpoint step directory or None for "latest") of a workdir or a step dir."""
    if workdir_layout.is_step_dir(path):
        return path.parent.parent, path
    return path, None


def _load_bertjax(path: Path, read_params: bool) -> Pretrained:
    workdir, step_dir = _run_paths(path)
    model_dir = workdir / workdir_layout.MODEL_DIR
    if not (model_dir / hf.CONFIG_NAME).is_file():
        raise BertjaxError(f"{workdir} has no {workdir_layout.MODEL_DIR}/{hf.CONFIG_NAME} (written when a run starts); point at a "
                           "workdir of a bertjax run, or at its export directory")
    data = hf.read_config_data(model_dir)
    config = BertConfig.from_dict(data)
    vocab, lower, strip, casing_from = _vocab_and_casing(model_dir, None)
    params = None
    if read_params:
        step_dir = step_dir or _latest_step_dir(workdir)
        # A vocab-padded run (config.model.vocab_pad_multiple) stores W rows; what leaves a run has V.
        params = _flat(unpad_vocab(_read_checkpoint_params(step_dir / workdir_layout.STATE_ITEM), config.vocab_size))
    return _with_head(Pretrained(BERTJAX_RUN, path, config, params, vocab, lower, strip, casing_from), data)


def _latest_step_dir(workdir: Path) -> Path:
    step = workdir_layout.latest_step(workdir)
    if step is None:
        raise BertjaxError(f"{workdir} has no finished checkpoint in {workdir_layout.CHECKPOINTS_DIR}/; train first, "
                           "or point at its export directory")
    return workdir / workdir_layout.CHECKPOINTS_DIR / str(step)


def _read_checkpoint_params(state_dir: Path) -> dict:
    """The `params` subtree of a TrainState checkpoint, as numpy arrays (shapes from the checkpoint's metadata)."""
    checkpointer = ocp.PyTreeCheckpointer()
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # Orbax warns that the step's metadata file is not in the item directory
    try:
        stored = checkpointer.metadata(state_dir)
        if stored is None or stored.item_metadata is None:
            raise ValueError("its Orbax metadata is missing or unreadable")
        metadata = stored.item_metadata.tree["params"]
        item = {"params": jax.tree.map(lambda m: np.zeros((), m.dtype), dict(metadata))}
        restore_args = {"params": jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), dict(metadata))}
        restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
            item=item, restore_args=restore_args, partial_restore=True))
    except Exception as e:  # noqa: BLE001  (Orbax/tensorstore raise many types for unreadable files)
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BertjaxError(f"checkpoint {state_dir.parent} is unreadable ({type(e).__name__}: {first_line}); "
                           "use another step, or the run's export directory") from e
    finally:
        logging.set_verbosity(verbosity)
    return restored["params"]


def _flat(params: dict) -> dict:
    """{path: float32 array} of BertForPreTraining (or fine-tuning head) params, with scanned layers unrolled."""
    if "layers" in params.get("bert", {}).get("encoder", {}):
        params = unstack_layers(params)
    return {path: np.asarray(value, np.float32) for path, value in traverse_util.flatten_dict(params).items()}


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face directories


def _load_hf(path: Path, read_params: bool) -> Pretrained:
    data = hf.read_config_data(path)
    config = BertConfig.from_dict(data)
    vocab, lower, strip, casing_from = _vocab_and_casing(path, None)
    pretrained = _with_head(Pretrained(HUGGING_FACE, path, config, None, vocab, lower, strip, casing_from), data)
    if read_params:
        params, _ = hf.map_state_dict(hf.load_state_dict(path), config, model=pretrained.head)
        pretrained = dataclasses.replace(pretrained, params=params)
    return pretrained


# ----------------------------------------------------------------------------------------------------------------
# Original TF checkpoints


def _load_tf(path: Path, read_params: bool) -> Pretrained:
    config_path = path / TF_CONFIG_NAME
    if not config_path.is_file():
        raise BertjaxError(f"{config_path} does not exist; an original BERT checkpoint directory holds "
                           f"{TF_CONFIG_NAME}, vocab.txt and bert_model.ckpt.*")
    config = BertConfig.from_json_file(config_path)
    vocab, lower, strip, casing_from = _vocab_and_casing(path, _casing_from_name(path))
    params = None
    if read_params:
        params = tf_checkpoint.read_params(tensor_bundle.resolve_prefix(path), config)
    return Pretrained(ORIGINAL_TF, path, config, params, vocab, lower, strip, casing_from)


def _casing_from_name(path: Path) -> bool | None:
    """google-research/bert names its downloads `uncased_L-12_H-768_A-12`, `cased_...`, `multi_cased_...`."""
    name = _real_name(path).lower()
    if re.search(r"(^|[_-])uncased([_-]|$)", name):
        return True
    if re.search(r"(^|[_-])cased([_-]|$)", name):
        return False
    return None


# ----------------------------------------------------------------------------------------------------------------
# Vocab and casing


def _real_name(path: Path) -> str:
    """The name of a directory, through a local symlink (`bert -> uncased_L-12_H-768_A-12`)."""
    return path.name if paths.is_remote(path) else path.resolve().name


def _vocab_and_casing(directory: Path, from_name: bool | None) -> tuple[Path | None, bool | None, bool | None, str]:
    """(vocab.txt or None, do_lower_case, strip_accents, how they were decided) of a checkpoint directory.

    tokenizer_config.json wins; then the directory's name (original TF downloads); then the vocab itself (uncased if
    at most 1% of its entries have upper case, as BertTokenizer.from_vocab guesses).
    """
    vocab = directory / vocab_files.VOCAB_FILE
    if not vocab.is_file():
        return None, None, None, "no vocab.txt"
    stored = vocab_files.read_tokenizer_config(directory)
    if stored is not None:
        return vocab, stored["do_lower_case"], stored["strip_accents"], vocab_files.CONFIG_FILE
    if from_name is not None:
        return vocab, from_name, from_name, f"the directory name {_real_name(directory)!r}"
    lower = vocab_files.guess_do_lower_case(vocab_files.read_vocab(vocab))
    return vocab, lower, lower, "the vocab, which has " + ("no upper-case entries" if lower else "upper-case entries")
