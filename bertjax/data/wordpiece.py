"""Words as numpy spans of code points: hashing them, and BERT's WordPiece on many distinct words at once.

`PolynomialHash` hashes substrings of a code point array (a polynomial hash mod 2**64, from one prefix sum over the
array), so that equal substrings get equal keys wherever they are. Keys are only ever used to find candidates: every
use compares the characters too (`equal_spans`), so a collision can cost time but never change a result.

`WordPieceTable` is google-research/bert's `WordpieceTokenizer` (and `tokenizers`' WordPiece model): greedy
longest-match-first pieces from the left, ``##`` + the characters of every piece after the first; a word longer than
`max_chars` characters, or one where no entry matches at some point, is a single [UNK]. All words advance together,
one piece per round: each word's candidate pieces (every length up to the longest entry that starts with its next
character) are looked up at once in an open-addressing table of the vocab entries' keys, hits are compared character
by character, and the longest match wins.
"""
from __future__ import annotations

import itertools
import re
from typing import Sequence

import numpy as np

from bertjax.data.vocab_files import MAX_INPUT_CHARS_PER_WORD

CONTINUATION_PREFIX = "##"
_FLAG, _LEN, _MIX = 0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0xBF58476D1CE4E5B9  # key = (hash + flag + length) * mix
_SURROGATE = re.compile("[\ud800-\udfff]")
FINISH_IN_PYTHON = 32  # WordPieceTable.pieces does the last this many words one by one
_ASTRAL = 0x10000  # index of the first-character bound shared by all characters beyond the BMP


class HashCollision(Exception):
    """Two different strings got the same key: the caller starts afresh with the next `PolynomialHash` attempt."""


def hash_base(attempt: int) -> int:
    """The odd multiplier of a PolynomialHash: a fixed pseudo-random 64-bit number per attempt (splitmix64)."""
    z = (attempt + 1) * 0x9E3779B97F4A7C15 % 2**64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % 2**64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB % 2**64
    return (z ^ (z >> 31)) | 1


class PolynomialHash:
    """Keys of substrings of code point arrays: hash(s) = sum(s[k] * base**(len(s)-1-k)) mod 2**64, mixed with the
    length and a flag (a ``##`` piece), computed from a prefix sum P[i] = sum(chars[k] * base**-k for k < i)."""

    def __init__(self, attempt: int = 0):
        """The `attempt`-th multiplier (see `hash_base`)."""
        self.attempt = attempt
        self.base = hash_base(attempt)
        self._pow = np.ones(1, np.uint64)  # base**k mod 2**64 for k < len, grown on demand
        self._inv_pow = np.ones(1, np.uint64)  # base**-k

    def prefix(self, chars: np.ndarray) -> np.ndarray:
        """uint64[len(chars) + 1]: the prefix sums `keys` reads."""
        n = len(chars)
        if len(self._pow) < n + 1:
            size = max(n + 1, 2 * len(self._pow))
            self._pow = _cumulative_powers(self.base, size)
            self._inv_pow = _cumulative_powers(pow(self.base, -1, 2**64), size)
        prefix = np.zeros(n + 1, np.uint64)
        np.cumsum(chars.astype(np.uint64) * self._inv_pow[:n], out=prefix[1:])
        return prefix

    def keys(self, prefix: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
             flags: np.ndarray | None = None) -> np.ndarray:
        """uint64 keys of the substrings [starts, starts + lengths) (lengths >= 1) of the array of `prefix`."""
        ends = starts + lengths
        mixed = (prefix[ends] - prefix[starts]) * self._pow[ends - 1] + lengths.astype(np.uint64) * np.uint64(_LEN)
        if flags is not None:
            mixed += flags.astype(np.uint64) * np.uint64(_FLAG)
        return mixed * np.uint64(_MIX)


class KeyTable:
    """uint64 key -> int64 value: open addressing with linear probing, vectorised, at most a quarter full (it grows).
    Key 0 marks an empty slot, so it is never a key."""

    def __init__(self, bits: int = 12):
        self.bits, self.count = bits, 0
        self.keys = np.zeros(1 << bits, np.uint64)
        self.values = np.full(1 << bits, -1, np.int64)

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return (keys >> np.uint64(64 - self.bits)).astype(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, or -1."""
        slots = self._slots(keys)
        found = self.keys[slots]
        values = np.where(found == keys, self.values[slots], -1)
        todo = np.flatnonzero((found != keys) & (found != 0))
        while len(todo):
            slots[todo] = (slots[todo] + 1) & ((1 << self.bits) - 1)
            found = self.keys[slots[todo]]
            hit = found == keys[todo]
            values[todo[hit]] = self.values[slots[todo[hit]]]
            todo = todo[~hit & (found != 0)]
        return values

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add distinct keys that are not there yet (none 0)."""
        if 4 * (self.count + len(keys)) > len(self.keys):
            old = self.keys != 0
            old_keys, old_values = self.keys[old], self.values[old]
            self.__init__(max(self.bits + 1, int(4 * (self.count + len(keys)) - 1).bit_length()))
            self.insert(old_keys, old_values)
        slots = self._slots(keys)
        pending = np.arange(len(keys))
        while len(pending):
            free = pending[self.keys[slots[pending]] == 0]
            self.keys[slots[free]] = keys[free]  # where several want one slot, one of them gets it
            placed = free[self.keys[slots[free]] == keys[free]]
            self.values[slots[placed]] = values[placed]
            pending = pending[self.keys[slots[pending]] != keys[pending]]
            slots[pending] = (slots[pending] + 1) & ((1 << self.bits) - 1)
        self.count += len(keys)


class WordPieceTable:
    """The vocab's entries in a KeyTable; `pieces` gives words' WordPiece ids (see module doc)."""

    def __init__(self, vocab: dict[str, int], unk_id: int, hasher: PolynomialHash,
                 max_chars: int = MAX_INPUT_CHARS_PER_WORD):
        """`vocab`: token -> id. Entries no word can match (empty after any ``##``; holding a lone surrogate, which
        `tokenizers` never matched) are left out. HashCollision if two entries get the same key under `hasher`."""
        tokens = list(vocab)
        joined = "".join(tokens)
        full_lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        flags = np.fromiter(map(str.startswith, tokens, itertools.repeat(CONTINUATION_PREFIX)), bool, len(tokens))
        usable = full_lengths > len(CONTINUATION_PREFIX) * flags
        ids = np.fromiter(vocab.values(), np.int32, len(vocab))
        if _SURROGATE.search(joined):
            usable &= [not _SURROGATE.search(t) for t in tokens]
            vocab = {t: i for t, i in vocab.items() if not _SURROGATE.search(t)}
        self.vocab = vocab  # for the last few words (`_finish`)
        prefix_len = len(CONTINUATION_PREFIX) * flags[usable]
        self.hasher, self.unk_id, self.max_chars = hasher, int(unk_id), int(max_chars)
        self.ids = ids[usable]
        self.flags = flags[usable]
        self.lengths = full_lengths[usable] - prefix_len
        self.starts = (np.cumsum(full_lengths) - full_lengths)[usable] + prefix_len
        self.chars = code_points(joined)
        self.max_len = int(self.lengths.max(initial=0))
        # bounds[flag, k, c]: the longest entry (## or not) whose k-th character is c (BMP; any character beyond
        # it: c = _ASTRAL), no longer than max_chars (no word is): a match at a word's position is no longer than
        # the bound of each of its next two characters
        self.bounds = np.zeros((2, 2, _ASTRAL + 1), np.int16)
        capped = np.minimum(self.lengths, max_chars).astype(np.int16)
        for k in range(2):
            has = self.lengths > k
            np.maximum.at(self.bounds, (self.flags[has].astype(np.intp), k,
                                        np.minimum(self.chars[self.starts[has] + k], _ASTRAL)), capped[has])
        keys = hasher.keys(hasher.prefix(self.chars), self.starts, self.lengths, self.flags)
        ordered = np.sort(keys)
        if not (np.all(ordered) and np.all(ordered[1:] != ordered[:-1])):
            raise HashCollision("vocab entries")
        self.table = KeyTable()
        self.table.insert(keys, np.arange(len(keys)))

    def pieces(self, chars: np.ndarray, prefix: np.ndarray, starts: np.ndarray,
               lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WordPiece ids of the words chars[starts[i]:starts[i] + lengths[i]] (`prefix` is `self.hasher.prefix(chars)`):
        (flat int32 ids, int64 piece count per word). Words as BERT's basic tokenization makes them: no whitespace, and
        punctuation such as '#' only alone (so that no word starts with the ``##`` of a continuation entry)."""
        unk = lengths > self.max_chars
        found = []  # (word, piece number, id) arrays
        active = np.flatnonzero(~unk & (lengths > 0))
        pos, ends = starts[active], starts[active] + lengths[active]
        number = 0
        while len(active) > FINISH_IN_PYTHON:
            flags = pos > starts[active]
            limit = np.minimum(ends - pos, self.bounds[flags.astype(np.intp), 0, np.minimum(chars[pos], _ASTRAL)])
            second = np.minimum(chars[np.minimum(pos + 1, len(chars) - 1)], _ASTRAL)
            limit = np.where(limit > 1, np.clip(self.bounds[flags.astype(np.intp), 1, second], 1, limit), limit)
            entry, length = self._longest(chars, prefix, pos, flags, limit)
            hit = entry >= 0
            unk[active[~hit]] = True
            found.append((active[hit], np.full(int(hit.sum()), number), self.ids[entry[hit]]))
            pos = pos + length
            more = hit & (pos < ends)
            active, pos, ends = active[more], pos[more], ends[more]
            number += 1
        for word, start, end in zip(active.tolist(), pos.tolist(), ends.tolist()):
            ids = self._finish(chars[start:end].tobytes().decode("utf-32-le", "surrogatepass"), start > starts[word])
            if ids is None:
                unk[word] = True
            else:
                found.append((np.full(len(ids), word), number + np.arange(len(ids)), np.array(ids, np.int32)))
        words, numbers, ids = (np.concatenate([part[k] for part in found] + [np.zeros(0, np.int64)]) for k in range(3))
        keep = ~unk[words]
        counts = np.where(unk, 1, np.bincount(words[keep], minlength=len(lengths)))
        flat = np.full(int(counts.sum()), self.unk_id, np.int32)
        flat[(np.cumsum(counts) - counts)[words[keep]] + numbers[keep]] = ids[keep]
        return flat, counts

    def _longest(self, chars: np.ndarray, prefix: np.ndarray, pos: np.ndarray, flags: np.ndarray,
                 limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each word at `pos`: the longest entry (## entries where `flags`) of at most `limit` characters that
        matches there: (entry index, or -1 if none; its length). All candidate lengths are looked up at once; the
        longest hit of each word is compared by characters, then (if that fails: a collision) the next."""
        owner = np.repeat(np.arange(len(pos)), limit)
        length = np.arange(len(owner)) - np.repeat(np.cumsum(limit) - limit, limit) + 1  # 1 .. limit of each
        entry = self.table.get(self.hasher.keys(prefix, pos[owner], length, flags[owner]))
        hit = np.flatnonzero(entry >= 0)
        owner, length, entry = owner[hit], length[hit], entry[hit]
        same = (self.lengths[entry] == length) & (self.flags[entry] == flags[owner])
        owner, length, entry = owner[same], length[same], entry[same]
        best = np.full(len(pos), -1, np.int64)
        best_length = np.zeros(len(pos), np.int64)
        while len(owner):
            last = np.flatnonzero(np.append(owner[1:] != owner[:-1], True))  # the longest of each word
            equal = equal_spans(chars, pos[owner[last]], self.chars, self.starts[entry[last]], length[last])
            best[owner[last[equal]]] = entry[last[equal]]
            best_length[owner[last[equal]]] = length[last[equal]]
            if equal.all():
                break
            retry = np.isin(owner, owner[last[~equal]])
            retry[last[~equal]] = False
            owner, length, entry = owner[retry], length[retry], entry[retry]
        return best, best_length

    def _finish(self, rest: str, continued: bool) -> list[int] | None:
        """WordPiece of a word's rest (after pieces when `continued`) as the original does it, in Python (for the
        last few words, where numpy's per-call cost is more than the work): the ids, or None for [UNK]."""
        ids, start, prefix = [], 0, CONTINUATION_PREFIX if continued else ""
        while start < len(rest):
            for end in range(min(len(rest), start + self.max_len), start, -1):
                piece_id = self.vocab.get(prefix + rest[start:end])
                if piece_id is not None:
                    break
            else:
                return None
            ids.append(piece_id)
            start, prefix = end, CONTINUATION_PREFIX
        return ids

    def encode_words(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`pieces` of a list of words. A word that is a vocab entry is that entry (as greedy longest-match gives):
        a dict lookup; the others go to `pieces`."""
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        direct = np.fromiter(map(self.vocab.get, words, itertools.repeat(-1)), np.int64, len(words))
        direct[lengths > self.max_chars] = -1
        misses = np.flatnonzero(direct < 0)
        chars = code_points("".join([words[i] for i in misses.tolist()]))
        ids, miss_counts = self.pieces(chars, self.hasher.prefix(chars), np.cumsum(lengths[misses]) - lengths[misses],
                                       lengths[misses])
        counts = np.ones(len(words), np.int64)
        counts[misses] = miss_counts
        flat = np.repeat(direct, counts).astype(np.int32)  # a miss's pieces take its places, in order
        flat[np.repeat(direct < 0, counts)] = ids
        return flat, counts


def group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal keys grouped: (group of each key, the index of one key of each group)."""
    order = np.argsort(keys)
    ordered = keys[order]
    first = np.ones(len(keys), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    group = np.empty(len(keys), np.int64)
    group[order] = np.cumsum(first) - 1
    return group, order[first]


class GrowingArray:
    """A numpy array that grows at its end (its capacity doubling); `array` is what it holds."""

    def __init__(self, dtype: type, values: Sequence[int] = ()):
        self._data = np.array(values, dtype)
        self.size = len(self._data)

    @property
    def array(self) -> np.ndarray:
        """The values so far (a view)."""
        return self._data[:self.size]

    def extend(self, values: np.ndarray) -> None:
        """Append values."""
        end = self.size + len(values)
        if end > len(self._data):
            data = np.empty(max(end, 2 * len(self._data)), self._data.dtype)
            data[:self.size] = self._data[:self.size]
            self._data = data
        self._data[self.size:end] = values
        self.size = end


def equal_spans(a: np.ndarray, a_starts: np.ndarray, b: np.ndarray, b_starts: np.ndarray, lengths: np.ndarray,
                each: bool = True) -> np.ndarray | bool:
    """a[a_starts[i]:+lengths[i]] == b[b_starts[i]:+lengths[i]] for each span i (lengths >= 1), or (each=False)
    whether all are."""
    offsets = np.cumsum(lengths) - lengths
    at_a = np.arange(int(lengths.sum())) + np.repeat(a_starts - offsets, lengths)
    differ = a[at_a] != b[at_a + np.repeat(b_starts - a_starts, lengths)]
    if not each:
        return not differ.any()
    return ~np.logical_or.reduceat(differ, offsets) if len(offsets) else np.ones(0, bool)


def code_points(text: str) -> np.ndarray:
    """uint32 code points of `text` (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _cumulative_powers(base: int, size: int) -> np.ndarray:
    """base**k mod 2**64 for k < size."""
    powers = np.full(size, base, np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)
