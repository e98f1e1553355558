"""BertTokenizer on any Unicode text: the ids of google-research/bert's FullTokenizer (tests/reference_original.py),
on random mixed-script text and on every code point; and `tokenizers`' BertNormalizer + BertPreTokenizer +
WordPiece (what bertjax used before) wherever those agree with the original."""
import sys
import unicodedata

import numpy as np
import pytest
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordPiece

from bertjax.data import tokenizer, vocab_files
from bertjax.data.tokenizer import BertTokenizer

import reference_original

SETTINGS = [(True, True), (False, False), (True, False), (False, True)]  # (do_lower_case, strip_accents)
# Pieces of many scripts and categories: letters with and without case, precomposed and combining accents, Hangul
# syllables and jamo, CJK ideographs (BMP, extensions, compatibility), punctuation of every P* category and ASCII
# symbols, symbols (S*), digits, emoji with ZWJ and variation selectors, controls, format characters, odd
# whitespace, private use, unassigned, special casing (İ, ẞ, final sigma, ligatures).
ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("éÉèàÀçÇñÑüÜöÖåÅøØßẞİıŁłĳǅǈ") + list("ΑΒΓΣσςαβγΆάΐ") + list("абвгдАБВГДёЁйЙ") + list("مرحباًٌُّ")
    + list("שָׁלוֹם") + list("हिन्दी") + list("ไทย่้") + list("ひらがなカタカナー") + list("한국어가나다갂힣각ㄱㅏ")
    + list("中文字漢𠀀𪜀𫝀𫠠𬺰丽豈") + list("\u0300\u0301\u0308\u0327\u20dd\u0345\u1ab0")
    + list(".,!?;:'\"()[]{}<>-_/\\@#$%^&*+=|~`") + list("¿¡«»„“”‘’‹›—–‐…·•§¶†‡‰′″※‼⁇、。「」『』【】〜・")
    + list("€£¥¢₩©®™°±×÷√∞≈≠≤≥♥★☆→←") + list("😀👍🏽👨‍👩‍👧🇰🇷❤️\ufe0f\u200d")
    + list("\t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2003\u2007\u200a\u2028\u2029\u202f\u205f\u3000 ")
    + list("\x00\x01\x07\x1b\x7f\x9f\u00ad\u200b\u200c\u200e\u2060\ufeff\ufffd\U000e0041\U0001d173")
    + list("\ue000\uf8ff\U000f0000\u0378\U0001fffe\u2e5d\u061d\U000111c9")
    + ["İstanbul", "ΟΔΟΣ", "ﬁle", "Straße", "naïve", "Ǆemal", "\u1e9e", "x\u0345\u0301"]
)
WORDISH = ["the", "한국어", "영화", "재미", "café", "Café", "naïve", "中文", "Москва", "Σίσυφος"]


def _random_texts(rng: np.random.Generator, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        parts = rng.choice(ALPHABET + WORDISH * 3, size=rng.integers(0, 30))
        texts.append("".join(parts))
    return texts


def _vocab(texts: list[str], lower: bool, strip: bool, rng: np.random.Generator) -> list[str]:
    """A vocab covering part of the texts' words: some whole words, most single characters, with ## forms, so that
    WordPiece matches, splits and misses ([UNK])."""
    ref = reference_original.FullTokenizer(["[UNK]"], do_lower_case=lower, strip_accents=strip)
    words = sorted({w for text in texts for w in ref.basic_tokenize(text)})
    chars = sorted({c for w in words for c in w})
    entries = [w for w in words if rng.random() < 0.3]
    entries += [c for c in chars if rng.random() < 0.9] + ["##" + c for c in chars if rng.random() < 0.9]
    entries += ["##" + w[1:3] for w in words if len(w) > 2 and rng.random() < 0.3]
    return list(vocab_files.SPECIAL_TOKENS) + list(dict.fromkeys(entries))


def _backend(vocab: list[str], lower: bool, strip: bool) -> Tokenizer:
    """`tokenizers`' BERT pipeline, as bertjax's tokenizer was before it did its own normalisation."""
    backend = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=vocab_files.UNK,
                                  continuing_subword_prefix="##", max_input_chars_per_word=200))
    backend.normalizer = tokenizer.build_normalizer(lower, strip)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend


@pytest.mark.parametrize("lower,strip", SETTINGS)
def test_random_mixed_scripts_give_the_original_ids(lower, strip):
    """3,000 random strings per setting (Hangul, CJK, Latin, Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, kana,
    emoji, combining marks, controls, format characters, odd whitespace, punctuation and symbols of many categories,
    private use, unassigned), encoded in batches of various sizes: the original's wordpieces, exactly."""
    rng = np.random.default_rng(12 + 2 * lower + strip)
    texts = _random_texts(rng, 3000) + ["é" * 200 + " " + "é" * 201, "a\ud800b c", "ab\udc80"]
    vocab = _vocab(texts[:1500], lower, strip, rng)
    ref = reference_original.FullTokenizer(vocab, do_lower_case=lower, strip_accents=strip)
    tok = BertTokenizer(vocab, do_lower_case=lower, strip_accents=strip)
    expected = [ref.tokenize(text) for text in texts]
    assert sum(len(e) for e in expected) > 20_000 and sum(e.count("[UNK]") for e in expected) > 100
    start = 0
    for size in [1, 2, 7, 64, 500, 1000, len(texts)]:  # the piece cache carries over from batch to batch
        batch = texts[start:start + size]
        flat, lengths = tok.encode_batch(batch)
        assert lengths.tolist() == [len(e) for e in expected[start:start + size]]
        assert tok.convert_ids_to_tokens(flat) == [p for e in expected[start:start + size] for p in e]
        start += size
    assert [tok.tokenize(text) for text in texts[:300]] == expected[:300]


def test_the_piece_cache_starting_afresh_changes_nothing(monkeypatch):
    rng = np.random.default_rng(3)
    texts = _random_texts(rng, 400)
    vocab = _vocab(texts, True, True, rng)
    whole = BertTokenizer(vocab)
    expected = whole.encode_batch(texts)
    monkeypatch.setattr(tokenizer, "CACHE_WORDS", 50)
    tok = BertTokenizer(vocab)
    parts = [tok.encode_batch(texts[start:start + 40]) for start in range(0, len(texts), 40)]
    assert tok._cache.size < whole._cache.size  # it started afresh
    assert np.concatenate([flat for flat, _ in parts]).tolist() == expected[0].tolist()
    assert np.concatenate([lengths for _, lengths in parts]).tolist() == expected[1].tolist()


@pytest.mark.parametrize("lower,strip", SETTINGS)
def test_random_mixed_scripts_give_the_tokenizers_ids_where_it_agrees_with_the_original(lower, strip):
    """The same random text, where `tokenizers` follows the original (no private use, none of the few hundred code
    points its Unicode tables class otherwise, no capital sigma: it lower-cases character by character, without
    Python's final sigma), gives the ids of `tokenizers`' BERT pipeline."""
    ref = reference_original.FullTokenizer(["[UNK]"], do_lower_case=lower, strip_accents=strip)
    pipeline = _backend(list(vocab_files.SPECIAL_TOKENS), lower, strip)

    def same(piece: str) -> bool:
        text = "xA" + piece + "Bx"
        return [w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text))] \
            == ref.basic_tokenize(text)

    alphabet = [piece for piece in ALPHABET + WORDISH * 3 if same(piece) and "Σ" not in piece]
    assert len(alphabet) > 0.9 * len(ALPHABET)
    rng = np.random.default_rng(7)
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 30))) for _ in range(3000)]
    vocab = _vocab(texts[:1500], lower, strip, rng)
    backend = _backend(vocab, lower, strip)
    flat, lengths = BertTokenizer(vocab, do_lower_case=lower, strip_accents=strip).encode_batch(texts)
    expected = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    assert lengths.tolist() == [len(e) for e in expected]
    assert flat.tolist() == [i for e in expected for i in e]


@pytest.mark.parametrize("lower,strip", [(True, True), (False, False)])
def test_every_code_point_is_classed_as_the_original_does(lower, strip):
    """Each code point between two words, and alone, is split, dropped, lower-cased and stripped as the original
    does: BertTokenizer's basic tokenization equals reference_original's on all 1,112,064 of them (surrogates too)."""
    ref = reference_original.FullTokenizer(["[UNK]"], do_lower_case=lower, strip_accents=strip)
    tok = BertTokenizer(list(vocab_files.SPECIAL_TOKENS), do_lower_case=lower, strip_accents=strip)
    texts = ["xA" + chr(cp) + "Bx" for cp in range(1, sys.maxunicode + 1)]
    words = tok._words(tokenizer._TEXT_END.join(texts) + tokenizer._TEXT_END)
    got, current = [], []
    for word in words:
        if word == tokenizer._TEXT_END:
            got.append(current)
            current = []
        else:
            current.append(word)
    assert len(got) == len(texts)
    mismatches = [(hex(ord(t[2])), g) for t, g in zip(texts, got) if g != ref.basic_tokenize(t)]
    assert not mismatches[:10]


def test_whole_string_steps_equal_per_word_steps():
    """What lets BertTokenizer lower-case and strip accents on joined texts, not word by word as the original: on
    every code point, lower() and NFD map whitespace (str.split's) to whitespace only and nothing else to any and
    never make NUL (the text end); whitespace and NUL have combining class 0 (no canonical reordering
    across them); and final-sigma lower-casing does not look across them. What lets it split CJK ideographs after
    those steps, not before as the original: they map a CJK ideograph to one CJK ideograph, and no other character
    to any. And no whitespace lies beyond the BMP (BertTokenizer's table of character kinds reads it there)."""
    def is_cjk(char: str) -> bool:
        return any(first <= ord(char) <= last for first, last in tokenizer._CJK_RANGES)

    for cp in range(sys.maxunicode + 1):
        char = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        for mapped in (char.lower(), unicodedata.normalize("NFD", char), unicodedata.normalize("NFD", char.lower())):
            assert all(c.isspace() for c in mapped) if char.isspace() else not any(c.isspace() for c in mapped), cp
            assert ("\x00" in mapped) == (cp == 0), cp
            if mapped != char:
                assert [is_cjk(c) for c in mapped] == ([True] if is_cjk(char) else [False] * len(mapped)), cp
        assert cp < 0x10000 or not char.isspace()
        if char.isspace() or cp == 0:
            assert unicodedata.combining(char) == 0
            assert ("ΑΣ" + char + "Β").lower() == "ας" + char.lower() + "β"
            assert ("Α\u0301Σ\u0301" + char + "\u0301Β").lower() == "α\u0301ς\u0301" + char.lower() + "\u0301β"


def test_korean_cased_keeps_syllables_and_uncased_strips_into_jamo():
    vocab = list(vocab_files.SPECIAL_TOKENS) + ["영화", "##가", "재미", "##있다", "ᄋ", "##ᅧ", "##ᆼ", "!", "ㅋㅋ"]
    text = "영화가 재미있다!ㅋㅋ\u3000영화"
    assert BertTokenizer(vocab, do_lower_case=False).tokenize(text) == [
        "영화", "##가", "재미", "##있다", "!", "ㅋㅋ", "영화"]
    ref = reference_original.FullTokenizer(vocab, do_lower_case=True)
    assert BertTokenizer(vocab, do_lower_case=True).tokenize(text) == ref.tokenize(text)
    assert BertTokenizer(vocab, do_lower_case=True).tokenize("영")[:2] == ["ᄋ", "##ᅧ"]
