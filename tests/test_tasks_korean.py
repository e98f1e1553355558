"""Korean tasks: the NSMC and KLUE v1.1 readers on small made-up files in the official formats
(tests/fixtures/korean), their errors (file and line or record), the KLUE metrics against scikit-learn / seqeval as
KLUE-baseline computes them, and fine-tuning Tasks built from the fixtures for nsmc and klue_ner. KLUE-MRC:
tests/test_tasks_klue_mrc.py."""
import json
import pathlib
import random

import numpy as np
import pytest
import sklearn.metrics
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2

from _train_helpers import load_config
from bertjax.errors import BertjaxError
from bertjax.tasks import IGNORE_LABEL, classification, korean, metrics

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
