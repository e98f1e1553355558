"""Hugging Face BERT directories <-> bertjax parameters: weights (safetensors, pytorch_model.bin), config, tokenizer.

One rule maps every bertjax parameter path to its Hugging Face state-dict key (the original TF variable names of `modeling.py`, as `transformers` spells them):
`/` -> `.`, `layer_{i}` -> `layer.{i}`, `kernel` -> `weight` (transposed: Flax kernels are [in, out], PyTorch Linear
weights [out, in]), `embedding`/`scale` -> `weight`, `cls/predictions/output_bias` -> `cls.predictions.bias`.
The MLM decoder is tied to the word embeddings, so `cls.predictions.decoder.weight` is never stored by bertjax and is
checked against the word embeddings when a checkpoint has it.
Vocab padding (`BertForPreTraining(vocab_pad_multiple=...)`) never reaches a Hugging Face directory: `save_pretrained`
writes the [V, H] embeddings and [V] bias, and `map_state_dict` zero-pads them for a padded `model`.
"""

from __future__ import annotations

import json
import os
from etils.epath import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from bertjax import paths
from bertjax.convert import hf_heads, torch_bin
from bertjax.data import vocab_files
from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import (VOCAB_PARAM_PATHS, BertConfig, BertForPreTraining, abstract_params, stack_layers,
                           unpad_vocab, unstack_layers)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARDED_WEIGHTS_INDEX = "model.safetensors.index.json"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"

# Keys Hugging Face checkpoints may hold that carry no parameter of their own.
_BUFFER_KEYS = ("bert.embeddings.position_ids",)
_TIED_DECODER_WEIGHT = "cls.predictions.decoder.weight"
_DECODER_BIAS_ALIAS = "cls.predictions.decoder.bias"


def hf_key(path: tuple[str, ...]) -> tuple[str, bool]:
    """The Hugging Face state-dict key of a bertjax parameter path, and whether its array is transposed."""
    if path == ("cls", "predictions", "output_bias"):
        return "cls.predictions.bias", False
    *scopes, leaf = path
    scopes = ["layer." + s.split("_", 1)[1] if s.startswith("layer_") else s for s in scopes]
    name = {"kernel": "weight", "embedding": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join([*scopes, name]), leaf == "kernel"


def _normalize_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Adds the `bert.` prefix of a bare BertModel state dict and renames legacy LayerNorm gamma/beta."""
    bare = not any(k.startswith("bert.") for k in state_dict)
    normalized = {}
    for key, value in state_dict.items():
        if bare and key.startswith(("embeddings.", "encoder.", "pooler.")):
            key = "bert." + key
        if "LayerNorm." in key:
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        normalized[key] = np.asarray(value)
    return normalized


# The heads of BertForPreTraining (bertjax scope -> HF key prefix). BertForMaskedLM has no pooler and no NSP head;
# a bare BertModel has none of them.
HEAD_SCOPES = {("bert", "pooler"): "bert.pooler", ("cls", "predictions"): "cls.predictions",
               ("cls", "seq_relationship"): "cls.seq_relationship"}


def head_of(path: tuple[str, ...]) -> str | None:
    """The HF prefix of the head a bertjax parameter path belongs to, or None for the encoder proper."""
    return next((prefix for scope, prefix in HEAD_SCOPES.items() if path[:len(scope)] == scope), None)


def map_state_dict(state_dict: Mapping[str, np.ndarray], config: BertConfig, *, model=None,
                   encoder_only: bool = False) -> tuple[dict, list[tuple[str, ...]]]:
    """({bertjax path: array} found in a Hugging Face state dict, [bertjax paths it lacks]).

    The paths are those of `model`'s params with unrolled layers (a fine-tuning head of `bertjax.heads`, built with
    `config`), by default a BertForPreTraining of `config`. Unexpected keys, shape mismatches and an untied decoder
    are errors (a bare BertModel's keys get their `bert.` prefix first). With `encoder_only=True` only the `bert`
    subtree is mapped, and non-encoder keys (say a fine-tuned classifier) are ignored. A vocab-padded `model`
    gets the checkpoint's [V, H] word embeddings and [V] output bias zero-padded to its W rows.
    """
    tensors = _normalize_keys(state_dict)
    for key in _BUFFER_KEYS:
        tensors.pop(key, None)
    decoder_weight = tensors.pop(_TIED_DECODER_WEIGHT, None)
    decoder_bias = tensors.pop(_DECODER_BIAS_ALIAS, None)
    if decoder_bias is not None:
        tensors.setdefault("cls.predictions.bias", decoder_bias)
    word_embeddings = tensors.get("bert.embeddings.word_embeddings.weight")
    if decoder_weight is not None and word_embeddings is not None and not np.array_equal(decoder_weight,
                                                                                         word_embeddings):
        raise BertjaxError(
            f"{_TIED_DECODER_WEIGHT} differs from the word embeddings; bertjax ties the MLM decoder to the "
            "embeddings, so an untied checkpoint cannot be loaded (load it with encoder_only=True to drop the head)"
        )

    model = BertForPreTraining(config) if model is None else model.clone(scan_layers=False)
    template = traverse_util.flatten_dict(abstract_params(model))
    flat, missing, mismatched = {}, [], []
    for path, spec in template.items():
        if encoder_only and path[0] != "bert":
            continue
        key, transpose = hf_key(path)
        if key not in tensors:
            missing.append(path)
            continue
        value = tensors.pop(key)
        value = value.T if transpose else value
        if path in VOCAB_PARAM_PATHS and value.shape[0] == config.vocab_size < spec.shape[0]:
            value = np.pad(value, [(0, spec.shape[0] - value.shape[0])] + [(0, 0)] * (value.ndim - 1))
        if value.shape != spec.shape:
            mismatched.append(f"{key}: checkpoint {value.shape[::-1] if transpose else value.shape}, "
                              f"config expects {spec.shape[::-1] if transpose else spec.shape}")
            continue
        flat[path] = value
    unexpected = [k for k in tensors if not (encoder_only and not k.startswith("bert."))]
    problems = []
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(sorted(unexpected)[:8]))
    if problems:
        raise BertjaxError("the checkpoint does not match its BERT config: " + " | ".join(problems)
                           + "; check that config.json belongs to this checkpoint")
    return flat, missing


def params_from_hf(state_dict: Mapping[str, np.ndarray], config: BertConfig, *,
                   encoder_only: bool = False) -> dict:
    """bertjax params (unrolled layers) from a Hugging Face BertForPreTraining or BertModel state dict.

    Missing or unexpected keys and shape mismatches are errors. With `encoder_only=True`, only the `bert` subtree
    is loaded and returned: missing `cls.*` heads and unexpected non-encoder keys are allowed.
    """
    flat, missing = map_state_dict(state_dict, config, encoder_only=encoder_only)
    if missing:
        keys = sorted(hf_key(path)[0] for path in missing)
        raise BertjaxError(f"the checkpoint lacks weights: missing keys ({len(keys)}): " + ", ".join(keys[:8])
                           + ("" if encoder_only else "; pass encoder_only=True to load only the encoder"))
    return traverse_util.unflatten_dict(flat)


def params_to_hf(params: Mapping) -> dict[str, np.ndarray]:
    """A Hugging Face BertForPreTraining state dict (float32 numpy) from bertjax params (scanned or unrolled).

    The tied `cls.predictions.decoder.weight` is left out, as Hugging Face's own safetensors files do.
    """
    if SCANNED_LAYERS_NAME in params.get("bert", {}).get("encoder", {}):
        params = unstack_layers(params)
    state_dict = {}
    for path, value in traverse_util.flatten_dict(params).items():
        key, transpose = hf_key(path)
        value = np.asarray(value, dtype=np.float32)
        state_dict[key] = np.ascontiguousarray(value.T if transpose else value)
    return state_dict


def head_params_from_hf(state_dict: Mapping[str, np.ndarray], head_model) -> dict:
    """A fine-tuning head's params (`bertjax.heads`) from a Hugging Face state dict of the same architecture.

    One mapping: `map_state_dict(..., model=head_model)`. Missing or unexpected keys and shape mismatches are
    BertjaxErrors. Params come out in `head_model.param_dtype`, scanned if `head_model.scan_layers`.
    """
    spec = hf_heads.head_spec(head_model)
    flat, missing = map_state_dict(state_dict, head_model.config, model=head_model)
    if missing:
        raise BertjaxError(f"the checkpoint is not a {spec.architecture} of this config: missing keys: "
                           + ", ".join(sorted(hf_key(p)[0] for p in missing)[:8])
                           + "; a pretraining checkpoint loads with heads.load_encoder instead")
    params = traverse_util.unflatten_dict(flat)
    if head_model.scan_layers:
        params = stack_layers(params, head_model.config.num_hidden_layers)
    return jax.tree.map(lambda x: jnp.asarray(x, head_model.param_dtype), params)


def head_params_to_hf(params: Mapping, head_model) -> dict[str, np.ndarray]:
    """The Hugging Face state dict (float32 numpy) of a fine-tuning head's params (`params_to_hf`; the head is
    checked)."""
    hf_heads.head_spec(head_model)
    return params_to_hf(params)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    path = paths.path(path)
    if not path.is_file():
        raise BertjaxError(f"weights file {path} does not exist; pass a directory with {WEIGHTS_NAME} or the file")
    try:
        return safetensors.numpy.load(path.read_bytes()) if paths.is_remote(path) else load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise BertjaxError(f"weights file {path} is not a readable safetensors file ({e}); re-download or re-export it")


def save_safetensors(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes numpy arrays to a safetensors file (with the metadata Hugging Face expects)."""
    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path), metadata={"format": "pt"})


def load_state_dict(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The weights of a Hugging Face directory: model.safetensors (or its sharded index), else pytorch_model.bin."""
    directory = paths.path(directory)
    if (directory / WEIGHTS_NAME).is_file():
        return load_safetensors(directory / WEIGHTS_NAME)
    if (directory / SHARDED_WEIGHTS_INDEX).is_file():
        shard_names = sorted(set(_read_json(directory / SHARDED_WEIGHTS_INDEX).get("weight_map", {}).values()))
        return {k: v for name in shard_names for k, v in load_safetensors(directory / name).items()}
    if (directory / LEGACY_WEIGHTS_NAME).is_file():
        return torch_bin.load_state_dict(directory / LEGACY_WEIGHTS_NAME)
    raise BertjaxError(f"{directory} has no {WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME}; pass a Hugging Face BERT "
                       "directory with its weights")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BertjaxError(f"{path} is not readable JSON ({e}); re-download or rewrite it") from None


def read_config_data(directory: str | os.PathLike) -> dict:
    """The config.json of a Hugging Face directory as a dict (which must describe a BERT; any architecture)."""
    path = paths.path(directory) / CONFIG_NAME
    if not path.is_file():
        raise BertjaxError(f"{path} does not exist; a Hugging Face BERT directory holds config.json and its weights")
    data = _read_json(path)
    if data.get("model_type", "bert") != "bert":
        raise BertjaxError(f"{path} describes a {data['model_type']!r} model, not BERT; bertjax converts BERT only")
    return data


def read_config(directory: str | os.PathLike) -> BertConfig:
    """The BertConfig of a Hugging Face directory's config.json (which must describe a BERT)."""
    return BertConfig.from_dict(read_config_data(directory))


def load_hf_checkpoint(directory: str | os.PathLike, *, encoder_only: bool = False) -> tuple[BertConfig, dict]:
    """(config, params) from a Hugging Face BERT directory holding config.json and its weights (all heads)."""
    config = read_config(directory)
    return config, params_from_hf(load_state_dict(directory), config, encoder_only=encoder_only)


def load_hf_head(directory: str | os.PathLike, *, num_labels: int | None = None, **module_kwargs) -> tuple:
    """(head model, params) of a fine-tuned Hugging Face directory whose config.json `architectures[0]` is
    BertForSequenceClassification, BertForTokenClassification or BertForQuestionAnswering.

    `num_labels`, when given, must be the checkpoint's (else a BertjaxError naming both); `module_kwargs` are dtype,
    param_dtype, scan_layers, remat. Params come out as `head_params_from_hf` makes them.
    """
    head_model = hf_heads.head_from_hf_config(read_config_data(directory), num_labels=num_labels, **module_kwargs)
    return head_model, head_params_from_hf(load_state_dict(directory), head_model)


def save_pretrained(directory: str | os.PathLike, config: BertConfig, params: Mapping | None = None, *,
                    head_model=None, labels=None, vocab_file: str | os.PathLike | None = None,
                    do_lower_case: bool | None = None, strip_accents: bool | None = None) -> Path:
    """Write a Hugging Face BERT directory: config.json, model.safetensors (given params) and, given a vocab,
    vocab.txt and tokenizer_config.json. The one writer of exports (`python -m bertjax.convert to-hf`, the end of a run).

    transformers' `BertForPreTraining.from_pretrained` loads the weights (PyTorch key names, `format: pt`, the
    decoder tied) and `BertTokenizerFast.from_pretrained` tokenizes as bertjax does (same vocab and casing).
    With `head_model` (a fine-tuning head of `bertjax.heads`, built with `config`), `params` are its params and the
    directory is the matching transformers class (config.json `architectures`, `id2label`/`label2id` from `labels`,
    default LABEL_{i}; `classifier_dropout`): `BertForSequenceClassification.from_pretrained` etc. load it.
    Vocab-padded params (a padded run's state) are written unpadded: config.vocab_size rows, as transformers expects.
    """
    extra = None
    if head_model is not None:
        if head_model.config != config:
            raise BertjaxError("save_pretrained: head_model.config differs from config; pass the head's own config")
        extra = hf_heads.hf_config_fields(head_model, labels)
    elif labels is not None:
        raise BertjaxError("save_pretrained: labels name the classes of a head; pass head_model too")
    state_dict = None
    if params is not None:
        state_dict = params_to_hf(unpad_vocab(params, config.vocab_size))
        if head_model is not None:
            expected = {hf_key(path)[0] for path in traverse_util.flatten_dict(
                abstract_params(head_model.clone(scan_layers=False)))}
            if set(state_dict) != expected:
                raise BertjaxError(f"save_pretrained: the params are not a {extra['architectures'][0]}'s: "
                                   f"missing {sorted(expected - set(state_dict))[:6]}, unexpected "
                                   f"{sorted(set(state_dict) - expected)[:6]}; pass the params of head_model")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.to_json_file(directory / CONFIG_NAME, extra)
    if state_dict is not None:
        save_safetensors(state_dict, directory / WEIGHTS_NAME)
    if vocab_file is not None:
        write_tokenizer_files(directory, vocab_file, do_lower_case, strip_accents, config.max_position_embeddings)
    return directory


def write_tokenizer_files(directory: Path, vocab_file: str | os.PathLike, do_lower_case: bool,
                          strip_accents: bool | None, model_max_length: int) -> None:
    """vocab.txt and a tokenizer_config.json that both transformers and bertjax's tokenizer read."""
    if do_lower_case is None:
        raise BertjaxError(f"the casing of {vocab_file} is unknown; pass do_lower_case")
    source = vocab_files.resolve_vocab_path(vocab_file)
    target = paths.path(directory) / vocab_files.VOCAB_FILE
    if source != target:
        target.write_bytes(source.read_bytes())
    strip_accents = do_lower_case if strip_accents is None else strip_accents
    vocab_files.write_tokenizer_config(directory, do_lower_case, strip_accents, model_max_length)
