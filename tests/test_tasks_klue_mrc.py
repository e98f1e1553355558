"""KLUE-MRC: the reader on the fixture in the official format (tests/fixtures/korean), its errors, KLUE's EM and
ROUGE-W against a transcription of KLUE-baseline's functions (the test reference below) and hand-computed values,
the fine-tuning Task, and klue_mrc fine-tuned end to end on its fixture."""
import json
import pathlib
import random
import re
import string
import types
from difflib import SequenceMatcher

import numpy as np
import pytest

from _train_helpers import load_config
from bertjax.errors import BertjaxError
from bertjax.tasks import korean, metrics, squad
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "korean"


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
    path = tmp_path / "klue-mrc-v1.1_train.json"
    path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BertjaxError, match=r"klue-mrc-v1\.1_train\.json: a question of '한강공원에 자전거 대여소 다섯 "
                                           r"곳 새로 연다' has no 'guid'"):
        korean.read_klue_mrc(path, is_training=True)
    record = json.loads((FIXTURES / "klue-mrc-v1.1_train.json").read_text(encoding="utf-8"))
    record["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
    path = tmp_path / "klue-mrc-v1.1_train.json"
    path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
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
