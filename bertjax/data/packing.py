"""Sequence packing with next-sentence prediction: several [CLS] A [SEP] B [SEP] pairs share one row of T tokens.

Neither google-research/bert nor KerasHub packs; at T = 512 most pairs are far shorter than T (short documents,
`short_seq_prob`), so an unpacked row is mostly padding. `create_pretraining_data --pack` makes the pairs exactly
as unpacked (the original algorithm, truncation and masks), then packs them, so the data statistics do not change.
A packed row holds up to K pairs (`--max_pairs_per_seq`) one after another, then padding:

    input_ids, input_mask, segment_ids [T]     the pairs' own tokens, real-token mask, A/B segments
    pair_ids                           [T]     k for the tokens of the row's k-th pair (1-based), 0 for padding
    masked_lm_positions/ids/weights    [P]     every pair's predictions, positions shifted to the row
    next_sentence_positions            [K]     where each pair's [CLS] is (0 for an empty slot)
    next_sentence_labels               [K]     each pair's label (0 = IsNext, 1 = random next)
    next_sentence_weights              [K]     1.0 for a pair, 0.0 for an empty slot

The model attends within a pair only (`layers.attention_bias_from_pair_ids`: block-diagonal), restarts position
ids at each pair's [CLS] (`layers.position_ids_from_pair_ids`) and predicts NSP from each pair's [CLS], so a
packed batch's loss equals the loss of the same pairs unpacked (tests/test_packing.py).

Rows are filled best-fit decreasing within a block of pairs: the longest pair left opens a row, then the longest
pair that still fits (tokens <= T, predictions <= P, pairs <= K) joins it, until none fits.
"""
from __future__ import annotations

import bisect

import numpy as np

from bertjax.errors import BertjaxError

PREDICTION_FIT_TRIES = 8  # shorter pairs tried when the longest that fits has too many predictions for the row


def plan_rows(num_tokens: np.ndarray, num_predictions: np.ndarray, max_seq_length: int,
              max_predictions_per_seq: int, max_pairs_per_seq: int) -> list[list[int]]:
    """Which pairs share a row: a list of rows, each the indices of its pairs in the order they are laid out."""
    if max_pairs_per_seq < 1:
        raise BertjaxError(f"max_pairs_per_seq={max_pairs_per_seq} must be >= 1")
    order = np.argsort(num_tokens, kind="stable")       # ascending; popped from the end: longest first
    lengths = [int(num_tokens[i]) for i in order]
    left = [int(i) for i in order]
    rows = []
    while left:
        lengths.pop()
        first = left.pop()
        row, room, predictions_room = [first], max_seq_length - int(num_tokens[first]), \
            max_predictions_per_seq - int(num_predictions[first])
        while left and len(row) < max_pairs_per_seq:
            fit = bisect.bisect_right(lengths, room) - 1         # the longest pair that fits in the tokens left
            for slot in range(fit, max(-1, fit - PREDICTION_FIT_TRIES), -1):
                if num_predictions[left[slot]] <= predictions_room:
                    break
            else:
                break
            pair = left.pop(slot)
            lengths.pop(slot)
            row.append(pair)
            room -= int(num_tokens[pair])
            predictions_room -= int(num_predictions[pair])
        rows.append(row)
    return rows


def pack(rows: dict[str, np.ndarray], num_tokens: np.ndarray, plan: list[list[int]], max_pairs_per_seq: int
         ) -> dict[str, np.ndarray]:
    """Unpacked rows (the batch keys, [N, ...], each pair's tokens first, its predictions sorted and first) -> packed
    rows [R, ...] laid out as `plan` says (see the module docstring)."""
    n, seq_length = rows["input_ids"].shape
    predictions = rows["masked_lm_positions"].shape[1]
    row_of = np.empty(n, np.int64)
    slot_of = np.empty(n, np.int64)
    for r, pairs in enumerate(plan):
        row_of[pairs] = r
        slot_of[pairs] = np.arange(len(pairs))
    num_tokens = np.asarray(num_tokens, np.int64)
    num_predictions = (rows["masked_lm_weights"] > 0).sum(axis=1)
    # Each pair's first token and first prediction slot in its row: the lengths of the pairs before it.
    by_place = np.lexsort((slot_of, row_of))
    token_offset, prediction_offset = np.empty(n, np.int64), np.empty(n, np.int64)
    first_in_row = slot_of[by_place] == 0
    for offset, lengths in ((token_offset, num_tokens), (prediction_offset, num_predictions)):
        before = np.cumsum(lengths[by_place]) - lengths[by_place]       # of all pairs laid out before, any row
        offset[by_place] = before - np.maximum.accumulate(np.where(first_in_row, before, 0))
    if (token_offset + num_tokens).max(initial=0) > seq_length or \
            (prediction_offset + num_predictions).max(initial=0) > predictions:
        raise BertjaxError("a packing plan overfills a row; make it with plan_rows")

    num_rows = len(plan)
    out = {key: np.zeros((num_rows, seq_length), np.int32) for key in ("input_ids", "input_mask", "segment_ids",
                                                                        "pair_ids")}
    out.update({key: np.zeros((num_rows, predictions), rows[key].dtype) for key in ("masked_lm_positions",
                                                                                   "masked_lm_ids",
                                                                                   "masked_lm_weights")})
    out.update(next_sentence_labels=np.zeros((num_rows, max_pairs_per_seq), np.int32),
               next_sentence_positions=np.zeros((num_rows, max_pairs_per_seq), np.int32),
               next_sentence_weights=np.zeros((num_rows, max_pairs_per_seq), np.float32))

    tokens = np.arange(seq_length)[None, :] < num_tokens[:, None]                            # [N, T]
    at_row = np.broadcast_to(row_of[:, None], tokens.shape)[tokens]
    at_col = (token_offset[:, None] + np.arange(seq_length)[None, :])[tokens]
    for key in ("input_ids", "segment_ids"):
        out[key][at_row, at_col] = rows[key][tokens]
    out["input_mask"][at_row, at_col] = 1
    out["pair_ids"][at_row, at_col] = np.broadcast_to(slot_of[:, None] + 1, tokens.shape)[tokens]

    real = np.arange(predictions)[None, :] < num_predictions[:, None]                        # [N, P]
    at_row = np.broadcast_to(row_of[:, None], real.shape)[real]
    at_col = (prediction_offset[:, None] + np.arange(predictions)[None, :])[real]
    out["masked_lm_positions"][at_row, at_col] = (rows["masked_lm_positions"] + token_offset[:, None])[real]
    out["masked_lm_ids"][at_row, at_col] = rows["masked_lm_ids"][real]
    out["masked_lm_weights"][at_row, at_col] = rows["masked_lm_weights"][real]

    out["next_sentence_labels"][row_of, slot_of] = rows["next_sentence_labels"]
    out["next_sentence_positions"][row_of, slot_of] = token_offset
    out["next_sentence_weights"][row_of, slot_of] = 1.0
    return out


def unpack(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Packed rows -> the pairs as unpacked rows of the same T and P, in row-then-slot order (tests, inspection)."""
    seq_length = packed["input_ids"].shape[1]
    predictions = packed["masked_lm_positions"].shape[1]
    out: dict[str, list] = {key: [] for key in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                                                "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")}
    for r in range(packed["input_ids"].shape[0]):
        for slot in np.flatnonzero(packed["next_sentence_weights"][r] > 0):
            where = np.flatnonzero(packed["pair_ids"][r] == slot + 1)
            start, length = int(where[0]), len(where)
            for key in ("input_ids", "input_mask", "segment_ids"):
                out[key].append(np.pad(packed[key][r, start:start + length], (0, seq_length - length)))
            mine = (packed["masked_lm_weights"][r] > 0) & (packed["masked_lm_positions"][r] >= start) & \
                (packed["masked_lm_positions"][r] < start + length)
            count = int(mine.sum())
            for key, shift in (("masked_lm_positions", start), ("masked_lm_ids", 0), ("masked_lm_weights", 0)):
                out[key].append(np.pad(packed[key][r][mine] - shift, (0, predictions - count)))
            out["next_sentence_labels"].append(packed["next_sentence_labels"][r, slot])
    return {key: np.stack(values) for key, values in out.items()}
