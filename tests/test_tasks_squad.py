"""SQuAD data: the v1.1/v2.0 reader, windows with doc_stride (answer in a later window, answer cut by a window
boundary, max context), predictions from synthetic logits (n-best, max_answer_length, v2 null threshold,
de-tokenization back to the original text) and the answer-mismatch error."""
import json

import numpy as np
import pytest

from bertjax.errors import BertjaxError
from bertjax.tasks import squad

# The `tokenizer` fixture's words (conftest.py), after the special tokens.
WORDS = ["john", "smith", "lives", "in", ".", "the", "cat", "sat", "on", "mat", "where", "is", "?", "who", "par",
         "##is"]
CONTEXT = "John Smith lives in Paris. The cat sat on the mat."


def _qa(qid, question, text=None, start=None, impossible=False, more=()):
    answers = [] if text is None else [{"text": text, "answer_start": start}, *more]
    return {"id": qid, "question": question, "answers": answers, "is_impossible": impossible}


def _write_squad(path, qas):
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}), encoding="utf-8")
    return path


@pytest.fixture
def train_file(tmp_path):
    return _write_squad(tmp_path / "train.json", [_qa("q1", "where is the cat?", "the mat", 42),
                                                  _qa("q2", "who is the cat?", "cat sat on the mat", 31),
                                                  _qa("q3", "who is john?", impossible=True)])


def test_reader(train_file, tmp_path):
    examples = squad.read_squad_examples(train_file, is_training=True, version_2=True)
    assert examples[0].doc_tokens == ["John", "Smith", "lives", "in", "Paris.", "The", "cat", "sat", "on", "the",
                                      "mat."]
    assert [(e.start_position, e.end_position, e.is_impossible) for e in examples] == [(9, 10, False),
                                                                                       (6, 10, False), (-1, -1, True)]
    dev = _write_squad(tmp_path / "dev.json", [_qa("d1", "where?", "Paris", 20, more=[{"text": "in Paris",
                                                                                        "answer_start": 17}])])
    assert squad.gold_answers(squad.read_squad_examples(dev, is_training=False)) == {"d1": ["Paris", "in Paris"]}
    assert squad.gold_answers(examples)["q3"] == []


def test_reader_errors(tmp_path):
    bad = _write_squad(tmp_path / "train.json", [_qa("q7", "where?", "Paris", 21)])
    with pytest.raises(BertjaxError, match=r"train.json: question 'q7': context at answer_start=21 reads 'aris.', "
                                           r"not the answer 'Paris'"):
        squad.read_squad_examples(bad, is_training=True)
    assert squad.read_squad_examples(bad, is_training=True, skip_mismatched=True) == []
    assert len(squad.read_squad_examples(bad, is_training=False)) == 1
    two = _write_squad(tmp_path / "two.json", [_qa("q8", "where?", "Paris", 20, more=[{"text": "in",
                                                                                        "answer_start": 17}])])
    with pytest.raises(BertjaxError, match="question 'q8' has 2 answers"):
        squad.read_squad_examples(two, is_training=True)


def _features(train_file, tokenizer):
    examples = squad.read_squad_examples(train_file, is_training=True, version_2=True)
    return examples, squad.convert_examples_to_features(examples, tokenizer, max_seq_length=16, doc_stride=4,
                                                        is_training=True)


def test_windows(train_file, tokenizer):
    examples, features = _features(train_file, tokenizer)
    # 14 doc pieces ("Paris." is par ##is .), 8 per window after a 5-piece query, stride 4: pieces 0-7, 4-11, 8-13.
    q1 = [f for f in features if f.example_index == 0]
    assert [f.tokens[7:-1] for f in q1] == [["john", "smith", "lives", "in", "par", "##is", ".", "the"],
                                            ["par", "##is", ".", "the", "cat", "sat", "on", "the"],
                                            ["cat", "sat", "on", "the", "mat", "."]]
    assert q1[1].tokens[:7] == ["[CLS]", "where", "is", "the", "cat", "?", "[SEP]"]
    # "the mat" (pieces 11-12): not in window 0, cut by the end of window 1, inside window 2 (improved: no ".").
    assert [(f.start_position, f.end_position) for f in q1] == [(0, 0), (0, 0), (10, 11)]
    assert q1[1].token_to_orig_map[7] == 4 and q1[1].token_to_orig_map[8] == 4 and q1[2].token_to_orig_map[11] == 10
    assert (q1[1].token_is_max_context[14], q1[2].token_is_max_context[10]) == (False, True)
    np.testing.assert_array_equal(q1[2].segment_ids, [0] * 7 + [1] * 7 + [0] * 2)
    np.testing.assert_array_equal(q1[2].input_ids, [2, 15, 16, 10, 11, 17, 3, 11, 12, 13, 10, 14, 9, 3, 0, 0])
    np.testing.assert_array_equal(q1[2].input_mask, [1] * 14 + [0] * 2)
    q2 = [f for f in features if f.example_index == 1]  # "cat sat on the mat": pieces 8-12
    assert [(f.start_position, f.end_position) for f in q2] == [(0, 0), (0, 0), (7, 11)]
    q3 = [f for f in features if f.example_index == 2]
    assert all((f.start_position, f.end_position, f.is_impossible) == (0, 0, True) for f in q3)
    arrays = squad.features_to_arrays(features)
    assert arrays["input_ids"].shape == (9, 16) and arrays["start_positions"].tolist()[:3] == [0, 0, 10]


def _logits(n_features, picks, null=-10.0):
    """[F, T] start and end logits at -10, with chosen (row, start, end, value) pairs and position 0 at `null`."""
    starts, ends = np.full((n_features, 16), -10.0), np.full((n_features, 16), -10.0)
    starts[:, 0] = ends[:, 0] = null
    for row, s, e, value in picks:
        starts[row, s], ends[row, e] = value, value
    return starts, ends


def test_predict_nbest(train_file, tokenizer):
    examples, features = _features(train_file, tokenizer)
    examples, features = examples[:1], features[:3]
    picks = [(2, 10, 11, 5.0),  # "the mat" in its max-context window
             (1, 13, 14, 9.0),  # "on the" in a window where "on" is not max context: skipped
             (0, 7, 14, 6.0)]  # "john ... the": 8 pieces, longer than max_answer_length=5
    starts, ends = _logits(3, picks)
    ends[2, 12] = 4.0  # "the mat ." scores 9
    out = squad.predict(starts, ends, features, examples, n_best_size=3, max_answer_length=5)
    assert out.answers == {"q1": "the mat"} and out.null_odds == {}
    assert [n["text"] for n in out.nbest["q1"]] == ["the mat", "the mat."]
    assert [n["probability"] for n in out.nbest["q1"]] == pytest.approx([1 / (1 + np.e ** -1), 1 / (1 + np.e)])
    long = squad.predict(starts, ends, features, examples, max_answer_length=30)
    assert long.answers == {"q1": "John Smith lives in Paris. The"}  # original casing, "par ##is ." -> "Paris."


def test_predict_version_2_null_threshold(train_file, tokenizer):
    examples, features = _features(train_file, tokenizer)
    examples, features = examples[:1], features[:3]
    starts, ends = _logits(3, [(2, 10, 11, 5.0)], null=6.0)  # null score 12 vs best span 10
    out = squad.predict(starts, ends, features, examples, version_2=True)
    assert out.answers == {"q1": ""} and out.null_odds == {"q1": pytest.approx(2.0)}
    assert squad.predict(starts, ends, features, examples, version_2=True,
                         null_score_diff_threshold=3.0).answers == {"q1": "the mat"}
    assert "" in [n["text"] for n in out.nbest["q1"]]


def test_get_final_text():
    assert squad.get_final_text("the cat", "The cat.") == "The cat"
    assert squad.get_final_text("paris", "(Paris)") == "Paris"
    assert squad.get_final_text("london", "Paris.") == "Paris."  # not found: the whole original text
