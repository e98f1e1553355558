"""Task metrics: accuracy, binary F1, Matthews correlation, Pearson/Spearman (GLUE); macro F1, STS binary F1, NER
entity/character macro F1 and MRC exact match and ROUGE-W (KLUE, as KLUE-baseline's klue_baseline/metrics/
functional.py and utils.py, in [0, 1] rather than percent); entity-level precision/recall/F1 with conlleval semantics
(seqeval); SQuAD exact match and F1 (official v1.1/v2.0 scripts).

Inputs are plain sequences or numpy arrays of predictions and labels; results are Python floats.
"""
from __future__ import annotations

import collections
import difflib
import re
import string
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from bertjax.errors import BertjaxError


def _pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    """predictions, labels as 1-D arrays of equal length (BertjaxError otherwise)."""
    p, y = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise BertjaxError(f"{len(p)} predictions for {len(y)} labels; pass one prediction per example")
    return p, y


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the label (0.0 for no examples)."""
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y)) if len(y) else 0.0


def f1_binary(predictions, labels, positive=1) -> float:
    """F1 of the `positive` class (MRPC, QQP); 0.0 when there is no true positive."""
    p, y = _pair(predictions, labels)
    tp = int(np.sum((p == positive) & (y == positive)))
    if tp == 0:
        return 0.0
    precision, recall = tp / int(np.sum(p == positive)), tp / int(np.sum(y == positive))
    return 2 * precision * recall / (precision + recall)


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation coefficient (CoLA), multi-class form (as sklearn); 0.0 when undefined."""
    p, y = _pair(predictions, labels)
    classes, codes = np.unique(np.concatenate([y, p]), return_inverse=True)
    confusion = np.zeros((len(classes), len(classes)), np.float64)
    np.add.at(confusion, (codes[:len(y)], codes[len(y):]), 1)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_yp = correct * n - t_sum @ p_sum
    cov_pp, cov_yy = n * n - p_sum @ p_sum, n * n - t_sum @ t_sum
    return 0.0 if cov_pp * cov_yy == 0 else float(cov_yp / np.sqrt(cov_pp * cov_yy))


def pearson(predictions, labels) -> float:
    """Pearson correlation (STS-B), scipy.stats.pearsonr."""
    p, y = _pair(predictions, labels)
    return float(stats.pearsonr(p.astype(np.float64), y.astype(np.float64))[0])


def spearman(predictions, labels) -> float:
    """Spearman rank correlation (STS-B), scipy.stats.spearmanr."""
    p, y = _pair(predictions, labels)
    return float(stats.spearmanr(p.astype(np.float64), y.astype(np.float64))[0])


def _per_class_f1(p: np.ndarray, y: np.ndarray, classes, zero_division: float) -> np.ndarray:
    """F1 = 2 TP / (2 TP + FP + FN) of each class; `zero_division` for a class in neither p nor y."""
    f1 = []
    for c in classes:
        tp, fp, fn = np.sum((p == c) & (y == c)), np.sum((p == c) & (y != c)), np.sum((p != c) & (y == c))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else zero_division)
    return np.array(f1, np.float64)


def macro_f1(predictions, labels) -> float:
    """Unweighted mean of the per-class F1 over the classes in the labels or the predictions (KLUE-TC/YNAT;
    sklearn f1_score(average="macro")); 0.0 for no examples."""
    p, y = _pair(predictions, labels)
    classes = np.unique(np.concatenate([y, p]))
    return float(_per_class_f1(p, y, classes, 0.0).mean()) if len(classes) else 0.0


STS_THRESHOLD = 3.0  # KLUE-STS: a pair is "similar" (binary-label 1) when its real-label is >= 3.0


def sts_f1(predictions, labels) -> float:
    """KLUE-STS F1: scores (predicted and real-label) binarised at >= 3.0, F1 of the similar class. In the KLUE v1.1
    files binary-label is exactly real-label >= 3.0, so this is the F1 against binary-label."""
    p, y = _pair(predictions, labels)
    return f1_binary((p >= STS_THRESHOLD).astype(np.int32), (y >= STS_THRESHOLD).astype(np.int32))


METRICS = {"accuracy": accuracy, "f1": f1_binary, "matthews": matthews_corrcoef, "pearson": pearson,
           "spearman": spearman, "macro_f1": macro_f1, "sts_f1": sts_f1}


def entity_scores(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 over sentences of tags, with conlleval semantics: seqeval's default
    mode (mode=None), where an I-X after O or after another type starts an entity, so IOB1 and IOB2 tags of the
    same chunks score the same."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold, pred = [list(s) for s in gold_tags], [list(s) for s in predicted_tags]
    if len(gold) != len(pred) or any(len(g) != len(q) for g, q in zip(gold, pred)):
        raise BertjaxError("gold and predicted tags differ in number of sentences or words; pass one predicted "
                           "tag per gold word (tagging.decode aligns predictions with the original words)")
    return {"precision": float(precision_score(gold, pred)), "recall": float(recall_score(gold, pred)),
            "f1": float(f1_score(gold, pred))}


def klue_ner_scores(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]],
                    label_list: Sequence[str]) -> dict[str, float]:
    """KLUE-NER's two metrics over sentences of character tags (IOB2): "entity_macro_f1", the mean over entity types
    of the entity-level F1 (seqeval average="macro", mode="strict", scheme=IOB2: an entity counts only when its B-
    and I- tags are exact), and "char_macro_f1", the mean over every tag of `label_list` ("O" included) of the
    character-level F1, 1.0 for a tag that is in neither gold nor predictions (sklearn average="macro",
    labels=label_list, zero_division=1)."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold, pred = [list(s) for s in gold_tags], [list(s) for s in predicted_tags]
    if len(gold) != len(pred) or any(len(g) != len(q) for g, q in zip(gold, pred)):
        raise BertjaxError("gold and predicted tags differ in number of sentences or characters; pass one predicted "
                           "tag per gold character (tagging.decode aligns predictions with the characters)")
    flat_gold = np.array([t for s in gold for t in s], dtype=object)
    flat_pred = np.array([t for s in pred for t in s], dtype=object)
    char_f1 = _per_class_f1(flat_pred, flat_gold, list(label_list), 1.0)
    return {"entity_macro_f1": float(f1_score(gold, pred, average="macro", mode="strict", scheme=IOB2)),
            "char_macro_f1": float(char_f1.mean()) if len(char_f1) else 0.0}


# --- SQuAD (official evaluate-v1.1.py / evaluate-v2.0.py semantics) ---

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official scripts)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_f1(prediction: str, gold: str) -> float:
    """Token F1 of normalised answers; two empty answers score 1, one empty answer 0 (v2.0)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _golds(gold_answers: Sequence[str]) -> list[str]:
    """Gold answers that normalise to something; none left means "no answer" ([""]), as evaluate-v2.0.py."""
    return [a for a in gold_answers if normalize_answer(a)] or [""]


def squad_exact(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer (max over golds), else 0.0."""
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in _golds(gold_answers))


def squad_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Best token F1 of the prediction against the gold answers."""
    return max(_answer_f1(prediction, g) for g in _golds(gold_answers))


def squad_scores(predictions: Mapping[str, str], gold_answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{"exact", "f1"} in percent over all questions of `gold_answers` (qid -> answer texts, [] = no answer), plus
    HasAns_/NoAns_ splits and "total". A question without a prediction scores 0 (as evaluate-v1.1.py)."""
    exact, f1, has_answer = [], [], []
    for qid, golds in gold_answers.items():
        prediction = predictions.get(qid)
        has_answer.append(bool(_golds(golds)[0]))
        exact.append(0.0 if prediction is None else squad_exact(prediction, golds))
        f1.append(0.0 if prediction is None else squad_f1(prediction, golds))
    exact_a, f1_a, has = np.array(exact), np.array(f1), np.array(has_answer, bool)
    out = {"exact": 100.0 * float(exact_a.mean()) if len(exact) else 0.0,
           "f1": 100.0 * float(f1_a.mean()) if len(f1) else 0.0, "total": len(exact)}
    for name, keep in (("HasAns", has), ("NoAns", ~has)):
        if keep.any():
            out.update({f"{name}_exact": 100.0 * float(exact_a[keep].mean()),
                        f"{name}_f1": 100.0 * float(f1_a[keep].mean()), f"{name}_total": int(keep.sum())})
    return out


# --- KLUE-MRC (KLUE-baseline klue_baseline/metrics/utils.py and functional.py, commit 8a03c94) ---

# KLUE-baseline's pattern r"[\'\"《》<>〈〉]\(\)\‘\’" closes its bracket early: it matches one of '"《》<>〈〉 followed by
# the four characters ()‘’, not each quote or bracket on its own. Kept as published, since it defines the scores.
_KLUE_MRC_REPLACED = re.compile("[" + re.escape("'\"《》<>〈〉") + "]" + re.escape("()‘’"))


def normalize_klue_mrc_answer(text: str) -> str:
    """KLUE-MRC's normalisation: lower-case, the pattern above replaced by a space, ASCII punctuation
    (string.punctuation) dropped, whitespace runs collapsed to one space. Characters, not words: no article is
    dropped and Korean quotation marks (《》, ‘’, “”) stay."""
    text = _KLUE_MRC_REPLACED.sub(" ", text.lower())
    return " ".join("".join(ch for ch in text if ch not in _PUNCTUATION).split())


def klue_rouge_w(prediction: str, gold: str) -> float:
    """KLUE-MRC's "ROUGE-W" of two normalised answers: the F1 (beta 1) of the longest common run of consecutive
    characters (LCCS), precision = run / len(prediction), recall = run / len(gold); an empty gold scores 1 for an
    empty prediction and 0 otherwise. Not Lin's weighted LCS despite the name (the KLUE paper calls it "LCCS-based
    F1"). The run is difflib.SequenceMatcher(None, prediction, gold).find_longest_match, as KLUE-baseline finds it:
    for a gold of 200 characters or more, difflib's autojunk keeps its characters that occur more than
    len(gold) // 100 + 1 times from seeding the run (they can only extend it), so the run can be shorter than the
    true longest common substring there, and the score is KLUE-baseline's all the same."""
    if not gold:
        return float(prediction == gold)
    run = difflib.SequenceMatcher(None, prediction, gold).find_longest_match(0, len(prediction), 0, len(gold)).size
    if run == 0:
        return 0.0
    precision, recall = run / len(prediction), run / len(gold)
    return 2 * precision * recall / (precision + recall)


def klue_mrc_scores(predictions: Mapping[str, str], gold_answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "rouge_w"}: KLUE-MRC's scores in [0, 1], the mean over all questions of `gold_answers`
    (qid -> answer texts, [] = unanswerable) of the best score against any gold answer. Prediction and golds are
    normalised (`normalize_klue_mrc_answer`); an unanswerable question's only gold is "", so only an empty prediction
    scores there (1 and 1). Unlike SQuAD's script, a gold that normalises to "" is kept as "". KLUE-baseline averages
    over question types 1-3 after grouping by them, which is the same mean. A question without a prediction scores 0
    (KLUE-baseline's evaluate_for_klue_mrc leaves it out; its training-time metric needs every one)."""
    exact, rouge = [], []
    for qid, golds in gold_answers.items():
        if qid not in predictions:
            exact.append(0.0)
            rouge.append(0.0)
            continue
        prediction = normalize_klue_mrc_answer(predictions[qid])
        normalized = [normalize_klue_mrc_answer(g) for g in golds] or [""]
        exact.append(max(float(prediction == g) for g in normalized))
        rouge.append(max(klue_rouge_w(prediction, g) for g in normalized))
    return {"exact_match": float(np.mean(exact)) if exact else 0.0,
            "rouge_w": float(np.mean(rouge)) if rouge else 0.0}
