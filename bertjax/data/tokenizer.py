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
does BERT's basic tokenization on all texts of a batch at once, with string methods and regular expressions over
precomputed character classes, and runs WordPiece (`tokenizers`' model) once per distinct word, whose pieces it
keeps for later batches (up to CACHE_WORDS words).

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
import unicodedata
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from bertjax import paths
from bertjax.data.vocab_files import (CLS, MASK, MAX_INPUT_CHARS_PER_WORD, PAD, SEP, UNK, check_special_tokens,
                                     read_vocab, resolve_casing, resolve_vocab_path)

CONTINUATION_PREFIX = "##"
CACHE_WORDS = 500_000  # distinct words whose pieces a BertTokenizer keeps (then it starts afresh)
WORDPIECE_RUN = 1000  # words per backend input in BertTokenizer._wordpieces
_TEXT_END = "\x00"  # ends each text in encode_batch (cleaning drops NUL, so no text holds it)
_END_SLOT = 0  # the text end's slot in the piece cache (it has no pieces)
_ASCII_PUNCTUATION = "".join(c for c in map(chr, range(33, 127)) if not c.isalnum())  # all of it is BERT punctuation
# BERT's cleaning drops control characters (NUL aside, the text end here); tab, newline and CR are whitespace.
_ASCII_DROP_CONTROL = str.maketrans(dict.fromkeys([c for c in [*range(1, 32), 127] if c not in b"\t\n\r"]))
# The original's _is_chinese_char: CJK ideographs (not Hangul, kana or CJK punctuation).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate cannot go to `tokenizers` (not UTF-8)


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
        self.backend = build_wordpiece(self.vocab)  # WordPiece of single words (see _wordpieces)
        self._cache = _PieceCache()
        self._whole_words: dict[str, int] | None = None  # vocab entries a whole word can be

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
        return self._pieces(self._words(_join([text])))[0]

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of many texts at once: (flat int32 ids, int64 lengths); text i is ids[off[i]:off[i]+len[i]].

        The pure-ASCII texts and the others are each joined with an end marker and split into words by `_words`
        in a few passes over the whole string; WordPiece runs once per distinct word (`_word_slots`), and numpy
        lays the pieces out per word, then per text in the given order.
        """
        is_ascii = np.fromiter(map(str.isascii, texts), bool, len(texts))
        num_ascii = int(is_ascii.sum())
        order = np.concatenate([np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)]).tolist()
        words: list[str] = []
        for group in (order[:num_ascii], order[num_ascii:]):
            if group:
                words += self._words(_join([texts[i] for i in group]))
        flat, text_ends = self._pieces(words)
        lengths = np.zeros(len(texts), np.int64)
        lengths[order] = np.diff(text_ends, prepend=0)
        if num_ascii in (0, len(texts)):
            return flat, lengths
        starts = np.zeros(len(texts), np.int64)
        starts[order] = text_ends - lengths[order]
        return _gather_spans(flat, starts, lengths), lengths

    def _pieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of `_words`' output: (flat int32 ids, int64 end of each text in them)."""
        slots = self._word_slots(words)
        cache = self._cache
        counts = cache.counts[slots]
        return _gather_spans(cache.ids, cache.starts[slots], counts), np.cumsum(counts)[slots == _END_SLOT]

    def _words(self, joined: str) -> list[str]:
        """BERT's BasicTokenizer on texts joined by (and ending with) _TEXT_END: their words, punctuation characters
        and text ends, in order.

        The original's steps in its order, each on the whole string: cleaning, spaces around CJK ideographs,
        lower-casing, NFD and dropping category Mn, then splitting on whitespace and punctuation. The original
        lower-cases and strips accents per whitespace-separated word; on the whole string the result is the same,
        since these steps map whitespace to whitespace and nothing else to whitespace, and neither final-sigma
        lower-casing nor canonical reordering looks across whitespace or the text end (tests/test_tokenizer_unicode.py
        checks this on every code point).
        """
        if joined.isascii():  # no CJK, accents or non-ASCII punctuation: cleaning and casing are simple
            joined = joined.translate(_ASCII_DROP_CONTROL)
            if self.do_lower_case:
                joined = joined.lower()
            for char in _ASCII_PUNCTUATION + _TEXT_END:  # on ASCII, faster than _word_pattern's findall
                if char in joined:
                    joined = joined.replace(char, f" {char} ")
            return joined.split()
        classes = _unicode_classes()
        astral = classes.astral.search(joined) is not None  # the slow parts of the classes are needed
        joined = _sub(classes.drop, "", joined, astral)
        if classes.cjk.search(joined):
            joined = classes.cjk.sub(r" \g<0> ", joined)
        if self.do_lower_case:
            joined = joined.lower()
        if self.strip_accents:
            joined = unicodedata.normalize("NFD", joined)  # a copy only if it changes
        if (self.do_lower_case or self.strip_accents) and not astral:  # NFD takes a few ideographs beyond the BMP
            astral = classes.astral.search(joined) is not None
        if self.strip_accents:
            joined = _sub(classes.marks, "", joined, astral)
        if astral:  # punctuation beyond the BMP becomes a word of its own by the spaces around it
            joined = _sub(classes.punctuation, r" \g<0> ", joined, astral, bmp=False)
        return classes.words.findall(joined)

    def _word_slots(self, words: list[str]) -> np.ndarray:
        """int64 slot of each word in the piece cache; words not yet there get the next slots, in order of first
        occurrence, and their WordPiece ids."""
        cache = self._cache
        if len(cache.slot) > CACHE_WORDS:
            cache = self._cache = _PieceCache()
        base = len(cache.slot)
        slots = np.fromiter(map(cache.slot.__getitem__, words), np.int64, len(words))  # one dict pass
        new = np.flatnonzero(slots >= base)
        if len(new):
            new_slots = slots[new]  # base, base + 1, ... each first where it is larger than all before it
            firsts = new[new_slots > np.maximum.accumulate(np.concatenate([[base - 1], new_slots[:-1]]))]
            cache.add(*self._wordpieces([words[i] for i in firsts.tolist()]))
        return slots

    def _wordpieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """WordPiece ids of distinct single words (no whitespace, punctuation only alone): (flat int32 ids, int64
        piece count per word). A word that is a vocab entry is that entry (as greedy longest-match gives); the
        others go to the WordPiece backend in runs of WORDPIECE_RUN words."""
        if self._whole_words is None:
            self._whole_words = {t: i for t, i in self.vocab.items() if len(t) <= MAX_INPUT_CHARS_PER_WORD}
        direct = np.fromiter(map(self._whole_words.get, words, itertools.repeat(-1)), np.int64, len(words))
        misses = [words[i] for i in np.flatnonzero(direct < 0).tolist()]
        if misses and _SURROGATE.search("".join(misses)):  # no vocab entry holds one, so no piece covers the word
            direct[[i for i, word in enumerate(words) if direct[i] < 0 and _SURROGATE.search(word)]] = self.unk_id
            misses = [words[i] for i in np.flatnonzero(direct < 0).tolist()]
        counts = np.ones(len(words), np.int64)
        if not misses:
            return direct.astype(np.int32), counts
        # Each miss is followed by the word [SEP], whose id ends it: no miss holds [SEP]'s id, as its brackets are
        # punctuation, which is never part of a longer word.
        runs = [f" {SEP} ".join(misses[start:start + WORDPIECE_RUN]) + f" {SEP}"
                for start in range(0, len(misses), WORDPIECE_RUN)]
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        encodings = encode(runs, add_special_tokens=False)
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32)
        is_end = ids == self.sep_id
        counts[direct < 0] = np.diff(np.flatnonzero(is_end), prepend=-1) - 1
        flat = np.repeat(direct, counts).astype(np.int32)  # a miss's pieces take its places, in order
        flat[np.repeat(direct < 0, counts)] = ids[~is_end]
        return flat, counts

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocab tokens of `ids`."""
        return [self.tokens[int(i)] for i in ids]


class _PieceCache:
    """WordPiece ids of the distinct words seen so far: word -> slot; slot -> its ids[starts:starts+counts]."""

    def __init__(self):
        slots = itertools.count()
        # A new word gets the next slot; the text end comes first (_END_SLOT) and has no pieces.
        self.slot: dict[str, int] = collections.defaultdict(slots.__next__, {_TEXT_END: next(slots)})
        self.starts = np.zeros(1, np.int64)
        self.counts = np.zeros(1, np.int64)
        self.ids = np.zeros(0, np.int32)

    def add(self, ids: np.ndarray, counts: np.ndarray) -> None:
        """Append the pieces of the next len(counts) slots."""
        self.starts = np.concatenate([self.starts, len(self.ids) + np.cumsum(counts) - counts])
        self.counts = np.concatenate([self.counts, counts])
        self.ids = np.concatenate([self.ids, ids])


def _class_body(mask: np.ndarray, code_points: np.ndarray) -> str:
    """A regex character-class body (no brackets) of the code points where `mask` holds."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    starts, ends = code_points[edges[0::2]], code_points[edges[1::2] - 1]
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}"
                   for a, b in zip(starts.tolist(), ends.tolist()))


def _word_pattern(punctuation: str) -> re.Pattern:
    """A text end, one punctuation character, or a run of characters that are neither and not whitespace (re's
    \\s is str.split's whitespace, which the original splits on)."""
    return re.compile(f"{_TEXT_END}|[{punctuation}]|[^\\s{_TEXT_END}{punctuation}]+")


class _CharClass(NamedTuple):
    """A character class as two regular expressions: `re` tests a class of BMP characters with a bitmap but one
    holding characters beyond the BMP range by range, so those are kept apart and used only on text that has any."""
    bmp: re.Pattern
    astral: re.Pattern


class _UnicodeClasses(NamedTuple):
    drop: _CharClass  # cleaning: categories Cc and Cf except tab, newline and CR, and U+FFFD (NUL is the text end)
    cjk: re.Pattern  # one CJK ideograph
    marks: _CharClass  # category Mn, dropped when stripping accents
    punctuation: _CharClass  # ASCII symbols and categories P*
    words: re.Pattern  # see _word_pattern, with BMP punctuation
    astral: re.Pattern  # any character beyond the BMP


def _sub(char_class: _CharClass, replacement: str, text: str, astral: bool, bmp: bool = True) -> str:
    """`text` with each character of the class replaced; the part beyond the BMP only if `astral`."""
    for pattern in [char_class.bmp] * bmp + [char_class.astral] * astral:
        if pattern.search(text):
            text = pattern.sub(replacement, text)
    return text


@functools.cache
def _unicode_classes() -> _UnicodeClasses:
    """BERT's character classes as regular expressions, from `unicodedata` (as the original reads it), on first use.

    Planes 4-13 hold no assigned code point and planes 15-16 are private use (Co) in every Unicode version so far,
    so only planes 0-3 and 14 are read.
    """
    code_points = np.concatenate([np.arange(0x40000), np.arange(0xE0000, 0xF0000)])
    categories = "".join(map(unicodedata.category, map(chr, code_points.tolist())))
    major, minor = np.frombuffer(categories.encode("ascii"), np.uint8).reshape(-1, 2).T
    in_bmp = code_points < 0x10000

    def char_class(mask: np.ndarray) -> _CharClass:
        return _CharClass(*(re.compile(f"[{_class_body(mask & part, code_points)}]") for part in (in_bmp, ~in_bmp)))

    drop = (major == ord("C")) & ((minor == ord("c")) | (minor == ord("f")))
    drop &= ~np.isin(code_points, [0, ord("\t"), ord("\n"), ord("\r")])
    drop |= code_points == 0xFFFD
    cjk = np.zeros(len(code_points), bool)
    for first, last in _CJK_RANGES:
        cjk |= (code_points >= first) & (code_points <= last)
    punctuation = (major == ord("P")) | np.isin(code_points, [ord(c) for c in _ASCII_PUNCTUATION])
    return _UnicodeClasses(drop=char_class(drop), cjk=re.compile(f"[{_class_body(cjk, code_points)}]"),
                           marks=char_class((major == ord("M")) & (minor == ord("n"))),
                           punctuation=char_class(punctuation),
                           words=_word_pattern(_class_body(punctuation & in_bmp, code_points)),
                           astral=re.compile("[\U00010000-\U0010ffff]"))


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
    """`tokenizers`' WordPiece (200 characters per word) on whitespace-separated words, with no normalisation."""
    backend = Tokenizer(WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                                  max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return backend
