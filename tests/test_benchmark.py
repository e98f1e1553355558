"""`python -m bertjax.benchmark`: a suite of synthetic tasks in GLUE's real file formats, run for two tiny models,
gives the table, the JSON and the plot; a suite killed mid-run and rerun skips its finished runs and ends equal to
an uninterrupted one; suite files, the built-in suites' recipes and the refusals."""
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time

import pytest

from _train_helpers import REPO_ROOT, write_random_bert
from bertjax import workdir_layout
from bertjax.benchmark import references, report, runner, suite_run, suites
from bertjax.data.vocab_files import write_tokenizer_config
from bertjax.errors import BertjaxError

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "a", "film", "day", "was", "is", "very", "man",
         "city", "cat", "dog", "red", "blue", "it", "and", "of"]
FILLERS = WORDS[6:]
SUITE_YAML = """
name: two_tasks
tasks:
  - {name: sst2, label: SST-2, type: classification, task: sst2, data: SST-2, metric: accuracy,
     learning_rates: [0.001], seeds: [0, 1], epochs: 2, batch_size: 16, max_seq_length: 16,
     config: {eval.batch_size: 16, model.hidden_dropout_prob: 0.0}}
  - {name: stsb, label: STS-B, type: regression, task: stsb, data: STS-B, metric: spearman, extra_metrics: [pearson],
     learning_rates: [0.001], seeds: [0], epochs: 2, batch_size: 16, max_seq_length: 24,
     config: {eval.batch_size: 16}}
  - {name: rte, label: RTE, type: classification, task: rte, data: RTE, metric: accuracy, learning_rates: [0.001],
     batch_size: 16, max_seq_length: 16}
"""


def _tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(map(str, row)) for row in rows]) + "\n")


def _sentence(rng, polarity=None):
    words = rng.sample(FILLERS, 3) + ([rng.choice(WORDS[:3] if polarity else WORDS[3:6])] if polarity is not None
                                      else [])
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """GLUE-format SST-2 and STS-B directories (no RTE: a missing task), two tiny models, the suite file."""
    root = tmp_path_factory.mktemp("benchmark")
    rng = random.Random(0)
    for split, count in (("train", 64), ("dev", 32)):
        labels = [rng.randrange(2) for _ in range(count)]
        _tsv(root / "glue" / "SST-2" / f"{split}.tsv", ["sentence", "label"],
             [(_sentence(rng, label), label) for label in labels])
        rows = []
        for i in range(count):
            first = rng.sample(FILLERS, 4)
            shared = rng.randrange(5)
            second = first[:shared] + rng.sample([w for w in FILLERS if w not in first], 4 - shared)
            rows.append((i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", " ".join(first),
                         " ".join(second), f"{shared * 1.25:.3f}"))
        _tsv(root / "glue" / "STS-B" / f"{split}.tsv", ["index", "genre", "filename", "year", "old_index", "source1",
                                                       "source2", "sentence1", "sentence2", "score"], rows)
    models = []
    for label, hidden in (("small", 32), ("wider", 48)):
        write_random_bert(root / label, [*WORDS, "."], hidden_size=hidden, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=32)
        models.append(f"{label}={root / label}")
    (root / "suite.yaml").write_text(SUITE_YAML)
    return root, models


@pytest.fixture(scope="module")
def uninterrupted(world):
    """The suite run once to the end, in this process."""
    root, models = world
    lines = []
    content = suite_run.run(suite=str(root / "suite.yaml"), data_dir=str(root / "glue"), models=models,
                            workdir=str(root / "whole"), references_named=["bert-base-cased-hf"], log=lines.append)
    return content, lines


def test_a_suite_gives_the_table_the_json_and_the_plot(world, uninterrupted):
    root, _ = world
    content, lines = uninterrupted
    runs = content["runs"]
    assert len(runs) == 2 * (2 + 1 + 1)  # per model: sst2 x 2 seeds, stsb, rte (missing)
    done = [r for r in runs if r["status"] == "done"]
    assert len(done) == 6 and {r["task"] for r in done} == {"sst2", "stsb"}
    for record in done:
        assert record["steps"] == 2 * (64 // 16) and record["learning_rate"] == 0.001
        assert record["wall_s"] > 0 and 0 < record["setup_s"] < record["wall_s"]
        assert set(record["metrics"]) >= ({"accuracy"} if record["task"] == "sst2" else {"spearman", "pearson"})
    # The reported value is the median over seeds (percent), the spread their range.
    for model in ("small", "wider"):
        seeds = [100 * r["metrics"]["accuracy"] for r in done if r["model"] == model and r["task"] == "sst2"]
        cell = content["rows"][model]["sst2"]
        assert cell["value"] == pytest.approx(statistics.median(seeds))
        assert (cell["spread"]["min"], cell["spread"]["max"]) == pytest.approx((min(seeds), max(seeds)))
        assert content["rows"][model]["rte"]["status"] == "missing"
        stsb = content["rows"][model]["stsb"]
        average = content["averages"][model]
        assert average["value"] == pytest.approx((cell["value"] + stsb["value"]) / 2)
        assert (average["tasks"], average["of"]) == (2, 3)
        assert set(stsb["extra"]) == {"pearson"}
    on_disk = json.loads((root / "whole" / report.RESULTS_JSON).read_text())
    assert on_disk["rows"] == json.loads(json.dumps(content["rows"]))
    assert on_disk["references"][0]["name"] == "bert-base-cased-hf"

    table = (root / "whole" / report.RESULTS_MD).read_text().splitlines()
    header = next(line for line in table if line.startswith("| model |"))
    assert header == "| model | SST-2 (acc) | STS-B (Spearman) | RTE (acc) | average |"
    small = next(line for line in table if line.startswith("| small |"))
    assert small.split(" | ")[1] == f"{content['rows']['small']['sst2']['value']:.1f}"
    assert small.split(" | ")[3] == "missing" and small.endswith("(2 of 3) |")
    assert any(line.startswith("| bert-base-cased-hf (published, dev) | 92.3 | 88.5 | 65.7 |") for line in table)
    assert any("missing: " in line and "RTE does not exist" in line for line in table)

    figure = report.plot(suites.load(str(root / "suite.yaml")), content)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["SST-2", "STS-B", "RTE"]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["small", "wider",
                                                                     "bert-base-cased-hf (published)"]
    assert axes.get_ylabel() == "dev score (%)"
    heights = [round(p.get_height(), 6) for p in axes.patches[:3] if p.get_visible()]
    assert heights == [round(content["rows"]["small"][t]["value"], 6) for t in ("sst2", "stsb")]
    assert (root / "whole" / report.RESULTS_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Progress: a line per run, with the suite's ETA.
    assert sum("suite ETA" in line for line in lines) == len(runs)


def _without_times(content):
    runs = [{k: v for k, v in r.items() if k not in ("wall_s", "setup_s", "resumed")} for r in content["runs"]]
    return {"rows": content["rows"], "averages": content["averages"], "runs": runs}


def test_a_killed_suite_continues_and_equals_an_uninterrupted_one(world, uninterrupted, tmp_path):
    root, models = world
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "bertjax.benchmark", f"--suite={root / 'suite.yaml'}",
               f"--data_dir={root / 'glue'}", f"--workdir={workdir}", "--reference=bert-base-cased-hf",
               *[f"--model={m}" for m in models]]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "8"}  # the test process's devices
    # Killed (SIGKILL, no clean-up) while the third run (wider, sst2, seed 0) is between its two epochs.
    third = runner.run_dir(str(workdir), runner.Model("wider", ""), suites.load(str(root / "suite.yaml")).tasks[0],
                           0.001, 0)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while workdir_layout.latest_step(third) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    records = sorted(workdir.glob(f"runs/*/*/*/{runner.RUN_RECORD}"))
    assert len(records) == 2, records  # small's two sst2 runs finished; the third did not
    assert not (third_record := workdir_layout.path(third, runner.RUN_RECORD)).exists()
    before = {path: path.stat().st_mtime_ns for path in records}

    lines = []
    content = suite_run.run(suite=str(root / "suite.yaml"), data_dir=str(root / "glue"), models=models,
                            workdir=str(workdir), references_named=["bert-base-cased-hf"], log=lines.append)
    assert sum("finished earlier, skipped" in line for line in lines) == 2
    assert {path: path.stat().st_mtime_ns for path in records} == before
    assert json.loads(third_record.read_text())["resumed"] is True
    whole = uninterrupted[0]
    assert _without_times(content)["rows"] == _without_times(whole)["rows"]
    assert [{**r, "workdir": None, "recipe": None} for r in _without_times(content)["runs"]] == \
        [{**r, "workdir": None, "recipe": None} for r in _without_times(whole)["runs"]]


def test_the_built_in_suites_follow_their_protocol_and_configure_every_task(tmp_path):
    glue = suites.load("glue")
    assert [t.name for t in glue.tasks if t.in_average] == ["mnli", "mnli_mm", "qqp", "qnli", "sst2", "cola",
                                                             "stsb", "mrpc", "rte"]  # BERT's Table 1; no WNLI
    assert {t.name: t.metric for t in glue.tasks}["cola"] == "matthews"
    assert {t.name for t in glue.tasks if len(t.seeds) > 1} == {"cola", "stsb", "mrpc", "rte"}
    assert all(t.learning_rates == (5e-5, 4e-5, 3e-5, 2e-5) for t in glue.tasks)
    korean = suites.load("korean")
    assert [(t.name, t.metric) for t in korean.tasks] == [
        ("nsmc", "accuracy"), ("klue_tc", "macro_f1"), ("klue_sts", "pearson"), ("klue_nli", "accuracy"),
        ("klue_ner", "entity_macro_f1"), ("klue_mrc", "klue_mrc_exact_match")]
    model = runner.Model("m", "/models/m")
    options = runner.Options(str(tmp_path), max_train_examples=100)
    for suite in (glue, korean):
        for run in runner.plan(suite, [model], str(tmp_path / "w")):
            config = runner.run_config(run, options, str(tmp_path / "w"))
            assert config.task == run.task.task and config.data.dir == str(tmp_path / run.task.data)
            assert config.optimizer.learning_rate == run.learning_rate and config.train.seed == run.seed
            assert config.data.max_train_examples == 100
            if run.task.name == "mnli_mm":
                assert config.train.eval_only and config.data.dev_file == "dev_mismatched.tsv"
                assert config.train.init_from.endswith("runs/m/mnli/" f"lr{run.learning_rate:g}-seed{run.seed}/export")
    assert runner.run_config(runner.plan(korean, [model], "w")[-2], options, "w").data.max_seq_length == 510


def test_a_custom_suite_file_in_python_with_a_generic_task(tmp_path):
    (tmp_path / "mine.py").write_text(
        'NAME = "mine"\nTASKS = [dict(name="reviews", type="classification", data="reviews", metric="macro_f1", '
        'config={"data.text_columns": "text", "data.label_column": "stars"})]\n')
    suite = suites.load(str(tmp_path / "mine.py"))
    assert suite.name == "mine" and suite.tasks[0].learning_rates == (2e-5,)
    run = runner.plan(suite, [runner.Model("m", "/m")], str(tmp_path))[0]
    config = runner.run_config(run, runner.Options(str(tmp_path)), str(tmp_path))
    assert (config.task, config.data.metrics, config.data.label_column) == ("classification", "macro_f1", "stars")


@pytest.mark.parametrize("text, message", [
    ("tasks: [{name: a, type: clasification, data: d, metric: accuracy}]", "unknown type 'clasification'"),
    ("tasks: [{name: a, type: classification, data: d, metric: acuracy}]", "unknown metric 'acuracy'"),
    ("tasks: [{name: a, type: tagging, data: d, metric: entity_f1, lr: 1}]", "unknown field.* lr"),
    ("tasks: [{name: a, type: tagging, data: d}]", "lacks metric"),
    ("tasks: [{name: a, type: squad, data: d, metric: squad_f1, evaluate: b}]", "evaluates 'b'"),
    ("name: x", "has no task list"),
    ("tasks: [a: b: c]", "does not parse"),
])
def test_a_bad_suite_file_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "suite.yaml").write_text(text)
    with pytest.raises(BertjaxError, match=message):
        suites.load(str(tmp_path / "suite.yaml"))


def test_refusals_before_any_run(world, tmp_path):
    root, models = world

    def run(**changes):
        arguments = dict(suite=str(root / "suite.yaml"), data_dir=str(root / "glue"), models=models,
                         workdir=str(tmp_path / "w"))
        suite_run.run(**{**arguments, **changes})

    with pytest.raises(BertjaxError, match=r"--model=empty=.*does not load"):
        (tmp_path / "empty").mkdir()
        run(models=[models[0], f"empty={tmp_path / 'empty'}"])
    with pytest.raises(BertjaxError, match="share the label"):
        run(models=[models[0], models[0]])
    with pytest.raises(BertjaxError, match=r"--strict: .*RTE does not exist"):
        run(strict=True)
    with pytest.raises(BertjaxError, match="--tasks names rtee"):
        run(tasks=["rtee"])
    with pytest.raises(BertjaxError, match="--reference=klue-bert-base is not a published row of the two_tasks"):
        run(references_named=["klue-bert-base"])
    assert not (tmp_path / "w").exists()
    assert references.reference("klue-bert-base", suites.KOREAN).split == "test"


def test_progress_lines_and_the_suite_eta():
    suite = suites.Suite("s", (suites.SuiteTask("a", "classification", "A", "accuracy"),
                               suites.SuiteTask("b", "classification", "B", "accuracy")))
    models = [runner.Model("m1", "/m1"), runner.Model("m2", "/m2")]
    runs = runner.plan(suite, models, "w")
    lines = []
    progress = runner.Progress(runs, lines.append)

    def done(run, seconds):
        return {"status": "done", "metrics": {"accuracy": 0.5}, "wall_s": seconds}

    progress.start(runs[0])
    progress.finish(runs[0], done(runs[0], 100), skipped=False)   # m1 a: 100 s
    assert lines[-1].endswith("suite ETA 0:05:00")                # m2 a (task a: 100) + m1 b (m1: 100) + m2 b (100)
    progress.finish(runs[1], done(runs[1], 20), skipped=False)    # m2 a: 20 s
    assert lines[-1].endswith("suite ETA 0:02:00")                # m1 b: 100 (m1), m2 b: 20 (m2)
    progress.finish(runs[2], done(runs[2], 0), skipped=True)      # skipped: its earlier time (none recorded here)
    assert lines[-1].startswith("benchmark [3/4] m1 b lr 2e-05 seed 0: accuracy 0.5000 (finished earlier, skipped)")
    assert lines[-1].endswith("suite ETA 0:00:20")
    assert lines[0] == "benchmark [1/4] m1 a lr 2e-05 seed 0: running in " + runs[0].workdir


KOREAN_GOOD, KOREAN_BAD = ["최고", "재밌다", "좋다"], ["최악", "지루하다", "별로"]
KOREAN_FILLERS = ["영화", "배우", "연기", "정말", "너무", "이", "그", "스토리", "음악", "장면"]


def test_the_korean_suite_runs_nsmc_and_klue_sts_in_their_official_files(tmp_path):
    """--suite=korean on synthetic files in NSMC's and KLUE's formats: the named tasks, their metrics and columns."""
    rng = random.Random(3)
    data = tmp_path / "data"
    for split, count in (("train", 32), ("test", 16)):
        rows = []
        for i in range(count):
            label = rng.randrange(2)
            words = rng.sample(KOREAN_FILLERS, 3) + [rng.choice(KOREAN_GOOD if label else KOREAN_BAD)]
            rows.append((1000 + i, " ".join(words), label))
        _tsv(data / "nsmc" / f"ratings_{split}.txt", ["id", "document", "label"], rows)
    for split, count in (("train", 32), ("dev", 16)):
        records = []
        for i in range(count):
            first = rng.sample(KOREAN_FILLERS, 4)
            shared = rng.randrange(5)
            second = first[:shared] + rng.sample([w for w in KOREAN_FILLERS if w not in first], 4 - shared)
            score = shared * 1.25
            records.append({"guid": f"klue-sts-v1_{split}_{i:05d}", "source": "synthetic",
                            "sentence1": " ".join(first), "sentence2": " ".join(second),
                            "labels": {"label": round(score, 1), "real-label": score,
                                       "binary-label": int(score >= 3)}})
        path = data / "klue-sts-v1.1" / f"klue-sts-v1.1_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False))
    write_random_bert(tmp_path / "ko", [*KOREAN_GOOD, *KOREAN_BAD, *KOREAN_FILLERS], hidden_size=32,
                      num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    write_tokenizer_config(tmp_path / "ko", do_lower_case=False, strip_accents=False)  # Hangul stays whole
    content = suite_run.run(suite="korean", data_dir=str(data), models=[f"ko={tmp_path / 'ko'}"],
                            workdir=str(tmp_path / "w"), tasks=["nsmc", "klue_sts"], epochs=2, learning_rates=["1e-3"],
                            references_named=["kobert", "klue-bert-base"], log=lambda line: None)
    nsmc, sts = content["rows"]["ko"]["nsmc"], content["rows"]["ko"]["klue_sts"]
    assert nsmc["status"] == sts["status"] == "done" and nsmc["metric"] == "accuracy"
    assert sts["metric"] == "pearson" and set(sts["extra"]) == {"sts_f1"}
    (record,) = [r for r in content["runs"] if r["task"] == "nsmc"]
    assert record["steps"] == 2 and record["learning_rate"] == 1e-3 and record["train_examples"] == 32
    assert 0 <= nsmc["value"] <= 100 and -100 <= sts["value"] <= 100  # numbers, not NaN
    table = (tmp_path / "w" / report.RESULTS_MD).read_text()
    assert "| model | NSMC (acc) | KLUE-STS (Pearson r) | average |" in table
    assert "| kobert (published, test) | 90.1 |  |" in table
    assert "| klue-bert-base (published, test) |  | 90.8 |" in table
    assert "| model | KLUE-STS (F1) |" in table and "| klue-bert-base (published, test) | 82.8 |" in table


def test_a_cell_is_the_median_at_the_best_median_learning_rate():
    task = suites.SuiteTask("t", "regression", "T", "pearson", learning_rates=(1e-5, 2e-5), seeds=(0, 1, 2))

    def record(lr, seed, value):
        return {"status": "done", "learning_rate": lr, "seed": seed, "metrics": {"pearson": value}}

    records = [record(1e-5, 0, 0.5), record(1e-5, 1, 0.9), record(1e-5, 2, 0.6),     # median 60
               record(2e-5, 0, 0.7), record(2e-5, 1, float("nan")), record(2e-5, 2, 0.8)]  # 0, 70, 80: median 70
    cell = report.cell(task, records)
    assert cell["learning_rate"] == 2e-5 and cell["value"] == pytest.approx(70.0)
    assert cell["seeds"] == pytest.approx({"0": 70.0, "1": 0.0, "2": 80.0})
    assert cell["medians"] == pytest.approx({"1e-05": 60.0, "2e-05": 70.0}) and cell["runs_done"] == 6
    assert report.cell(task, [{**records[0], "status": "failed", "error": "x"}])["status"] == "failed"
    assert report.cell(task, [])["status"] == "pending"
