"""Flax linen building blocks of BERT, equal to google-research/bert `modeling.py`.

Module and parameter names follow the original TF scopes and the Hugging Face BERT names (`attention/self/query`,
`intermediate/dense`, `output/LayerNorm`, ...), so checkpoints map onto them by renaming alone.

Shapes ride in names, with the letters of the legend in `bertjax/__init__.py`.
Numerics: LayerNorm and the attention softmax always run in at least float32 (`accum_dtype`), whatever the
compute `dtype` (bfloat16 compute keeps them in float32; float64 compute, used by gradient checks, in float64).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bertjax.errors import BertjaxError

Dtype = Any

# The original adds this to the attention scores of padded keys (google-research/bert `attention_layer`).
# It is exactly representable in bfloat16 and cannot overflow to -inf when added to other biases.
MASK_BIAS = -10000.0


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation for a config's `hidden_act` ("gelu" is the exact erf GELU, as in released checkpoints)."""
    activations = {
        "gelu": functools.partial(jax.nn.gelu, approximate=False),
        "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
        "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
        "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
    }
    return activations[name]


ACTIVATIONS = ("gelu", "gelu_new", "gelu_tanh", "gelu_pytorch_tanh", "relu", "tanh")


def kernel_init(initializer_range: float) -> nn.initializers.Initializer:
    """Truncated normal at +-2 stddev, stddev of the untruncated normal: TF's `truncated_normal_initializer`."""
    return jax.nn.initializers.truncated_normal(stddev=initializer_range)


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    """W, the rows of the word-embedding table: `vocab_size` (V) rounded up to a multiple of `multiple`.

    Padding the vocab axis to a multiple of 128 gives the MLM decoder matmul [B, P, H] x [H, W] a shape the TPU's
    matrix units tile without a ragged edge (`config.model.vocab_pad_multiple`); 1 means no padding (W = V).
    """
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise BertjaxError(f"vocab_pad_multiple={multiple!r} must be a positive integer (1 = no padding)")
    return -(-vocab_size // multiple) * multiple


def zero_padded_init(init: nn.initializers.Initializer, rows: int) -> nn.initializers.Initializer:
    """An initializer of a [W, ...] table whose first `rows` rows are `init`'s draw for a [rows, ...] table (the very
    numbers an unpadded model gets from the same key) and whose W - rows padded rows are zeros."""

    def initializer(key, shape, dtype=jnp.float32):
        real = init(key, (rows, *shape[1:]), dtype)
        return jnp.pad(real, [(0, shape[0] - rows)] + [(0, 0)] * (len(shape) - 1))

    return initializer


def accum_dtype(dtype: Dtype) -> Dtype:
    """The dtype for normalisation, softmax and logits: float32, or wider if the compute dtype is wider."""
    return jnp.promote_types(dtype, jnp.float32)


def layer_norm(config, dtype, param_dtype) -> nn.Module:
    """A LayerNorm in `accum_dtype(dtype)` with the config's eps, named `LayerNorm` (params `.../LayerNorm/...`)."""
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=accum_dtype(dtype), param_dtype=param_dtype,
                        name="LayerNorm")


def wide_accumulation_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                                  **kwargs) -> jax.Array:
    """`lax.dot_general` for `nn.Dense` that accumulates in at least float32 and returns the inputs' dtype.

    For float32 it is lax.dot_general unchanged. For bfloat16 it is what the TPU's matrix units do anyway, and on
    CPUs with AVX512-BF16 XLA runs a bfloat16 x bfloat16 -> float32 dot about 2x faster than one with a bfloat16
    result; `_bf16_dense_dot` keeps the backward pass's two dots in that form too (autodiff would make them
    float32 x bfloat16, which runs at float32 speed).
    """
    dense_layout = dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and rhs.ndim == 2
    if lhs.dtype == rhs.dtype == jnp.bfloat16 and dense_layout and precision is None and not kwargs:
        return _bf16_dense_dot(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)


def _wide_matmul(a, b, contracting):
    return jax.lax.dot_general(a, b, (contracting, ((), ())), preferred_element_type=jnp.float32).astype(a.dtype)


@jax.custom_vjp
def _bf16_dense_dot(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A Dense layer's x [..., features in] @ kernel [features in, features out] in bfloat16, accumulated in float32
    (forward and backward)."""
    return _wide_matmul(x, kernel, ((x.ndim - 1,), (0,)))


def _bf16_dense_dot_fwd(x, w):
    return _bf16_dense_dot(x, w), (x, w)


def _bf16_dense_dot_bwd(residuals, g):
    x, w = residuals
    g = g.astype(x.dtype)
    grad_x = _wide_matmul(g, w, ((g.ndim - 1,), (1,)))
    leading = tuple(range(x.ndim - 1))
    grad_w = _wide_matmul(x, g, (leading, leading))
    return grad_x, grad_w


_bf16_dense_dot.defvjp(_bf16_dense_dot_fwd, _bf16_dense_dot_bwd)


def dense(features: int, config, dtype, param_dtype, name: str) -> nn.Dense:
    """A Dense layer with the original initializers (truncated normal kernel, zero bias), accumulating in float32."""
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init(config.initializer_range),
        bias_init=nn.initializers.zeros,
        dot_general=wide_accumulation_dot_general,
        name=name,
    )


def apply_layer_norm(module: nn.LayerNorm, x: jax.Array, out_dtype: Dtype) -> jax.Array:
    """Applies a LayerNorm module in its own (wide) dtype and casts the result back to `out_dtype`."""
    return module(x.astype(module.dtype)).astype(out_dtype)


# The widths of random integers a dropout mask may be drawn from (`config.model.dropout_bits`); 32 = flax's own.
DROPOUT_BITS = (8, 16, 32)


class Dropout(nn.Dropout):
    """`nn.Dropout`, optionally drawing its keep mask from `bits`-wide random integers (`config.model.dropout_bits`).

    bits=32 (the default) is `nn.Dropout` itself: same module name (`Dropout_<i>`), same random stream, bit-identical.
    bits=16 or 8 cuts each 32-bit `jax.random.bits` word into 2 or 4 integers of that width (threefry runs once per
    2 or 4 elements instead of once per element, and no uniform floats) and keeps an element where the integer is below
    t = round((1 - rate) * 2^bits), scaling kept values by 2^bits / t. The keep probability is t / 2^bits: rate 0.1
    keeps 0.899994 (16 bits) or 0.8984 (8 bits) instead of 0.9; the scale makes the expectation exact either way.
    A different random stream from 32 bits, so a run's masks change with the setting.
    """

    bits: int = 32

    def __call__(self, inputs, deterministic: bool | None = None, rng=None):
        if self.bits == 32:
            return super().__call__(inputs, deterministic, rng)
        if self.bits not in DROPOUT_BITS:
            raise BertjaxError(f"dropout bits={self.bits!r} must be one of {DROPOUT_BITS}")
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        rng = self.make_rng(self.rng_collection) if rng is None else rng
        scale = 2 ** self.bits
        threshold = min(max(round((1.0 - self.rate) * scale), 1), scale)
        # One 32-bit threefry word gives 32 / bits elements their integers (jax.random.bits with a uint16 or uint8
        # dtype would still make one word per element): along the last axis (length n), word m's i-th slice goes to
        # element i * ceil(n / (32 / bits)) + m.
        per_word = 32 // self.bits
        last = inputs.shape[-1] if inputs.ndim else 1
        words = jax.random.bits(rng, (*inputs.shape[:-1], -(-last // per_word)), jnp.uint32)
        slices = [(words >> (self.bits * i)) & (scale - 1) for i in range(per_word)]
        random_bits = jnp.concatenate(slices, axis=-1)[..., :last].reshape(inputs.shape)
        keep = random_bits < threshold
        return jax.lax.select(keep, inputs * jnp.asarray(scale / threshold, inputs.dtype), jnp.zeros_like(inputs))


class BertEmbeddings(nn.Module):
    """word + token type + position embeddings, then LayerNorm, then dropout (original order, no sqrt(H) scaling).

    With `vocab_pad_multiple` > 1 the word-embedding table has W = `padded_vocab_size(V, vocab_pad_multiple)` rows
    (for the MLM decoder, which shares it); the padded rows start at zero and are never looked up (ids are < V).
    """

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    vocab_pad_multiple: int = 1
    dropout_bits: int = 32  # `Dropout`

    @nn.compact
    def __call__(self, input_ids_BxT, segment_ids_BxT, deterministic: bool = True,
                 position_ids_BxT: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        seq_len = input_ids_BxT.shape[-1]
        if seq_len > cfg.max_position_embeddings:
            raise BertjaxError(
                f"sequence length {seq_len} exceeds max_position_embeddings={cfg.max_position_embeddings}; "
                "truncate the input to that length, or use a model with more position embeddings"
            )
        init = kernel_init(cfg.initializer_range)

        def embed(num: int, name: str, embedding_init=init) -> nn.Embed:
            return nn.Embed(num, cfg.hidden_size, embedding_init=embedding_init, dtype=self.dtype,
                            param_dtype=self.param_dtype, name=name)

        rows = padded_vocab_size(cfg.vocab_size, self.vocab_pad_multiple)
        words_BxTxH = embed(rows, "word_embeddings", zero_padded_init(init, cfg.vocab_size))(input_ids_BxT)
        types_BxTxH = embed(cfg.type_vocab_size, "token_type_embeddings")(segment_ids_BxT)
        position_table = embed(cfg.max_position_embeddings, "position_embeddings")
        if position_ids_BxT is None:
            positions_BxTxH = position_table(jnp.arange(seq_len))[None]
        else:  # packed rows: positions restart at each pair's [CLS]
            positions_BxTxH = position_table(position_ids_BxT)
        x_BxTxH = words_BxTxH + types_BxTxH + positions_BxTxH
        x_BxTxH = apply_layer_norm(layer_norm(cfg, self.dtype, self.param_dtype), x_BxTxH, self.dtype)
        return Dropout(cfg.hidden_dropout_prob, bits=self.dropout_bits)(x_BxTxH, deterministic=deterministic)


def attention_bias_from_mask(input_mask_BxT: jax.Array) -> jax.Array:
    """The additive attention bias [B, 1, 1, T]: 0 on real keys, -10000 on padded keys (queries are not masked)."""
    return (1.0 - input_mask_BxT.astype(jnp.float32))[:, None, None, :] * MASK_BIAS


def attention_bias_from_pair_ids(pair_ids_BxT: jax.Array) -> jax.Array:
    """The block-diagonal bias [B, 1, T, T] of packed rows (`bertjax.data.packing`): 0 where query and key belong to
    the same pair, -10000 elsewhere and on padding keys (pair id 0), so each pair sees exactly what it would see
    alone in a row of its own (a padded query row attends to nothing: uniform, and never read)."""
    same_pair_BxTxT = (pair_ids_BxT[:, :, None] == pair_ids_BxT[:, None, :]) & (pair_ids_BxT[:, None, :] > 0)
    return jnp.where(same_pair_BxTxT, 0.0, MASK_BIAS)[:, None].astype(jnp.float32)


def position_ids_from_pair_ids(pair_ids_BxT: jax.Array) -> jax.Array:
    """Position ids [B, T] of packed rows: each pair counts from 0 at its [CLS], as it would alone in a row."""
    index_BxT = jnp.broadcast_to(jnp.arange(pair_ids_BxT.shape[-1]), pair_ids_BxT.shape)
    starts_pair_BxT = jnp.concatenate(
        [jnp.ones_like(pair_ids_BxT[:, :1], bool), pair_ids_BxT[:, 1:] != pair_ids_BxT[:, :-1]], axis=1)
    start_BxT = jax.lax.cummax(jnp.where(starts_pair_BxT, index_BxT, 0), axis=1)
    return index_BxT - start_BxT


# How self-attention is computed (`config.model.attention_impl`): "einsum", the original's two matmuls around a float32
# softmax (modeling.py: attention_layer), or "dot_product_attention", `jax.nn.dot_product_attention`, which is
# cuDNN's fused kernel on a GPU in bfloat16/float16 and the same XLA math elsewhere. The fused kernels have no dropout
# on the probabilities, so that needs attention_probs_dropout_prob = 0 (run_config checks it).
ATTENTION_IMPLS = ("einsum", "dot_product_attention")


def fused_attention_backend(dtype: Dtype) -> str | None:
    """`jax.nn.dot_product_attention`'s implementation for `dtype` on this backend: "cudnn" on a GPU in bfloat16 or
    float16 (its fused kernels take no float32), else None (XLA: the same math as "einsum")."""
    if jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return "cudnn"
    return None


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with separate query/key/value projections, as the original.

    Scores are multiplied by 1/sqrt(D) before the mask bias is added; softmax runs in float32 (or wider); dropout on the
    probabilities is drawn independently per element (Flax's `dot_product_attention` would broadcast it).
    With `sow_attention`, the probabilities [B, N, T, T] (`attention_probs`) and the per-head queries and keys
    [B, T, N, D] (`queries`, `keys`, before the 1/sqrt(D) scaling) are sown into the `intermediates` collection.
    `attention_impl` (ATTENTION_IMPLS): "dot_product_attention" hands q, k, v and the mask bias to
    `jax.nn.dot_product_attention` (no probability dropout there; sowing the probabilities uses "einsum").
    """

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    sow_attention: bool = False
    dropout_bits: int = 32  # `Dropout`
    attention_impl: str = "einsum"  # ATTENTION_IMPLS

    @nn.compact
    def __call__(self, x_BxTxH, attention_bias_Bx1x1xT, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        num_heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // num_heads
        batch, seq_len, _ = x_BxTxH.shape

        def project(name: str) -> jax.Array:
            y_BxTxH = dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, name)(x_BxTxH)
            return y_BxTxH.reshape(batch, seq_len, num_heads, head_dim)

        q_BxTxNxD, k_BxTxNxD, v_BxTxNxD = project("query"), project("key"), project("value")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r}; use one of {ATTENTION_IMPLS}")
        if self.attention_impl == "dot_product_attention" and not self.sow_attention:
            if cfg.attention_probs_dropout_prob > 0 and not deterministic:
                raise ValueError("attention_impl='dot_product_attention' has no dropout on the attention "
                                 "probabilities; set attention_probs_dropout_prob=0")
            backend = fused_attention_backend(self.dtype)
            bias = attention_bias_Bx1x1xT.astype(accum_dtype(self.dtype))
            if backend == "cudnn":   # cuDNN takes a bias of the queries' length and the inputs' dtype
                bias = jnp.broadcast_to(bias, (batch, 1, seq_len, seq_len)).astype(self.dtype)
            context_BxTxNxD = jax.nn.dot_product_attention(q_BxTxNxD, k_BxTxNxD, v_BxTxNxD, bias=bias,
                                                           scale=1 / np.sqrt(head_dim), implementation=backend)
            return context_BxTxNxD.astype(self.dtype).reshape(batch, seq_len, cfg.hidden_size)
        scores_BxNxTxT = jnp.einsum("bqnd,bknd->bnqk", q_BxTxNxD, k_BxTxNxD,
                                    preferred_element_type=accum_dtype(self.dtype))
        scores_BxNxTxT = scores_BxNxTxT * (1 / np.sqrt(head_dim)) + attention_bias_Bx1x1xT  # the original multiplies
        probs_BxNxTxT = jax.nn.softmax(scores_BxNxTxT, axis=-1)
        if self.sow_attention:
            self.sow("intermediates", "attention_probs", probs_BxNxTxT)
            self.sow("intermediates", "queries", q_BxTxNxD)
            self.sow("intermediates", "keys", k_BxTxNxD)
        probs_BxNxTxT = Dropout(cfg.attention_probs_dropout_prob, bits=self.dropout_bits)(
            probs_BxNxTxT, deterministic=deterministic)
        context_BxTxNxD = jnp.einsum("bnqk,bknd->bqnd", probs_BxNxTxT.astype(self.dtype), v_BxTxNxD,
                                     preferred_element_type=accum_dtype(self.dtype)).astype(self.dtype)
        return context_BxTxNxD.reshape(batch, seq_len, cfg.hidden_size)


class DenseResidualLayerNorm(nn.Module):
    """LayerNorm(dropout(Dense(x)) + residual): the attention output block and the layer output block."""

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_bits: int = 32  # `Dropout`

    @nn.compact
    def __call__(self, x, residual_BxTxH, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y_BxTxH = dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "dense")(x)
        y_BxTxH = Dropout(cfg.hidden_dropout_prob, bits=self.dropout_bits)(y_BxTxH, deterministic=deterministic)
        return apply_layer_norm(layer_norm(cfg, self.dtype, self.param_dtype), y_BxTxH + residual_BxTxH, self.dtype)


class BertAttention(nn.Module):
    """Self-attention (`self`) followed by its output block (`output`)."""

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    sow_attention: bool = False
    dropout_bits: int = 32  # `Dropout`
    attention_impl: str = "einsum"  # ATTENTION_IMPLS

    @nn.compact
    def __call__(self, x_BxTxH, attention_bias_Bx1x1xT, deterministic: bool = True) -> jax.Array:
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, dropout_bits=self.dropout_bits)
        context_BxTxH = BertSelfAttention(**kw, sow_attention=self.sow_attention, attention_impl=self.attention_impl,
                                          name="self")(
            x_BxTxH, attention_bias_Bx1x1xT, deterministic
        )
        return DenseResidualLayerNorm(**kw, name="output")(context_BxTxH, x_BxTxH, deterministic)


class BertIntermediate(nn.Module):
    """act(Dense_I(x)), the first half of the feed-forward block."""

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxH) -> jax.Array:
        cfg = self.config
        y_BxTxI = dense(cfg.intermediate_size, cfg, self.dtype, self.param_dtype, "dense")(x_BxTxH)
        return get_activation(cfg.hidden_act)(y_BxTxI)


class BertLayer(nn.Module):
    """One post-LN transformer layer:

    a = LN(dropout(Dense_H(attention(x))) + x);  y = LN(dropout(Dense_H(act(Dense_I(a)))) + a).

    Called as `layer(x, attention_bias, deterministic) -> (y, y)` so the same module serves `nn.scan`
    (carry, per-layer output) and the unrolled loop.
    """

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    sow_attention: bool = False
    dropout_bits: int = 32  # `Dropout`
    attention_impl: str = "einsum"  # ATTENTION_IMPLS

    @nn.compact
    def __call__(self, x_BxTxH, attention_bias_Bx1x1xT, deterministic: bool = True):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        a_BxTxH = BertAttention(**kw, sow_attention=self.sow_attention, dropout_bits=self.dropout_bits,
                                attention_impl=self.attention_impl, name="attention")(
            x_BxTxH, attention_bias_Bx1x1xT, deterministic)
        inter_BxTxI = BertIntermediate(**kw, name="intermediate")(a_BxTxH)
        y_BxTxH = DenseResidualLayerNorm(**kw, dropout_bits=self.dropout_bits, name="output")(
            inter_BxTxI, a_BxTxH, deterministic)
        return y_BxTxH, y_BxTxH


# Parameters of a scanned encoder live under `bert/encoder/<SCANNED_LAYERS_NAME>/...` with a leading layer axis.
SCANNED_LAYERS_NAME = "layers"


# Rematerialisation policies by name (`--config.model.remat_policy`): what a layer keeps for the backward pass.
REMAT_POLICIES = {
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class BertEncoder(nn.Module):
    """A stack of `num_hidden_layers` BertLayers, unrolled (`layer_{i}`) or scanned (`layers`, stacked params).

    `scan_layers` compiles one layer body instead of L copies (fast compiles for deep models); `remat`
    recomputes each layer's activations in the backward pass (less memory): True or "nothing_saveable" saves nothing,
    "dots_saveable" keeps every matmul output, "minimal" keeps the matmul outputs without batch dimensions (the
    projections, not the attention scores); see `REMAT_POLICIES`. All give the same outputs and gradients.
    Returns the last hidden state and, if asked, the output of every layer ([L, B, T, H]).
    """

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_layers: bool = False
    remat: bool | str = False
    sow_attention: bool = False
    dropout_bits: int = 32  # `Dropout`
    attention_impl: str = "einsum"  # ATTENTION_IMPLS

    @nn.compact
    def __call__(self, x_BxTxH, attention_bias_Bx1x1xT, deterministic: bool = True):
        cfg = self.config
        layer_cls = BertLayer
        if self.remat:
            policy = REMAT_POLICIES[self.remat if isinstance(self.remat, str) else "nothing_saveable"]
            layer_cls = nn.remat(layer_cls, static_argnums=(3,), prevent_cse=not self.scan_layers, policy=policy)
        kw = dict(config=cfg, dtype=self.dtype, param_dtype=self.param_dtype, sow_attention=self.sow_attention,
                  dropout_bits=self.dropout_bits, attention_impl=self.attention_impl)
        if self.scan_layers:
            stack = nn.scan(
                layer_cls,
                variable_axes={"params": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=cfg.num_hidden_layers,
            )(**kw, name=SCANNED_LAYERS_NAME)
            x_BxTxH, all_LxBxTxH = stack(x_BxTxH, attention_bias_Bx1x1xT, deterministic)
            return x_BxTxH, all_LxBxTxH
        outputs = []
        for i in range(cfg.num_hidden_layers):
            x_BxTxH, _ = layer_cls(**kw, name=f"layer_{i}")(x_BxTxH, attention_bias_Bx1x1xT, deterministic)
            outputs.append(x_BxTxH)
        return x_BxTxH, jnp.stack(outputs)


class BertPooler(nn.Module):
    """pooled_output = tanh(Dense_H(sequence_output[:, 0])), the [CLS] summary used by NSP: [B, H]; or, for packed
    rows, tanh(Dense_H(.)) of every pair's [CLS] at `cls_positions_BxK`: [B, K, H]."""

    config: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, sequence_output_BxTxH, cls_positions_BxK: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        if cls_positions_BxK is None:
            first = sequence_output_BxTxH[:, 0]
        else:
            first = jnp.take_along_axis(sequence_output_BxTxH, cls_positions_BxK[..., None].astype(jnp.int32), axis=1)
        return jnp.tanh(dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "dense")(first))
