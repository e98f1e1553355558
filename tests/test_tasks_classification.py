"""Classification task data: GLUE readers (header names, CoLA's indices, MNLI's two dev sets, unlabelled test
files), the generic TSV/CSV/JSONL reader, encoding with `_truncate_seq_pair`, and the bad-input errors."""
import json

import numpy as np
import pytest

from bertjax.errors import BertjaxError
from bertjax.tasks import classification as clf

# The `tokenizer` fixture's words (conftest.py), after the special tokens.
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "un", "##happy", "##ly", ".", ",", "hello", "world"]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_glue_registry():
    assert set(clf.GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert clf.glue_task("STS-B").num_labels == 1 and clf.glue_task("mnli").num_labels == 3
    assert clf.glue_task("mnli").dev_files == ("dev_matched.tsv", "dev_mismatched.tsv")
    assert clf.glue_task("cola").metrics == ("matthews",) and clf.glue_task("qqp").metrics == ("accuracy", "f1")
    with pytest.raises(BertjaxError, match="unknown GLUE task 'boolq'"):
        clf.glue_task("boolq")


def test_read_glue_mrpc_cola_mnli_stsb(tmp_path):
    _write(tmp_path / "train.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                                    "1\t1\t2\tThe cat sat.\tThe dog ran.", "0\t3\t4\tHello\tworld"])
    _write(tmp_path / "test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\tthe cat\tthe dog"])
    train = clf.read_glue("mrpc", tmp_path, "train")
    assert train == [clf.Example("train-2", "The cat sat.", "The dog ran.", "1"),
                     clf.Example("train-3", "Hello", "world", "0")]
    assert clf.read_glue("mrpc", tmp_path, "test") == [clf.Example("0", "the cat", "the dog", None)]

    cola = tmp_path / "cola"
    cola.mkdir()
    _write(cola / "dev.tsv", ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tcat the sat."])
    assert [(e.text_a, e.text_b, e.label) for e in clf.read_glue("cola", cola, "dev")] == [
        ("The cat sat.", None, "1"), ("cat the sat.", None, "0")]

    mnli = tmp_path / "mnli"
    mnli.mkdir()
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    _write(mnli / "dev_mismatched.tsv", [header, "0\t1\t1\tfic\tthe cat\tthe dog\tneutral\tneutral"])
    assert clf.read_glue("mnli", mnli, "dev_mismatched")[0].label == "neutral"
    with pytest.raises(BertjaxError, match="dev_matched.tsv' does not exist"):
        clf.read_glue("mnli", mnli, "dev")

    stsb = tmp_path / "stsb"
    stsb.mkdir()
    _write(stsb / "train.tsv", ["index\tgenre\tsentence1\tsentence2\tscore", "0\tx\tthe cat\tthe dog\t3.8"])
    assert clf.read_glue("stsb", stsb)[0].label == "3.8"
    _write(stsb / "dev.tsv", ["index\tgenre\tsentence1\tsentence2\tscore", "0\tx\tthe cat\tthe dog\thigh"])
    with pytest.raises(BertjaxError, match=r"dev.tsv:2: label 'high' is not a number"):
        clf.read_glue("stsb", stsb, "dev")


def test_generic_csv_and_jsonl(tmp_path):
    csv_path = _write(tmp_path / "train.csv", ["text,label", '"the cat, the dog",pos', "hello,neg", "world,pos"])
    examples = clf.read_examples(csv_path, ["text"], "label")
    assert [e.text_a for e in examples] == ["the cat, the dog", "hello", "world"]
    assert clf.labels_of(examples) == ["neg", "pos"]
    jsonl = _write(tmp_path / "dev.jsonl", [json.dumps({"q": "the cat", "p": "sat", "y": 1.5}),
                                           json.dumps({"q": "the dog", "p": "ran", "y": 2})])
    examples = clf.read_examples(jsonl, ["q", "p"], "y", regression=True)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("the cat", "sat", "1.5"), ("the dog", "ran", "2")]
    with pytest.raises(BertjaxError, match=r"dev.jsonl:1: no field 'label'; the record has \['p', 'q', 'y'\]"):
        clf.read_examples(jsonl, ["q"], "label")


def test_reader_errors_name_file_and_line(tmp_path):
    path = _write(tmp_path / "train.tsv", ["sentence\tlabel", "the cat\t1", "the dog\t2", "\t1", "a\tb\t1"])
    with pytest.raises(BertjaxError, match=r"train.tsv:1: no column 'text'; the header has \['sentence', 'label'\]"):
        clf.read_examples(path, ["text"], "label")
    with pytest.raises(BertjaxError, match=r"train.tsv:3: label '2' is not in the label set \['0', '1'\]"):
        clf.read_examples(path, ["sentence"], "label", label_list=["0", "1"])
    with pytest.raises(BertjaxError, match=r"train.tsv:4: empty text in column 'sentence'"):
        clf.read_examples(path, ["sentence"], "label")
    _write(path, ["sentence\tlabel", "the cat\t1", "a\tb\t1"])
    with pytest.raises(BertjaxError, match=r"train.tsv:3: 3 fields where the first line has 2"):
        clf.read_examples(path, ["sentence"], "label")
    with pytest.raises(BertjaxError, match="unknown file type '.txt'"):
        clf.read_examples(_write(tmp_path / "x.txt", ["a"]), ["sentence"])


def test_encode_exact_arrays(tokenizer):
    examples = [clf.Example("0", "The cat sat.", "unhappy dog", "b"), clf.Example("1", "hello", None, "a")]
    out = clf.encode(examples, tokenizer, 12, ["a", "b"])
    np.testing.assert_array_equal(out["input_ids"], [[2, 5, 6, 7, 15, 3, 12, 13, 10, 3, 0, 0],
                                                     [2, 17, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out["input_mask"], [[1] * 10 + [0] * 2, [1] * 3 + [0] * 9])
    np.testing.assert_array_equal(out["segment_ids"], [[0] * 6 + [1] * 4 + [0] * 2, [0] * 12])
    np.testing.assert_array_equal(out["labels"], [1, 0])
    assert all(a.dtype == np.int32 for a in out.values())
    regression = clf.encode([clf.Example("0", "the", "cat", "3.5"), clf.Example("1", "the", None)], tokenizer, 8,
                            None)
    assert regression["labels"].dtype == np.float32 and regression["labels"][0] == 3.5
    assert np.isnan(regression["labels"][1])
    with pytest.raises(BertjaxError, match="example 0: label 'c' is not in the label list"):
        clf.encode([clf.Example("0", "the", None, "c")], tokenizer, 8, ["a", "b"])


def test_truncation_trims_the_longer_text(tokenizer):
    a, b = list("abcd"), list("xyz")
    clf.truncate_seq_pair(a, b, 5)
    assert (a, b) == (list("abc"), list("xy"))  # a (longer) first, then b on the tie
    out = clf.encode([clf.Example("0", "The cat sat.", "unhappy dog", "a")], tokenizer, 8, ["a"])
    np.testing.assert_array_equal(out["input_ids"], [[2, 5, 6, 7, 3, 12, 13, 3]])
    single = clf.encode([clf.Example("0", "the cat sat on the mat", None, "a")], tokenizer, 5, ["a"])
    np.testing.assert_array_equal(single["input_ids"], [[2, 5, 6, 7, 3]])


def test_glue_metrics():
    assert clf.glue_metrics("mrpc", [1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 0.75, "f1": 0.8}
    assert set(clf.glue_metrics("stsb", [0.1, 0.5, 0.9], [0.0, 1.0, 2.0])) == {"pearson", "spearman"}
