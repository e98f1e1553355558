"""BERT FullTokenizer semantics on the Rust `tokenizers` library; casing stored beside the vocab.

Behaviour (as the original `tokenization.FullTokenizer`):
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

The settings live in ``tokenizer_config.json`` next to ``vocab.txt``; `BertTokenizer.from_vocab` reads them back
and refuses an explicit conflicting ``do_lower_case`` or ``strip_accents``. Without that file an explicit setting
is used, else the casing is guessed from the vocab (next to no upper-case entries: uncased).
"""
from __future__ import annotations

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


def write_tokenizer_config(directory: str | os.PathLike, do_lower_case: bool, strip_accents: bool) -> Path:
    """Store the casing settings of the vocab in `directory`/tokenizer_config.json."""
    path = Path(directory) / CONFIG_FILE
    config = {"do_lower_case": bool(do_lower_case), "strip_accents": bool(strip_accents),
              "max_input_chars_per_word": MAX_INPUT_CHARS_PER_WORD, "special_tokens": list(SPECIAL_TOKENS)}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def read_tokenizer_config(directory: str | os.PathLike) -> dict | None:
    """The stored casing settings next to a vocab, or None when there is no tokenizer_config.json."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return {"do_lower_case": bool(config["do_lower_case"]),
                "strip_accents": bool(config.get("strip_accents", config["do_lower_case"]))}
    except (ValueError, KeyError, TypeError) as e:
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
        self._batch: tuple[Tokenizer, Tokenizer, Tokenizer] | None = None

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

    def settings(self) -> dict:
        """The casing settings, as stored in tokenizer_config.json and dataset manifests."""
        return {"do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents}

    def tokenize(self, text: str) -> list[str]:
        """Wordpieces of `text`."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of `text` (no special tokens added)."""
        return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of many texts at once: (flat int32 ids, int64 lengths); text i is ids[off[i]:off[i]+len[i]].

        Same ids as `encode` on each text. For speed, runs of up to BATCH_JOIN texts are joined with a separator
        that the backend splits on before normalising (so no text sees its neighbours), and pure-ASCII runs skip
        the accent and CJK passes, which cannot change ASCII text. A text holding the separator is encoded alone.
        """
        inputs: list[str] = []
        kinds: list[int] = []
        run: list[str] = []
        run_kind = _ALONE
        for text in texts:
            kind = _ALONE if BATCH_SEPARATOR in text else _ASCII if text.isascii() else _UNICODE
            if run and (kind != run_kind or kind == _ALONE or len(run) == BATCH_JOIN):
                inputs.append(BATCH_SEPARATOR.join(run))
                kinds.append(run_kind)
                run = []
            run.append(text)
            run_kind = kind
        if run:
            inputs.append(BATCH_SEPARATOR.join(run))
            kinds.append(run_kind)
        if not inputs:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        backends = self._batch_backends()
        ids_lists: list[list[int]] = [[] for _ in inputs]
        for kind, backend in enumerate(backends):
            chosen = [i for i, k in enumerate(kinds) if k == kind]
            if chosen:
                encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
                for i, encoding in zip(chosen, encode([inputs[i] for i in chosen], add_special_tokens=False)):
                    ids_lists[i] = encoding.ids
        input_ends = np.cumsum([len(ids) for ids in ids_lists])
        flat = np.fromiter(itertools.chain.from_iterable(ids_lists), dtype=np.int32, count=int(input_ends[-1]))
        separators = np.flatnonzero(flat == len(self.tokens))  # the separator's id; the plain backend never makes it
        # A text ends at each separator (the next starts after it) and at the end of each input.
        cut = np.concatenate([input_ends, separators])
        skip = np.concatenate([np.zeros(len(input_ends), np.int64), np.ones(len(separators), np.int64)])
        order = np.lexsort((skip, cut))
        cut, skip = cut[order], skip[order]
        lengths = cut - np.concatenate([[0], (cut + skip)[:-1]])
        keep = np.ones(len(flat), bool)
        keep[separators] = False
        return flat[keep], lengths.astype(np.int64)

    def _batch_backends(self) -> tuple[Tokenizer, Tokenizer, Tokenizer]:
        """Backends for encode_batch, indexed by _ASCII, _UNICODE, _ALONE (built once)."""
        if self._batch is None:
            joiners = []
            for ascii_only in (True, False):
                joiner = build_backend(self.vocab, self.do_lower_case, self.strip_accents, ascii_only=ascii_only)
                joiner.add_special_tokens([AddedToken(BATCH_SEPARATOR, normalized=False, special=True)])
                if joiner.token_to_id(BATCH_SEPARATOR) != len(self.tokens):
                    raise AssertionError("the batch separator must get the first id after the vocab")
                joiners.append(joiner)
            self._batch = (joiners[0], joiners[1], self.backend)
        return self._batch

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocab tokens of `ids`."""
        return [self.tokens[int(i)] for i in ids]


def build_normalizer(do_lower_case: bool, strip_accents: bool, ascii_only: bool = False) -> normalizers.Normalizer:
    """BERT cleaning + CJK spacing + optional lower-casing / accent stripping.

    ascii_only=True gives a normalizer for pure-ASCII text only: the CJK and accent passes are left out, as they
    cannot change ASCII text.
    """
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=not ascii_only,
                                      strip_accents=strip_accents and not ascii_only, lowercase=do_lower_case)


def build_backend(vocab: dict[str, int], do_lower_case: bool, strip_accents: bool,
                  ascii_only: bool = False) -> Tokenizer:
    """The `tokenizers` pipeline: BertNormalizer + BertPreTokenizer + WordPiece (200 chars per word)."""
    backend = Tokenizer(WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                                  max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    backend.normalizer = build_normalizer(do_lower_case, strip_accents, ascii_only)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend
