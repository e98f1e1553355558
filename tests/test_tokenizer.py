"""Tokenizer: BERT FullTokenizer semantics (checked against a pure-Python FullTokenizer), Korean-safe settings, long
words, and the casing stored beside the vocab. tests/test_tokenizer_unicode.py: any Unicode text."""
import json

import numpy as np
import pytest

from bertjax.data import vocab_files
from bertjax.data.tokenizer import BertTokenizer
from bertjax.errors import BertjaxError

import reference_original

WORDS = ["the", "cafe", "café", "naive", "resume", "hello", "world", "un", "##aff", "##able", "##s", "a", "##a",
         "Hello", "World", "The", "中", "文", "한국어", "한", "국", "어", "ᄒ", "##ᅡ", "##ᆫ", "##ᄀ", "##ᅮ", "##ᆨ", "ᄋ",
         "##ᅥ", ",", ".", "!", "?", "'", "$", "¿", "«", "»", "-", "é", "e"]
VOCAB = list(vocab_files.SPECIAL_TOKENS) + WORDS

TRICKY = [
    "Hello, World! The café is naïve.",
    "unaffable résumé\tthe\u3000world",
    "中文 and 中文字",
    "한국어 한 국어",
    "a\x00b \ufffd c\u200bd \x07e\r\nf",
    "$hello¿world«the»",
    "a" * 200 + " " + "a" * 201,
    "  \n\t ",
    "RÉSUMÉ Café CAFÉ",
]


def _write_vocab(path, tokens=VOCAB, config=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    if config is not None:
        vocab_files.write_tokenizer_config(path, **config)
    return path / "vocab.txt"


@pytest.mark.parametrize("lower,strip", [(True, True), (False, False), (True, False), (False, True)])
def test_matches_pure_python_full_tokenizer(lower, strip):
    fast = BertTokenizer(VOCAB, do_lower_case=lower, strip_accents=strip)
    slow = reference_original.FullTokenizer(VOCAB, do_lower_case=lower, strip_accents=strip)
    for text in TRICKY:
        assert fast.tokenize(text) == slow.tokenize(text), text


def test_cleaning_punctuation_cjk_and_accents():
    tok = BertTokenizer(VOCAB, do_lower_case=True)
    assert tok.tokenize("Hello, World!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("CAFÉ naïve") == ["cafe", "naive"]  # lower-case + NFD accent strip
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]  # greedy longest match
    assert tok.tokenize("中文") == ["中", "文"]  # CJK ideographs split
    assert tok.tokenize("a\x00\ufffd\u200ba") == ["a", "##a"]  # NUL, U+FFFD and format chars dropped
    assert tok.tokenize("$hello¿") == ["$", "hello", "¿"]  # ASCII symbols count as punctuation
    assert tok.tokenize("zzz") == ["[UNK]"]
    cased = BertTokenizer(VOCAB, do_lower_case=False)
    assert cased.tokenize("Hello café") == ["Hello", "café"]


def test_words_longer_than_200_chars_become_unk():
    tok = BertTokenizer(VOCAB, do_lower_case=True)
    assert tok.tokenize("a" * 200) == ["a"] + ["##a"] * 199
    assert tok.tokenize("a" * 201) == ["[UNK]"]
    assert tok.tokenize("é" * 201) == ["[UNK]"]  # characters, not bytes


def test_korean_syllables_kept_unless_accents_are_stripped():
    assert BertTokenizer(VOCAB, do_lower_case=False).tokenize("한국어") == ["한국어"]
    assert BertTokenizer(VOCAB, do_lower_case=True, strip_accents=False).tokenize("한국어 한") == ["한국어", "한"]
    # The original's lower-casing path (NFD) decomposes syllables into conjoining jamo.
    assert BertTokenizer(VOCAB, do_lower_case=True).tokenize("한국") == ["ᄒ", "##ᅡ", "##ᆫ", "##ᄀ", "##ᅮ", "##ᆨ"]


def test_ids_special_tokens_and_batch_encoding():
    tok = BertTokenizer(VOCAB)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.vocab_size == len(VOCAB)
    assert tok.is_continuation()[VOCAB.index("##aff")] and not tok.is_continuation()[VOCAB.index("un")]
    texts = ["hello world", "", "unaffable cafe"]
    flat, lengths = tok.encode_batch(texts)
    assert flat.dtype == np.int32 and lengths.tolist() == [2, 0, 4]
    assert flat[2:].tolist() == tok.encode("unaffable cafe").tolist()
    assert tok.convert_ids_to_tokens(flat[:2]) == ["hello", "world"]


def test_casing_is_stored_and_read_back(tmp_path):
    vocab = _write_vocab(tmp_path / "v", config={"do_lower_case": False, "strip_accents": False})
    tok = BertTokenizer.from_vocab(vocab.parent)  # a directory works too
    assert (tok.do_lower_case, tok.strip_accents) == (False, False)
    assert tok.tokenize("Hello") == ["Hello"]
    assert json.loads((tmp_path / "v" / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert BertTokenizer.from_vocab(vocab, do_lower_case=False).do_lower_case is False


def test_conflicting_explicit_casing_is_an_error(tmp_path):
    vocab = _write_vocab(tmp_path / "v", config={"do_lower_case": True, "strip_accents": True})
    with pytest.raises(BertjaxError, match="do_lower_case=False conflicts with do_lower_case=True stored in"):
        BertTokenizer.from_vocab(vocab, do_lower_case=False)


def test_casing_guessed_without_config(tmp_path):
    assert BertTokenizer.from_vocab(_write_vocab(tmp_path / "cased")).do_lower_case is False  # has "Hello"
    uncased = [t for t in VOCAB if t == t.lower() or t.startswith("[")]
    assert BertTokenizer.from_vocab(_write_vocab(tmp_path / "uncased", uncased)).do_lower_case is True
    assert BertTokenizer.from_vocab(_write_vocab(tmp_path / "x", uncased), do_lower_case=False).do_lower_case is False


def test_missing_vocab_or_specials_is_an_error(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        BertTokenizer.from_vocab(tmp_path / "nope" / "vocab.txt")
    vocab = _write_vocab(tmp_path / "v", [t for t in VOCAB if t != "[MASK]"])
    with pytest.raises(BertjaxError, match=r"lacks the special token\(s\) \[MASK\]"):
        BertTokenizer.from_vocab(vocab)
    (tmp_path / "v" / "tokenizer_config.json").write_text("{not json")
    _write_vocab(tmp_path / "v")
    with pytest.raises(BertjaxError, match="not a valid tokenizer config"):
        BertTokenizer.from_vocab(tmp_path / "v")


@pytest.mark.parametrize("extra", [["\ue000"], ["cafe"]])
def test_any_vocab_encodes_batches(tmp_path, extra):
    """A vocab holding a private-use character, or repeating an entry (the last copy's id is used, as the original's
    load_vocab does), encodes batches of any text as the original does."""
    tokens = VOCAB + extra
    tok = BertTokenizer.from_vocab(_write_vocab(tmp_path / "v", tokens))
    texts = ["hello world", "Héllo 中文 \ue000 cafe"]
    ref = reference_original.FullTokenizer(tokens, do_lower_case=tok.do_lower_case)
    flat, lengths = tok.encode_batch(texts)
    assert flat.tolist() == [ref.vocab[t] for text in texts for t in ref.tokenize(text)]
    assert lengths.tolist() == [len(ref.tokenize(text)) for text in texts]


@pytest.mark.parametrize("lower", [True, False])
def test_encode_batch_equals_encoding_each_text(lower):
    tok = BertTokenizer(VOCAB, do_lower_case=lower)
    texts = (TRICKY + ["", "hello \ue000 world", "\ue000", "the", "Héllo 中文"] + ["hello World"] * 70 + [""] * 3
             + ["cafe\x00", "\ue000x", "CAFÉ"]) * 2
    flat, lengths = tok.encode_batch(texts)
    assert lengths.tolist() == [len(tok.encode(t)) for t in texts]
    assert flat.tolist() == [i for t in texts for i in tok.encode(t).tolist()]
    # Private-use characters are kept, as the original does (`tokenizers` drops them).
    assert tok.tokenize("hello \ue000 world") == ["hello", "[UNK]", "world"]


@pytest.mark.parametrize("lower", [True, False])
def test_ascii_text_gives_the_original_ids_on_random_text(lower):
    """encode_batch splits pure-ASCII texts apart from the others (str methods, not regular expressions); on any
    ASCII character, control characters and over-long words included, and with non-ASCII texts in between, it must
    give exactly the original's ids."""
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(128)] + list("aaeeiouhlnrst     ") + ["Hello", "cafe", "unaffable", "The"]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(2000)]
    texts += ["a" * 200 + "!", "b" * 201, "x\ny\n", "tab\tsep\rcr\x0bvt\x1cfs", "", "é", "hello 中文"]
    tok = BertTokenizer(VOCAB, do_lower_case=lower)
    flat, lengths = tok.encode_batch(texts)
    ref = reference_original.FullTokenizer(VOCAB, do_lower_case=lower)
    expected = [[ref.vocab[t] for t in ref.tokenize(text)] for text in texts]
    assert lengths.tolist() == [len(ids) for ids in expected]
    assert flat.tolist() == [i for ids in expected for i in ids]
