"""How each fine-tuning head of `bertjax.heads` maps to Hugging Face: its transformers class name, the config.json
fields beside BertConfig's (architectures, id2label, label2id, classifier_dropout) and back.

The heads' parameter names are Hugging Face's, so their state dicts map with `hf.map_state_dict(..., model=head)`
(`hf.params_from_hf_head_state_dict`); this module knows only names and config fields, so `hf` imports it and
`bertjax.heads` knows nothing of Hugging Face.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import flax.linen as nn

from bertjax.errors import BertjaxError
from bertjax.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertjax.model import BertConfig


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """How a head maps to Hugging Face.

    architecture: the transformers class name (config.json `architectures`).
    scopes: the head's top-level parameter scopes beside `bert`; each is also its Hugging Face key prefix.
    """

    architecture: str
    scopes: tuple[str, ...]


HEADS: dict[type, HeadSpec] = {
    BertForSequenceClassification: HeadSpec("BertForSequenceClassification", ("classifier",)),
    BertForTokenClassification: HeadSpec("BertForTokenClassification", ("classifier",)),
    BertForQuestionAnswering: HeadSpec("BertForQuestionAnswering", ("qa_outputs",)),
}


def hf_architecture(data: Mapping) -> str | None:
    """The `architectures[0]` of a Hugging Face config dict if it is a fine-tuning head's, else None."""
    architecture = (data.get("architectures") or [None])[0]
    return architecture if any(spec.architecture == architecture for spec in HEADS.values()) else None


def head_spec(model: nn.Module) -> HeadSpec:
    """The HeadSpec of a head model (a BertjaxError for anything else)."""
    spec = HEADS.get(type(model))
    if spec is None:
        raise BertjaxError(f"{type(model).__name__} is not a fine-tuning head; use one of "
                           + ", ".join(s.architecture for s in HEADS.values()))
    return spec


def head_class(architecture: str) -> type:
    """The head module class of a transformers architecture name, e.g. "BertForSequenceClassification"."""
    for cls, spec in HEADS.items():
        if spec.architecture == architecture:
            return cls
    raise BertjaxError(f"architecture {architecture!r} has no bertjax head; use one of "
                       + ", ".join(s.architecture for s in HEADS.values()))


def hf_config_fields(model: nn.Module, labels: Sequence[str] | None = None) -> dict:
    """The config.json fields of a head beside BertConfig's: architectures, id2label, label2id (whose length is
    transformers' num_labels), and classifier_dropout when set. Labels default to Hugging Face's LABEL_{i}."""
    spec = head_spec(model)
    labels = list(labels) if labels is not None else [f"LABEL_{i}" for i in range(model.num_labels)]
    if len(labels) != model.num_labels:
        raise BertjaxError(f"{len(labels)} label names given for a head with num_labels={model.num_labels}")
    fields = {"architectures": [spec.architecture], "id2label": {str(i): name for i, name in enumerate(labels)},
              "label2id": {name: i for i, name in enumerate(labels)}}
    if getattr(model, "classifier_dropout", None) is not None:
        fields["classifier_dropout"] = model.classifier_dropout
    return fields


def hf_labels(data: Mapping) -> tuple[str, ...]:
    """The class names of a Hugging Face config dict (its id2label in id order; LABEL_{i} for num_labels alone)."""
    if data.get("id2label"):
        return tuple(name for _, name in sorted((int(i), name) for i, name in data["id2label"].items()))
    return tuple(f"LABEL_{i}" for i in range(int(data.get("num_labels", 2))))


def head_from_hf_config(data: Mapping, *, num_labels: int | None = None, **module_kwargs) -> nn.Module:
    """The head model a Hugging Face config dict describes (its `architectures[0]`, num_labels, classifier_dropout).

    `num_labels`, when given, must agree with the config's (a BertjaxError naming both otherwise: its classifier has
    that many outputs). `module_kwargs` are dtype, param_dtype, scan_layers, remat.
    """
    architecture = (data.get("architectures") or [None])[0]
    cls = head_class(architecture)
    config = BertConfig.from_dict(dict(data))
    stored = len(hf_labels(data))
    if num_labels is not None and num_labels != stored:
        raise BertjaxError(
            f"num_labels={num_labels} contradicts the checkpoint's {architecture}, whose classifier has {stored} "
            f"outputs (config.json id2label/num_labels); pass num_labels={stored} to reload it, or fine-tune a new "
            f"{num_labels}-label head from its encoder (heads.load_encoder)")
    if cls is BertForQuestionAnswering:
        return cls(config, **module_kwargs)
    return cls(config, stored, classifier_dropout=data.get("classifier_dropout"), **module_kwargs)


PRETRAINING_ARCHITECTURE = "BertForPreTraining"


def is_head(model: nn.Module) -> bool:
    """Whether `model` is a fine-tuning head (else the pretraining model)."""
    return type(model) in HEADS


def config_fields(model: nn.Module, labels: Sequence[str] | None = None) -> dict:
    """The config.json fields beside BertConfig's that a model is exported with: a head's (`hf_config_fields`), or
    the pretraining model's architectures."""
    return hf_config_fields(model, labels) if is_head(model) else {"architectures": [PRETRAINING_ARCHITECTURE]}


def describe(data: Mapping) -> str:
    """A config.json dict's model in words: its architecture and, for a classifier, its labels or regression."""
    architecture = (data.get("architectures") or [PRETRAINING_ARCHITECTURE])[0]
    if architecture in (PRETRAINING_ARCHITECTURE, "BertForQuestionAnswering") or hf_architecture(data) is None:
        return architecture
    labels = hf_labels(data)
    if len(labels) == 1:
        return f"{architecture} with 1 output (regression)"
    shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
    return f"{architecture} with {len(labels)} labels ({shown})"
