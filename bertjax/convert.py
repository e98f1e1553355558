"""Hugging Face BERT checkpoints <-> bertjax parameters, and safetensors I/O.

One rule maps every bertjax parameter path to its Hugging Face state-dict key (shared REFERENCE.md section 2):
`/` -> `.`, `layer_{i}` -> `layer.{i}`, `kernel` -> `weight` (transposed: Flax kernels are [in, out], PyTorch Linear
weights [out, in]), `embedding`/`scale` -> `weight`, `cls/predictions/output_bias` -> `cls.predictions.bias`.
The MLM decoder is tied to the word embeddings, so `cls.predictions.decoder.weight` is never stored by bertjax and is
checked against the word embeddings when a checkpoint has it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
from flax import traverse_util

from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME
from bertjax.model import BertConfig, BertForPreTraining, abstract_params, unstack_layers

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

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


def params_from_hf(state_dict: Mapping[str, np.ndarray], config: BertConfig, *,
                   encoder_only: bool = False) -> dict:
    """bertjax params (unrolled layers) from a Hugging Face BertForPreTraining or BertModel state dict.

    Missing or unexpected keys and shape mismatches are errors. With `encoder_only=True`, only the `bert` subtree
    is loaded and returned: missing `cls.*` heads and unexpected non-encoder keys (say a fine-tuned classifier)
    are allowed.
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

    template = traverse_util.flatten_dict(abstract_params(BertForPreTraining(config)))
    flat, missing, mismatched = {}, [], []
    for path, spec in template.items():
        if encoder_only and path[0] != "bert":
            continue
        key, transpose = hf_key(path)
        if key not in tensors:
            missing.append(key)
            continue
        value = tensors.pop(key)
        value = value.T if transpose else value
        if value.shape != spec.shape:
            mismatched.append(f"{key}: checkpoint {value.shape[::-1] if transpose else value.shape}, "
                              f"config expects {spec.shape[::-1] if transpose else spec.shape}")
            continue
        flat[path] = value
    unexpected = [k for k in tensors if not (encoder_only and not k.startswith("bert."))]
    problems = []
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if missing:
        problems.append(f"missing keys ({len(missing)}): " + ", ".join(sorted(missing)[:8]))
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(sorted(unexpected)[:8]))
    if problems:
        hint = ("check that config.json belongs to this checkpoint"
                + ("" if encoder_only else ", or pass encoder_only=True to load only the encoder"))
        raise BertjaxError("the checkpoint does not match the BERT config: " + " | ".join(problems) + f"; {hint}")
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


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not Path(path).is_file():
        raise BertjaxError(f"weights file {path} does not exist; pass a directory with {WEIGHTS_NAME} or the file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BertjaxError(f"weights file {path} is not a readable safetensors file ({e}); re-download or re-export it")


def save_safetensors(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes numpy arrays to a safetensors file (with the metadata Hugging Face expects)."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path), metadata={"format": "pt"})


def load_hf_checkpoint(directory: str | os.PathLike, *, encoder_only: bool = False) -> tuple[BertConfig, dict]:
    """(config, params) from a Hugging Face BERT directory holding config.json and model.safetensors."""
    directory = Path(directory)
    config = BertConfig.from_json_file(directory / CONFIG_NAME)
    params = params_from_hf(load_safetensors(directory / WEIGHTS_NAME), config, encoder_only=encoder_only)
    return config, params


def save_hf_checkpoint(directory: str | os.PathLike, config: BertConfig, params: Mapping) -> None:
    """Writes config.json and model.safetensors that transformers' `BertForPreTraining.from_pretrained` loads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.to_json_file(directory / CONFIG_NAME)
    save_safetensors(params_to_hf(params), directory / WEIGHTS_NAME)
