"""Task metrics on hand-computed cases (and against sklearn where it is installed): GLUE metrics and SQuAD exact
match / F1 with the official normalisation and v2.0 no-answer semantics."""
import numpy as np
import pytest

from bertjax.errors import BertjaxError
from bertjax.tasks import metrics


def test_classification_metrics_by_hand():
    assert metrics.accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert metrics.f1_binary([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(0.8)  # P 2/3, R 1
    assert metrics.f1_binary([0, 0], [1, 0]) == 0.0
    # TP 2, FP 1, TN 2, FN 0: (2*2 - 1*0) / sqrt(3*2*3*2) = 2/3
    assert metrics.matthews_corrcoef([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 3)
    assert metrics.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # undefined: constant predictions
    assert metrics.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert metrics.spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert metrics.spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)
    with pytest.raises(BertjaxError, match="2 predictions for 3 labels"):
        metrics.accuracy([1, 0], [1, 0, 1])


def test_classification_metrics_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert metrics.matthews_corrcoef(p, y) == pytest.approx(sk.matthews_corrcoef(y, p))
    assert metrics.f1_binary(p, y) == pytest.approx(sk.f1_score(y, p))
    y3, p3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert metrics.matthews_corrcoef(p3, y3) == pytest.approx(sk.matthews_corrcoef(y3, p3))


def test_squad_normalisation_exact_and_f1():
    assert metrics.normalize_answer("The  Cat, sat!\tAn apple") == "cat sat apple"
    assert metrics.squad_exact("the cat", ["A cat", "dog"]) == 1.0
    assert metrics.squad_exact("cat.", ["dog"]) == 0.0
    # pred {cat, sat} vs gold {cat, on, mat}: P 1/2, R 1/3 -> F1 0.4; the best gold counts.
    assert metrics.squad_f1("the cat sat", ["cat on mat"]) == pytest.approx(0.4)
    assert metrics.squad_f1("the cat sat", ["cat on mat", "cat sat"]) == 1.0
    assert metrics.squad_f1("cat cat", ["cat"]) == pytest.approx(2 * 0.5 / 1.5)  # multiset overlap
    # v2.0: no gold answer (or golds that normalise to nothing) means "no answer".
    assert metrics.squad_exact("", []) == 1.0 and metrics.squad_f1("", []) == 1.0
    assert metrics.squad_f1("cat", []) == 0.0 and metrics.squad_exact("", ["the"]) == 1.0
    assert metrics.squad_f1("", ["cat"]) == 0.0


def test_squad_scores():
    predictions = {"q1": "the cat", "q2": "", "q3": "dog"}
    golds = {"q1": ["cat"], "q2": [], "q3": ["a dog", "cat"], "q4": ["mat"]}  # q4 unanswered: 0
    scores = metrics.squad_scores(predictions, golds)
    assert scores == pytest.approx({"exact": 75.0, "f1": 75.0, "total": 4, "HasAns_exact": 200 / 3,
                                    "HasAns_f1": 200 / 3, "HasAns_total": 3, "NoAns_exact": 100.0,
                                    "NoAns_f1": 100.0, "NoAns_total": 1})
