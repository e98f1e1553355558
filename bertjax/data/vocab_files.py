"""The files that describe a BERT vocab: `vocab.txt` (one token a line, id = line number, with BERT's special
tokens) and `tokenizer_config.json` beside it (its casing, readable by transformers' BertTokenizerFast too):
found, read, checked, hashed (`vocab_sha256`, which dataset manifests record) and written. The tokenizer that uses
them is `bertjax.data.tokenizer`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Sequence

from bertjax import paths
from bertjax.errors import BertjaxError

VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
TRAINED_WITH = "bertjax_vocab_trained_with"  # tokenizer_config.json key: what built the vocab ({"tokenizers": version})
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
REQUIRED_TOKENS: tuple[str, ...] = (UNK, CLS, SEP, MASK)
MAX_INPUT_CHARS_PER_WORD = 200  # WordPiece: a longer word is [UNK] (the original's; recorded in the config)


def resolve_vocab_path(vocab: str | os.PathLike) -> paths.epath.Path:
    """The vocab.txt file named by `vocab` (the file itself or its directory); BertjaxError if missing."""
    path = paths.path(vocab)
    if path.is_dir():
        path = path / VOCAB_FILE
    if not path.is_file():
        raise BertjaxError(f"vocab file {str(path)!r} does not exist; pass --vocab_file pointing to a vocab.txt "
                           "(train one with `python -m bertjax.data.vocab`)")
    return path


def read_vocab(vocab: str | os.PathLike) -> list[str]:
    """Tokens of a vocab.txt (one per line, id = line number), checked for the special tokens BERT needs."""
    path = resolve_vocab_path(vocab)
    with io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8", errors="replace") as f:
        tokens = [line.strip() for line in f]  # as the original's load_vocab (lines as open() splits them)
    while tokens and not tokens[-1]:
        tokens.pop()
    check_special_tokens(tokens, f"vocab file {str(path)!r}")
    return tokens


def check_special_tokens(tokens: Sequence[str], name: str = "vocab") -> None:
    """BertjaxError (naming the vocab as `name`) unless the tokens hold every special token BERT needs."""
    present = set(tokens)
    missing = [t for t in REQUIRED_TOKENS if t not in present]
    if missing:
        raise BertjaxError(f"{name} lacks the special token(s) {', '.join(missing)}; a BERT vocab needs "
                           f"{', '.join(REQUIRED_TOKENS)} (train one with `python -m bertjax.data.vocab`)")


def vocab_sha256(vocab: str | os.PathLike) -> str:
    """Hex sha256 of the vocab file's bytes (stored in dataset manifests)."""
    return hashlib.sha256(resolve_vocab_path(vocab).read_bytes()).hexdigest()


def write_tokenizer_config(directory: str | os.PathLike, do_lower_case: bool, strip_accents: bool,
                           model_max_length: int | None = None,
                           trained_with: dict[str, str] | None = None) -> paths.epath.Path:
    """Store the casing settings of the vocab in `directory`/tokenizer_config.json, and with `trained_with` what
    built it ({"tokenizers": version}, from `bertjax.data.vocab`; dataset manifests copy it).

    The file is also a Hugging Face tokenizer config: `transformers.BertTokenizerFast.from_pretrained(directory)`
    reads it with the vocab.txt beside it and tokenizes as bertjax does.
    """
    path = paths.path(directory) / CONFIG_FILE
    config = {"do_lower_case": bool(do_lower_case), "strip_accents": bool(strip_accents),
              "max_input_chars_per_word": MAX_INPUT_CHARS_PER_WORD, "special_tokens": list(SPECIAL_TOKENS),
              "tokenizer_class": "BertTokenizer", "tokenize_chinese_chars": True,
              "clean_up_tokenization_spaces": False, "unk_token": UNK, "sep_token": SEP, "pad_token": PAD,
              "cls_token": CLS, "mask_token": MASK}
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    if trained_with:
        config[TRAINED_WITH] = dict(trained_with)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def read_tokenizer_config(directory: str | os.PathLike) -> dict | None:
    """The stored casing settings next to a vocab, or None when there is no tokenizer_config.json or it does not
    say (Hugging Face's may leave do_lower_case out; its strip_accents null means: as do_lower_case)."""
    path = paths.path(directory) / CONFIG_FILE
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


def read_trained_with(vocab: str | os.PathLike) -> dict[str, str] | None:
    """What built the vocab ({"tokenizers": version}, from the tokenizer_config.json beside it), or None when it
    does not say (a vocab from elsewhere, or one built before bertjax recorded it)."""
    path = resolve_vocab_path(vocab).parent / CONFIG_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get(TRAINED_WITH) if path.is_file() else None
    except (ValueError, AttributeError):
        return None                                 # read_tokenizer_config names a broken config where it matters
    return dict(recorded) if isinstance(recorded, dict) else None


def guess_do_lower_case(tokens: Sequence[str]) -> bool:
    """A vocab with (almost) no upper-case entries is taken as uncased: at most 1% of the entries, special
    tokens aside (an uncased vocab may hold a few odd characters that have a lower-case form)."""
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    return sum(t != t.lower() for t in words) <= 0.01 * len(words)


def resolve_casing(vocab_path: paths.epath.Path, do_lower_case: bool | None, strip_accents: bool | None,
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
