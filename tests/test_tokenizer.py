"""Tokenizer: BERT FullTokenizer semantics (checked against a pure-Python FullTokenizer), Korean text through the
numpy path, WordPiece in numpy, hash collisions, Korean-safe settings, long words, and the casing stored beside the
vocab. tests/test_tokenizer_unicode.py: any Unicode text."""
import json
from pathlib import Path

import numpy as np
import pytest

from bertjax.data import tokenizer, vocab_files, wordpiece
from bertjax.data.tokenizer import BertTokenizer
from bertjax.errors import BertjaxError

import reference_original
from test_tokenizer_unicode import _vocab

SETTINGS = [(True, True), (False, False), (True, False), (False, True)]  # (do_lower_case, strip_accents)
KOREAN_CORPUS = Path(__file__).resolve().parents[1] / "data" / "demo_ko" / "corpus.txt"
# Hangul with Latin, digits, punctuation (ASCII and CJK), emoji (ZWJ, skin tone, variation selector), jamo runs,
# anagram words, CJK ideographs, combining marks, private use, words of 200 and 201 characters, ASCII-only texts.
MIXED_KOREAN = [
    "ㅋㅋㅋㅋ 재밌다ㅠㅠ!! 진짜... 별로;; ㅡㅡ", "영화 화영 영화가 가영화 ㅎㅎ ㅋ", "최고의 영화👍👍 10/10 ★★★★☆",
    "Oscar 수상작 『기생충』(2019) - 봉준호 감독!", "한국어 English 中文 日本語 カタカナ ひらがな", "ㅏㅑㅓㅕ ᄀᄁᄂ 갂 힣 ㄱㄴㄷ",
    "Éé 가\u0301 ﬁle İstanbul ΟΔΟΣ", "👨\u200d👩\u200d👧 ❤️ 👍🏽 😀😀😀", "\ue000가 나\u200b다 라\x00마", "ㅋ" * 200,
    "ㅠ" * 201 + " 끝", "The movie was great, 10/10!", "plain ascii text only", "", " \t ", "「재밌다」、ＯＫ！"]


def _korean_texts() -> list[str]:
    lines = KOREAN_CORPUS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line][:1200] + MIXED_KOREAN * 2


def _korean_vocab(texts: list[str], lower: bool, strip: bool) -> list[str]:
    """test_tokenizer_unicode's partial vocab of the texts (whole words, characters, ## pieces: WordPiece then
    matches, splits and leaves some [UNK]), with a fixed seed."""
    return _vocab(texts, lower, strip, np.random.default_rng(5))


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


@pytest.mark.parametrize("lower,strip", SETTINGS)
def test_korean_text_gives_the_original_ids_through_the_numpy_path(lower, strip, monkeypatch):
    """Korean text (data/demo_ko) and mixed Hangul/Latin/punctuation/emoji/jamo strings: encode_batch (words split,
    hashed and told apart in numpy, WordPiece on many words at once, the piece cache carried from batch to batch)
    gives exactly the ids of the plain per-text original, whatever the batches: all at once, in small batches, in
    slices of a few characters (BATCH_CHARS), and text by text."""
    texts = _korean_texts()
    vocab = _korean_vocab(texts, lower, strip)
    ref = reference_original.FullTokenizer(vocab, do_lower_case=lower, strip_accents=strip)
    pieces = [ref.tokenize(text) for text in texts]
    expected = [[ref.vocab[t] for t in p] for p in pieces]
    assert sum(map(len, pieces)) > 20_000 and sum(p.count("[UNK]") for p in pieces) > 5
    assert sum(t.startswith("##") for p in pieces for t in p) > 2_000
    tok = BertTokenizer(vocab, do_lower_case=lower, strip_accents=strip)
    flat, lengths = tok.encode_batch(texts)
    assert lengths.tolist() == [len(e) for e in expected]
    assert flat.tolist() == [i for e in expected for i in e]
    tok = BertTokenizer(vocab, do_lower_case=lower, strip_accents=strip)
    monkeypatch.setattr(tokenizer, "BATCH_CHARS", 500)
    for start in range(0, len(texts), 97):
        flat, lengths = tok.encode_batch(texts[start:start + 97])
        assert flat.tolist() == [i for e in expected[start:start + 97] for i in e]
    assert [tok.encode(text).tolist() for text in texts[::5]] == expected[::5]


def test_wordpiece_table_gives_the_ids_of_tokenizers_wordpiece(monkeypatch):
    """WordPieceTable (numpy rounds; the last few words in Python) equals `tokenizers`' WordPiece model word by word:
    whole entries, splits, words no entry covers, words of 200 and 201 characters, long runs, astral characters."""
    rng = np.random.default_rng(11)
    alphabet = list("abcdeéxyz영화재밌다ㅋㅠ中😀") + ["\U00020000"]
    vocab = list(vocab_files.SPECIAL_TOKENS)
    vocab += ["".join(rng.choice(alphabet, size=rng.integers(1, 5))) for _ in range(300)]
    vocab += ["##" + "".join(rng.choice(alphabet, size=rng.integers(1, 4))) for _ in range(300)]
    vocab += ["a", "##a", "ㅋ", "##ㅋ", "##ㅋㅋㅋ", "##", "####a", "##\U00020000"]
    words = ["".join(rng.choice(alphabet, size=rng.integers(1, 12))) for _ in range(3000)]
    words += ["a" * 200, "a" * 201, "ㅋ" * 199, "a" + "ㅋ" * 150, "z", "#"]
    ids = {t: i for i, t in enumerate(vocab)}
    backend = tokenizer.build_wordpiece(ids)
    expected = [backend.encode(w, add_special_tokens=False).ids for w in words]
    assert sum(e == [ids["[UNK]"]] for e in expected) > 100 and sum(len(e) > 2 for e in expected) > 100
    for finish_in_python in (0, 32, 10_000):
        monkeypatch.setattr(wordpiece, "FINISH_IN_PYTHON", finish_in_python)
        table = wordpiece.WordPieceTable(ids, ids["[UNK]"], wordpiece.PolynomialHash())
        flat, counts = table.encode_words(words)
        assert counts.tolist() == [len(e) for e in expected]
        assert flat.tolist() == [i for e in expected for i in e]


def test_hash_collisions_cost_time_not_ids(monkeypatch):
    """With a hash under which anagrams collide (multiplier 1: the sum of the characters), a collision between the
    words of one batch, or between a word and a cached word, is found by comparing characters, and the tokenizer
    starts afresh with the next hash: the ids stay the original's."""
    monkeypatch.setattr(wordpiece, "hash_base", lambda attempt: 1 if attempt < 2 else 0x9E3779B97F4A7C15)
    vocab = list(vocab_files.SPECIAL_TOKENS) + ["영화", "##가", "가", "##영", "화", "ab", "##c", "c"]
    ref = reference_original.FullTokenizer(vocab, do_lower_case=False)
    tok = BertTokenizer(vocab, do_lower_case=False)
    batches = [["영화 가 ab é"], ["화영 ba é"], ["영화가 화영 ab ba é"]]  # 2nd: vs the cache; 3rd: within the batch
    for batch, attempt in zip(batches, [0, 1, 2]):
        flat, _ = tok.encode_batch(batch)
        assert tok.convert_ids_to_tokens(flat) == [t for text in batch for t in ref.tokenize(text)]
        assert tok._hasher.attempt == attempt
