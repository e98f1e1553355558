"""Tagging task data: the CoNLL reader (IOB1 -> IOB2, -DOCSTART-, column count), first-piece labels with -100
elsewhere, truncation, decoding back to words, the prediction writer, and conlleval entity scores (IOB1 input)."""
import numpy as np
import pytest
from seqeval.metrics import f1_score

from bertjax.errors import BertjaxError
from bertjax.tasks import IGNORE_LABEL, metrics, tagging

# The `tokenizer` fixture's words (conftest.py), after the special tokens.
WORDS = ["eu", "rejects", "german", "call", "to", "boy", "##cott", "british", "lamb", ".", "peter", "black", "##burn"]
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""
O, B_MISC, B_ORG, B_PER, I_PER = range(5)
X = IGNORE_LABEL


@pytest.fixture
def sentences(tmp_path):
    (tmp_path / "train.txt").write_text(CONLL, encoding="utf-8")
    return tagging.read_conll(tmp_path / "train.txt")


def test_read_conll_converts_iob1_to_iob2(sentences):
    assert [s.words for s in sentences] == [("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb",
                                             "."), ("Peter", "Blackburn")]
    assert sentences[0].tags == ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O")
    assert sentences[1].tags == ("B-PER", "I-PER") and sentences[1].line == 13
    assert tagging.labels_of(sentences) == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert tagging.to_iob2(["I-LOC", "B-LOC", "I-LOC", "I-PER", "O", "I-PER"]) == [
        "B-LOC", "B-LOC", "I-LOC", "B-PER", "O", "B-PER"]


def test_reader_errors(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP I-ORG\nrejects O\n", encoding="utf-8")
    with pytest.raises(BertjaxError, match=r"bad.txt:2: 2 columns where the file has 3; write 3 whitespace"):
        tagging.read_conll(path)
    path.write_text("EU ORG\n", encoding="utf-8")
    with pytest.raises(BertjaxError, match=r"bad.txt:1: tag 'ORG' is not O, B-<type> or I-<type>"):
        tagging.read_conll(path)


def test_encode_first_piece_labels(tokenizer, sentences):
    labels = tagging.labels_of(sentences)
    enc = tagging.encode(sentences, tokenizer, 14, labels)
    a = enc.arrays
    np.testing.assert_array_equal(a["input_ids"], [[2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 3, 0, 0],
                                                   [2, 15, 16, 17, 3] + [0] * 9])
    np.testing.assert_array_equal(a["label_ids"], [
        [X, B_ORG, O, B_MISC, O, O, O, X, B_MISC, O, O, X, X, X], [X, B_PER, I_PER, X] + [X] * 10])
    np.testing.assert_array_equal(a["input_mask"][1], [1] * 5 + [0] * 9)
    assert not a["segment_ids"].any() and a["label_ids"].dtype == np.int32
    np.testing.assert_array_equal(enc.word_starts[1], [1, 2])
    # Decoding reads the first piece of each word, whatever the other positions say.
    predicted = np.where(a["label_ids"] == X, B_PER, a["label_ids"])
    assert tagging.decode(predicted, enc) == [list(s.tags) for s in sentences]


def test_truncation_predicts_o_for_cut_words(tokenizer, sentences):
    labels = tagging.labels_of(sentences)
    enc = tagging.encode(sentences, tokenizer, 6, labels)
    np.testing.assert_array_equal(enc.arrays["input_ids"], [[2, 5, 6, 7, 8, 3], [2, 15, 16, 17, 3, 0]])
    predicted = np.full((2, 6), B_MISC)
    assert tagging.decode(predicted, enc) == [["B-MISC"] * 4 + ["O"] * 5, ["B-MISC", "B-MISC"]]
    cut = tagging.encode(sentences[1:], tokenizer, 4, labels)  # "blackburn" keeps its first piece and its label
    np.testing.assert_array_equal(cut.arrays["input_ids"], [[2, 15, 16, 3]])
    np.testing.assert_array_equal(cut.arrays["label_ids"], [[X, B_PER, I_PER, X]])


def test_unknown_tag_names_file_and_line(tokenizer, sentences):
    with pytest.raises(BertjaxError, match=r"train.txt:5: tag 'B-MISC' \(word 'German'\) is not in the label list"):
        tagging.encode(sentences, tokenizer, 16, ["O", "B-ORG", "B-PER", "I-PER"])


def test_write_predictions(tmp_path, sentences):
    tagging.write_predictions(tmp_path / "pred.txt", sentences[1:], [["B-PER", "O"]])
    assert (tmp_path / "pred.txt").read_text() == "Peter B-PER B-PER\nBlackburn I-PER O\n\n"


def test_entity_scores_conlleval_iob1():
    gold_iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]]
    # Hand count (conlleval): gold chunks PER[0:2], LOC[3], LOC[4], ORG[6]; predicted PER[0:2], LOC[3:5];
    # one correct -> precision 1/2, recall 1/4, F1 1/3.
    expected = {"precision": 0.5, "recall": 0.25, "f1": pytest.approx(1 / 3)}
    assert metrics.entity_scores(gold_iob1, pred) == expected
    assert metrics.entity_scores([tagging.to_iob2(gold_iob1[0])], pred) == expected
    assert metrics.entity_scores(gold_iob1, pred)["f1"] == pytest.approx(f1_score(gold_iob1, pred))
    with pytest.raises(BertjaxError, match="one predicted tag per gold word"):
        metrics.entity_scores(gold_iob1, [["O"]])
