"""Fine-tuning heads beside `BertForPreTraining`: sequence classification/regression, token classification and
extractive question answering, as google-research/bert `run_classifier.py` / `run_squad.py` and Hugging Face build them.

Parameter names are Hugging Face's (`bert/...`, `classifier/{kernel,bias}`, `qa_outputs/{kernel,bias}`), so
`bertjax.convert.hf.hf_key` maps them unchanged. `init_params` / `abstract_params` of `bertjax.model` take these
modules as they are (they call them with input_ids, input_mask, segment_ids).

Shapes ride in names (legend in `bertjax/__init__.py`), plus C: classes (labels) of a classification head.
Logits are float32 (or wider, `accum_dtype`) whatever the compute dtype.

Fine-tuning starts from a pretrained checkpoint with `load_encoder(init_params(head, rng), pretrained_params)`. How
each head maps to Hugging Face (architecture names, config fields, state dicts) is `bertjax.convert`'s business:
`convert.hf_heads` and `convert.hf.load_hf_head` / `hf.save_pretrained(..., head_model=head)`. Token classification and QA have no pooler (`BertModel(add_pooling_layer=False)`), as in transformers.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp
from flax import traverse_util

from bertjax.errors import BertjaxError
from bertjax.layers import SCANNED_LAYERS_NAME, accum_dtype, dense
from bertjax.model import BertConfig, BertModel, stack_layers, unstack_layers

Dtype = Any


def _encode(head: nn.Module, input_ids, input_mask, segment_ids, deterministic: bool, pooler: bool) -> dict:
    """Runs the head's encoder, scope `bert` (call from a compact method of `head`)."""
    bert = BertModel(head.config, head.dtype, head.param_dtype, head.scan_layers, head.remat,
                     add_pooling_layer=pooler, dropout_bits=head.dropout_bits,
                     attention_impl=head.attention_impl, name="bert")
    return bert(input_ids, input_mask, segment_ids, deterministic)


def _output_layer(head: nn.Module, features: int, name: str, x):
    """The output projection in `accum_dtype` (float32 logits), truncated-normal kernel and zero bias as the original
    `output_weights` / `output_bias` of run_classifier.py and run_squad.py."""
    wide = accum_dtype(head.dtype)
    return dense(features, head.config, wide, head.param_dtype, name)(x.astype(wide))


class _ClassificationHead(nn.Module):
    """BertModel (`bert`) -> `outputs[FEATURES]` -> dropout -> `classifier` Dense(C), float32 `logits`.

    The dropout rate is `classifier_dropout` if set, else hidden_dropout_prob (Hugging Face's rule).
    """

    config: BertConfig
    num_labels: int = 2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_layers: bool = False
    remat: bool | str = False  # False, True or a REMAT_POLICIES name (bertjax.layers)
    classifier_dropout: float | None = None
    dropout_bits: int = 32  # the encoder's dropout masks (`layers.Dropout`; config.model.dropout_bits)
    attention_impl: str = "einsum"  # `layers.ATTENTION_IMPLS` (config.model.attention_impl)

    FEATURES = "pooled_output"

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, deterministic: bool = True) -> dict:
        outputs = _encode(self, input_ids, input_mask, segment_ids, deterministic,
                          pooler=self.FEATURES == "pooled_output")
        rate = self.config.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout
        features = nn.Dropout(rate)(outputs[self.FEATURES], deterministic=deterministic)
        return {**outputs, "logits": _output_layer(self, self.num_labels, "classifier", features)}


class BertForSequenceClassification(_ClassificationHead):
    """BertModel (`bert`) -> pooled_output -> dropout -> `classifier` Dense(C).

    `BertForSequenceClassification(config, num_labels, dtype, param_dtype, scan_layers, remat, classifier_dropout)`;
    `__call__(input_ids, input_mask, segment_ids, deterministic)` returns `logits` [B, C] (float32),
    `sequence_output` [B, T, H] and `pooled_output` [B, H]. `num_labels=1` is regression (STS-B): logits [B, 1].
    """

    FEATURES = "pooled_output"


class BertForTokenClassification(_ClassificationHead):
    """BertModel (`bert`) -> sequence_output -> dropout -> `classifier` Dense(C): `logits` [B, T, C] (float32).

    Same fields as BertForSequenceClassification; outputs `logits` and `sequence_output`. No pooler (no
    `bert/pooler` params, no `pooled_output`), as Hugging Face's BertForTokenClassification.
    """

    FEATURES = "sequence_output"


class BertForQuestionAnswering(nn.Module):
    """BertModel (`bert`) -> sequence_output -> `qa_outputs` Dense(2), no dropout (as run_squad.py and Hugging Face).

    Returns `start_logits` and `end_logits` [B, T] (float32) and `sequence_output`; no pooler, as Hugging Face's.
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_layers: bool = False
    remat: bool | str = False  # False, True or a REMAT_POLICIES name (bertjax.layers)
    dropout_bits: int = 32  # the encoder's dropout masks (`layers.Dropout`; config.model.dropout_bits)
    attention_impl: str = "einsum"  # `layers.ATTENTION_IMPLS` (config.model.attention_impl)

    num_labels = 2  # Hugging Face's config.num_labels of a QA model: start and end.

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, deterministic: bool = True) -> dict:
        outputs = _encode(self, input_ids, input_mask, segment_ids, deterministic, pooler=False)
        logits_BxTx2 = _output_layer(self, 2, "qa_outputs", outputs["sequence_output"])
        return {**outputs, "start_logits": logits_BxTx2[..., 0], "end_logits": logits_BxTx2[..., 1]}


def _path_str(path: tuple[str, ...]) -> str:
    return "/".join(path)


def load_encoder(head_params: Mapping, pretrained_params: Mapping) -> dict:
    """`head_params` with their `bert` subtree replaced by `pretrained_params["bert"]` (say a pretrained
    BertForPreTraining's, or `sources.load_pretrained(...).params` of any checkpoint); the head scopes keep their fresh
    values. This is how fine-tuning starts.

    The pooler follows the head: a pretrained pooler is dropped for a head without one (token classification, QA),
    and a head with one keeps its fresh pooler when the checkpoint has none. Scanned and unrolled layer layouts
    convert to the head's. Values are cast to the head's param dtypes (no-op, so bitwise equal, when they already
    match). A different tree or shape (another config) is a BertjaxError.
    """
    if "bert" not in pretrained_params:
        raise BertjaxError("the pretrained params have no `bert` subtree; pass the params of a BertForPreTraining "
                           "or of a fine-tuning head")

    def unrolled(params: Mapping) -> dict:
        params = {"bert": params["bert"]}
        return unstack_layers(params) if SCANNED_LAYERS_NAME in params["bert"]["encoder"] else params

    head_scanned = SCANNED_LAYERS_NAME in head_params["bert"]["encoder"]
    target = traverse_util.flatten_dict(unrolled(head_params)["bert"])
    given = traverse_util.flatten_dict(unrolled(pretrained_params)["bert"])
    pooler = [p for p in target if p[0] == "pooler"]
    given = {p: v for p, v in given.items() if p[0] != "pooler" or pooler}
    if pooler and not any(p[0] == "pooler" for p in given):
        given.update({p: target[p] for p in pooler})  # the head's fresh pooler
    problems = [f"missing bert/{_path_str(p)}" for p in sorted(set(target) - set(given))]
    problems += [f"unexpected bert/{_path_str(p)}" for p in sorted(set(given) - set(target))]
    problems += [f"bert/{_path_str(p)}: pretrained {given[p].shape}, head expects {target[p].shape}"
                 for p in sorted(set(target) & set(given)) if given[p].shape != target[p].shape]
    if problems:
        raise BertjaxError("the pretrained encoder does not fit the head's config: " + "; ".join(problems[:8])
                           + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
                           + "; build the head with the pretrained checkpoint's BertConfig")
    loaded = {"bert": traverse_util.unflatten_dict({p: jnp.asarray(given[p], target[p].dtype) for p in target})}
    if head_scanned:
        loaded = stack_layers(loaded, len({p[1] for p in target if p[0] == "encoder"}))
    return {**head_params, **loaded}
