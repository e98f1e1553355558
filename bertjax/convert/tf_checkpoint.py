"""google-research/bert TensorFlow checkpoints (`bert_model.ckpt.index` + `.data-*`) read without TensorFlow.

Variable names are those of google-research/bert: `modeling.py: BertModel` builds `bert/embeddings` (in
`embedding_lookup` and `embedding_postprocessor`: `word_embeddings` [V, H], `token_type_embeddings`,
`position_embeddings`, `LayerNorm/{gamma,beta}` from `layer_norm`), `bert/encoder/layer_{i}` (in `transformer_model`
and `attention_layer`: `attention/self/{query,key,value}`, `attention/output/dense`, `attention/output/LayerNorm`,
`intermediate/dense`, `output/dense`, `output/LayerNorm`) and `bert/pooler/dense`; dense kernels are [in, out], as in
Flax. `run_pretraining.py: get_masked_lm_output` adds `cls/predictions/transform/{dense,LayerNorm}` and
`cls/predictions/output_bias` [V] (the decoder is tied to the word embeddings), `get_next_sentence_output` adds
`cls/seq_relationship/output_weights` [2, H] (transposed here into Flax's [H, 2] kernel) and `output_bias` [2].
The checkpoints that `run_pretraining.py: model_fn_builder` saves also hold `optimization.py:
AdamWeightDecayOptimizer`'s slots `<variable>/adam_m`, `<variable>/adam_v` and `global_step` (int64), which
`is_optimizer_or_counter` recognises so they are never read.

The file format is read by `bertjax.convert.tensor_bundle`.
"""

from __future__ import annotations

import functools
import os
import re
from etils.epath import Path
from typing import NamedTuple

import numpy as np
from flax import traverse_util

from bertjax.convert.hf import head_of
from bertjax.convert.tensor_bundle import FLOAT_DTYPES, Bundle, resolve_prefix, some_names
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, abstract_params

CONFIG_NAME = "bert_config.json"

# ---------------------------------------------------------------------------------- names and bertjax params
_OPTIMIZER_SLOTS = frozenset({
    "adam_m", "adam_v",      # optimization.py: AdamWeightDecayOptimizer (google-research/bert, NVIDIA, ALBERT)
    "Adam", "Adam_1",        # tf.compat.v1.train.AdamOptimizer slots m, v
    "LAMB", "LAMB_1",        # LAMB optimizers named like the TF1 slot optimizers
})
_COUNTERS = frozenset({
    "global_step",                              # tf.compat.v1.train.get_or_create_global_step
    "beta1_power", "beta2_power",               # tf.compat.v1.train.AdamOptimizer's accumulators
    "loss_scale", "current_loss_scale",         # dynamic loss scaling of mixed-precision forks
    "good_steps", "bad_steps",
})


def is_optimizer_or_counter(name: str) -> bool:
    """True for optimizer slots (`<variable>/adam_m`, `/adam_v`, `/Adam`, `/Adam_1`, `/LAMB`, `/LAMB_1`) and
    training counters (`global_step`, `beta1_power`, `beta2_power`, loss-scale variables), which hold no weights."""
    *scopes, leaf = name.split("/")
    return leaf in _COUNTERS or (bool(scopes) and leaf in _OPTIMIZER_SLOTS)


_LAYER = r"bert/encoder/layer_(?:0|[1-9][0-9]*)"
_MODEL_VARIABLE = re.compile(
    r"bert/embeddings/(?:word|token_type|position)_embeddings"
    rf"|(?:bert/embeddings|{_LAYER}/attention/output|{_LAYER}/output|cls/predictions/transform)"
    r"/LayerNorm/(?:gamma|beta)"
    rf"|(?:{_LAYER}/attention/self/(?:query|key|value)|{_LAYER}/(?:attention/output|intermediate|output)/dense"
    r"|bert/pooler/dense|cls/predictions/transform/dense)/(?:kernel|bias)"
    r"|cls/predictions/output_bias|cls/seq_relationship/output_(?:weights|bias)"
)
_RENAMED = {  # TF name -> (bertjax path, transposed)
    "cls/seq_relationship/output_weights": (("cls", "seq_relationship", "kernel"), True),  # [2, H] -> [H, 2]
    "cls/seq_relationship/output_bias": (("cls", "seq_relationship", "bias"), False),
}
_LAYER_NORM_LEAVES = {"gamma": "scale", "beta": "bias"}


def tf_name_to_flax_path(name: str) -> tuple[tuple[str, ...], bool]:
    """The bertjax parameter path of a google-research/bert variable, and whether its array must be transposed.

    Raises BertjaxError for names that are not BertModel or pretraining-head variables (optimizer slots, counters,
    fine-tuning heads such as run_classifier.py's `output_weights`).
    """
    if not _MODEL_VARIABLE.fullmatch(name):
        raise BertjaxError(f"{name!r} is not a variable of google-research/bert's BertModel or pretraining heads")
    if name in _RENAMED:
        return _RENAMED[name]
    *scopes, leaf = name.split("/")
    if leaf.endswith("_embeddings"):
        return (*scopes, leaf, "embedding"), False
    return (*scopes, _LAYER_NORM_LEAVES.get(leaf, leaf) if scopes[-1] == "LayerNorm" else leaf), False




def _tf_name(path: tuple[str, ...]) -> str:
    """The inverse of tf_name_to_flax_path (for messages)."""
    for name, (renamed, _) in _RENAMED.items():
        if renamed == path:
            return name
    *scopes, leaf = path
    if leaf == "embedding":
        return "/".join(scopes)
    if scopes[-1] == "LayerNorm":
        leaf = {"scale": "gamma", "bias": "beta"}[leaf]
    return "/".join([*scopes, leaf])


@functools.lru_cache(maxsize=8)
def _flat_template(config: BertConfig) -> dict:
    """path -> ShapeDtypeStruct of BertForPreTraining(config)'s params."""
    return traverse_util.flatten_dict(abstract_params(BertForPreTraining(config)))


class TFCheckpointParams(NamedTuple):
    """What params_from_tf_checkpoint returns."""

    params: dict                             # nested bertjax params (unrolled layers), numpy float32
    skipped_names: list[str]                 # checkpoint variables not loaded (optimizer slots, counters, unknowns)
    missing_heads: list[tuple[str, ...]]     # head param paths the checkpoint lacks (initialise them yourself)


def params_from_tf_checkpoint(prefix: str | os.PathLike, config: BertConfig | str | os.PathLike, *,
                              allow_missing_heads: bool = False, skip_unknown: bool = False,
                              verify_crc: bool = True) -> TFCheckpointParams:
    """bertjax BertForPreTraining params from a google-research/bert TF checkpoint, checked against `config`.

    `config` is a BertConfig or the path of the checkpoint's bert_config.json. Only model variables are read;
    optimizer slots and counters are listed in `skipped_names`. Every encoder variable must be present with the
    shape the config implies. Missing heads (the pooler, `cls/predictions`, `cls/seq_relationship`: `hf.head_of`)
    are an error unless `allow_missing_heads`, in which case their bertjax paths come back in `missing_heads`. Names
    that are neither model variables nor optimizer state (a fine-tuned task head) are an error unless `skip_unknown`.
    """
    if isinstance(config, BertConfig):
        return _params_from_bundle(Bundle(prefix), config, "the BERT config", allow_missing_heads, skip_unknown,
                                   verify_crc)
    return _params_from_bundle(Bundle(prefix), BertConfig.from_json_file(config), os.fspath(config),
                               allow_missing_heads, skip_unknown, verify_crc)


def read_params(prefix: str | os.PathLike, config: BertConfig, *, skip_unknown: bool = False,
                verify_crc: bool = True) -> dict[tuple[str, ...], np.ndarray]:
    """{bertjax path: float32 array} of the checkpoint's model variables, checked against `config`; heads it lacks
    are simply absent (for callers that initialise them, as `sources.complete_heads` does)."""
    loaded = params_from_tf_checkpoint(prefix, config, allow_missing_heads=True, skip_unknown=skip_unknown,
                                       verify_crc=verify_crc)
    return traverse_util.flatten_dict(loaded.params)


def load_tf_checkpoint(path: str | os.PathLike, config_file: str | os.PathLike | None = None, *,
                       allow_missing_heads: bool = False, skip_unknown: bool = False,
                       verify_crc: bool = True) -> tuple[BertConfig, TFCheckpointParams]:
    """(config, params_from_tf_checkpoint(...)) for a checkpoint prefix or the directory of a released BERT
    (bert_config.json, bert_model.ckpt.*); `config_file` defaults to bert_config.json next to the checkpoint."""
    prefix = resolve_prefix(path)
    config_file = Path(config_file) if config_file is not None else prefix.parent / CONFIG_NAME
    config = BertConfig.from_json_file(config_file)
    return config, _params_from_bundle(Bundle(prefix), config, os.fspath(config_file), allow_missing_heads,
                                       skip_unknown, verify_crc)


def _params_from_bundle(bundle: Bundle, config: BertConfig, config_source: str, allow_missing_heads: bool,
                        skip_unknown: bool, verify_crc: bool) -> TFCheckpointParams:
    template = _flat_template(config)
    skipped, unknown, wanted = [], [], {}
    for name in sorted(bundle.entries):
        if is_optimizer_or_counter(name):
            skipped.append(name)
        elif _MODEL_VARIABLE.fullmatch(name):
            wanted[name] = tf_name_to_flax_path(name)
        else:
            unknown.append(name)
    if unknown and not skip_unknown:
        raise BertjaxError(f"checkpoint {bundle.index_path} has {len(unknown)} variable(s) that are not BERT "
                           f"pretraining variables: {some_names(unknown)}; "
                           "pass skip_unknown=True to leave them out (e.g. a fine-tuned task head)")
    skipped += unknown

    by_path = {path: (name, transpose) for name, (path, transpose) in wanted.items()}
    extra = sorted(name for name, (path, _) in wanted.items() if path not in template)
    missing = [path for path in template if path not in by_path]
    missing_encoder = [_tf_name(p) for p in missing if head_of(p) is None]
    missing_heads = [p for p in missing if head_of(p) is not None]
    hint = f"{config_source} does not belong to this checkpoint"
    if extra or missing_encoder:
        parts = []
        if missing_encoder:
            parts.append(f"missing {some_names(missing_encoder)}")
        if extra:
            parts.append(f"not in the config: {some_names(extra)}")
        raise BertjaxError(f"checkpoint {bundle.index_path} does not have the variables the config implies "
                           f"({'; '.join(parts)}); {hint} (check num_hidden_layers)")
    if missing_heads and not allow_missing_heads:
        raise BertjaxError(f"checkpoint {bundle.index_path} lacks head variables "
                           f"{some_names([_tf_name(p) for p in missing_heads])}; pass allow_missing_heads=True to "
                           "initialise them instead")

    mismatched = []
    for path, (name, transpose) in by_path.items():
        stored = tuple(bundle.entries[name].shape)
        expected = template[path].shape[::-1] if transpose else template[path].shape
        if stored != tuple(expected):
            mismatched.append(f"{name} is {list(stored)} in the checkpoint but {list(expected)} for the config")
    if mismatched:
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise BertjaxError(f"checkpoint {bundle.index_path} does not match the BERT config: {sorted(mismatched)[0]}"
                           f"{more}; {hint}")

    arrays = bundle.read(sorted(wanted), verify_crc)
    flat = {}
    for path, (name, transpose) in by_path.items():
        value = arrays[name]
        if value.dtype not in FLOAT_DTYPES:
            raise BertjaxError(f"{name} in {bundle.index_path} has dtype {value.dtype}, not a float type; the "
                               "checkpoint is not a BERT checkpoint bertjax can load")
        value = value.astype(np.float32)
        flat[path] = np.ascontiguousarray(value.T) if transpose else value
    return TFCheckpointParams(traverse_util.unflatten_dict(flat), skipped, missing_heads)
