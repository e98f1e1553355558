"""Korean tasks: the NSMC and KLUE v1.1 readers on small made-up files in the official formats
(tests/fixtures/korean), their errors (file and line or record), the KLUE metrics against scikit-learn / seqeval as
KLUE-baseline computes them, and fine-tuning Tasks built from the fixtures for nsmc, klue_ner and klue_mrc. KLUE-MRC's
EM and ROUGE-W are checked against a transcription of KLUE-baseline's functions (the test reference below), and
klue_mrc is fine-tuned end to end on its fixture."""
import json
import pathlib
import random
import re
import string
import types
from difflib import SequenceMatcher

import numpy as np
import pytest
import sklearn.metrics
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2

from _train_helpers import load_config
from bertjax.errors import BertjaxError
from bertjax.tasks import IGNORE_LABEL, classification, korean, metrics, squad

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "korean"
TASKS = korean.KOREAN_TASKS


def test_nsmc_reader_keeps_empty_documents():
    train = korean.read_korean(TASKS["nsmc"], FIXTURES, "train")
    dev = korean.read_korean(TASKS["nsmc"], FIXTURES, "dev")  # ratings_test.txt
    assert [e.guid for e in train] == ["9976970", "3819312", "10265843", "9045019", "6483659", "5403919"]
    assert [e.label for e in train] == ["0", "1", "0", "0", "1", "1"]
    assert train[0].text_a == "아 더빙.. 진짜 짜증나네요 목소리" and train[0].text_b is None
    assert train[2].text_a == "" and dev[1].text_a == ""
    assert [e.guid for e in dev] == ["6270596", "9274899", "8544678"]


@pytest.mark.parametrize("name, n_train, n_dev, first", [
    ("klue_tc", 5, 2, ("ynat-v1_train_00000", "유튜브 내달 2일까지 크리에이터 지원 공간 운영", None, "생활문화")),
    ("klue_sts", 3, 2, ("klue-sts-v1_train_00000", "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.",
                        "숙박시설의 위치는 쉽게 찾을 수 있고 한국의 대표적인 반지하 숙박시설입니다.", "3.714285714285714")),
    ("klue_nli", 3, 2, ("klue-nli-v1_train_00000", "힛걸 진심 최고다 그 어떤 히어로보다 멋지다", "힛걸 진심 최고로 멋지다.",
                        "entailment")),
])
def test_klue_json_readers(name, n_train, n_dev, first):
    train = korean.read_korean(TASKS[name], FIXTURES, "train")
    dev = korean.read_korean(TASKS[name], FIXTURES, "dev")
    assert (len(train), len(dev)) == (n_train, n_dev)
    e = train[0]
    assert (e.guid, e.text_a, e.text_b, e.label) == first
    assert dev[0].guid.startswith(("ynat-v1_dev", "klue-sts-v1_dev", "klue-nli-v1_dev"))
    with pytest.raises(BertjaxError, match="no public labelled 'test' split"):
        korean.read_korean(TASKS[name], FIXTURES, "test")


def test_klue_ner_reader():
    sentences = korean.read_klue_ner(FIXTURES / "klue-ner-v1.1_train.tsv")
    assert len(sentences) == 3
    first = sentences[0]
    assert first.guid == "klue-ner-v1_train_00000-wikitree"  # the file's header comments are skipped
    assert "".join(first.words) == "경찰은박씨의딸"  # spaces dropped
    assert first.tags == ("B-OG", "I-OG", "O", "B-PS", "O", "O", "O")
    assert first.line == 7
    assert [s.guid for s in sentences[1:]] == ["klue-ner-v1_train_00001-nsmc", "klue-ner-v1_train_00002-policy"]
    assert sentences[2].words == ("1", "6", "명") and sentences[2].tags == ("B-QT", "I-QT", "I-QT")


def test_klue_ner_lone_tab_separates_sentences(tmp_path):
    path = tmp_path / "klue-ner-v1.1_train.tsv"
    path.write_text("## a\t<가:PS>\n가\tB-PS\n\t\n## b\t나\n나\tO\n \tO\n다\tO\n", encoding="utf-8")
    sentences = korean.read_klue_ner(path)
    assert [(s.guid, s.words, s.tags) for s in sentences] == [("a", ("가",), ("B-PS",)),
                                                              ("b", ("나", "다"), ("O", "O"))]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("records, match", [
    ({"guid": "x"}, r"\.json: a JSON dict, not an array"),
    ([{"guid": "g0", "sentence1": "가", "sentence2": "나", "labels": {"real-label": 1.0}},
      {"guid": "g1", "sentence1": "가", "labels": {"real-label": 1.0}}],
     r"\.json: record 1 \(guid 'g1'\) has no field 'sentence2'"),
    ([{"guid": "g0", "sentence1": "가", "sentence2": "나", "labels": {"label": 1.0}}],
     r"record 0 \(guid 'g0'\) has no field 'labels.real-label'"),
    ([{"guid": "g0", "sentence1": "가", "sentence2": "나", "labels": {"real-label": "high"}}],
     r"record 0 \(guid 'g0'\): labels.real-label 'high' is not a number"),
])
def test_klue_json_errors(tmp_path, records, match):
    path = _write(tmp_path, "klue-sts-v1.1_train.json", json.dumps(records, ensure_ascii=False))
    with pytest.raises(BertjaxError, match=match) as error:
        korean.read_klue_json(path, TASKS["klue_sts"])
    assert "\n" not in str(error.value)


def test_klue_label_and_syntax_errors(tmp_path):
    path = _write(tmp_path, "klue-nli-v1.1_dev.json", json.dumps([{"guid": "n0", "premise": "가", "hypothesis": "나",
                                                                  "gold_label": "unknown"}]))
    with pytest.raises(BertjaxError, match=r"record 0 \(guid 'n0'\): label 'unknown' is not one of"):
        korean.read_klue_json(path, TASKS["klue_nli"])
    path = _write(tmp_path, "bad.json", "[\n{\"guid\": 1,\n")
    with pytest.raises(BertjaxError, match=r"bad\.json:3: not JSON"):
        korean.read_klue_json(path, TASKS["klue_nli"])


def test_line_errors(tmp_path):
    path = _write(tmp_path, "klue-ner-v1.1_dev.tsv", "## g\t가나\n가\tB-PS\n나 O\n")
    with pytest.raises(BertjaxError, match=r"klue-ner-v1\.1_dev\.tsv:3: '나 O' is not `character<TAB>tag`"):
        korean.read_klue_ner(path)
    path = _write(tmp_path, "ner.tsv", "가\tB-XX\n")
    with pytest.raises(BertjaxError, match=r"ner\.tsv:1: tag 'B-XX' is not one of"):
        korean.read_klue_ner(path)
    path = _write(tmp_path, "ratings_train.txt", "id\tdocument\tlabel\n1\t좋다\t1\n2\t싫다\tneg\n")
    with pytest.raises(BertjaxError, match=r"ratings_train\.txt:3: label 'neg'"):
        korean.read_nsmc(path)
    path = _write(tmp_path, "ratings_test.txt", "id\ttext\tlabel\n")
    with pytest.raises(BertjaxError, match=r"ratings_test\.txt:1: header"):
        korean.read_nsmc(path)
    with pytest.raises(BertjaxError, match="does not exist"):
        korean.read_nsmc(tmp_path / "missing.txt")


def test_macro_f1_and_sts_f1_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels, predictions = rng.integers(0, 7, 50), rng.integers(0, 6, 50)
        assert metrics.macro_f1(predictions, labels) == pytest.approx(
            sklearn.metrics.f1_score(labels, predictions, average="macro"))
        gold, scores = rng.uniform(0, 5, 40), rng.uniform(0, 5, 40)
        scores[:3] = 3.0  # the threshold itself counts as similar
        assert metrics.sts_f1(scores, gold) == pytest.approx(sklearn.metrics.f1_score(
            (gold >= 3).astype(int), (scores >= 3).astype(int), average="binary"))
    assert classification.glue_metrics(TASKS["klue_sts"], [4.0, 1.0, 3.5], [4.5, 0.5, 2.0]) == pytest.approx(
        {"pearson": metrics.pearson([4.0, 1.0, 3.5], [4.5, 0.5, 2.0]), "sts_f1": 2 / 3})


def _random_tags(rng, n):
    """Mostly valid IOB2 character tags of one sentence, with some stray I- tags."""
    tags = []
    for _ in range(n):
        kind = rng.choice(korean.NER_TYPES)
        previous = tags[-1] if tags else "O"
        roll = rng.random()
        if roll < 0.5:
            tags.append("O")
        elif roll < 0.7:
            tags.append(f"B-{kind}")
        elif previous != "O" and roll < 0.95:
            tags.append("I-" + previous[2:])
        else:
            tags.append(f"I-{kind}")
    return tags


def test_klue_ner_scores_match_klue_baseline_formula():
    """KLUE-baseline flattens every sentence's characters between [CLS] and [SEP] (gold O) into one sequence:
    entity F1 = seqeval f1_score([gold], [pred], average="macro", mode="strict", scheme=IOB2), character F1 =
    sklearn f1_score(labels=every label, average="macro", zero_division=1)."""
    rng = random.Random(0)
    labels = list(korean.KLUE_NER_LABELS)
    for _ in range(10):
        gold = [_random_tags(rng, rng.randint(1, 12)) for _ in range(8)]
        pred = [[t if rng.random() < 0.7 else rng.choice(labels) for t in sentence] for sentence in gold]
        ours = metrics.klue_ner_scores(gold, pred, labels)
        flat_gold = [t for sentence in gold for t in ["O", *sentence, "O"]]
        flat_pred = [t for sentence in pred for t in ["O", *sentence, "O"]]
        assert ours["entity_macro_f1"] == pytest.approx(
            seqeval_f1([flat_gold], [flat_pred], average="macro", mode="strict", scheme=IOB2))
        ids = {label: i for i, label in enumerate(labels)}
        chars_gold = [ids[t] for sentence in gold for t in sentence]
        chars_pred = [ids[t] for sentence in pred for t in sentence]
        assert ours["char_macro_f1"] == pytest.approx(sklearn.metrics.f1_score(
            chars_gold, chars_pred, labels=list(range(len(labels))), average="macro", zero_division=1))
    perfect = metrics.klue_ner_scores([["B-PS", "I-PS", "O"]], [["B-PS", "I-PS", "O"]], labels)
    assert perfect == {"entity_macro_f1": 1.0, "char_macro_f1": 1.0}


@pytest.fixture
def korean_tokenizer(tmp_path):
    from bertjax.data.tokenizer import BertTokenizer  # noqa: PLC0415
    from bertjax.data.vocab_files import SPECIAL_TOKENS  # noqa: PLC0415

    return BertTokenizer([*SPECIAL_TOKENS, "경", "찰", "은", "박", "씨", "의", "딸", "좋", "았", "다"],
                         do_lower_case=True, strip_accents=False)


def _prepare(config_name, task, tmp_path, tokenizer):
    from bertjax import finetune  # noqa: PLC0415

    config = load_config(config_name)
    config.task, config.data.dir = task, str(FIXTURES)
    config.data.max_seq_length, config.train.batch_size, config.eval.batch_size = 16, 2, 4
    return finetune.prepare(config, str(tmp_path / "workdir"), tokenizer)


def test_finetune_nsmc_task(tmp_path, korean_tokenizer):
    task = _prepare("finetune_glue", "nsmc", tmp_path, korean_tokenizer)
    assert (task.labels, task.main_metric, task.num_train_examples, task.eval_split) == (["0", "1"], "accuracy", 6,
                                                                                        "dev")
    batch = next(task.data.eval_iterator())
    assert batch["example_weights"].tolist() == [1, 1, 1, 0]
    assert batch["labels"][:3].tolist() == [1, 0, 0] and batch["input_mask"][1].sum() == 2  # empty: [CLS] [SEP]
    assert task.objective.scorer(np.array([1, 1, 0]), np.array([1, 0, 0])) == {"accuracy": pytest.approx(2 / 3)}


def test_finetune_klue_ner_task(tmp_path, korean_tokenizer):
    task = _prepare("finetune_ner", "klue_ner", tmp_path, korean_tokenizer)
    assert (task.labels, task.main_metric, task.num_train_examples) == (list(korean.KLUE_NER_LABELS),
                                                                         "entity_macro_f1", 3)
    batch = next(task.data.eval_iterator())
    gold = batch["label_ids"][:2]
    assert (gold != IGNORE_LABEL).sum(axis=1).tolist() == [4, 7]  # one first piece per non-space character
    assert [task.labels[i] for i in gold[0][gold[0] != IGNORE_LABEL]] == ["B-DT", "I-DT", "B-PS", "O"]
    assert task.objective.scorer(np.where(gold == IGNORE_LABEL, 0, gold)) == {"entity_macro_f1": 1.0,
                                                                                "char_macro_f1": 1.0}
    missed = np.where(gold == IGNORE_LABEL, 0, gold)
    missed[0] = 0  # every tag of the first sentence predicted O: DT missed, PS found once of twice
    scores = task.objective.scorer(missed)
    assert scores["entity_macro_f1"] == pytest.approx((0.0 + 2 / 3 + 1.0) / 3)


# --- KLUE-MRC ---------------------------------------------------------------------------------------------------

# Test reference: a transcription of KLUE-baseline's KLUE-MRC metrics (github.com/KLUE-benchmark/KLUE-baseline,
# Apache-2.0, commit 8a03c9447e4c225e806877a84242aea11258c790): klue_baseline/metrics/utils.py
# (normalize_answer_for_klue_mrc, rouge_w_score_for_klue_mrc, compute_em_and_rouge_w_score_for_klue_mrc) and
# klue_baseline/metrics/functional.py (klue_mrc_em, klue_mrc_rouge_w; per-question-type logging left out). Only the
# tests use it: what bertjax.tasks.metrics.klue_mrc_scores is checked against.
_REF_NORMALIZE_CHAR_PATTERN = re.compile(r"[\'\"《》<>〈〉]\(\)\‘\’")
_REF_PUNCTUATION_SET = set(string.punctuation)


def _ref_normalize_answer_for_klue_mrc(answer):
    answer = _REF_NORMALIZE_CHAR_PATTERN.sub(" ", answer.lower())
    answer = "".join(c for c in answer if c not in _REF_PUNCTUATION_SET)
    answer = " ".join(answer.split())
    return answer


def _ref_rouge_w_score_for_klue_mrc(pred, label, beta=1):
    if label == "":
        return float(pred == label)
    matcher = SequenceMatcher(None, pred, label)
    longest_common_consecutive_sequence_length = matcher.find_longest_match(0, len(pred), 0, len(label)).size
    precision = longest_common_consecutive_sequence_length / len(pred) if len(pred) else 0.0
    recall = longest_common_consecutive_sequence_length / len(label) if len(label) else 0.0
    if precision + recall == 0.0:
        return 0.0
    return (1 + beta ** 2) * (precision * recall) / (beta ** 2 * precision + recall)


def _ref_compute_em_and_rouge_w_score_for_klue_mrc(pred, labels):
    em_scores, rouge_scores = [0.0], [0.0]
    for label in labels:
        em_scores.append(float(pred == label))
        rouge_scores.append(_ref_rouge_w_score_for_klue_mrc(pred, label))
    return max(em_scores), max(rouge_scores)


def _ref_klue_mrc_em_and_rouge_w(preds, examples):
    """klue_mrc_em and klue_mrc_rouge_w (percent) of preds {qas_id: text} and examples with .qas_id, .answers
    ([{"text": ...}]) and .question_type (1-3): scores grouped by question type, then the mean of all of them."""
    em_by_type, rouge_by_type = [[], [], []], [[], [], []]
    for example in examples:
        prediction = _ref_normalize_answer_for_klue_mrc(preds[example.qas_id])
        ground_truths = [_ref_normalize_answer_for_klue_mrc(answer["text"]) for answer in example.answers]
        if not ground_truths:
            ground_truths = [""]
        em_score, rouge_score = _ref_compute_em_and_rouge_w_score_for_klue_mrc(prediction, ground_truths)
        em_by_type[example.question_type - 1].append(em_score)
        rouge_by_type[example.question_type - 1].append(rouge_score)
    return (np.mean([s for scores in em_by_type for s in scores]) * 100.0,
            np.mean([s for scores in rouge_by_type for s in scores]) * 100.0)

# --- end of the test reference ---


def _ref_example(qas_id, golds, question_type=1):
    return types.SimpleNamespace(qas_id=qas_id, answers=[{"text": g} for g in golds],
                                 question_type=3 if not golds else question_type)


def _klue_mrc_both(predictions, golds, question_types=None):
    """(ours in [0, 1], the reference's /100) for {qid: prediction} and {qid: gold texts}."""
    ours = metrics.klue_mrc_scores(predictions, golds)
    examples = [_ref_example(q, g, (question_types or {}).get(q, 1)) for q, g in golds.items()]
    em, rouge = _ref_klue_mrc_em_and_rouge_w(predictions, examples)
    return ours, {"exact_match": em / 100.0, "rouge_w": rouge / 100.0}


@pytest.mark.parametrize("prediction, golds, exact, rouge", [
    ("페이스북", ["페이스북"], 1.0, 1.0),
    ("페이스북이", ["페이스북"], 0.0, 8 / 9),                # run 4: P 4/5, R 1
    ("오후 8시까지", ["오후 8시"], 0.0, 5 / 6),              # the space counts: run 5, P 5/7, R 1
    ("12점이", ["12점", "국보 12점"], 0.0, 6 / 7),          # best gold: run 3, P 3/4, R 1 (against 국보 12점: 3/5)
    ("국보 12점", ["12점", "국보 12점"], 1.0, 1.0),
    ("", [], 1.0, 1.0),                                     # unanswerable, no answer predicted
    ("무료", [], 0.0, 0.0),                                 # unanswerable, an answer predicted
    ("", ["무료"], 0.0, 0.0),
    ("'2014년'", ["2014년"], 1.0, 1.0),                     # ASCII quotes are punctuation
    ("“베인&컴퍼니”", ["베인&컴퍼니"], 0.0, 5 / 6),          # & dropped, curly quotes kept: run 5, P 5/7, R 1
    ("  Apple  Inc. ", ["apple inc"], 1.0, 1.0),            # lower-case, whitespace collapsed
    ("가<()‘’나", ["가 나"], 1.0, 1.0),                      # the one sequence KLUE's pattern replaces
    ("가《나》", ["가나"], 0.0, 1 / 3),                      # 《》 kept (the pattern's bracket): run 1, P 1/4, R 1/2
    ("...", ["!!"], 1.0, 1.0),                              # both normalise to "": the gold counts as no answer
])
def test_klue_mrc_metrics_hand_computed(prediction, golds, exact, rouge):
    ours, reference = _klue_mrc_both({"q": prediction}, {"q": golds})
    assert ours == pytest.approx({"exact_match": exact, "rouge_w": rouge})
    assert ours == pytest.approx(reference)


def _random_answer(rng, alphabet, low, high):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def test_klue_mrc_metrics_match_klue_baseline():
    """Random predictions and golds (Hangul, digits, spaces, punctuation, KLUE's pattern; golds of up to 260
    characters, where difflib's autojunk changes the run) against the transcribed KLUE-baseline functions."""
    rng = random.Random(0)
    alphabet = list("가나다라마 바사12 .,'\"《》<>()‘’“”Ab") + ["<()‘’"]
    for _ in range(30):
        golds, predictions, question_types = {}, {}, {}
        for i in range(12):
            qid = f"klue-mrc-v1_dev_{i:05d}"
            roll = rng.random()
            golds[qid] = [] if roll < 0.25 else [_random_answer(rng, alphabet, 1, 260 if roll > 0.9 else 12)
                                                 for _ in range(rng.randint(1, 3))]
            question_types[qid] = rng.randint(1, 2)
            if golds[qid] and rng.random() < 0.4:  # a prediction around a gold: a part of it with some extra
                gold = rng.choice(golds[qid])
                start = rng.randint(0, len(gold) - 1)
                predictions[qid] = _random_answer(rng, alphabet, 0, 3) + gold[start:start + rng.randint(1, 20)]
            else:
                predictions[qid] = "" if rng.random() < 0.3 else _random_answer(rng, alphabet, 1, 15)
        ours, reference = _klue_mrc_both(predictions, golds, question_types)
        assert ours == pytest.approx(reference, abs=1e-12)
    long_gold = "가 " * 120 + "나다라"  # 243 characters: "가" and " " are popular, the run grows from "나다라" only
    assert metrics.klue_rouge_w("가 가 가 나다라", long_gold) == pytest.approx(
        _ref_rouge_w_score_for_klue_mrc("가 가 가 나다라", long_gold))
    missing = metrics.klue_mrc_scores({}, {"a": ["가"], "b": []})
    assert missing == {"exact_match": 0.0, "rouge_w": 0.0}  # a question without a prediction scores 0


def _klue_mrc_contexts():
    data = json.loads((FIXTURES / "klue-mrc-v1.1_train.json").read_text(encoding="utf-8"))["data"]
    return {qa["guid"]: paragraph["context"] for article in data for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]}


def test_klue_mrc_reader():
    train = korean.read_klue_mrc(FIXTURES / "klue-mrc-v1.1_train.json", is_training=True)
    dev = korean.read_klue_mrc(FIXTURES / "klue-mrc-v1.1_dev.json", is_training=False)
    assert (len(train), len(dev)) == (5, 4)
    assert [e.qas_id for e in train] == [f"klue-mrc-v1_train_{i:05d}" for i in range(5)]
    assert [e.is_impossible for e in train] == [False, False, True, False, False]
    impossible = train[2]
    assert (impossible.answers, impossible.start_position, impossible.orig_answer_text) == ([], -1, "")
    # The answers' character spans map to whitespace words; a Korean answer may be part of its word (a particle
    # after it), so the words hold the answer, and the answer is the text at answer_start.
    contexts = _klue_mrc_contexts()
    for example in (e for e in train if not e.is_impossible):
        words = " ".join(example.doc_tokens[example.start_position:example.end_position + 1])
        assert example.orig_answer_text in words
        start = contexts[example.qas_id].index(example.orig_answer_text)
        assert contexts[example.qas_id][start:start + len(example.orig_answer_text)] == example.orig_answer_text
    assert [(e.orig_answer_text, e.doc_tokens[e.start_position:e.end_position + 1]) for e in train] == [
        ("2천원", ["2천원이다."]), ("오후 8시", ["오후", "8시까지"]), ("", []), ("이달 말께", ["이달", "말께"]),
        ("제주도", ["제주도의"])]
    assert train[3].answers == ["이달 말께", "이달 말"]  # training learns the first of several answers
    assert squad.gold_answers(dev) == {"klue-mrc-v1_dev_00000": ["국립중앙박물관"],
                                       "klue-mrc-v1_dev_00001": ["12점", "국보 12점"],
                                       "klue-mrc-v1_dev_00002": [],  # plausible_answers are not answers
                                       "klue-mrc-v1_dev_00003": ["문을 열지 않는다"]}


def test_klue_mrc_reader_errors(tmp_path):
    record = json.loads((FIXTURES / "klue-mrc-v1.1_train.json").read_text(encoding="utf-8"))
    del record["data"][0]["paragraphs"][0]["qas"][1]["guid"]
    path = _write(tmp_path, "klue-mrc-v1.1_train.json", json.dumps(record, ensure_ascii=False))
    with pytest.raises(BertjaxError, match=r"klue-mrc-v1\.1_train\.json: a question of '한강공원에 자전거 대여소 다섯 "
                                           r"곳 새로 연다' has no 'guid'"):
        korean.read_klue_mrc(path, is_training=True)
    record = json.loads((FIXTURES / "klue-mrc-v1.1_train.json").read_text(encoding="utf-8"))
    record["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
    path = _write(tmp_path, "klue-mrc-v1.1_train.json", json.dumps(record, ensure_ascii=False))
    with pytest.raises(BertjaxError, match=r"question 'klue-mrc-v1_train_00000': context at answer_start="):
        korean.read_klue_mrc(path, is_training=True)


def _klue_mrc_vocab():
    """Every character of the KLUE-MRC fixture as a word and as a ## piece: words split into single characters
    (as multilingual BERT splits most Hangul), so every answer edge is a piece edge."""
    from bertjax.data.vocab_files import SPECIAL_TOKENS  # noqa: PLC0415

    chars = sorted({c for name in ("train", "dev") for c in (FIXTURES / f"klue-mrc-v1.1_{name}.json").read_text(
        encoding="utf-8") if not c.isspace()})
    return [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]


def _klue_mrc_config(tmp_path, **data):
    from bertjax.data.tokenizer import BertTokenizer  # noqa: PLC0415

    config = load_config("finetune_squad")
    config.task, config.data.dir = korean.KLUE_MRC, str(FIXTURES)
    config.data.max_seq_length, config.data.doc_stride, config.data.max_query_length = 48, 16, 24
    config.train.batch_size, config.eval.batch_size = 2, 4
    for key, value in data.items():
        config.data[key] = value
    return config, BertTokenizer(_klue_mrc_vocab(), do_lower_case=True, strip_accents=False)


def test_finetune_klue_mrc_task(tmp_path):
    from bertjax import finetune  # noqa: PLC0415

    config, tokenizer = _klue_mrc_config(tmp_path)
    assert korean.KLUE_MRC in finetune.NAMED_TASKS
    task = finetune.prepare(config, str(tmp_path / "workdir"), tokenizer)
    assert (task.main_metric, task.eval_split, task.labels) == ("klue_mrc_rouge_w", "dev", None)
    # The train windows' gold spans are the answers' pieces, also inside a word (2천원 of 2천원이다., 제주도 of
    # 제주도의): the character vocab splits every word at the answer's edge.
    train = korean.read_klue_mrc(FIXTURES / "klue-mrc-v1.1_train.json", is_training=True)
    windows = dict(max_seq_length=48, doc_stride=16, max_query_length=24)
    features = squad.convert_examples_to_features(train, tokenizer, is_training=True, **windows)
    assert task.num_train_examples == len(features) > len(train)  # contexts cut into several windows
    found = {}
    for feature in features:
        if feature.start_position:
            pieces = feature.tokens[feature.start_position:feature.end_position + 1]
            found[train[feature.example_index].qas_id] = "".join(p.removeprefix("##") for p in pieces)
        else:
            assert feature.end_position == 0
    assert found == {"klue-mrc-v1_train_00000": "2천원", "klue-mrc-v1_train_00001": "오후8시",
                     "klue-mrc-v1_train_00003": "이달말께", "klue-mrc-v1_train_00004": "제주도"}

    # Scoring: logits that point at the gold answers (the dev file read as training data gives their windows'
    # positions) give perfect KLUE scores; pointing at [CLS] everywhere answers only the unanswerable question.
    dev = korean.read_klue_mrc(FIXTURES / "klue-mrc-v1.1_dev.json", is_training=True)
    dev_features = squad.convert_examples_to_features(dev, tokenizer, is_training=True, **windows)
    starts, ends = np.full((len(dev_features), 48), -10.0), np.full((len(dev_features), 48), -10.0)
    for row, feature in enumerate(dev_features):
        starts[row, feature.start_position] = ends[row, feature.end_position] = 10.0
    assert task.objective.scorer(starts, ends) == {"klue_mrc_exact_match": 1.0, "klue_mrc_rouge_w": 1.0}
    starts[:], ends[:] = -10.0, -10.0
    starts[:, 0] = ends[:, 0] = 10.0
    assert task.objective.scorer(starts, ends) == {"klue_mrc_exact_match": 0.25, "klue_mrc_rouge_w": 0.25}
    path = task.objective.writer(starts, ends, str(tmp_path / "predictions_dev"))
    assert json.loads(pathlib.Path(path).read_text(encoding="utf-8")) == {
        f"klue-mrc-v1_dev_{i:05d}": "" for i in range(4)}


def test_klue_mrc_fine_tunes_end_to_end(tmp_path):
    """A tiny randomly initialised BERT (the fixture's character vocab, cased: Hangul stays whole) fine-tuned on the
    fixture through the one train loop: the KLUE metrics of dev, the predictions by guid, best/ and the export as a
    question-answering head."""
    from bertjax.train import train_and_evaluate  # noqa: PLC0415

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(_klue_mrc_vocab()) + "\n", encoding="utf-8")
    config, _ = _klue_mrc_config(tmp_path, vocab_file=str(vocab_file), do_lower_case=False)
    config.model.size = "tiny"
    config.model.hidden_size, config.model.num_hidden_layers, config.model.num_attention_heads = 32, 2, 2
    config.model.intermediate_size = 64
    config.train.batch_size = config.eval.batch_size = 8  # a multiple of the tests' 8 CPU devices
    config.train.num_epochs = 1
    config.log.every_steps, config.log.tensorboard = 1000, False
    scores = train_and_evaluate(config, str(tmp_path / "run"))
    assert 0.0 <= scores["klue_mrc_exact_match"] <= scores["klue_mrc_rouge_w"] <= 1.0, scores
    predictions = json.loads((tmp_path / "run" / "predictions_dev.json").read_text(encoding="utf-8"))
    assert sorted(predictions) == [f"klue-mrc-v1_dev_{i:05d}" for i in range(4)]
    golds = squad.gold_answers(korean.read_klue_mrc(FIXTURES / "klue-mrc-v1.1_dev.json", is_training=False))
    assert metrics.klue_mrc_scores(predictions, golds) == pytest.approx(
        {"exact_match": scores["klue_mrc_exact_match"], "rouge_w": scores["klue_mrc_rouge_w"]})
    assert (tmp_path / "run" / "best").is_dir()
    exported = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    assert exported["architectures"] == ["BertForQuestionAnswering"]
