"""BERT FullTokenizer semantics, exactly, fast on batches; casing stored beside the vocab.

Behaviour (as google-research/bert's `tokenization.py: FullTokenizer`, i.e. `BasicTokenizer` then
`WordpieceTokenizer`):
* cleaning: NUL, U+FFFD and control characters (categories Cc/Cf except tab/newline/CR) are dropped, every
  whitespace character becomes a space;
* CJK ideographs are split into single-character words; words are split on whitespace and punctuation
  (ASCII symbols count as punctuation, as in the original);
* optional lower-casing; optional accent stripping (NFD, then drop category Mn);
* greedy longest-match-first WordPiece with ``##`` continuation pieces; a word longer than 200 characters, or
  one that cannot be covered by the vocabulary, becomes [UNK].

Characters are classed with Python's `unicodedata`, as the original does, so ids equal the original's on any text
(tests/test_tokenizer_unicode.py). `tokenizers`' BertNormalizer + BertPreTokenizer, which bertjax used before and
uses still to train vocabs (`bertjax.data.vocab`), differ on rare text: they drop private-use characters (the
original keeps them, usually as [UNK]), lower-case a final capital sigma to σ (Python: ς), and class a few hundred
code points by older or other Unicode tables.

Korean: accent stripping uses NFD, which decomposes Hangul syllables into conjoining jamo (the original does the
same when lower-casing). A cased vocabulary (do_lower_case=False) strips no accents by default, and
``strip_accents=False`` keeps syllables intact even when lower-casing, so a syllable-level vocab stays usable.

Speed: `BertTokenizer.encode_batch` (what create_pretraining_data uses; `encode` and `tokenize` are a batch of one)
does BERT's basic tokenization on all texts of a batch at once: the pure-ASCII texts with string methods and one
dict lookup per word; the others cleaned, lower-cased and stripped of accents as one string (regular expressions
over precomputed character classes), then split by a table of character kinds and their words told apart by hash
keys, all in numpy (`bertjax.data.wordpiece`; a key is always checked by the characters, so a collision costs time,
never a wrong id). WordPiece (greedy longest match, in numpy on many words at once: `bertjax.data.wordpiece`, the
ids of `tokenizers`' WordPiece model) runs once per distinct word, whose pieces the tokenizer keeps for later
batches (up to CACHE_WORDS words).

The settings live in ``tokenizer_config.json`` next to ``vocab.txt`` (`bertjax.data.vocab_files`, which reads, checks,
hashes and writes both); `BertTokenizer.from_vocab` reads them back
and refuses an explicit conflicting ``do_lower_case`` or ``strip_accents``. Without that file an explicit setting
is used, else the casing is guessed from the vocab (next to no upper-case entries: uncased).
"""
from __future__ import annotations

import collections
import functools
import itertools
import os
import re
import sys
import unicodedata
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from bertjax import paths
from bertjax.data.vocab_files import (CLS, MASK, MAX_INPUT_CHARS_PER_WORD, PAD, SEP, UNK, check_special_tokens,
                                     read_vocab, resolve_casing, resolve_vocab_path)
from bertjax.data.wordpiece import (CONTINUATION_PREFIX, GrowingArray, HashCollision, KeyTable, PolynomialHash,
                                    WordPieceTable, code_points, equal_spans, group_keys)

CACHE_WORDS = 500_000  # distinct words whose pieces a BertTokenizer keeps (then it starts afresh)
BATCH_CHARS = 1 << 21  # characters that encode_batch handles at once (its numpy arrays: ~40 bytes a character)
_TEXT_END = "\x00"  # ends each text in encode_batch (cleaning drops NUL, so no text holds it)
_LONG_SLOT, _END_SLOT = 0, 1  # piece-cache slots: any word longer than MAX_INPUT_CHARS_PER_WORD ([UNK]); a text end
_WORD, _SPACE, _SINGLE, _END = range(4)  # kinds of characters for the split (_split)
_ASCII_PUNCTUATION = "".join(c for c in map(chr, range(33, 127)) if not c.isalnum())  # all of it is BERT punctuation
# BERT's cleaning drops control characters (NUL aside, the text end here); tab, newline and CR are whitespace.
_ASCII_DROP_CONTROL = str.maketrans(dict.fromkeys([c for c in [*range(1, 32), 127] if c not in b"\t\n\r"]))
# The original's _is_chinese_char: CJK ideographs (not Hangul, kana or CJK punctuation).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_ANY_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class BertTokenizer:
    """Text -> wordpieces / ids with BERT FullTokenizer semantics (see module doc)."""

    def __init__(self, tokens: Sequence[str], *, do_lower_case: bool = True, strip_accents: bool | None = None,
                 vocab_path: paths.epath.Path | None = None):
        """Build from a list of vocab tokens (id = index); strip_accents defaults to do_lower_case."""
        self.tokens = list(tokens)
        self.vocab = {token: i for i, token in enumerate(self.tokens)}
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.vocab_path = vocab_path
        check_special_tokens(self.vocab)
        self._hasher = PolynomialHash()
        self._cache = _PieceCache(self.unk_id)
        self._wordpiece: WordPieceTable | None = None  # built on first use

    @classmethod
    def from_vocab(cls, vocab: str | os.PathLike, do_lower_case: bool | None = None,
                   strip_accents: bool | None = None) -> "BertTokenizer":
        """Load vocab.txt (or its directory) with the casing stored in tokenizer_config.json beside it.

        Without a stored config, an explicit do_lower_case is used, else it is guessed from the vocab
        (no upper-case entries -> uncased).
        """
        path = resolve_vocab_path(vocab)
        tokens = read_vocab(path)
        lower, strip = resolve_casing(path, do_lower_case, strip_accents, tokens)
        return cls(tokens, do_lower_case=lower, strip_accents=strip, vocab_path=path)

    @property
    def vocab_size(self) -> int:
        """Number of vocab entries."""
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        """Id of [PAD], or 0 when the vocab has none (padding is always written as 0)."""
        return self.vocab.get(PAD, 0)

    @property
    def unk_id(self) -> int:
        """Id of [UNK]."""
        return self.vocab[UNK]

    @property
    def cls_id(self) -> int:
        """Id of [CLS]."""
        return self.vocab[CLS]

    @property
    def sep_id(self) -> int:
        """Id of [SEP]."""
        return self.vocab[SEP]

    @property
    def mask_id(self) -> int:
        """Id of [MASK]."""
        return self.vocab[MASK]

    def is_continuation(self) -> np.ndarray:
        """bool[V]: True for `##` continuation pieces (whole-word masking groups them with the previous piece)."""
        return np.array([t.startswith(CONTINUATION_PREFIX) for t in self.tokens], dtype=bool)

    def tokenize(self, text: str) -> list[str]:
        """Wordpieces of `text`."""
        return self.convert_ids_to_tokens(self.encode(text))

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of `text` (no special tokens added); as `encode_batch` on [text]."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of many texts at once: (flat int32 ids, int64 lengths); text i is ids[off[i]:off[i]+len[i]].

        The pure-ASCII texts and the others go apart, each group joined with an end marker: the ASCII ones are
        split with string methods and their words looked up in a dict (`_ascii_slots`); the others are normalised
        as one string (`_normalize`), split and told apart in numpy (`_unicode_slots`), BATCH_CHARS characters or so
        at a time. WordPiece runs once per distinct word, whose pieces the cache keeps for later batches, and numpy
        lays the pieces out per word, then per text in the given order.
        """
        while True:
            try:
                return self._encode_batch(texts)
            except HashCollision:  # never seen: start afresh with another hash
                self._hasher = PolynomialHash(self._hasher.attempt + 1)
                self._wordpiece, self._cache = None, _PieceCache(self.unk_id)

    def _encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch`, under the current hash (HashCollision if it fails)."""
        if self._cache.size > CACHE_WORDS:
            self._cache = _PieceCache(self.unk_id)
        is_ascii = np.fromiter(map(str.isascii, texts), bool, len(texts))
        num_ascii = int(is_ascii.sum())
        order = np.concatenate([np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)]).tolist()
        parts = [self._ascii_slots(_join([texts[i] for i in order[:num_ascii]]))] if num_ascii else []
        others = [texts[i] for i in order[num_ascii:]]
        sizes = np.cumsum(np.fromiter(map(len, others), np.int64, len(others)))
        start = 0
        while start < len(others):
            done = sizes[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(sizes, done + BATCH_CHARS, "right")))
            parts.append(self._unicode_slots(self._normalize(_join(others[start:stop]))))
            start = stop
        firsts = np.cumsum([0] + [len(slots) for slots, _ in parts])
        slots = np.concatenate([np.zeros(0, np.int64)] + [slots for slots, _ in parts])
        word_ends = np.concatenate([np.zeros(0, np.int64)] + [ends + first for (_, ends), first in zip(parts, firsts)])
        cache = self._cache
        counts = cache.counts.array[slots]
        flat = _gather_spans(cache.ids.array, cache.starts.array[slots], counts)
        text_ends = np.concatenate([[0], np.cumsum(counts)])[word_ends]
        lengths = np.zeros(len(texts), np.int64)
        lengths[order] = np.diff(text_ends, prepend=0)
        if num_ascii in (0, len(texts)):
            return flat, lengths
        starts = np.zeros(len(texts), np.int64)
        starts[order] = text_ends - lengths[order]
        return _gather_spans(flat, starts, lengths), lengths

    def _ascii_slots(self, joined: str) -> tuple[np.ndarray, np.ndarray]:
        """Piece-cache slots of the words of pure-ASCII texts joined by (and ending with) _TEXT_END, text ends
        included (_END_SLOT), and the index after each text's last word: BERT's basic tokenization with string
        methods (no CJK, accents or non-ASCII punctuation: cleaning, casing and splitting are simple)."""
        joined = joined.translate(_ASCII_DROP_CONTROL)
        if self.do_lower_case:
            joined = joined.lower()
        for char in _ASCII_PUNCTUATION + _TEXT_END:  # faster than a regular expression
            if char in joined:
                joined = joined.replace(char, f" {char} ")
        words = joined.split()
        cache, base = self._cache, self._cache.size
        cache.words.default_factory = itertools.count(base).__next__  # a new word gets the next slot
        slots = np.fromiter(map(cache.words.__getitem__, words), np.int64, len(words))  # one dict pass
        new = np.flatnonzero(slots >= base)
        if len(new):
            new_slots = slots[new]  # base, base + 1, ... each first where it is larger than all before it
            firsts = new[new_slots > np.maximum.accumulate(np.concatenate([[base - 1], new_slots[:-1]]))]
            cache.add(*self._wordpieces().encode_words([words[i] for i in firsts.tolist()]))
        return slots, np.flatnonzero(slots == _END_SLOT) + 1

    def _unicode_slots(self, joined: str) -> tuple[np.ndarray, np.ndarray]:
        """Piece-cache slots of the words of `_normalize`d texts joined by (and ending with) _TEXT_END, and the
        number of words before each text end.

        The words are runs of characters that are neither whitespace (str.split's, which the original splits on)
        nor punctuation nor CJK ideographs, and single punctuation characters and CJK ideographs (`_split`). They
        are told apart by hash keys, checked by characters (HashCollision if two differ); the distinct words not in
        the cache yet go through WordPiece and get the next slots.
        """
        chars = code_points(joined)
        starts, lengths, text_ends = _split(_unicode_classes(astral=False).kinds[chars])
        slots = np.full(len(starts), _LONG_SLOT, np.int64)
        short = np.flatnonzero(lengths <= MAX_INPUT_CHARS_PER_WORD)  # the others are [UNK], whatever they hold
        starts, lengths = starts[short], lengths[short]
        prefix = self._hasher.prefix(chars)
        keys = self._hasher.keys(prefix, starts, lengths)
        group, first = group_keys(keys)  # first: a word of each group of equal keys
        same = np.flatnonzero(first[group] != np.arange(len(keys)))  # to compare with the first of their group
        if not keys.all() or not np.array_equal(lengths[same], lengths[first[group[same]]]) or not equal_spans(
                chars, starts[same], chars, starts[first[group[same]]], lengths[same], each=False):
            raise HashCollision("words of a batch")
        keys, starts, lengths = keys[first], starts[first], lengths[first]
        distinct = self._cache.find(keys, chars, starts, lengths)
        new = np.flatnonzero(distinct < 0)
        if len(new):
            pieces = self._wordpieces().pieces(chars, prefix, starts[new], lengths[new])
            distinct[new] = self._cache.add(*pieces, keys[new], chars, starts[new], lengths[new])
        slots[short] = distinct[group]
        return slots, text_ends

    def _wordpieces(self) -> WordPieceTable:
        """The vocab's WordPieceTable (built on first use, with the current hash)."""
        if self._wordpiece is None:
            self._wordpiece = WordPieceTable(self.vocab, self.unk_id, self._hasher)
        return self._wordpiece

    def _normalize(self, joined: str) -> str:
        """BERT's BasicTokenizer up to the split, on texts joined by (and ending with) _TEXT_END.

        The original's steps in its order, each on the whole string: cleaning, lower-casing, NFD and dropping
        category Mn (spaces around CJK ideographs, its step before lower-casing, come with the split: these steps
        keep a CJK ideograph one CJK ideograph and make none from other characters). The original lower-cases and
        strips accents per whitespace-separated word; on the whole string the result is the same, since these steps
        map whitespace to whitespace and nothing else to whitespace, and neither final-sigma lower-casing nor
        canonical reordering looks across whitespace or the text end (tests/test_tokenizer_unicode.py checks all
        this on every code point).
        """
        astral = _ANY_ASTRAL.search(joined) is not None  # the classes beyond the BMP are needed
        joined = _sub("drop", "", joined, astral)
        if self.do_lower_case:
            joined = joined.lower()
        if self.strip_accents:
            joined = unicodedata.normalize("NFD", joined)  # a copy only if it changes
        if (self.do_lower_case or self.strip_accents) and not astral:  # NFD takes a few ideographs beyond the BMP
            astral = _ANY_ASTRAL.search(joined) is not None
        if self.strip_accents:
            joined = _sub("marks", "", joined, astral)
        if astral:  # punctuation beyond the BMP becomes a word of its own by the spaces around it
            joined = _sub("punctuation", r" \g<0> ", joined, astral, bmp=False)
        return joined

    def _words(self, joined: str) -> list[str]:
        """The words `encode_batch` finds in texts joined by (and ending with) _TEXT_END, as strings, each text
        followed by _TEXT_END (BERT's BasicTokenizer, for checks)."""
        joined = self._normalize(joined)
        starts, lengths, text_ends = _split(_unicode_classes(astral=False).kinds[code_points(joined)])
        words = [joined[a:a + n] for a, n in zip(starts.tolist(), lengths.tolist())]
        bounds = [0, *text_ends.tolist()]
        return [w for a, b in zip(bounds, bounds[1:]) for w in [*words[a:b], _TEXT_END]]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocab tokens of `ids`."""
        return [self.tokens[int(i)] for i in ids]


class _PieceCache:
    """WordPiece ids of the distinct words seen so far, slot -> ids[starts:starts+counts]: ASCII words found by string
    (`words`), the others by key (`table`) and checked by the characters kept for each slot. Slot _LONG_SLOT is every
    word longer than MAX_INPUT_CHARS_PER_WORD characters (one [UNK]), _END_SLOT a text end (no pieces)."""

    def __init__(self, unk_id: int):
        self.words = collections.defaultdict(None, {_TEXT_END: _END_SLOT})
        self.table = KeyTable()
        self.chars = GrowingArray(np.uint32)
        self.char_starts, self.lengths = GrowingArray(np.int64, [0, 0]), GrowingArray(np.int64, [0, 0])
        self.ids = GrowingArray(np.int32, [unk_id])
        self.starts, self.counts = GrowingArray(np.int64, [0, 1]), GrowingArray(np.int64, [1, 0])

    @property
    def size(self) -> int:
        """Number of slots."""
        return self.counts.size

    def find(self, keys: np.ndarray, chars: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Slot of each distinct word chars[starts[i]:starts[i]+lengths[i]] with key keys[i], or -1 if new."""
        slots = self.table.get(keys)
        known = np.flatnonzero(slots >= 0)
        if not np.array_equal(self.lengths.array[slots[known]], lengths[known]) or not equal_spans(
                chars, starts[known], self.chars.array, self.char_starts.array[slots[known]], lengths[known],
                each=False):
            raise HashCollision("a word and a cached word")
        return slots

    def add(self, ids: np.ndarray, counts: np.ndarray, keys: np.ndarray | None = None, chars: np.ndarray | None = None,
            starts: np.ndarray | None = None, lengths: np.ndarray | None = None) -> np.ndarray:
        """Keep the pieces (flat ids, count per word) of new distinct words, with their keys and characters (as
        `find`'s arguments) if given; their slots."""
        slots = np.arange(self.size, self.size + len(counts))
        self.starts.extend(self.ids.size + np.cumsum(counts) - counts)
        self.counts.extend(counts)
        self.ids.extend(ids)
        if keys is None:
            lengths = np.zeros(len(counts), np.int64)
        else:
            self.table.insert(keys, slots)
        self.char_starts.extend(self.chars.size + np.cumsum(lengths) - lengths)
        self.lengths.extend(lengths)
        if keys is not None:
            self.chars.extend(_gather_spans(chars, starts, lengths))
        return slots


def _split(kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words of joined texts from their characters' kinds (_WORD, _SPACE, _SINGLE, _END): a run of _WORD characters,
    or one _SINGLE character. (start, length) of each, and the number of words before each text end."""
    word, single = kinds == _WORD, kinds == _SINGLE
    first, last = single.copy(), single.copy()
    first[:1] |= word[:1]
    first[1:] |= word[1:] & ~word[:-1]
    last[-1:] |= word[-1:]
    last[:-1] |= word[:-1] & ~word[1:]
    starts = np.flatnonzero(first)
    return starts, np.flatnonzero(last) + 1 - starts, np.searchsorted(starts, np.flatnonzero(kinds == _END))


def _class_body(mask: np.ndarray, code_points: np.ndarray) -> str:
    """A regex character-class body (no brackets) of the code points where `mask` holds."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    starts, ends = code_points[edges[0::2]], code_points[edges[1::2] - 1]
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}"
                   for a, b in zip(starts.tolist(), ends.tolist()))


class _UnicodeClasses(NamedTuple):
    drop: re.Pattern  # cleaning: categories Cc and Cf except tab, newline and CR, and U+FFFD (NUL is the text end)
    marks: re.Pattern  # category Mn, dropped when stripping accents
    punctuation: re.Pattern  # ASCII symbols and categories P*
    kinds: np.ndarray | None  # the BMP's: uint8 kind (_WORD ...) of every code point (see _kinds); None beyond it


def _sub(name: str, replacement: str, text: str, astral: bool, bmp: bool = True) -> str:
    """`text` with each character of a class of _UnicodeClasses replaced; the part beyond the BMP only if `astral`
    (`re` tests a class of BMP characters with a bitmap but one beyond it range by range: keep those apart)."""
    for part in [False] * bmp + [True] * astral:
        pattern = getattr(_unicode_classes(part), name)
        if pattern.search(text):
            text = pattern.sub(replacement, text)
    return text


@functools.cache
def _unicode_classes(astral: bool) -> _UnicodeClasses:
    """BERT's character classes as regular expressions, from `unicodedata` (as the original reads it), on first use:
    of the BMP, or (astral=True, only for text that has any) of the planes beyond it.

    Planes 4-13 hold no assigned code point and planes 15-16 are private use (Co) in every Unicode version so far,
    so beyond the BMP only planes 1-3 and 14 are read.
    """
    code_points = np.concatenate([np.arange(0x10000, 0x40000), np.arange(0xE0000, 0xF0000)]) if astral \
        else np.arange(0x10000)
    categories = "".join(map(unicodedata.category, map(chr, code_points.tolist())))
    major, minor = np.frombuffer(categories.encode("ascii"), np.uint8).reshape(-1, 2).T
    drop = (major == ord("C")) & ((minor == ord("c")) | (minor == ord("f")))
    drop &= ~np.isin(code_points, [0, ord("\t"), ord("\n"), ord("\r")])
    drop |= code_points == 0xFFFD
    punctuation = (major == ord("P")) | np.isin(code_points, [ord(c) for c in _ASCII_PUNCTUATION])
    return _UnicodeClasses(*(re.compile(f"[{_class_body(mask, code_points)}]")
                             for mask in (drop, (major == ord("M")) & (minor == ord("n")), punctuation)),
                           kinds=None if astral else _kinds(punctuation))


def _kinds(punctuation: np.ndarray) -> np.ndarray:
    """uint8: the kind of every code point for `_split`: _SPACE (str.isspace: the original splits with str.split;
    none lies beyond the BMP), _SINGLE (a word of its own: BMP punctuation, where `punctuation` holds, and CJK
    ideographs), _END (NUL, the text end), else _WORD (punctuation beyond the BMP is spaced by `_normalize`)."""
    kinds = np.full(sys.maxunicode + 1, _WORD, np.uint8)
    kinds[np.flatnonzero(np.fromiter(map(str.isspace, map(chr, range(0x10000))), bool, 0x10000))] = _SPACE
    kinds[np.flatnonzero(punctuation)] = _SINGLE
    for first, last in _CJK_RANGES:
        kinds[first:last + 1] = _SINGLE
    kinds[0] = _END
    return kinds


def _join(texts: list[str]) -> str:
    """The texts, each followed by _TEXT_END (a NUL in a text is dropped, as cleaning would)."""
    joined = _TEXT_END.join(texts) + _TEXT_END
    if joined.count(_TEXT_END) != len(texts):
        joined = _TEXT_END.join(text.replace(_TEXT_END, "") for text in texts) + _TEXT_END
    return joined


def _gather_spans(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """values[starts[0]:starts[0]+lengths[0]], values[starts[1]:...], ... concatenated (vectorised)."""
    total = int(lengths.sum())
    out_starts = np.cumsum(lengths) - lengths
    return values[np.repeat(starts - out_starts, lengths) + np.arange(total)]


def build_normalizer(do_lower_case: bool, strip_accents: bool) -> normalizers.Normalizer:
    """BERT cleaning + CJK spacing + optional lower-casing / accent stripping, in `tokenizers` (for vocab training;
    BertTokenizer does its own, see `BertTokenizer._words`)."""
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents,
                                      lowercase=do_lower_case)


def build_wordpiece(vocab: dict[str, int]) -> Tokenizer:
    """`tokenizers`' WordPiece (200 characters per word) on whitespace-separated words, with no normalisation: what
    `bertjax.data.wordpiece` gives the ids of (tests compare the two)."""
    backend = Tokenizer(WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                                  max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return backend
