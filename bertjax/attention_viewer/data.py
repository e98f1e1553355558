"""What the attention viewer shows, computed from the real model: per example one forward pass gives every layer's
attention probabilities, queries and keys (sown by `layers.BertSelfAttention`, not a patched copy), and one pass
per picked token, with that token replaced by [MASK], gives the masked-LM guesses.

    data = view_data(sources.load_pretrained("runs/demo"), ["The cat sat."], ["It was warm."])

The result is the page's JSON (FORMAT; the schema is in `bertjax/attention_viewer/assets/viewer.js`): tokens,
segments, the attention maps as bytes (`encoding.encode_uint8_probs`: error at most 1/510), queries and keys as
int8 vectors (`encoding.encode_int8_vectors`), the [CLS] summary of every pair (`attention_analysis.cls_attention_summary`)
and the guesses. Every example runs alone at its own length, so nothing is padded.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bertjax.attention_viewer import encoding
from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import CLS, SEP
from bertjax.errors import BertjaxError
from bertjax.formatting import format_duration
from bertjax.model import BertForPreTraining
from bertjax.tasks import classification
from bertjax.attention_analysis import CLS_PARTS, attention_internals, cls_attention_summary

FORMAT = "bertjax-attention-view/1"
TOP_K = 10          # guesses per picked token
MLM_BATCH = 32      # masked copies of an example per forward pass


@dataclasses.dataclass(frozen=True)
class ViewRow:
    """One row the viewer shows: its tokens and model inputs, each [T] (T = its real length, no padding); pair_ids
    (1-based, `bertjax.data.packing`'s) only for a packed row."""

    name: str
    tokens: list[str]
    input_ids: np.ndarray
    segment_ids: np.ndarray
    pair_ids: np.ndarray | None = None


def encode_rows(tokenizer: BertTokenizer, texts_a: Sequence[str], texts_b: Sequence[str | None],
                max_seq_length: int, packed: bool = False) -> list[ViewRow]:
    """[CLS] A [SEP] (B [SEP]) rows as fine-tuning makes them (`classification.encode`: the longer text is trimmed
    first), one per pair, or with `packed` all pairs in one row, each its own block."""
    pairs = []
    for a, b in zip(texts_a, texts_b):
        batch = classification.encode([classification.Example("", a, b)], tokenizer, max_seq_length, None)
        length = int(batch["input_mask"][0].sum())
        pairs.append((batch["input_ids"][0, :length], batch["segment_ids"][0, :length]))
    rows = [ViewRow(_name(a, b, i), tokenizer.convert_ids_to_tokens(ids.tolist()), ids, segments)
            for i, ((ids, segments), a, b) in enumerate(zip(pairs, texts_a, texts_b))]
    if not packed:
        return rows
    total = sum(len(ids) for ids, _ in pairs)
    if total > max_seq_length:
        raise BertjaxError(f"the {len(pairs)} pairs take {total} tokens packed, more than max_seq_length="
                           f"{max_seq_length}; pass fewer or shorter texts, or show them unpacked")
    pair_ids = np.concatenate([np.full(len(ids), k + 1, np.int32) for k, (ids, _) in enumerate(pairs)])
    return [ViewRow(f"packed row: {len(pairs)} pairs", sum((row.tokens for row in rows), []),
                    np.concatenate([ids for ids, _ in pairs]), np.concatenate([s for _, s in pairs]), pair_ids)]


def view_data(pretrained, texts_a: str | Sequence[str], texts_b: str | Sequence[str | None] | None = None,
              **options) -> dict:
    """The page's JSON for `pretrained` on texts (`compute`'s first result)."""
    return compute(pretrained, texts_a, texts_b, **options)[0]


def compute(pretrained, texts_a: str | Sequence[str], texts_b: str | Sequence[str | None] | None = None, *,
            packed: bool = False, max_seq_length: int | None = None, top_k: int = TOP_K,
            mlm_positions: str | Sequence[int] = "all",
            log: Callable[[str], None] | None = None) -> tuple[dict, list[ViewRow], BertTokenizer]:
    """(the page's JSON, the rows, the tokenizer) for `pretrained` (`convert.sources.load_pretrained`) on one text
    or pair, or a batch of them (`texts_b` None, one text, or one per text_a, None for single texts).

    `max_seq_length` (default: the model's position embeddings) trims each pair as fine-tuning does. `mlm_positions`
    picks the tokens whose masked-LM guesses are precomputed: "all" (every token but [CLS] and [SEP]), "none", or
    token indices (of every row). A checkpoint without its own masked-LM head (a fine-tuned one) gets none, and the
    page says why. `log`, if given, gets progress lines (tokens/s and ETA) while the guesses are computed."""
    config = pretrained.config
    texts_a, texts_b = _as_batch(texts_a, texts_b)
    max_seq_length = config.max_position_embeddings if max_seq_length is None else int(max_seq_length)
    if not 3 <= max_seq_length <= config.max_position_embeddings:
        raise BertjaxError(f"max_seq_length={max_seq_length} must be between 3 and the model's "
                           f"{config.max_position_embeddings} position embeddings")
    if pretrained.vocab_file is None:
        raise BertjaxError(f"{pretrained.path} has no vocab.txt; add the vocab.txt the model was trained with")
    tokenizer = BertTokenizer.from_vocab(pretrained.vocab_file, do_lower_case=pretrained.do_lower_case,
                                         strip_accents=pretrained.strip_accents)
    rows = encode_rows(tokenizer, texts_a, texts_b, max_seq_length, packed)
    mlm_note = mlm_unavailable(pretrained)
    examples = []
    for row in rows:
        internals = jax.device_get(attention_internals(config, pretrained.params, row.input_ids[None], None,
                                                       row.segment_ids[None], _batched(row.pair_ids)))
        probs_LxNxTxT = np.asarray(internals["attention_probs"][:, 0], np.float32)
        positions = [] if mlm_note else _mlm_positions(row, mlm_positions)
        guesses = mlm_guesses(pretrained, row, positions, tokenizer, top_k, log) if positions else {}
        examples.append({
            "name": row.name, "tokens": row.tokens, "segment_ids": row.segment_ids.tolist(),
            "pair_ids": None if row.pair_ids is None else (row.pair_ids - 1).tolist(),
            "attention": encoding.encode_uint8_probs(probs_LxNxTxT),
            "cls": cls_summaries(probs_LxNxTxT, row),
            "mlm": {"top_k": top_k, "guesses": {str(p): g for p, g in guesses.items()},
                    **({"note": mlm_note} if mlm_note else {})},
            "neurons": {"shape": list(internals["queries"][:, 0].shape),
                        "query": encoding.encode_int8_vectors(np.asarray(internals["queries"][:, 0], np.float32)),
                        "key": encoding.encode_int8_vectors(np.asarray(internals["keys"][:, 0], np.float32))},
        })
    data = {"format": FORMAT,
            "model": {"source": str(pretrained.path), "kind": pretrained.kind,
                      "num_layers": config.num_hidden_layers, "num_heads": config.num_attention_heads,
                      "head_dim": config.hidden_size // config.num_attention_heads},
            "attention_error": encoding.ATTENTION_ERROR, "examples": examples}
    return data, rows, tokenizer


def cls_summaries(probs_LxNxTxT: np.ndarray, row: ViewRow) -> list[dict]:
    """Where each pair's [CLS] attends, per layer (`cls_attention_summary` on the pair's own block of the maps)."""
    blocks = ([np.arange(len(row.tokens))] if row.pair_ids is None else
              [np.flatnonzero(row.pair_ids == k) for k in np.unique(row.pair_ids)])
    out = []
    for block in blocks:
        summary = cls_attention_summary(probs_LxNxTxT[:, :, block][:, :, :, block],
                                        segment_ids=row.segment_ids[block], tokens=[row.tokens[i] for i in block])
        out.append({"position": int(block[0]),
                    "parts": {part: summary[f"{part}_L"].tolist() for part in CLS_PARTS},
                    "entropy": summary["entropy_L"].tolist(), "entropy_per_head": summary["entropy_LxN"].tolist(),
                    "uniform_entropy": float(summary["uniform_entropy"])})
    return out


def mlm_guesses(pretrained, row: ViewRow, positions: Sequence[int], tokenizer: BertTokenizer,
                top_k: int = TOP_K, log: Callable[[str], None] | None = None) -> dict[int, list[list]]:
    """{position: [[token, probability], ...top_k]}: the masked-LM head's guesses with that one token replaced by
    [MASK], the rest of the row as it is (MLM_BATCH masked copies of the row per forward pass). `log` gets a progress
    line after each forward pass when there is more than one."""
    out = {}
    start_time = time.perf_counter()
    for start in range(0, len(positions), MLM_BATCH):
        chunk = list(positions[start:start + MLM_BATCH])
        at_Bx1 = np.array(chunk + [chunk[-1]] * (min(MLM_BATCH, len(positions)) - len(chunk)))[:, None]  # one shape
        for b, guesses in enumerate(_guesses(pretrained, row, at_Bx1, tokenizer, top_k)[:len(chunk)]):
            out[chunk[b]] = guesses[0]
        if log and len(positions) > MLM_BATCH:
            rate = len(out) / (time.perf_counter() - start_time)
            log(f"{row.name}: masked-LM guesses for {len(out)}/{len(positions)} tokens ({rate:.1f} tokens/s, "
                f"ETA {format_duration((len(positions) - len(out)) / rate)})")
    return out


def masked_guesses(pretrained, row: ViewRow, positions: Sequence[int], tokenizer: BertTokenizer,
                   top_k: int = TOP_K) -> dict[int, list[list]]:
    """{position: [[token, probability], ...top_k]} with all `positions` replaced by [MASK] at once."""
    return dict(zip(positions, _guesses(pretrained, row, np.array([list(positions)]), tokenizer, top_k)[0]))


def _guesses(pretrained, row: ViewRow, at_BxP: np.ndarray, tokenizer: BertTokenizer, top_k: int) -> list[list]:
    """[B][P] top-k [[token, probability], ...] of B copies of `row`, copy b with the tokens at at_BxP[b] masked."""
    batch = len(at_BxP)
    ids_BxT = np.repeat(row.input_ids[None], batch, axis=0)
    np.put_along_axis(ids_BxT, at_BxP, tokenizer.mask_id, axis=1)
    logits_BxPxV = _mlm_logits(pretrained.config)(
        pretrained.params, ids_BxT, np.repeat(row.segment_ids[None], batch, axis=0),
        None if row.pair_ids is None else np.repeat(row.pair_ids[None], batch, axis=0), at_BxP)
    probs_BxPxV = np.asarray(jax.nn.softmax(logits_BxPxV.astype(jnp.float32), axis=-1))
    best_BxPxK = np.argsort(-probs_BxPxV, axis=-1, kind="stable")[..., :top_k]
    return [[[[token, round(float(probs_BxPxV[b, p, i]), 6)]
              for token, i in zip(tokenizer.convert_ids_to_tokens(best_BxPxK[b, p].tolist()), best_BxPxK[b, p])]
             for p in range(at_BxP.shape[1])] for b in range(batch)]


@functools.lru_cache(maxsize=4)
def _mlm_logits(config):
    """A jitted (params, ids, segments, pair_ids, positions) -> mlm_logits [B, P, V] of BertForPreTraining."""
    model = BertForPreTraining(config)
    return jax.jit(lambda params, ids, segments, pair_ids, at: model.apply(
        {"params": params}, ids, None, segments, at, pair_ids=pair_ids)["mlm_logits"])


def _as_batch(texts_a, texts_b) -> tuple[list[str], list[str | None]]:
    texts_a = [texts_a] if isinstance(texts_a, str) else list(texts_a)
    if not texts_a or not all(isinstance(t, str) and t.strip() for t in texts_a):
        raise BertjaxError("text_a must be a non-empty text or a list of them")
    if texts_b is None:
        texts_b = [None] * len(texts_a)
    else:
        texts_b = [texts_b] if isinstance(texts_b, str) else list(texts_b)
    if len(texts_b) != len(texts_a):
        raise BertjaxError(f"{len(texts_a)} text_a but {len(texts_b)} text_b; give one text_b per text_a "
                           "(None for a single text)")
    return texts_a, texts_b


def _mlm_positions(row: ViewRow, chosen) -> list[int]:
    maskable = [i for i, token in enumerate(row.tokens) if token not in (CLS, SEP)]
    if isinstance(chosen, str):
        if chosen not in ("all", "none"):
            raise BertjaxError(f"mlm_positions={chosen!r}; use 'all', 'none' or a list of token indices")
        return maskable if chosen == "all" else []
    bad = [int(p) for p in chosen if not 0 <= int(p) < len(row.tokens)]
    if bad:
        raise BertjaxError(f"mlm_positions: token {bad[0]} does not exist; {row.name!r} has tokens "
                           f"0..{len(row.tokens) - 1}")
    return sorted({int(p) for p in chosen} & set(maskable))


def mlm_unavailable(pretrained) -> str:
    """Why the checkpoint has no masked-LM guesses to show ("" if it has them)."""
    if pretrained.head is not None:
        return (f"{pretrained.path} is a fine-tuned {type(pretrained.head).__name__}: its masked-LM head was not "
                "kept, so there are no guesses to show")
    if any(head.startswith("cls.predictions") for head in pretrained.initialized_heads):
        return f"{pretrained.path} has no masked-LM head (cls.predictions), so there are no guesses to show"
    return ""


def _batched(values):
    return None if values is None else values[None]


def _name(text_a: str, text_b: str | None, index: int) -> str:
    text = text_a if text_b is None else f"{text_a} | {text_b}"
    return f"{index + 1}: {text if len(text) <= 60 else text[:57] + '...'}"
