"""Length-bucketed fine-tuning batches (`config.data.length_buckets`): each batch cut to one of a few lengths, the
bucket of its longest row, instead of max_seq_length. Padding is masked, so the outputs at every real token are the
padded batch's (`docs/finetuning.md`).

    buckets = parse(value, max_seq_length)          # None (off), AUTO, or ascending lengths ending at T (checked)
    buckets = choose(lengths, max_seq_length, B)    # AUTO: up to MAX_AUTO_BUCKETS lengths from the data
    plan = TrainPlan(batches, bucket_of(lengths, buckets), B, seed)   # batch s -> (row indices [B], length)
    trim(arrays, length)                            # every [B, T] array cut to [B, length]

The training plan regroups the unbucketed order (`batches`: a grain MapDataset whose item s is the row indices of
unbucketed global batch s). Chunk c is the K = max(1, N // B) batches [cK, (c+1)K) (one epoch's worth, the steps
per epoch of the schedule): its K B rows are sorted by bucket (stable, so rows of one bucket keep their shuffled
order), cut into K batches of B, each of the length of its last (longest) row's bucket, and the K batches are put in
an order drawn from (seed, c). Every chunk trains the same examples as the same K steps unbucketed, every batch is
full (as unbucketed, the rows left at an epoch's end go on into the next epoch's first batch), and the plan depends
on the global order and the lengths only: every process computes the same one and takes its rows of each global
batch.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Sequence

import numpy as np

from bertjax.errors import BertjaxError

FIELD = "--config.data.length_buckets"
AUTO = "auto"
AUTO_STEP = 8            # auto's lengths are multiples of this (and max_seq_length)
MAX_AUTO_BUCKETS = 6     # auto's most shapes (compilations), max_seq_length included
_ORDER_SALT = 0x6C656E62  # keeps the batch-order stream apart from other streams of the same seed


def parse(value, max_seq_length: int) -> tuple[int, ...] | str | None:
    """The setting: None (off: unset, "" or "off"), AUTO, or ascending positive lengths (a comma-separated string
    or a sequence of ints) with max_seq_length appended when not last. A bad value is one BertjaxError line."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off")):
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)

    def bad(problem: str) -> BertjaxError:
        return BertjaxError(
            f"{FIELD}={value!r} {problem}; use auto, or ascending lengths up to --config.data.max_seq_length="
            f"{max_seq_length} separated by commas (e.g. 32,64,{max_seq_length}), or leave it unset for none")

    try:
        lengths = [int(p) for p in parts]
        if any(str(p).strip() != str(n) for p, n in zip(parts, lengths)):
            raise ValueError
    except (TypeError, ValueError):
        raise bad("is not a list of whole numbers") from None
    if not lengths or min(lengths) <= 0:
        raise bad("needs positive lengths")
    if any(b <= a for a, b in zip(lengths, lengths[1:])):
        raise bad("is not strictly ascending")
    if lengths[-1] > max_seq_length:
        raise bad(f"has a length above max_seq_length {max_seq_length}")
    if lengths[-1] != max_seq_length:
        lengths.append(max_seq_length)
    return tuple(lengths)


def row_lengths(input_mask) -> np.ndarray:
    """The real length of each row of input_mask [N, T]: one past its last real token (0 for an empty row)."""
    mask = np.asarray(input_mask) != 0
    last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last, 0).astype(np.int64)


def bucket_of(lengths, buckets: Sequence[int]) -> np.ndarray:
    """The bucket of each length: the shortest bucket that holds it."""
    return np.asarray(buckets, np.int64)[np.searchsorted(np.asarray(buckets), np.asarray(lengths), side="left")]


def choose(lengths, max_seq_length: int, batch_size: int) -> tuple[int, ...]:
    """AUTO's buckets: among the multiples of AUTO_STEP below max_seq_length (and max_seq_length), the at most
    MAX_AUTO_BUCKETS that leave the fewest padded positions when the sorted lengths are cut into batches of
    `batch_size` (what a chunk of the plan does; exact, by dynamic programming over the batches' longest rows);
    fewer buckets on a tie, and only buckets some batch uses."""
    ordered = np.sort(np.asarray(lengths, np.int64))
    group_max = ordered[np.minimum(np.arange(batch_size - 1, len(ordered) + batch_size - 1, batch_size),
                                   len(ordered) - 1)] if len(ordered) else np.zeros(0, np.int64)
    # A bucket worth having is the smallest multiple of AUTO_STEP holding some batch; the cost of a set is the sum
    # of each batch's bucket.
    needed = sorted({min(max_seq_length, -(-int(m) // AUTO_STEP) * AUTO_STEP) for m in group_max} | {max_seq_length})
    counts = np.array([np.sum(np.minimum(max_seq_length, -(-group_max // AUTO_STEP) * AUTO_STEP) == b)
                       for b in needed])
    # cost[k][j]: the least cost of the batches up to bucket needed[j] with k buckets, the last being needed[j].
    n = len(needed)
    infinity = float("inf")
    cost = [[infinity] * n for _ in range(MAX_AUTO_BUCKETS + 1)]
    choice = [[None] * n for _ in range(MAX_AUTO_BUCKETS + 1)]
    for j in range(n):
        cost[1][j] = needed[j] * int(counts[:j + 1].sum())
    for k in range(2, MAX_AUTO_BUCKETS + 1):
        for j in range(n):
            for i in range(j):
                value = cost[k - 1][i] + needed[j] * int(counts[i + 1:j + 1].sum())
                if value < cost[k][j]:
                    cost[k][j], choice[k][j] = value, i
    best_k = min(range(1, MAX_AUTO_BUCKETS + 1), key=lambda k: (cost[k][n - 1], k))
    chosen, j = [], n - 1
    for k in range(best_k, 0, -1):
        chosen.append(needed[j])
        j = choice[k][j] if k > 1 else j
    return tuple(sorted(chosen))


def trim(arrays: dict, length: int) -> dict:
    """Every [B, T] array (tokens, masks, segment and label ids) cut to its first `length` positions; [B] arrays
    as they are."""
    return {name: values[:, :length] if np.ndim(values) == 2 else values for name, values in arrays.items()}


class TrainPlan:
    """Global batch s -> (its row indices [B], its length): the unbucketed order regrouped chunk by chunk (see the
    module docstring). Chunks are computed when first needed and a few kept; thread-safe (Grain's prefetch)."""

    def __init__(self, batches, row_buckets: np.ndarray, batch_size: int, seed: int, keep: int = 8):
        self.batches = batches
        self.row_buckets = np.asarray(row_buckets)
        self.batch_size = batch_size
        self.chunk_batches = max(1, len(self.row_buckets) // batch_size)
        self.seed = seed
        self._keep = keep
        self._chunks: collections.OrderedDict[int, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk c: row indices [K, B] and lengths [K] of its batches, in training order."""
        with self._lock:
            if c in self._chunks:
                self._chunks.move_to_end(c)
                return self._chunks[c]
            k = self.chunk_batches
            rows = np.concatenate([np.asarray(self.batches[c * k + j]) for j in range(k)])
            order = np.argsort(self.row_buckets[rows], kind="stable")
            grouped = rows[order].reshape(k, self.batch_size)
            lengths = self.row_buckets[grouped[:, -1]]
            shuffle = np.random.default_rng([self.seed % (1 << 63), c, _ORDER_SALT]).permutation(k)
            self._chunks[c] = found = grouped[shuffle], lengths[shuffle]
            while len(self._chunks) > self._keep:
                self._chunks.popitem(last=False)   # the least recently used
            return found

    def __getitem__(self, s: int) -> tuple[np.ndarray, int]:
        rows, lengths = self.chunk(s // self.chunk_batches)
        j = s % self.chunk_batches
        return rows[j], int(lengths[j])


def describe(lengths_of_batches, batch_size: int, max_seq_length: int, real_tokens: int) -> str:
    """`N batches (L: n, ...), P% of the positions at max_seq_length (real tokens R%)` for a plan's batches."""
    lengths_of_batches = np.asarray(lengths_of_batches)
    shapes, counts = np.unique(lengths_of_batches, return_counts=True)
    full = len(lengths_of_batches) * batch_size * max_seq_length
    computed = int(lengths_of_batches.sum()) * batch_size
    count = len(lengths_of_batches)
    return (f"{count:,} batch{'es' * (count != 1)} (" + ", ".join(f"{s}: {n:,}" for s, n in zip(shapes, counts))
            + f"), {100 * computed / max(full, 1):.0f}% of the positions at max_seq_length "
            f"(real tokens {100 * real_tokens / max(full, 1):.0f}%)")
