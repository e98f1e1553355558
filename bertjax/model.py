"""BERT models: `BertConfig`, `BertModel` (encoder + pooler) and `BertForPreTraining` (+ MLM and NSP heads).

The math is google-research/bert's `modeling.py` (`BertModel`, `transformer_model`, `attention_layer`); parameter names are the original TF scopes in
Flax form, which are also Hugging Face's names (docs/design.md lists the tree).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bertjax.errors import BertjaxError
from bertjax.layers import (
    ACTIVATIONS,
    SCANNED_LAYERS_NAME,
    BertEmbeddings,
    BertEncoder,
    BertPooler,
    attention_bias_from_mask,
    attention_bias_from_pair_ids,
    position_ids_from_pair_ids,
    dense,
    get_activation,
    kernel_init,
    layer_norm,
    accum_dtype,
    apply_layer_norm,
    padded_vocab_size,
)

Dtype = Any

# Named sizes (google-research/bert README, "24 smaller BERT models"; Turc et al. 2019): (layers, hidden); heads = hidden / 64, intermediate = 4 * hidden.
NAMED_SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The model hyperparameters, with the field names of Hugging Face's BERT config.json."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise BertjaxError(f"BertConfig.{name}={value!r} must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            raise BertjaxError(
                f"BertConfig.hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; choose a head count that divides it (BERT uses hidden_size / 64)"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise BertjaxError(
                f"BertConfig.hidden_act={self.hidden_act!r} is unknown; use one of {', '.join(ACTIVATIONS)}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise BertjaxError(f"BertConfig.{name}={getattr(self, name)!r} must be in [0, 1)")
        for name in ("initializer_range", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise BertjaxError(f"BertConfig.{name}={getattr(self, name)!r} must be positive")

    @classmethod
    def named(cls, size: str, **overrides) -> "BertConfig":
        """A named size (tiny, mini, small, medium, base, large) with optional field overrides."""
        if size not in NAMED_SIZES:
            raise BertjaxError(f"unknown model size {size!r}; use one of {', '.join(NAMED_SIZES)}")
        layers, hidden = NAMED_SIZES[size]
        fields = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                      intermediate_size=4 * hidden)
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes) -> "BertConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BertConfig":
        """Builds a config from a (Hugging Face) config dict; keys that are not model fields are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise BertjaxError(
                f"position_embedding_type={data['position_embedding_type']!r} is not supported; bertjax implements "
                "the original absolute position embeddings"
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json_file(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Writes a config.json that Hugging Face `BertConfig.from_pretrained` reads.

        `extra` fields are added and win over the defaults (`architectures`: ["BertForPreTraining"]), e.g. a
        fine-tuning head's architectures, id2label, label2id and classifier_dropout (`convert.hf_heads.hf_config_fields`).
        """
        data = {"architectures": ["BertForPreTraining"], "model_type": "bert", "pad_token_id": 0,
                "position_embedding_type": "absolute", **self.to_dict(), **(extra or {})}
        with open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Reads a config.json (ours or Hugging Face's)."""
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise BertjaxError(f"model config {path} does not exist; pass the path of a BERT config.json") from None
        except json.JSONDecodeError as e:
            raise BertjaxError(f"model config {path} is not valid JSON ({e}); fix or regenerate the file") from None
        return cls.from_dict(data)


class BertModel(nn.Module):
    """Embeddings -> post-LN encoder -> pooler on [CLS].

    Returns a dict with `sequence_output` [B, T, H], `pooled_output` [B, H] and, when `output_hidden_states`,
    `hidden_states` [L + 1, B, T, H] (the embedding output, then every layer's output). Packed rows
    (`bertjax.data.packing`) pass `pair_ids` [B, T] (block-diagonal attention, positions restarting per pair) and
    `cls_positions` [B, K] (`pooled_output` is then [B, K, H], one per pair). With
    `add_pooling_layer=False` (Hugging Face's name) there is no pooler: no `pooler` params, no `pooled_output`.
    `vocab_pad_multiple` pads the word-embedding table to W rows (`BertEmbeddings`; BertForPreTraining sets it).
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_layers: bool = False
    remat: bool | str = False  # False, True or a REMAT_POLICIES name (bertjax.layers)
    sow_attention: bool = False
    add_pooling_layer: bool = True
    vocab_pad_multiple: int = 1
    dropout_bits: int = 32  # random bits per dropout-mask element (`layers.Dropout`; config.model.dropout_bits)
    attention_impl: str = "einsum"  # `layers.ATTENTION_IMPLS` (config.model.attention_impl)

    @nn.compact
    def __call__(self, input_ids, input_mask=None, segment_ids=None, deterministic: bool = True,
                 output_hidden_states: bool = False, pair_ids=None, cls_positions=None) -> dict:
        if input_mask is None:
            input_mask = jnp.ones_like(input_ids)
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        if pair_ids is None:
            position_ids, attention_bias = None, attention_bias_from_mask(input_mask)
        else:  # packed rows: each pair attends to itself, its positions count from its own [CLS]
            position_ids, attention_bias = position_ids_from_pair_ids(pair_ids), attention_bias_from_pair_ids(pair_ids)
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x_BxTxH = BertEmbeddings(**kw, vocab_pad_multiple=self.vocab_pad_multiple, dropout_bits=self.dropout_bits,
                                 name="embeddings")(
            input_ids, segment_ids, deterministic, position_ids)
        sequence_output, layers_LxBxTxH = BertEncoder(
            **kw, scan_layers=self.scan_layers, remat=self.remat, sow_attention=self.sow_attention,
            dropout_bits=self.dropout_bits, attention_impl=self.attention_impl, name="encoder"
        )(x_BxTxH, attention_bias, deterministic)
        outputs = {"sequence_output": sequence_output}
        if self.add_pooling_layer:
            outputs["pooled_output"] = BertPooler(**kw, name="pooler")(sequence_output, cls_positions)
        if output_hidden_states:
            outputs["hidden_states"] = jnp.concatenate([x_BxTxH[None], layers_LxBxTxH])
        return outputs


def gather_positions(sequence_BxTxH: jax.Array, positions_BxP: jax.Array) -> jax.Array:
    """The hidden states at `positions` for each example: [B, T, H], [B, P] -> [B, P, H]."""
    return jnp.take_along_axis(sequence_BxTxH, positions_BxP[..., None].astype(jnp.int32), axis=1)


class PredictionTransform(nn.Module):
    """LayerNorm(act(Dense_H(h))), the MLM head's transform (scope `cls/predictions/transform`)."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden_BxPxH) -> jax.Array:
        cfg = self.config
        hidden_BxPxH = dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "dense")(hidden_BxPxH)
        hidden_BxPxH = get_activation(cfg.hidden_act)(hidden_BxPxH)
        return apply_layer_norm(layer_norm(cfg, self.dtype, self.param_dtype), hidden_BxPxH, self.dtype)


# The MLM logit of a padded vocab column (`MaskedLMHead`): exp(PADDED_LOGIT - max) is 0 in float32 and wider.
PADDED_LOGIT = -1e30


class MaskedLMHead(nn.Module):
    """The transform, then logits against the tied word-embedding matrix plus a separate `output_bias`.

    Input is the hidden states already gathered at the masked positions, so logits are float32 (or wider) [B, P, V] and are
    never computed at every position.

    Vocab padding (`vocab_pad_multiple` > 1): the embedding table [W, H] and `output_bias` [W] have W >= V rows, so
    the decoder matmul has the MXU-friendly shape [B, P, H] x [H, W]. Returns the W-wide logits [B, P, W] with the
    W - V padded columns set to `PADDED_LOGIT` (a `where`, so their gradient is exactly zero and the padded rows of
    the table and bias get exactly zero gradient): softmax gives them 0 and they are never the max, so the training
    loss (`losses.softmax_cross_entropy`) reads them directly, without a slice whose gradient would be padded back
    (a [B*P, W] copy plus a transposed one). `BertForPreTraining` returns the [B, P, V] slice as `mlm_logits` for
    everything a user sees (eval outputs, exports, parity checks); under jit the unused one costs nothing. The real
    logits are the same dot products as unpadded (equal up to the matmul's summation order: within 1e-6 in float32).
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    vocab_pad_multiple: int = 1

    @nn.compact
    def __call__(self, hidden_BxPxH, word_embeddings_WxH) -> jax.Array:
        cfg = self.config
        hidden_BxPxH = PredictionTransform(cfg, self.dtype, self.param_dtype, name="transform")(hidden_BxPxH)
        rows = padded_vocab_size(cfg.vocab_size, self.vocab_pad_multiple)
        output_bias_W = self.param("output_bias", nn.initializers.zeros, (rows,), self.param_dtype)
        logits_BxPxW = jnp.einsum("bph,wh->bpw", hidden_BxPxH, word_embeddings_WxH.astype(self.dtype),
                                  preferred_element_type=accum_dtype(self.dtype))
        logits_BxPxW = logits_BxPxW + output_bias_W.astype(logits_BxPxW.dtype)
        if rows > cfg.vocab_size:
            real_W = np.arange(rows) < cfg.vocab_size
            logits_BxPxW = jnp.where(real_W, logits_BxPxW, jnp.asarray(PADDED_LOGIT, logits_BxPxW.dtype))
        return logits_BxPxW


class PreTrainingHeads(nn.Module):
    """Scope `cls`: the masked-LM head (`predictions`) and the next-sentence head (`seq_relationship`).

    NSP logits are float32 [B, 2]; label 0 means IsNext and 1 means a random next sentence, as in the original.
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    vocab_pad_multiple: int = 1

    @nn.compact
    def __call__(self, masked_hidden_BxPxH, pooled_output_BxH, word_embeddings_WxH):
        cfg = self.config
        mlm_logits = MaskedLMHead(cfg, self.dtype, self.param_dtype, self.vocab_pad_multiple, name="predictions")(
            masked_hidden_BxPxH, word_embeddings_WxH
        )
        wide = accum_dtype(self.dtype)
        nsp_logits = nn.Dense(2, dtype=wide, param_dtype=self.param_dtype,
                              kernel_init=kernel_init(cfg.initializer_range), name="seq_relationship")(
            pooled_output_BxH.astype(wide)
        )
        return mlm_logits, nsp_logits


class BertForPreTraining(nn.Module):
    """BertModel (`bert`) plus the pretraining heads (`cls`).

    `__call__(input_ids, input_mask, segment_ids, masked_lm_positions, deterministic)` returns a dict with
    `mlm_logits` [B, P, V], `nsp_logits` [B, 2] (both float32), `sequence_output`, `pooled_output`
    (and `hidden_states` when `output_hidden_states`). Packed rows also pass `pair_ids` [B, T] and
    `next_sentence_positions` [B, K] (`BertModel`), and get `nsp_logits` [B, K, 2], one per pair.

    `vocab_pad_multiple` (`config.model.vocab_pad_multiple`; 128 in the TPU configs) pads the vocab axis of
    `bert/embeddings/word_embeddings` [W, H] and `cls/predictions/output_bias` [W] to W =
    `padded_vocab_size(V, vocab_pad_multiple)` rows; `mlm_logits` stay [B, P, V] and equal the unpadded model's
    (`MaskedLMHead`); `mlm_logits_padded` [B, P, W] are the same plus the padded columns at `PADDED_LOGIT`, what
    the training loss reads (no slice in the backward pass; equal to `mlm_logits` when W = V). The padded rows start
    at zero and stay zero (no gradient; weight decay of zero is zero). Only
    a run's own state and checkpoints are padded: exports, `convert.sources` and `init_from` see [V] (`unpad_vocab`,
    `pad_vocab`).
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_layers: bool = False
    remat: bool | str = False  # False, True or a REMAT_POLICIES name (bertjax.layers)
    sow_attention: bool = False
    vocab_pad_multiple: int = 1
    dropout_bits: int = 32  # `layers.Dropout`
    attention_impl: str = "einsum"  # `layers.ATTENTION_IMPLS`

    def setup(self):
        self.bert = BertModel(self.config, self.dtype, self.param_dtype, self.scan_layers, self.remat,
                              self.sow_attention, vocab_pad_multiple=self.vocab_pad_multiple,
                              dropout_bits=self.dropout_bits, attention_impl=self.attention_impl)
        self.cls = PreTrainingHeads(self.config, self.dtype, self.param_dtype, self.vocab_pad_multiple)

    def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions, deterministic: bool = True,
                 output_hidden_states: bool = False, pair_ids=None, next_sentence_positions=None) -> dict:
        outputs = self.bert(input_ids, input_mask, segment_ids, deterministic, output_hidden_states, pair_ids,
                            next_sentence_positions)
        word_embeddings_WxH = self.bert.variables["params"]["embeddings"]["word_embeddings"]["embedding"]
        masked_hidden_BxPxH = gather_positions(outputs["sequence_output"], masked_lm_positions)
        mlm_logits, nsp_logits = self.cls(masked_hidden_BxPxH, outputs["pooled_output"], word_embeddings_WxH)
        return {**outputs, "mlm_logits": mlm_logits[..., :self.config.vocab_size], "mlm_logits_padded": mlm_logits,
                "nsp_logits": nsp_logits}


def flops_per_example(config: BertConfig, seq_length: int, num_predictions: int,
                      vocab_pad_multiple: int = 1) -> float:
    """Approximate training FLOPs of one BertForPreTraining example (forward + backward = 3x the forward's).

    Per layer and token: 2 FLOPs per multiply-add of the Q, K, V and output projections (4 H^2) and the
    feed-forward block (2 H I), plus the attention scores and context (2 T H). The heads add the MLM transform and
    the tied decoder at the P masked positions (H^2 + H W each, W the padded vocab the matmul really has: the
    hardware's FLOPs, so MFU counts the padding too; W = V without padding) and the pooler (H^2).
    """
    hidden, inner = config.hidden_size, config.intermediate_size
    rows = padded_vocab_size(config.vocab_size, vocab_pad_multiple)
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * inner) + 2 * 2 * seq_length * hidden
    encoder = config.num_hidden_layers * seq_length * per_token_layer
    heads = num_predictions * 2 * (hidden * hidden + hidden * rows) + 2 * hidden * hidden
    return 3.0 * (encoder + heads)


def dummy_inputs(config: BertConfig, batch_size: int = 1, seq_len: int = 8, num_predictions: int = 2) -> tuple:
    """All-zero inputs of the right shapes and dtypes, for `init` and `jax.eval_shape`."""
    ids = jnp.zeros((batch_size, seq_len), jnp.int32)
    return ids, jnp.ones_like(ids), ids, jnp.zeros((batch_size, num_predictions), jnp.int32)


def init_params(model: nn.Module, rng: jax.Array) -> dict:
    """Fresh parameters for a BertForPreTraining or BertModel."""
    inputs = dummy_inputs(model.config)
    if not isinstance(model, BertForPreTraining):
        inputs = inputs[:3]
    return model.init({"params": rng}, *inputs)["params"]


def abstract_params(model: nn.Module) -> dict:
    """The parameter shapes and dtypes (`jax.ShapeDtypeStruct`s) of `model`, without allocating any arrays."""
    return jax.eval_shape(functools.partial(init_params, model), jax.random.PRNGKey(0))


# The params with a vocab axis (axis 0): V rows in every checkpoint format, W rows in a vocab-padded run.
VOCAB_PARAM_PATHS = (("bert", "embeddings", "word_embeddings", "embedding"), ("cls", "predictions", "output_bias"))


def _resize_vocab(params: dict, rows: int, grow: bool) -> dict:
    flat = traverse_util.flatten_dict(params)
    for path in VOCAB_PARAM_PATHS:
        value = flat.get(path)
        if value is None:
            continue
        if grow and value.shape[0] < rows:
            xp = np if isinstance(value, np.ndarray) else jnp
            flat[path] = xp.pad(value, [(0, rows - value.shape[0])] + [(0, 0)] * (value.ndim - 1))
        elif not grow and value.shape[0] > rows:
            flat[path] = value[:rows]
    return traverse_util.unflatten_dict(flat)


def pad_vocab(params: dict, rows: int) -> dict:
    """`params` (BertForPreTraining's, a BertModel's `{"bert": ...}` or a head's; numpy or jax arrays) with the
    word embeddings and the MLM output bias zero-padded to `rows` (W) along their vocab axis; a no-op when they
    already have at least that many rows. This is how an unpadded checkpoint enters a vocab-padded run."""
    return _resize_vocab(params, rows, grow=True)


def unpad_vocab(params: dict, vocab_size: int) -> dict:
    """`params` with the word embeddings and the MLM output bias cut back to their `vocab_size` (V) real rows; a
    no-op for unpadded params. Everything that leaves a run (exports, `convert.sources`) goes through this."""
    return _resize_vocab(params, vocab_size, grow=False)


def stack_layers(params: dict, num_layers: int) -> dict:
    """Unrolled `bert/encoder/layer_{i}` params -> scanned `bert/encoder/layers` (leading layer axis)."""
    encoder = dict(params["bert"]["encoder"])
    per_layer = [encoder.pop(f"layer_{i}") for i in range(num_layers)]
    encoder[SCANNED_LAYERS_NAME] = jax.tree.map(lambda *xs: jnp.stack(xs), *per_layer)
    return {**params, "bert": {**params["bert"], "encoder": encoder}}


def unstack_layers(params: dict) -> dict:
    """Scanned `bert/encoder/layers` params -> unrolled `bert/encoder/layer_{i}`."""
    encoder = dict(params["bert"]["encoder"])
    stacked = encoder.pop(SCANNED_LAYERS_NAME)
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    for i in range(num_layers):
        encoder[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return {**params, "bert": {**params["bert"], "encoder": encoder}}
