"""Documents -> pretraining instances: the original create_pretraining_data algorithm, streaming over bounded shards.

`bertjax.data.text` cuts the corpus into shards of whole documents, so memory stays bounded however large the
corpus is. Within a shard, `create_instances` follows google-research/bert's `create_pretraining_data.py:
create_training_instances` and `create_instances_from_document` exactly in structure and distribution:

* documents are shuffled once, then every document is walked `dupe_factor` times;
* the target length is max_seq_length - 3, or with probability short_seq_prob a uniform 2..max_num_tokens,
  decided once per document per pass;
* sentences accumulate into a chunk until the target length or the end of the document; A is the first
  1..len(chunk)-1 sentences; B is a random next (chunk of one sentence, or probability 0.5) taken from a random
  other document at a random sentence until the target is reached, and the unused sentences are "put back";
  otherwise B is the rest of the chunk;
* `truncate_pairs` trims the longer side (ties: B) one token at a time from a random end (`truncate_seq_pair`).

Deviations, all documented in the CLI help: the random next document comes from the same shard (a window of
documents), not the whole corpus; the shuffle of instances is within a shard (the input pipeline shuffles
globally again); documents never continue across files; and the per-token truncation coin flips are drawn as one
binomial count per side (same distribution, fewer calls). Each sentence is tokenized once for all passes, and an
instance is held as four integers (A start/length, B start/length) into the shard's flat token array until the
padded feature rows are built with numpy.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bertjax.errors import BertjaxError

RANDOM_DOCUMENT_TRIES = 10  # as the original: tries to draw a random document other than the current one


# ----------------------------------------------------------------------------------------------------------------
# Tokenized documents


@dataclass
class Documents:
    """Tokenized documents of one shard: sentence k is tokens[starts[k]:ends[k]]; document d is sentences
    doc_bounds[d][0] .. doc_bounds[d][1]-1. Sentences of a document are contiguous in `tokens`."""

    tokens: np.ndarray
    starts: list[int]
    ends: list[int]
    doc_bounds: list[tuple[int, int]]

    @property
    def num_documents(self) -> int:
        """Number of (non-empty) documents."""
        return len(self.doc_bounds)

    @property
    def num_sentences(self) -> int:
        """Number of non-empty sentences."""
        return len(self.starts)

    def select(self, documents: Sequence[int]) -> "Documents":
        """The same token array with only the given documents, in that order."""
        return Documents(self.tokens, self.starts, self.ends, [self.doc_bounds[d] for d in documents])


def tokenize_documents(lines: Sequence[str], encode_batch) -> Documents:
    """Lines ("" ends a document) -> Documents; sentences with no tokens and empty documents are dropped.

    `encode_batch(texts) -> (flat int32 ids, lengths)` is `BertTokenizer.encode_batch`; every sentence is
    tokenized once, however many dupe passes follow.
    """
    texts = [line for line in lines if line]
    tokens, lengths = encode_batch(texts)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    starts: list[int] = []
    ends: list[int] = []
    doc_bounds: list[tuple[int, int]] = []
    doc_first = 0
    k = 0
    for line in lines:
        if line:
            if offsets[k + 1] > offsets[k]:
                starts.append(offsets[k])
                ends.append(offsets[k + 1])
            k += 1
        elif len(starts) > doc_first:
            doc_bounds.append((doc_first, len(starts)))
            doc_first = len(starts)
        else:
            doc_first = len(starts)
    if len(starts) > doc_first:
        doc_bounds.append((doc_first, len(starts)))
    return Documents(np.asarray(tokens, dtype=np.int32), starts, ends, doc_bounds)


# ----------------------------------------------------------------------------------------------------------------
# Instances


@dataclass
class Instances:
    """Sentence pairs as spans of a Documents token array (before truncation and masking)."""

    a_start: np.ndarray
    a_len: np.ndarray
    b_start: np.ndarray
    b_len: np.ndarray
    is_random_next: np.ndarray
    short_target: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.a_start)

    def take(self, order: np.ndarray) -> "Instances":
        """Instances in the given order (e.g. a permutation)."""
        return Instances(*(getattr(self, name)[order] for name in
                           ("a_start", "a_len", "b_start", "b_len", "is_random_next", "short_target")))


def create_instances(docs: Documents, rng: random.Random, *, max_seq_length: int, short_seq_prob: float,
                     dupe_factor: int) -> Instances:
    """All instances of a shard's documents for `dupe_factor` passes (the original walk; see module doc).

    The documents are shuffled once first (in place of the original's corpus-wide shuffle). Instances come out
    in creation order and untruncated; call `truncate_pairs` next.
    """
    max_num_tokens = max_seq_length - 3
    if max_num_tokens < 2:
        raise BertjaxError(f"max_seq_length={max_seq_length} is too small; [CLS] A [SEP] B [SEP] needs at least 5")
    order = list(range(docs.num_documents))
    rng.shuffle(order)
    bounds = [docs.doc_bounds[d] for d in order]
    starts, ends = docs.starts, docs.ends
    out: list[tuple[int, int, int, int, bool, bool]] = []
    append = out.append
    # randint(a, b) is a + _randbelow(b - a + 1) (CPython's random.py): the same stream without the argument checks.
    below, rand = rng._randbelow, rng.random
    num_docs = len(bounds)
    for _ in range(dupe_factor):
        for doc, (first, stop) in enumerate(bounds):
            target = max_num_tokens
            short = rand() < short_seq_prob
            if short:
                target = 2 + below(max_num_tokens - 1)
            chunk_first = first
            length = 0
            i = first
            while i < stop:
                length += ends[i] - starts[i]
                if i == stop - 1 or length >= target:
                    n_chunk = i - chunk_first + 1
                    a_end = 1 + below(n_chunk - 1) if n_chunk >= 2 else 1
                    a_s, a_e = starts[chunk_first], ends[chunk_first + a_end - 1]
                    if n_chunk == 1 or rand() < 0.5:
                        target_b = target - (a_e - a_s)
                        other = doc
                        for _try in range(RANDOM_DOCUMENT_TRIES):
                            other = below(num_docs)
                            if other != doc:
                                break
                        o_first, o_stop = bounds[other]
                        j = o_first + below(o_stop - o_first)
                        b_s = starts[j]
                        while ends[j] - b_s < target_b and j < o_stop - 1:
                            j += 1
                        append((a_s, a_e - a_s, b_s, ends[j] - b_s, True, short))
                        i = chunk_first + a_end - 1  # put back the unused sentences of the chunk
                    else:
                        b_s = starts[chunk_first + a_end]
                        append((a_s, a_e - a_s, b_s, ends[i] - b_s, False, short))
                    chunk_first = i + 1
                    length = 0
                i += 1
    if not out:
        empty = np.zeros(0, np.int64)
        return Instances(empty, empty, empty, empty, np.zeros(0, bool), np.zeros(0, bool))
    table = np.array(out, dtype=np.int64)
    return Instances(table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4].astype(bool),
                     table[:, 5].astype(bool))


def truncate_pairs(instances: Instances, max_num_tokens: int, rng: np.random.Generator) -> Instances:
    """The original truncate_seq_pair, vectorised: trim the longer side (ties: B) until len(A)+len(B) fits,
    each removed token from the front or the back with probability 1/2."""
    a_len, b_len = instances.a_len, instances.b_len
    excess = np.maximum(0, a_len + b_len - max_num_tokens)
    gap = np.abs(a_len - b_len)
    first = np.minimum(excess, gap)  # removed from the longer side until both are equal
    rest = excess - first  # then alternately B, A, B, ...
    cut_a = np.where(a_len > b_len, first, 0) + rest // 2
    cut_b = np.where(a_len > b_len, 0, first) + rest - rest // 2
    front_a = rng.binomial(cut_a, 0.5)
    front_b = rng.binomial(cut_b, 0.5)
    return Instances(instances.a_start + front_a, a_len - cut_a, instances.b_start + front_b, b_len - cut_b,
                     instances.is_random_next, instances.short_target)


def build_features(tokens: np.ndarray, instances: Instances, max_seq_length: int, cls_id: int,
                   sep_id: int) -> dict[str, np.ndarray]:
    """Padded rows [CLS] A [SEP] B [SEP], one per instance: input_ids, input_mask, segment_ids (int32[B, T]),
    next_sentence_labels (int32[B], 1 = random next) and num_tokens (int64[B])."""
    n = len(instances)
    a_len = instances.a_len.astype(np.int32)[:, None]
    num_tokens = a_len + instances.b_len.astype(np.int32)[:, None] + 3
    pos = np.arange(max_seq_length, dtype=np.int32)[None, :]
    in_b = pos >= a_len + 2
    # Position p holds A's token p-1, or B's token p-len(A)-2; the [CLS]/[SEP] slots are overwritten below.
    source = pos + np.where(in_b, instances.b_start.astype(np.int32)[:, None] - a_len - 2,
                            instances.a_start.astype(np.int32)[:, None] - 1)
    real = pos < num_tokens
    padded = np.append(np.asarray(tokens, np.int32), np.int32(0))  # index len(tokens): padding
    input_ids = padded[np.where(real, source, len(tokens))]
    rows = np.arange(n)
    input_ids[:, 0] = cls_id
    input_ids[rows, a_len[:, 0] + 1] = sep_id
    input_ids[rows, num_tokens[:, 0] - 1] = sep_id
    return {"input_ids": input_ids, "input_mask": real.astype(np.int32), "segment_ids": (in_b & real).astype(np.int32),
            "next_sentence_labels": instances.is_random_next.astype(np.int32),
            "num_tokens": num_tokens[:, 0].astype(np.int64)}
