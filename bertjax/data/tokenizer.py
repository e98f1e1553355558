"""BERT FullTokenizer semantics on the Rust `tokenizers` library; casing stored beside the vocab.

Behaviour (as google-research/bert's `tokenization.py: FullTokenizer`, i.e. `BasicTokenizer` then
`WordpieceTokenizer`):
* cleaning: NUL, U+FFFD and control characters (categories Cc/Cf except tab/newline/CR) are dropped, every
  whitespace character becomes a space;
* CJK ideographs are split into single-character words; words are split on whitespace and punctuation
  (ASCII symbols count as punctuation, as in the original);
* optional lower-casing; optional accent stripping (NFD, then drop category Mn);
* greedy longest-match-first WordPiece with ``##`` continuation pieces; a word longer than 200 characters, or
  one that cannot be covered by the vocabulary, becomes [UNK].

One difference from the original, inherited from `tokenizers`: private-use, unassigned and surrogate code points
(categories Co/Cn/Cs) are dropped like control characters; the original keeps them (usually giving [UNK]).

Korean: accent stripping uses NFD, which decomposes Hangul syllables into conjoining jamo (the original does the
same when lower-casing). A cased vocabulary (do_lower_case=False) strips no accents by default, and
``strip_accents=False`` keeps syllables intact even when lower-casing, so a syllable-level vocab stays usable.

Speed: `BertTokenizer.encode_batch` (what create_pretraining_data uses) gives the backend's ids, but splits
pure-ASCII texts itself and runs WordPiece once per distinct word; other texts go through the backend.

The settings live in ``tokenizer_config.json`` next to ``vocab.txt``; `BertTokenizer.from_vocab` reads them back
and refuses an explicit conflicting ``do_lower_case`` or ``strip_accents``. Without that file an explicit setting
is used, else the casing is guessed from the vocab (next to no upper-case entries: uncased).
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from bertjax.errors import BertjaxError

VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
REQUIRED_TOKENS: tuple[str, ...] = (UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"
MAX_INPUT_CHARS_PER_WORD = 200
BATCH_SEPARATOR = "\ue000"  # a private-use character joining texts in encode_batch
BATCH_JOIN = 64  # texts per backend input in encode_batch
_ASCII, _UNICODE, _ALONE = 0, 1, 2  # kinds of encode_batch inputs
_ASCII_PUNCTUATION = "".join(c for c in map(chr, range(33, 127)) if not c.isalnum())  # all of it is BERT punctuation
# BERT's cleaning drops control characters; tab, newline and CR are whitespace (str.split splits on them).
_ASCII_DROP_CONTROL = str.maketrans(dict.fromkeys([c for c in [*range(32), 127] if c not in b"\t\n\r"]))
_TEXT_END = "\x00"  # ends each text in _encode_ascii (cleaning has removed every other NUL)


def resolve_vocab_path(vocab: str | os.PathLike) -> Path:
    """The vocab.txt file named by `vocab` (the file itself or its directory); BertjaxError if missing."""
    path = Path(vocab)
    if path.is_dir():
        path = path / VOCAB_FILE
    if not path.is_file():
        raise BertjaxError(f"vocab file {str(path)!r} does not exist; pass --vocab_file pointing to a vocab.txt "
                           "(train one with `python -m bertjax.data.vocab`)")
    return path


def read_vocab(vocab: str | os.PathLike) -> list[str]:
    """Tokens of a vocab.txt (one per line, id = line number), checked for the special tokens BERT needs."""
    path = resolve_vocab_path(vocab)
    with open(path, encoding="utf-8", errors="replace") as f:
        tokens = [line.strip() for line in f]  # as the original's load_vocab
    while tokens and not tokens[-1]:
        tokens.pop()
    missing = [t for t in REQUIRED_TOKENS if t not in set(tokens)]
    if missing:
        raise BertjaxError(f"vocab file {str(path)!r} lacks the special token(s) {', '.join(missing)}; "
                           f"a BERT vocab needs {', '.join(REQUIRED_TOKENS)} "
                           "(train one with `python -m bertjax.data.vocab`)")
    return tokens


def vocab_sha256(vocab: str | os.PathLike) -> str:
    """Hex sha256 of the vocab file's bytes (stored in dataset manifests)."""
    return hashlib.sha256(resolve_vocab_path(vocab).read_bytes()).hexdigest()


def write_tokenizer_config(directory: str | os.PathLike, do_lower_case: bool, strip_accents: bool,
                           model_max_length: int | None = None) -> Path:
    """Store the casing settings of the vocab in `directory`/tokenizer_config.json.

    The file is also a Hugging Face tokenizer config: `transformers.BertTokenizerFast.from_pretrained(directory)`
    reads it with the vocab.txt beside it and tokenizes as bertjax does.
    """
    path = Path(directory) / CONFIG_FILE
    config = {"do_lower_case": bool(do_lower_case), "strip_accents": bool(strip_accents),
              "max_input_chars_per_word": MAX_INPUT_CHARS_PER_WORD, "special_tokens": list(SPECIAL_TOKENS),
              "tokenizer_class": "BertTokenizer", "tokenize_chinese_chars": True,
              "clean_up_tokenization_spaces": False, "unk_token": UNK, "sep_token": SEP, "pad_token": PAD,
              "cls_token": CLS, "mask_token": MASK}
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def read_tokenizer_config(directory: str | os.PathLike) -> dict | None:
    """The stored casing settings next to a vocab, or None when there is no tokenizer_config.json or it does not
    say (Hugging Face's may leave do_lower_case out; its strip_accents null means: as do_lower_case)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("do_lower_case") is None:
            return None
        lower = bool(config["do_lower_case"])
        strip = config.get("strip_accents")
        return {"do_lower_case": lower, "strip_accents": lower if strip is None else bool(strip)}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BertjaxError(f"{str(path)!r} is not a valid tokenizer config ({e}); delete it or rewrite it with "
                           '{"do_lower_case": true|false, "strip_accents": true|false}') from e


def guess_do_lower_case(tokens: Sequence[str]) -> bool:
    """A vocab with (almost) no upper-case entries is taken as uncased: at most 1% of the entries, special
    tokens aside (an uncased vocab may hold a few odd characters that have a lower-case form)."""
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    return sum(t != t.lower() for t in words) <= 0.01 * len(words)


def resolve_casing(vocab_path: Path, do_lower_case: bool | None, strip_accents: bool | None,
                   tokens: Sequence[str]) -> tuple[bool, bool]:
    """(do_lower_case, strip_accents): stored settings win; an explicit conflicting value is an error."""
    stored = read_tokenizer_config(vocab_path.parent)
    if stored is None:
        lower = guess_do_lower_case(tokens) if do_lower_case is None else bool(do_lower_case)
        return lower, lower if strip_accents is None else bool(strip_accents)
    for name, given in (("do_lower_case", do_lower_case), ("strip_accents", strip_accents)):
        if given is not None and bool(given) != stored[name]:
            raise BertjaxError(
                f"{name}={bool(given)} conflicts with {name}={stored[name]} stored in "
                f"{str(vocab_path.parent / CONFIG_FILE)!r} for this vocab; drop the flag or use a vocab made "
                f"with {name}={bool(given)}")
    return stored["do_lower_case"], stored["strip_accents"]


class BertTokenizer:
    """Text -> wordpieces / ids with BERT FullTokenizer semantics (see module doc)."""

    def __init__(self, tokens: Sequence[str], *, do_lower_case: bool = True, strip_accents: bool | None = None,
                 vocab_path: Path | None = None):
        """Build from a list of vocab tokens (id = index); strip_accents defaults to do_lower_case."""
        self.tokens = list(tokens)
        self.vocab = {token: i for i, token in enumerate(self.tokens)}
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.vocab_path = vocab_path
        missing = [t for t in REQUIRED_TOKENS if t not in self.vocab]
        if missing:
            raise BertjaxError(f"vocab lacks the special token(s) {', '.join(missing)}; "
                               f"a BERT vocab needs {', '.join(REQUIRED_TOKENS)}")
        self.backend = build_backend(self.vocab, self.do_lower_case, self.strip_accents)
        self._joiner: Tokenizer | None = None
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
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of `text` (no special tokens added)."""
        return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of many texts at once: (flat int32 ids, int64 lengths); text i is ids[off[i]:off[i]+len[i]].

        Same ids as `encode` on each text. Pure-ASCII texts take `_encode_ascii` (BERT's cleaning and splitting
        are simple on ASCII; WordPiece runs once per distinct word); the others go to the backend in runs of up
        to BATCH_JOIN texts joined with a separator that it splits on before normalising (so no text sees its
        neighbours). A text holding the separator is encoded alone.
        """
        groups: tuple[list[int], list[int], list[int]] = ([], [], [])
        for i, text in enumerate(texts):
            groups[_ASCII if text.isascii() else _ALONE if BATCH_SEPARATOR in text else _UNICODE].append(i)
        parts = [(groups[_ASCII], *self._encode_ascii([texts[i] for i in groups[_ASCII]]))]
        joined = [texts[i] for i in groups[_UNICODE]]
        runs = [BATCH_SEPARATOR.join(joined[s:s + BATCH_JOIN]) for s in range(0, len(joined), BATCH_JOIN)]
        parts.append((groups[_UNICODE], *_split_joined(_encode_ids(self._joiner_backend(), runs) if runs else [],
                                                        self.vocab_size)))
        ids = _encode_ids(self.backend, [texts[i] for i in groups[_ALONE]])
        parts.append((groups[_ALONE], _concat_ids(ids), np.array([len(x) for x in ids], np.int64)))
        return _merge_parts(parts, len(texts))

    def _encode_ascii(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` of pure-ASCII texts without the backend's per-character passes.

        On ASCII, BERT's cleaning drops control characters (tab, newline and CR are whitespace), every printable
        non-alphanumeric character is punctuation and so a word of its own, and accent and CJK handling do nothing.
        So the texts are joined with an end marker, punctuation is spaced out and the result split on whitespace;
        only the distinct words go through the backend's WordPiece, and numpy lays their pieces out per word.
        """
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1:  # a text holds a newline (whitespace, as tab and CR)
            joined = "\n".join(text.replace("\n", " ") for text in texts)
        joined = joined.translate(_ASCII_DROP_CONTROL)
        if self.do_lower_case:
            joined = joined.lower()
        for char in _ASCII_PUNCTUATION:
            if char in joined:
                joined = joined.replace(char, f" {char} ")
        words = joined.replace("\n", f" {_TEXT_END} ").split()
        words.append(_TEXT_END)
        # Where each word first occurs (one dict pass), then dense word ids in that order; the end marker gets id D.
        seen = {_TEXT_END: -1}
        first = np.fromiter(map(seen.setdefault, words, itertools.count()), np.int64, len(words))
        firsts = np.flatnonzero(first == np.arange(len(words)))
        dense = np.full(len(words) + 1, len(firsts), np.int64)  # first == -1 (the end marker) reads the last slot
        dense[firsts] = np.arange(len(firsts))
        word = dense[first]
        pieces, counts = self._wordpieces([words[i] for i in firsts.tolist()])
        counts = np.append(counts, 0)
        flat = _gather_spans(pieces, (np.cumsum(counts) - counts)[word], counts[word])
        text_ends = np.cumsum(counts[word])[word == len(firsts)]
        return flat, np.diff(text_ends, prepend=0)

    def _wordpieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """WordPiece ids of single words (alphanumeric runs or one punctuation character): (flat int32 ids, int64
        piece count per word). A word that is a vocab entry is that entry (as greedy longest-match gives); the
        others go to the backend in one call."""
        if self._whole_words is None:
            self._whole_words = {t: i for t, i in self.vocab.items() if len(t) <= MAX_INPUT_CHARS_PER_WORD}
        direct = np.fromiter(map(self._whole_words.get, words, itertools.repeat(-1)), np.int64, len(words))
        hits = np.flatnonzero(direct >= 0)
        misses = np.flatnonzero(direct < 0)
        miss_ids: list[int] = []
        miss_counts = np.zeros(len(misses), np.int64)
        if len(misses):
            encoding = self.backend.encode(" ".join([words[i] for i in misses]), add_special_tokens=False)
            miss_ids = encoding.ids
            miss_counts = np.bincount(np.asarray(encoding.word_ids, np.int64), minlength=len(misses))
        return _merge_parts([(hits, direct[hits].astype(np.int32), np.ones(len(hits), np.int64)),
                             (misses, np.asarray(miss_ids, np.int32), miss_counts)], len(words))

    def _joiner_backend(self) -> Tokenizer:
        """The backend that splits on BATCH_SEPARATOR (for encode_batch), built on first use."""
        if self._joiner is None:
            joiner = build_backend(self.vocab, self.do_lower_case, self.strip_accents)
            joiner.add_special_tokens([AddedToken(BATCH_SEPARATOR, normalized=False, special=True)])
            if joiner.token_to_id(BATCH_SEPARATOR) != len(self.tokens):  # it would share an id with a vocab entry
                raise BertjaxError(
                    f"vocab {self._vocab_name()} has {self._joiner_conflict()}, which encode_batch cannot handle; "
                    "replace such lines (for a repeated entry its first copy, whose id is never produced) with an "
                    "unused placeholder such as [unused0], so that no other id changes")
            self._joiner = joiner
        return self._joiner

    def _vocab_name(self) -> str:
        return repr(str(self.vocab_path)) if self.vocab_path is not None else "(given as a list)"

    def _joiner_conflict(self) -> str:
        """Why the batch separator does not get the first id after the vocab."""
        reasons = []
        if BATCH_SEPARATOR in self.vocab:
            reasons.append(f"the entry U+{ord(BATCH_SEPARATOR):04X} (the batch separator)")
        repeated = [token for token, count in collections.Counter(self.tokens).items() if count > 1]
        if repeated:
            reasons.append(f"repeated entries {repeated[:5]}")
        return " and ".join(reasons) or "entries the backend numbers otherwise"

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocab tokens of `ids`."""
        return [self.tokens[int(i)] for i in ids]


def _encode_ids(backend: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each text (no special tokens), one backend call."""
    if not texts:
        return []
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]


def _concat_ids(ids: list[list[int]]) -> np.ndarray:
    """The id lists one after another, as one int32 array."""
    return np.fromiter(itertools.chain.from_iterable(ids), np.int32, sum(len(x) for x in ids))


def _gather_spans(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """values[starts[0]:starts[0]+lengths[0]], values[starts[1]:...], ... concatenated (vectorised)."""
    total = int(lengths.sum())
    out_starts = np.cumsum(lengths) - lengths
    return values[np.repeat(starts - out_starts, lengths) + np.arange(total)]


def _split_joined(ids: list[list[int]], separator_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids of inputs that joined texts with the batch separator -> (flat ids, length of each text)."""
    flat = _concat_ids(ids)
    input_ends = np.cumsum([len(x) for x in ids], dtype=np.int64)
    separators = np.flatnonzero(flat == separator_id)
    # A text ends at each separator (the next starts after it) and at the end of each input.
    cut = np.concatenate([input_ends, separators])
    skip = np.concatenate([np.zeros(len(input_ends), np.int64), np.ones(len(separators), np.int64)])
    order = np.lexsort((skip, cut))
    cut, skip = cut[order], skip[order]
    lengths = cut - np.concatenate([[0], (cut + skip)[:-1]])
    keep = np.ones(len(flat), bool)
    keep[separators] = False
    return flat[keep], lengths.astype(np.int64)


def _merge_parts(parts: list[tuple[Sequence[int], np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, flat ids, lengths) of groups of items -> (flat ids, lengths) of all n items in order."""
    lengths = np.zeros(n, np.int64)
    for rows, _, part_lengths in parts:
        lengths[rows] = part_lengths
    if len(parts[0][0]) == n:
        return parts[0][1], lengths
    starts = np.cumsum(lengths) - lengths
    flat = np.empty(int(lengths.sum()), np.int32)
    for rows, part_flat, part_lengths in parts:
        if len(rows):
            flat[_gather_spans(np.arange(len(flat)), starts[rows], part_lengths)] = part_flat
    return flat, lengths


def build_normalizer(do_lower_case: bool, strip_accents: bool) -> normalizers.Normalizer:
    """BERT cleaning + CJK spacing + optional lower-casing / accent stripping."""
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents,
                                      lowercase=do_lower_case)


def build_backend(vocab: dict[str, int], do_lower_case: bool, strip_accents: bool) -> Tokenizer:
    """The `tokenizers` pipeline: BertNormalizer + BertPreTokenizer + WordPiece (200 chars per word)."""
    backend = Tokenizer(WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                                  max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    backend.normalizer = build_normalizer(do_lower_case, strip_accents)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend
