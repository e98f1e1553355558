"""Fine-tuning learns: synthetic tasks written in the real file formats (GLUE TSV, CoNLL, SQuAD JSON), trained by the
one train loop from a tiny checkpoint, reach the issue's dev scores; their predictions and best/export land."""
import json
import random

import pytest
import transformers

from _train_helpers import load_config, write_random_bert
from bertjax.errors import BertjaxError
from bertjax.train import train_and_evaluate

ANIMALS = ["cat", "dog", "bird", "fish", "horse", "cow"]
COLORS = ["red", "blue", "green", "black", "white", "brown"]
GOOD, BAD = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILLERS = ["the", "a", "is", "it", "was", "very", "and", "day", "film", "man", "city", "in", "of", "at", "john",
           "mary", "paris", "london", "went", "to", "saw", "lives", "where", "who", "what"]
PEOPLE, CITIES = [["john", "smith"], ["mary"], ["anna"]], [["new", "york"], ["paris"], ["london"], ["rome"]]
PLAIN = [word for word in FILLERS if word not in ("john", "mary", "paris", "london")]
WORDS = ANIMALS + COLORS + GOOD + BAD + FILLERS + ["smith", "new", "york", "anna", "rome", "does", "live"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random BERT as a Hugging Face directory (vocab of the synthetic tasks' words, uncased)."""
    directory = tmp_path_factory.mktemp("tiny_bert")
    write_random_bert(directory, [*WORDS, "##s", "?", "."], hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=128, max_position_embeddings=128)
    return directory


def _config(name, task, data_dir, init_from, **overrides):
    config = load_config(name)
    config.task = task
    config.data.dir = str(data_dir)
    config.train.init_from = str(init_from)
    config.data.max_seq_length = 32
    config.train.batch_size = 16
    config.eval.batch_size = 32
    config.optimizer.learning_rate = 1e-3
    config.log.every_steps = 1000
    config.log.tensorboard = False
    config.model.hidden_dropout_prob = config.model.attention_probs_dropout_prob = 0.0
    for key, value in overrides.items():
        section, field = key.split("__")
        config[section][field] = value
    return config


def _write_tsv(path, header, rows):
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(map(str, row)) for row in rows]) + "\n")


def _sentiment_rows(n, rng):
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.sample(FILLERS, 4) + [rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _entailment_rows(n, rng, start=0):
    """Both sentences carry a sentiment word; the label is sentence 2's, so the model must tell the segments apart."""
    rows = []
    for i in range(n):
        entailed, other = rng.randrange(2), rng.randrange(2)
        first = " ".join(rng.sample(FILLERS, 3) + [rng.choice(GOOD if other else BAD)])
        second = " ".join(rng.sample(FILLERS, 3) + [rng.choice(GOOD if entailed else BAD)])
        rows.append((start + i, first, second, "entailment" if entailed else "not_entailment"))
    return rows


def _sentiment_task(directory, *, seed: int, num_train: int, num_dev: int) -> random.Random:
    """SST-2-format train.tsv and dev.tsv in `directory`; returns the random stream for more rows."""
    rng = random.Random(seed)
    _write_tsv(directory / "train.tsv", ["sentence", "label"], _sentiment_rows(num_train, rng))
    _write_tsv(directory / "dev.tsv", ["sentence", "label"], _sentiment_rows(num_dev, rng))
    return rng


@pytest.mark.slow
def test_single_sentence_classification_learns(tmp_path, tiny_checkpoint):
    rng = _sentiment_task(tmp_path, seed=0, num_train=320, num_dev=100)
    config = _config("finetune_glue", "sst2", tmp_path, tiny_checkpoint, train__num_epochs=3)
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["accuracy"] >= 0.95, metrics
    lines = (tmp_path / "run" / "predictions_dev.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 101
    best = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert best["accuracy"] >= metrics["accuracy"] - 1e-9
    model, info = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "run" / "export",
                                                                             output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"]), info
    assert model.config.num_labels == 2

    # Predict: the test file (no labels) through the trained run, in GLUE's submission format.
    _write_tsv(tmp_path / "test.tsv", ["index", "sentence"], [(i, row[0]) for i, row in
                                                              enumerate(_sentiment_rows(20, rng))])
    config.train.eval_only, config.eval.split = True, "test"
    assert train_and_evaluate(config, str(tmp_path / "run")) == {"eval_batches": 1}
    lines = (tmp_path / "run" / "predictions_test.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 21
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}

    # The fine-tuned model continues as it is (its classifier too) when its labels fit ...
    config = _config("finetune_glue", "sst2", tmp_path, tmp_path / "run" / "best", train__num_epochs=1,
                     optimizer__learning_rate=1e-9)
    again = train_and_evaluate(config, str(tmp_path / "again"))
    assert again["accuracy"] >= 0.95, again
    config.train.init_from = str(tmp_path / "run")  # the workdir: its latest checkpoint, read through Orbax
    again = train_and_evaluate(config, str(tmp_path / "again_from_workdir"))
    assert again["accuracy"] >= 0.95, again
    # ... and a task with another number of labels is one clear error.
    _write_tsv(tmp_path / "three.tsv", ["text", "kind"], [(row[0], ("x", "y", "z")[i % 3]) for i, row in
                                                          enumerate(_sentiment_rows(40, rng))])
    config = _config("finetune_glue", "classification", tmp_path, tmp_path / "run" / "best",
                     data__text_columns="text", data__label_column="kind", data__train_file="three.tsv",
                     data__dev_file="three.tsv")
    with pytest.raises(BertjaxError, match=r"is a fine-tuned BertForSequenceClassification with num_labels=2, but "
                                           r"--config.task=classification has num_labels=3"):
        train_and_evaluate(config, str(tmp_path / "three"))


@pytest.mark.slow
def test_sentence_pair_classification_learns(tmp_path, tiny_checkpoint):
    rng = random.Random(1)
    header = ["index", "sentence1", "sentence2", "label"]
    _write_tsv(tmp_path / "train.tsv", header, _entailment_rows(480, rng))
    _write_tsv(tmp_path / "dev.tsv", header, _entailment_rows(100, rng, start=480))
    config = _config("finetune_glue", "rte", tmp_path, tiny_checkpoint, train__num_epochs=4)
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["accuracy"] >= 0.95, metrics


def _tagged_sentence(rng):
    words, tags = [], []
    for _ in range(rng.randrange(3, 7)):
        kind = rng.random()
        entity, label = ((rng.choice(PEOPLE), "PER") if kind < 0.2 else (rng.choice(CITIES), "LOC") if kind < 0.4
                         else ([rng.choice(PLAIN + ["dogs", "cats"])], None))
        words += entity
        tags += ["O"] * len(entity) if label is None else [f"B-{label}"] + [f"I-{label}"] * (len(entity) - 1)
    return words, tags


def _write_conll(path, sentences):
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{word} NN O {tag}" for word, tag in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_token_tagging_learns(tmp_path, tiny_checkpoint):
    rng = random.Random(2)
    _write_conll(tmp_path / "train.txt", [_tagged_sentence(rng) for _ in range(320)])
    _write_conll(tmp_path / "dev.txt", [_tagged_sentence(rng) for _ in range(100)])
    config = _config("finetune_ner", "tagging", tmp_path, tiny_checkpoint, train__num_epochs=4)
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["entity_f1"] >= 0.9, metrics
    assert len(list((tmp_path / "run" / "features").glob("train-*.npz"))) == 1  # encoded once, cached
    predicted = (tmp_path / "run" / "predictions_dev.txt").read_text().split("\n\n")
    assert len([block for block in predicted if block.strip()]) == 100
    _, info = transformers.BertForTokenClassification.from_pretrained(tmp_path / "run" / "best",
                                                                     output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"]), info


def _squad_article(rng, index):
    person, city = rng.choice(PEOPLE), rng.choice(CITIES)
    fillers = rng.sample(PLAIN, 4)
    words = fillers[:2] + person + ["lives", "in"] + city + fillers[2:]
    context = " ".join(words)
    questions = []
    for k, (question, answer) in enumerate([("who lives in " + " ".join(city) + " ?", " ".join(person)),
                                            ("where does " + " ".join(person) + " live ?", " ".join(city))]):
        start = context.index(" " + answer + " ") + 1
        questions.append({"id": f"q{index}_{k}", "question": question,
                          "answers": [{"text": answer, "answer_start": start}]})
    return {"title": f"t{index}", "paragraphs": [{"context": context, "qas": questions}]}


@pytest.mark.slow
def test_span_question_answering_learns(tmp_path, tiny_checkpoint):
    rng = random.Random(3)
    for name, count in (("train-v1.1.json", 200), ("dev-v1.1.json", 50)):
        data = [_squad_article(rng, i) for i in range(count)]
        (tmp_path / name).write_text(json.dumps({"version": "1.1", "data": data}))
    config = _config("finetune_squad", "squad", tmp_path, tiny_checkpoint, train__num_epochs=10)
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["squad_exact"] >= 80, metrics  # percent, as the official script
    answers = json.loads((tmp_path / "run" / "predictions_dev.json").read_text())
    assert len(answers) == 100


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_fine_tuning_resumes_exactly(tmp_path, tiny_checkpoint):
    _sentiment_task(tmp_path, seed=4, num_train=96, num_dev=32)
    config = _config("finetune_glue", "sst2", tmp_path, tiny_checkpoint, train__num_epochs=2)
    config.model.hidden_dropout_prob = 0.1  # dropout on: the resumed run must draw the same masks
    train_and_evaluate(config, str(tmp_path / "straight"))

    def stop_after_first_epoch(info):
        if info.step == 6:  # 96 examples, batches of 16: the epoch's checkpoint is saved at step 6
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_and_evaluate(config, str(tmp_path / "resumed"), hooks=[stop_after_first_epoch])
    assert not (tmp_path / "resumed" / "export").exists()
    train_and_evaluate(config, str(tmp_path / "resumed"))
    weights = "export/model.safetensors"
    assert (tmp_path / "resumed" / weights).read_bytes() == (tmp_path / "straight" / weights).read_bytes()


def test_a_label_outside_the_task_is_one_line_naming_file_and_line(tmp_path, tiny_checkpoint):
    _write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [("a good day", 1), ("a bad day", 7)])
    _write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [("a good day", 1)])
    config = _config("finetune_glue", "sst2", tmp_path, tiny_checkpoint)
    with pytest.raises(BertjaxError, match=r"train.tsv:3.*'7'"):
        train_and_evaluate(config, str(tmp_path / "run"))
