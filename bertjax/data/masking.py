"""Masked-LM prediction sampling, shared by static creation and the pipeline's dynamic masking.

This follows google-research/bert's `create_pretraining_data.py: create_masked_lm_predictions`:

* candidates are the real positions (``< num_tokens``) whose token is neither [CLS] nor [SEP];
* with whole-word masking a continuation wordpiece (``##...``) joins the group of the previous candidate
  (as the original, even across a [SEP]);
* ``num_to_predict = min(P, max(1, round(num_tokens * masked_lm_prob)))`` with round-half-to-even, as Python 3;
* groups are taken in a uniformly random order; a group that would overshoot ``num_to_predict`` is skipped;
* each chosen position becomes [MASK] with p=0.8, keeps its token with p=0.1, and gets a token drawn uniformly
  from the whole vocabulary with p=0.1. With ``whole_word="original"`` that 80/10/10 draw is made per wordpiece
  (the original's behaviour); with ``"per_word"`` once per word (google-research/bert#910);
* predictions are sorted by position and padded with 0 (weights 0.0) up to P.

Everything is numpy and pure (all randomness comes from the given ``np.random.Generator``), so one example
(`mask_tokens`) or a whole batch (`mask_batch`, vectorised for ``whole_word="none"``) can be masked anywhere.
Every random draw of `mask_batch` has a leading batch axis and a width that does not depend on the other rows, so
with `RowGenerators` (one generator per row) each row's masks depend only on its own generator: the same as
`mask_tokens` with that generator, whatever batch the row is in.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from bertjax.errors import BertjaxError

WholeWord = Literal["none", "original", "per_word"]
WHOLE_WORD_MODES: tuple[str, ...] = ("none", "original", "per_word")

MASK_PROB = 0.8  # share of predictions replaced by [MASK]
KEEP_PROB_OF_REST = 0.5  # of the rest, share kept unchanged (the others get a random token)


class RowGenerators:
    """One `np.random.Generator` per batch row, usable as `mask_batch`'s rng: draws of shape (B, ...) take row b
    from generator b, so a row's masks do not depend on the rest of the batch."""

    def __init__(self, generators: Sequence[np.random.Generator]):
        self._generators = list(generators)

    def _rows(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape[0] != len(self._generators):
            raise BertjaxError(f"a draw of shape {shape} needs {shape[0]} generators, got {len(self._generators)}")
        return tuple(shape[1:])

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        """float64[shape], uniform in [0, 1); row b from generator b."""
        row = self._rows(shape)
        return np.stack([g.random(row) for g in self._generators]).reshape(shape)

    def integers(self, low: int, high: int, size: tuple[int, ...]) -> np.ndarray:
        """int64[size], uniform in [low, high); row b from generator b."""
        row = self._rows(size)
        return np.stack([g.integers(low, high, size=row) for g in self._generators]).reshape(size)


def masking_args(tokenizer, *, masked_lm_prob: float, max_predictions_per_seq: int,
                 whole_word: WholeWord) -> dict:
    """The keyword arguments of `mask_batch` / `mask_tokens` for a vocab (a `BertTokenizer`) and dataset settings."""
    return dict(masked_lm_prob=masked_lm_prob, max_predictions_per_seq=max_predictions_per_seq,
                vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id, cls_id=tokenizer.cls_id,
                sep_id=tokenizer.sep_id, whole_word=whole_word,
                is_continuation=tokenizer.is_continuation() if whole_word != "none" else None)


def num_to_predict(num_tokens: np.ndarray | int, masked_lm_prob: float, max_predictions_per_seq: int) -> np.ndarray:
    """Number of predictions per sequence: min(P, max(1, round_half_even(num_tokens * masked_lm_prob)))."""
    wanted = np.rint(np.asarray(num_tokens, dtype=np.float64) * masked_lm_prob).astype(np.int64)
    return np.minimum(max_predictions_per_seq, np.maximum(1, wanted))


def predictions_per_seq_at_rate(max_predictions_per_seq: int, seq_length: int, masked_lm_prob: float) -> int:
    """Prediction slots P' of batches masked at another rate than the dataset's (a budget recipe's 0.3): the
    dataset's P, or ceil(T * rate) when that is larger, so a higher rate is never capped where the dataset's rate
    was not (round(n * rate) <= ceil(T * rate) for every n <= T)."""
    return max(int(max_predictions_per_seq), math.ceil(seq_length * masked_lm_prob))


def check_masking_args(*, masked_lm_prob: float, max_predictions_per_seq: int, seq_length: int,
                       whole_word: str) -> None:
    """Raise BertjaxError when masking settings cannot work together (the flags of a run, before any vocab)."""
    if not 0.0 < masked_lm_prob <= 1.0:
        raise BertjaxError(f"masked_lm_prob={masked_lm_prob} must be in (0, 1]; the original uses 0.15")
    if max_predictions_per_seq < 1:
        raise BertjaxError(f"max_predictions_per_seq={max_predictions_per_seq} must be >= 1")
    if max_predictions_per_seq > seq_length:
        raise BertjaxError(
            f"max_predictions_per_seq={max_predictions_per_seq} is larger than max_seq_length={seq_length}; "
            f"use about max_seq_length * masked_lm_prob (e.g. {max(1, round(seq_length * masked_lm_prob))})")
    if whole_word not in WHOLE_WORD_MODES:
        raise BertjaxError(f"whole_word={whole_word!r} must be one of {', '.join(WHOLE_WORD_MODES)}")


def _check_continuation_table(whole_word: str, is_continuation: np.ndarray | None, vocab_size: int) -> None:
    """Whole-word masking needs bool[V], True for the vocab's `##` pieces (`BertTokenizer.is_continuation()`)."""
    if whole_word == "none":
        return
    if is_continuation is None:
        raise BertjaxError(f"whole_word={whole_word!r} needs the is_continuation table of the vocabulary "
                           "(BertTokenizer.is_continuation())")
    if np.shape(is_continuation) != (vocab_size,):
        raise BertjaxError(f"is_continuation has shape {np.shape(is_continuation)}, but vocab_size={vocab_size}; pass "
                           "BertTokenizer.is_continuation() of the vocab the ids come from")


def _candidates(input_ids: np.ndarray, num_tokens: np.ndarray, cls_id: int, sep_id: int) -> np.ndarray:
    """bool[B, T]: real positions that may be predicted."""
    positions = np.arange(input_ids.shape[1])[None, :]
    return (positions < num_tokens[:, None]) & (input_ids != cls_id) & (input_ids != sep_id)


def _choose_single_pieces(candidates: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool[B, T]: `wanted` candidates per row, uniformly at random (a random order, then the first ones)."""
    keys = rng.random(candidates.shape)
    keys[~candidates] = 2.0
    count = np.minimum(wanted, candidates.sum(axis=1))
    threshold = np.take_along_axis(np.sort(keys, axis=1), np.maximum(count - 1, 0)[:, None], axis=1)
    return candidates & (keys <= threshold) & (count[:, None] > 0)


def _word_groups(input_ids: np.ndarray, candidates: np.ndarray, is_continuation: np.ndarray) -> np.ndarray:
    """int[B, T]: word index of each candidate (-1 elsewhere); `##` pieces join the previous candidate's word."""
    continuation = np.asarray(is_continuation, dtype=bool)[input_ids]
    earlier_candidate = np.cumsum(candidates, axis=1) > candidates  # some candidate before this position
    starts = candidates & ~(continuation & earlier_candidate)
    groups = np.cumsum(starts, axis=1) - 1
    return np.where(candidates, groups, -1)


def _choose_whole_words(groups: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool[B, T]: whole words in random order, skipping a word that would overshoot `wanted` (as the original)."""
    chosen = np.zeros(groups.shape, dtype=bool)
    num_groups = groups.max(axis=1) + 1
    keys = rng.random(groups.shape)  # a key per position (>= the number of words): the width never depends on
    # the other rows
    for row in range(groups.shape[0]):
        n_groups = int(num_groups[row])
        if n_groups <= 0:
            continue
        sizes = np.bincount(groups[row][groups[row] >= 0], minlength=n_groups)
        taken = np.zeros(n_groups, dtype=bool)
        total, target = 0, int(wanted[row])
        for group in np.argsort(keys[row, :n_groups], kind="stable").tolist():
            if total >= target:
                break
            if total + sizes[group] > target:
                continue
            taken[group] = True
            total += sizes[group]
        chosen[row] = (groups[row] >= 0) & taken[np.maximum(groups[row], 0)]
    return chosen


def mask_batch(
    input_ids: np.ndarray,
    num_tokens: np.ndarray,
    rng: np.random.Generator | RowGenerators,
    *,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    vocab_size: int,
    mask_id: int,
    cls_id: int,
    sep_id: int,
    whole_word: WholeWord = "none",
    is_continuation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mask a batch of sequences; the batched form of `mask_tokens` (same arguments, leading axis B).

    rng: one generator for the whole batch, or `RowGenerators` (row b masked exactly as `mask_tokens` with
    generator b would).

    input_ids: int[B, T], the first num_tokens[b] entries of row b are real ([CLS] A [SEP] B [SEP]).
    Returns (masked_input_ids int32[B, T], masked_lm_positions int32[B, P], masked_lm_ids int32[B, P],
    masked_lm_weights float32[B, P]).
    """
    input_ids = np.asarray(input_ids)
    num_tokens = np.asarray(num_tokens, dtype=np.int64).reshape(-1)
    batch, length = input_ids.shape
    p = max_predictions_per_seq
    check_masking_args(masked_lm_prob=masked_lm_prob, max_predictions_per_seq=p, seq_length=length,
                       whole_word=whole_word)
    _check_continuation_table(whole_word, is_continuation, vocab_size)
    candidates = _candidates(input_ids, num_tokens, cls_id, sep_id)
    wanted = num_to_predict(num_tokens, masked_lm_prob, p)
    if whole_word == "none":
        groups = None
        chosen = _choose_single_pieces(candidates, wanted, rng)
    else:
        groups = _word_groups(input_ids, candidates, is_continuation)
        chosen = _choose_whole_words(groups, wanted, rng)

    # Chosen positions in ascending order, padded with `length` (sorts last) then cut to P.
    positions = np.sort(np.where(chosen, np.arange(length)[None, :], length), axis=1)[:, :p]
    if positions.shape[1] < p:
        positions = np.pad(positions, ((0, 0), (0, p - positions.shape[1])), constant_values=length)
    valid = positions < length
    positions = np.where(valid, positions, 0)
    rows = np.arange(batch)[:, None]
    original = input_ids[rows, positions]

    # 80/10/10: one draw per wordpiece, or per word (the draw of the word's first chosen piece).
    draw_mask = rng.random((batch, p))
    draw_keep = rng.random((batch, p))
    random_ids = rng.integers(0, vocab_size, size=(batch, p))
    if whole_word == "per_word":
        word = groups[rows, positions]
        first_of_word = np.concatenate([np.ones((batch, 1), bool), word[:, 1:] != word[:, :-1]], axis=1)
        source = np.maximum.accumulate(np.where(first_of_word, np.arange(p)[None, :], 0), axis=1)
        draw_mask = draw_mask[rows, source]
        draw_keep = draw_keep[rows, source]
    kept_or_random = np.where(draw_keep < KEEP_PROB_OF_REST, original, random_ids)
    replacement = np.where(draw_mask < MASK_PROB, mask_id, kept_or_random)

    masked_input_ids = np.array(input_ids, dtype=np.int32, copy=True)
    valid_rows, valid_cols = np.nonzero(valid)
    masked_input_ids[valid_rows, positions[valid_rows, valid_cols]] = replacement[valid_rows, valid_cols]
    return (
        masked_input_ids,
        np.where(valid, positions, 0).astype(np.int32),
        np.where(valid, original, 0).astype(np.int32),
        valid.astype(np.float32),
    )


def mask_tokens(
    input_ids: np.ndarray,
    num_tokens: int,
    rng: np.random.Generator,
    *,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    vocab_size: int,
    mask_id: int,
    cls_id: int,
    sep_id: int,
    whole_word: WholeWord = "none",
    is_continuation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Choose and apply the masked-LM predictions of one sequence (the original algorithm; see module doc).

    Args:
      input_ids: int[T] token ids; the first `num_tokens` are real, the rest padding.
      num_tokens: number of real tokens (including [CLS] and the [SEP]s); sets num_to_predict.
      rng: the only source of randomness.
      masked_lm_prob, max_predictions_per_seq: as the original flags (P = max_predictions_per_seq).
      vocab_size: random replacements are drawn uniformly from [0, vocab_size), as the original.
      mask_id, cls_id, sep_id: special token ids ([CLS]/[SEP] are never predicted).
      whole_word: "none", "original" (whole words, 80/10/10 per wordpiece) or "per_word" (one draw per word).
      is_continuation: bool[V], True for `##` pieces; required unless whole_word == "none".
    Returns:
      (masked_input_ids int32[T], masked_lm_positions int32[P], masked_lm_ids int32[P], masked_lm_weights float32[P]).
    """
    outputs = mask_batch(
        np.asarray(input_ids)[None, :], np.asarray([num_tokens]), rng, masked_lm_prob=masked_lm_prob,
        max_predictions_per_seq=max_predictions_per_seq, vocab_size=vocab_size, mask_id=mask_id, cls_id=cls_id,
        sep_id=sep_id, whole_word=whole_word, is_continuation=is_continuation)
    return tuple(x[0] for x in outputs)  # type: ignore[return-value]
