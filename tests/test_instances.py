"""instances.py: tokenized documents, and the instance walk, which must make exactly the original's sentence pairs
(checked against reference_original with the same random.Random)."""
import random

import numpy as np
import pytest

from bertjax.data import instances
from bertjax.data.tokenizer import BertTokenizer

import reference_original

LEXICON = [f"w{i}" for i in range(60)] + ["hello", "world", "unaffable", "cafe", "the"]


def write_corpus(path, num_docs, seed=0, max_sentences=12, max_words=30, single_sentence_docs=False):
    """A synthetic corpus: one sentence per line, a blank line between documents; returns the path."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(num_docs):
            n = 1 if single_sentence_docs else rng.randint(1, max_sentences)
            for _ in range(n):
                f.write(" ".join(rng.choice(LEXICON) for _ in range(rng.randint(1, max_words))) + " .\n")
            f.write("\n")
    return path


def small_vocab():
    """Vocab tokens covering LEXICON (w-words as w + ## digit pieces)."""
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "w", "hello", "world", "un", "##aff", "##able",
             "cafe", "the"] + [f"##{d}" for d in range(10)])


def write_small_vocab(directory):
    """`directory`/vocab.txt of small_vocab() and its tokenizer_config.json (uncased, accents stripped)."""
    from bertjax.data import vocab_files  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in small_vocab()), encoding="utf-8")
    vocab_files.write_tokenizer_config(directory, do_lower_case=True, strip_accents=True)
    return directory


def test_tokenize_documents_drops_empty_sentences_and_documents():
    tok = BertTokenizer(small_vocab())
    lines = ["hello world", "\x00", "", "", "the cafe", "", "\u200b", ""]
    docs = instances.tokenize_documents(lines, tok.encode_batch)
    assert docs.num_documents == 2 and docs.num_sentences == 2
    assert [docs.tokens[s:e].tolist() for s, e in zip(docs.starts, docs.ends)] == [tok.encode("hello world").tolist(),
                                                                                     tok.encode("the cafe").tolist()]


def _documents_from_lists(doc_lists):
    tokens, starts, ends, bounds = [], [], [], []
    for doc in doc_lists:
        first = len(starts)
        for sentence in doc:
            starts.append(len(tokens))
            tokens.extend(sentence)
            ends.append(len(tokens))
        bounds.append((first, len(starts)))
    return instances.Documents(np.array(tokens, np.int32), starts, ends, bounds)


@pytest.mark.parametrize("max_seq_length,short_seq_prob", [(128, 0.1), (24, 0.5)])
def test_walk_makes_exactly_the_original_pairs(monkeypatch, max_seq_length, short_seq_prob):
    rng = random.Random(0)
    doc_lists = [[[rng.randint(5, 99) for _ in range(rng.randint(1, 40))] for _ in range(rng.randint(1, 15))]
                 for _ in range(150)]
    # The original with masking and truncation switched off consumes the same random calls as the walk.
    monkeypatch.setattr(reference_original, "create_masked_lm_predictions", lambda tokens, *a, **k: (tokens, [], []))
    monkeypatch.setattr(reference_original, "truncate_seq_pair", lambda *a: None)
    ref_rng = random.Random(7)
    shuffled = [list(d) for d in doc_lists]
    ref_rng.shuffle(shuffled)
    expected = []
    for _ in range(3):
        for index in range(len(shuffled)):
            for inst in reference_original.create_instances_from_document(
                    shuffled, index, max_seq_length, short_seq_prob, 0.15, 20, [], ref_rng):
                a_len = inst.segment_ids.count(0) - 2
                expected.append((inst.tokens[1:1 + a_len], inst.tokens[a_len + 2:-1], inst.is_random_next))
    docs = _documents_from_lists(doc_lists)
    made = instances.create_instances(docs, random.Random(7), max_seq_length=max_seq_length,
                                      short_seq_prob=short_seq_prob, dupe_factor=3)
    got = [(docs.tokens[a:a + la].tolist(), docs.tokens[b:b + lb].tolist(), bool(r))
           for a, la, b, lb, r in zip(made.a_start, made.a_len, made.b_start, made.b_len, made.is_random_next)]
    assert len(got) == len(expected) > 1000
    assert got == expected


def test_truncation_matches_the_original_lengths_and_ends():
    rng = random.Random(1)
    pairs = [(rng.randint(1, 150), rng.randint(1, 150)) for _ in range(5000)]
    want = []
    for la, lb in pairs:
        a, b = list(range(la)), list(range(lb))
        reference_original.truncate_seq_pair(a, b, 61, rng)
        want.append((len(a), len(b), a[0], b[0]))
    want = np.array(want)
    arr = np.array(pairs)
    made = instances.Instances(np.zeros(len(arr), np.int64), arr[:, 0], np.zeros(len(arr), np.int64), arr[:, 1],
                               np.zeros(len(arr), bool), np.zeros(len(arr), bool))
    got = instances.truncate_pairs(made, 61, np.random.default_rng(0))
    assert np.array_equal(got.a_len, want[:, 0]) and np.array_equal(got.b_len, want[:, 1])
    assert np.all(got.a_len + got.b_len <= 61) and got.a_len.min() >= 1 and got.b_len.min() >= 1
    # tokens cut from the front: same mean as the original's coin flips
    assert abs(got.a_start.mean() - want[:, 2].mean()) < 0.1 * want[:, 2].mean() + 0.5
    assert abs(got.b_start.mean() - want[:, 3].mean()) < 0.1 * want[:, 3].mean() + 0.5


def test_build_features_layout():
    tokens = np.arange(10, 30, dtype=np.int32)
    made = instances.Instances(np.array([0]), np.array([3]), np.array([10]), np.array([2]), np.array([True]),
                               np.array([False]))
    rows = instances.build_features(tokens, made, 10, cls_id=2, sep_id=3)
    assert rows["input_ids"][0].tolist() == [2, 10, 11, 12, 3, 20, 21, 3, 0, 0]
    assert rows["segment_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert rows["input_mask"][0].tolist() == [1] * 8 + [0, 0]
    assert rows["next_sentence_labels"].tolist() == [1] and rows["num_tokens"].tolist() == [8]
    assert all(v.dtype == np.int32 for k, v in rows.items() if k != "num_tokens")
