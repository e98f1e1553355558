"""The bad-input table: every entry point, given a wrong config, a missing file, a malformed corpus, a mismatched
vocab or dataset, or a corrupt checkpoint, prints ONE line `error: ...` naming the input and the fix, exits with
status 2, prints no traceback, and changes nothing that existed before (nor leaves files in a new output dir).

Each case runs its entry point in-process, through the wrapper its command line uses (absl's `parse_flags` then
the `exit_on_bad_input`-wrapped main, or the argparse main with its argv), so the table costs no JAX import per
case; `test_the_real_command_line_*` runs a few of them as real processes to show the command line gives the same.
main.py cases pass `--distributed=false` in-process: JAX is already initialised in the test process.
"""
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from absl import flags

from _broken_inputs import CLASSIFICATION_ARGS, FIXTURES, add_trained_runs, make_world
from _entry_points import forget_flags_defined_since, run_entry, snapshot
from _train_helpers import REPO_ROOT
from bertjax.errors import BertjaxError

CONFIGS = REPO_ROOT / "configs"
# The tiny dataset's shapes and the model flags of a tiny run on it (main.py's command line).
DATA = ["--config.data.max_seq_length=16", "--config.data.max_predictions_per_seq=4"]
TINY = ["--config.model.size=tiny", "--config.model.hidden_size=32", "--config.model.num_attention_heads=2",
        "--config.model.intermediate_size=64", "--config.dtype=float32", "--config.train.batch_size=8",
        "--config.eval.batch_size=8", "--config.optimizer.warmup_steps=1"]


# ---------------------------------------------------------------------------------------------------------------
# The inputs, built once (_broken_inputs.py).

@pytest.fixture(scope="module", autouse=True)
def _restore_absl_flags():
    """Remove the flags this module's in-process runs defined, so later tests in this process start afresh."""
    before = set(flags.FLAGS)
    yield
    forget_flags_defined_since(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def trained(world):
    return add_trained_runs(world)


# ---------------------------------------------------------------------------------------------------------------
# The table. `args(w, out)` gives the command line (`out`: a fresh directory of the case, for new outputs);
# `names(w, out)` the input the message must name; `expect` a regex the message must match.

@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    kind: str        # config, corpus, vocab, dataset, checkpoint
    entry: str       # main, aot, cpd, vocab, convert
    args: Callable
    names: Callable
    expect: str
    trained: bool = False  # needs the trained workdir (w.run, w.corrupt_run): slow to build
    missing_module: str = ""  # a library the case runs without (as if not installed)

    def __str__(self):
        return self.id


def _main(*args, config="base.py", data=True, tiny=True, workdir="run"):
    """main.py's argv: a config, the tiny dataset (unless data=False) and model (unless tiny=False), a fresh
    workdir in `out`."""
    def build(w, out):
        given = [a.format(w=w, out=out) for a in args]
        dataset = ([f"--config.data.dir={w.dataset}", *DATA] if data else []) + (TINY if data and tiny else [])
        config_file = config.format(w=w) if "{" in config else CONFIGS / config
        return [f"--config={config_file}", f"--workdir={out / workdir}", *dataset, *given]
    return build


def _cpd(*args, corpus="{w.corpus}", vocab="{w.vocab_dir}/vocab.txt"):
    """create_pretraining_data's argv: the corpus and small vocab (unless replaced), an output dir in `out`."""
    def build(w, out):
        base = [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}/ds", "--dupe_factor=1",
                "--num_workers=1", "--no_progress", "--max_seq_length=32", "--max_predictions_per_seq=5"]
        return [a.format(w=w, out=out) for a in base + list(args)]
    return build


def _args(*args):
    """An argv as given, with {w.*} and {out} filled in."""
    return lambda w, out: [a.format(w=w, out=out) for a in args]


def _benchmark(*args, suite="glue", model=str(FIXTURES / "hf_bert"), data="{w.root}"):
    """`python -m bertjax.benchmark`'s argv: a suite, a data dir, a model and a workdir in `out`."""
    def build(w, out):
        base = [f"--suite={suite}", f"--data_dir={data}", f"--model={model}", f"--workdir={out}/bench"]
        return [a.format(w=w, out=out) for a in base + list(args)]
    return build


def _visualize(*args, checkpoint=str(FIXTURES / "hf_bert")):
    """`python -m bertjax.visualize`'s argv: a checkpoint, a text, a page in `out` (each replaceable by args)."""
    def build(w, out):
        base = [f"--checkpoint={checkpoint}", "--text=the cat sat", f"--output={out}/view.html"]
        return [a.format(w=w, out=out) for a in base + list(args)]
    return build


def _name(text):
    return lambda w, out: text.format(w=w, out=out)


CASES = [
    # --- configs
    Case("unknown_field", "config", "main", _main("--config.train.batchsize=3"), _name("batchsize"),
         r'unknown config field "batchsize" \(did you mean "batch_size"\?\).*fix the spelling'),
    Case("wrong_type", "config", "main", _main("--config.train.batch_size=3.5"),
         _name("--config.train.batch_size=3.5"), r"invalid literal for int\(\).*give the field a value of its type"),
    Case("negative_batch", "config", "main", _main("--config.train.batch_size=-8"),
         _name("--config.train.batch_size=-8"), r"must be a positive integer"),
    Case("time_budget_not_positive", "config", "main", _main("--config.train.time_budget_hours=0.0"),
         _name("--config.train.time_budget_hours=0.0"), r"must be a positive number of hours"),
    Case("ramp_start_not_dividing_the_batch", "config", "main",
         _main("--config.train.batch_size_ramp_start=3", "--config.train.batch_size_ramp_steps=10"),
         _name("--config.train.batch_size_ramp_start=3"), r"must divide --config.train.batch_size=8 by a power of two"),
    Case("batch_not_divisible_by_devices", "config", "main", _main("--config.train.batch_size=12"),
         _name("--config.train.batch_size=12"), r"must be divisible by the number of devices \(8\)"),
    Case("missing_config_file", "config", "main", _main(config="nope.py", data=False), _name(str(CONFIGS / "nope.py")),
         r"cannot be loaded \(\[Errno 2\] No such file or directory.*pass a config file such as configs/base.py"),
    Case("config_not_python", "config", "main", _main(config="{w.text_config}", data=False),
         _name("--config={w.text_config}"), r"is not a bertjax config file \(SyntaxError line 1"),
    Case("config_is_a_directory", "config", "main", _main(config="{w.corpus_dir}", data=False),
         _name("--config={w.corpus_dir}"), r"cannot be loaded \(\[Errno 21\] Is a directory"),
    Case("config_get_config_raises", "config", "main", _main(config="base.py:extra", data=False),
         _name("base.py:extra"), r"failed in get_config\(\) \(TypeError.*fix the file"),
    Case("config_get_config_raises_value_error", "config", "main", _main(config="{w.raising_config}", data=False),
         _name("--config={w.raising_config}"),
         r"failed in get_config\(\) \(ValueError: no config for you\); fix the file"),
    Case("unknown_flag", "config", "main", _main("--workdirr={out}/x"), _name("'workdirr'"),
         r"Unknown command line flag 'workdirr'\. Did you mean: workdir"),
    Case("stray_positional_argument", "config", "main", _main("extra"), _name("['extra']"),
         r"unexpected arguments .*; flags take the form --name=value"),
    Case("eval_batch_not_divisible_by_devices", "config", "main", _main("--config.eval.batch_size=12"),
         _name("--config.eval.batch_size=12"), r"must be divisible by the number of devices \(8\)"),
    Case("unknown_optimizer", "config", "main", _main("--config.optimizer.name=adamm"),
         _name("config.optimizer.name='adamm'"),
         r"is unknown; use one of bert_adam, adamw, lamb"),
    Case("float16_dtype", "config", "main", _main("--config.dtype=float16"), _name("--config.dtype='float16'"),
         r"is not supported; use one of"),
    Case("phase2_without_init_from", "config", "main", _main(config="phase2.py", data=False),
         _name("--config.train.init_from"), r"is required by this config"),
    Case("phase2_seq_beyond_max_position_embeddings", "config", "main",
         _main("--config.train.init_from={w.run}", "--config.data.dir={w.seq512}", config="phase2.py", data=False),
         _name("--config.data.max_seq_length=512"), r"exceeds the model's max_position_embeddings=64", trained=True),
    Case("workdir_is_a_file", "config", "main", _main("--workdir={w.a_file}"), _name("{w.a_file}"),
         r"is a file.*choose a directory"),
    Case("aot_unknown_topology", "config", "aot", _args(f"--config={CONFIGS / 'base.py'}", "--topology=v9-8"),
         _name("--topology='v9-8'"), r"is not a TPU topology"),
    Case("aot_unknown_field", "config", "aot",
         _args(f"--config={CONFIGS / 'base.py'}", "--topology=v5e-4", "--config.model.sise=tiny"), _name("sise"),
         r"unknown config field"),
    # --- corpora
    Case("cpd_missing_input_glob", "corpus", "cpd", _cpd(corpus="{w.root}/nothing*.txt"), _name("nothing*.txt"),
         r"matches no file; check the path or glob"),
    Case("cpd_empty_corpus", "corpus", "cpd", _cpd(corpus="{w.empty_corpus}"), _name("{w.empty_corpus}"),
         r"is empty; pass text files"),
    Case("cpd_binary_corpus", "corpus", "cpd", _cpd(corpus="{w.corpus},{w.binary}"), _name("{w.binary}"),
         r"does not look like text"),
    Case("cpd_directory_as_input", "corpus", "cpd", _cpd(corpus="{w.corpus_dir}"), _name("{w.corpus_dir}"),
         r"is a directory; pass the text files in it, e.g. '.*corpus_dir/\*.txt'"),
    Case("cpd_output_not_a_dataset", "corpus", "cpd", _cpd("--output_dir={w.full}"), _name("{w.full}"),
         r"not empty and holds no bertjax dataset"),
    Case("cpd_pack_with_dynamic_masking", "corpus", "cpd", _cpd("--pack", "--masking=dynamic"), _name("--pack"),
         r"needs --masking=static"),
    Case("cpd_pack_zero_pairs", "corpus", "cpd", _cpd("--pack", "--max_pairs_per_seq=0"),
         _name("--max_pairs_per_seq=0"), r"must be >= 1 with --pack"),
    Case("cpd_bad_flag_value", "corpus", "cpd", _cpd("--max_seq_length=abc"), _name("--max_seq_length"),
         r"invalid int value: 'abc' \(see python -m bertjax.data.create_pretraining_data --help\)"),
    Case("vocab_missing_input", "corpus", "vocab",
         _args("--input={w.root}/nothing*.txt", "--vocab_size=50", "--output={out}/v"), _name("nothing*.txt"),
         r"matches no file; check the path or glob"),
    Case("vocab_empty_input", "corpus", "vocab", _args("--input={w.empty_corpus}", "--vocab_size=50",
                                                      "--output={out}/v"), _name("{w.empty_corpus}"),
         r"holds no text to learn a vocab from; pass non-empty text files"),
    Case("vocab_bad_flag_value", "corpus", "vocab", _args("--input={w.corpus}", "--vocab_size=lots",
                                                         "--output={out}/v"), _name("--vocab_size"),
         r"invalid int value: 'lots' \(see python -m bertjax.data.vocab --help\)"),
    Case("vocab_output_is_a_file", "vocab", "vocab", _args("--input={w.corpus}", "--vocab_size=50",
                                                          "--output={w.a_file}"), _name("--output {w.a_file}"),
         r"is a file; pass a directory for vocab.txt"),
    Case("vocab_size_too_small", "corpus", "vocab", _args("--input={w.corpus}", "--vocab_size=3",
                                                         "--output={out}/v"), _name("vocab_size=3"),
         r"is too small; it must exceed the 5 special tokens"),
    Case("cpd_jsonl_line_not_json", "corpus", "cpd", _cpd(corpus="{w.not_json}"), _name("line 4 of {w.not_json}"),
         r"is not JSON .*pass --skip_bad_records to count and skip"),
    Case("vocab_jsonl_line_not_json", "corpus", "vocab", _args("--input={w.not_json}", "--vocab_size=50",
                                                              "--output={out}/v"), _name("line 4 of {w.not_json}"),
         r"is not JSON"),
    Case("cpd_jsonl_record_without_text_field", "corpus", "cpd", _cpd(corpus="{w.no_field}"),
         _name("line 4 of {w.no_field}"), r"has no field 'text'; its fields are \['body', 'id'\]; pass --text_field"),
    Case("cpd_parquet_without_the_column", "corpus", "cpd", _cpd(corpus="{w.parquet_no_column}"),
         _name("{w.parquet_no_column}"), r"has no column 'text'; its columns are \['id', 'body'\]; pass --text_field"),
    Case("cpd_glob_mixing_formats", "corpus", "cpd", _cpd(corpus="{w.mixed}/*"), _name("{w.mixed}/a.jsonl"),
         r"the input mixes formats: .*a.jsonl \(jsonl\), .*b.txt \(sentences\); give files of one format"),
    Case("cpd_truncated_gzip", "corpus", "cpd", _cpd(corpus="{w.truncated_gz}"), _name("{w.truncated_gz}"),
         r"is a truncated or corrupt gzip file"),
    Case("cpd_sentence_splitter_not_installed", "corpus", "cpd",
         _cpd("--input_format=documents", "--sentence_splitter=kiwi", corpus="{w.reviews}"), _name("kiwi"),
         r"pip install 'bertjax\[korean\]'", missing_module="kiwipiepy"),
    # --- vocabs
    Case("cpd_missing_vocab", "vocab", "cpd", _cpd(vocab="{w.root}/novocab/vocab.txt"),
         _name("{w.root}/novocab/vocab.txt"), r"does not exist; pass --vocab_file pointing to a vocab.txt"),
    Case("cpd_empty_vocab", "vocab", "cpd", _cpd(vocab="{w.empty_vocab}"), _name("{w.empty_vocab}"),
         r"lacks the special token\(s\) \[UNK\], \[CLS\], \[SEP\], \[MASK\]"),
    Case("cpd_vocab_without_specials", "vocab", "cpd", _cpd(vocab="{w.no_specials}"), _name("{w.no_specials}"),
         r"lacks the special token\(s\) \[CLS\], \[SEP\], \[MASK\]"),
    Case("cpd_casing_mismatch", "vocab", "cpd", _cpd("--do_lower_case=false"), _name("{w.vocab_dir}"),
         r"do_lower_case=False conflicts with do_lower_case=True stored in .*tokenizer_config.json"),
    Case("main_vocab_of_another_size", "vocab", "main", _main("--config.data.vocab_file={w.vocab_dir}/vocab.txt"),
         _name("--config.data.vocab_file={w.vocab_dir}/vocab.txt"), r"is not the vocab the dataset"),
    Case("main_missing_vocab", "vocab", "main", _main("--config.data.vocab_file={w.root}/nope/vocab.txt"),
         _name("--config.data.vocab_file={w.root}/nope/vocab.txt"), r"does not exist; fix the path"),
    Case("main_vocab_file_is_a_directory", "vocab", "main", _main("--config.data.vocab_file={w.vocab_dir}"),
         _name("--config.data.vocab_file={w.vocab_dir}"), r"is a directory; pass the vocab.txt in it"),
    Case("main_vocab_size_mismatch", "vocab", "main", _main("--config.model.vocab_size=100"),
         _name("--config.model.vocab_size=100"), r"does not match the dataset"),
    # --- datasets
    Case("missing_data_dir", "dataset", "main", _main("--config.data.dir={w.root}/nodata"),
         _name("--config.data.dir={w.root}/nodata"), r"does not exist; create the dataset with"),
    Case("data_dir_is_a_file", "dataset", "main", _main("--config.data.dir={w.a_file}"),
         _name("--config.data.dir={w.a_file}"), r"is a file; point it at the dataset directory"),
    Case("truncated_dataset_info", "dataset", "main", _main("--config.data.dir={w.bad_info}"),
         _name("{w.bad_info}/dataset_info.json"), r"is not a readable JSON object \(.*\); restore it, or rebuild"),
    Case("truncated_shard", "dataset", "main", _main("--config.data.dir={w.truncated_shard}"),
         _name("{w.truncated_shard}/bert_pretraining-train.array_record-00000-of-00001"),
         r"does not read as an ArrayRecord file \(truncated or corrupt.*\); restore it, or rebuild"),
    Case("missing_manifest", "dataset", "main", _main("--config.data.dir={w.no_manifest}"), _name("{w.no_manifest}"),
         r"is not a TFDS dataset directory \(no dataset_info.json\); point data_dir at"),
    Case("deleted_shard", "dataset", "main", _main("--config.data.dir={w.no_shard}"), _name("{w.deleted_shard.name}"),
         r"dataset .*no_shard lacks 1 of its 3 shard files \(.* missing or empty\); restore them or rebuild"),
    Case("dataset_made_with_another_vocab", "dataset", "main",
         _main("--config.train.init_from=" + str(FIXTURES / "tf_bert"), tiny=False),
         _name(str(FIXTURES / "tf_bert")), r"was made with another vocab than --config.train.init_from"),
    Case("seq_length_mismatch", "dataset", "main", _main("--config.data.max_seq_length=32"),
         _name("--config.data.max_seq_length=32"), r"does not match the dataset manifest"),
    Case("seq_length_mismatch_other_dataset", "dataset", "main", _main("--config.data.dir={w.seq512}"),
         _name("--config.data.max_seq_length=16"), r"does not match the dataset manifest"),
    Case("eval_split_missing", "dataset", "main", _main("--config.data.eval_split=dev"),
         _name("--config.data.eval_split='dev'"), r"is not a split of the dataset"),
    Case("masking_rate_on_a_static_dataset", "dataset", "main", _main("--config.data.train_masked_lm_prob=0.3"),
         _name("{w.dataset}"), r"has static masks .*rebuild it with --masking=dynamic"),
    # --- checkpoints
    Case("corrupt_checkpoint", "checkpoint", "main",
         _main("--workdir={w.corrupt_run}", "--config.model.max_position_embeddings=64",
               "--config.train.num_train_steps=4"),
         _name("--workdir {w.corrupt_run}: checkpoint step 2"), r"is unreadable .*--config.checkpoint.fallback=True",
         trained=True),
    Case("incompatible_workdir", "checkpoint", "main",
         _main("--workdir={w.run}", "--config.model.hidden_size=64", "--config.model.max_position_embeddings=64"),
         _name("{w.run}"), r"incompatible run: config.model.hidden_size was 32, now 64", trained=True),
    Case("finetune_workdir_with_another_head", "checkpoint", "main",
         _main(*CLASSIFICATION_ARGS, "--config.data.dir={w.cls_task}", "--config.train.init_from={w.run}",
               "--workdir={w.finetuned}", "--config.data.regression=True", config="finetune_glue.py", data=False),
         _name("{w.finetuned}"), r"holds checkpoints \(up to step 2\) of a BertForSequenceClassification with 2 "
         r"labels \(0, 1\), but this run trains a BertForSequenceClassification with 1 output \(regression\): "
         r"--config.data.regression=True \(was False\)", trained=True),
    Case("init_from_missing", "checkpoint", "main", _main("--config.train.init_from={w.root}/nothing"),
         _name("{w.root}/nothing"), r"does not exist; pass a bertjax workdir"),
    Case("init_from_a_file", "checkpoint", "main", _main("--config.train.init_from={w.a_file}"),
         _name("--config.train.init_from={w.a_file}"), r"is a file; pass the directory that holds it"),
    Case("init_from_truncated_config_json", "checkpoint", "main",
         _main("--config.train.init_from={w.bad_hf}", tiny=False), _name("{w.bad_hf}/config.json"),
         r"is not readable JSON .*; re-download or rewrite it"),
    Case("init_from_not_a_checkpoint", "checkpoint", "main", _main("--config.train.init_from={w.dataset}"),
         _name("{w.dataset}"), r"is not a BERT checkpoint"),
    Case("to_hf_on_a_dataset", "checkpoint", "convert", _args("to-hf", "--checkpoint={w.dataset}",
                                                             "--output={out}/hf"), _name("{w.dataset}"),
         r"is not a BERT checkpoint"),
    Case("to_hf_on_a_corrupt_checkpoint", "checkpoint", "convert",
         _args("to-hf", "--checkpoint={w.corrupt_run}", "--output={out}/hf"), _name("{w.corrupt_run}"),
         r"checkpoints/2 is unreadable .*; use another step, or the run's export directory", trained=True),
    Case("to_hf_into_a_non_empty_output", "checkpoint", "convert",
         _args("to-hf", "--checkpoint=" + str(FIXTURES / "hf_bert"), "--output={w.full}"), _name("--output {w.full}"),
         r"exists and is not empty; choose a new directory or pass --overwrite"),
    Case("from_tf_on_a_non_tf_checkpoint", "checkpoint", "convert",
         _args("from-tf", "--input={w.not_tf}", "--output={out}/o"), _name("{w.not_tf}"),
         r"bert_model.ckpt.index is not a TensorFlow checkpoint index"),
    Case("from_tf_on_a_file", "checkpoint", "convert",
         _args("from-tf", "--input=" + str(FIXTURES / "tf_bert" / "bert_model.ckpt.index"), "--output={out}/o"),
         _name(str(FIXTURES / "tf_bert" / "bert_model.ckpt.index")), r"is a file; pass the directory that holds it"),
    Case("from_tf_on_a_hf_directory", "checkpoint", "convert",
         _args("from-tf", "--input=" + str(FIXTURES / "hf_bert"), "--output={out}/o"),
         _name(str(FIXTURES / "hf_bert")), r"is a Hugging Face directory, not an original TF checkpoint"),
    Case("from_hf_truncated_config_json", "checkpoint", "convert",
         _args("from-hf", "--input={w.bad_hf}", "--output={out}/o"), _name("{w.bad_hf}/config.json"),
         r"is not readable JSON .*; re-download or rewrite it"),
    Case("benchmark_model_does_not_load", "checkpoint", "benchmark", _benchmark(model="{w.bad_hf}"),
         _name("--model=bad_hf={w.bad_hf}"), r"does not load: .*config.json is not readable JSON"),
    Case("benchmark_suite_file_unknown_type", "config", "benchmark",
         _benchmark(suite=str(FIXTURES / "benchmark" / "unknown_type.yaml")), _name("'clasification'"),
         r"task 'reviews' has unknown type 'clasification'; use one of classification, regression"),
    Case("benchmark_suite_file_unknown_metric", "config", "benchmark",
         _benchmark(suite=str(FIXTURES / "benchmark" / "unknown_metric.yaml")), _name("'rouge'"),
         r"unknown metric 'rouge' for type classification; use one of accuracy"),
    Case("benchmark_unknown_task", "config", "benchmark", _benchmark("--tasks=rte,sts-b"), _name("sts-b"),
         r"--tasks names sts-b, not in the glue suite; its tasks: mnli, mnli_mm"),
    Case("benchmark_strict_missing_task_data", "dataset", "benchmark", _benchmark("--tasks=rte", "--strict"),
         _name("{w.root}/RTE"), r"--strict: .* does not exist .*leave out --strict to report them as missing"),
    Case("visualize_missing_checkpoint", "checkpoint", "visualize",
         _visualize("--checkpoint={out}/nope"), _name("{out}/nope"), r"does not exist; pass a bertjax workdir"),
    Case("visualize_a_dataset_as_checkpoint", "checkpoint", "visualize",
         _visualize("--checkpoint={w.dataset}"), _name("{w.dataset}"), r"is not a BERT checkpoint"),
    Case("visualize_output_not_html", "config", "visualize", _visualize("--output={out}/view.png"),
         _name("{out}/view.png"), r"is not an \.html file; name the page e\.g\. view\.html"),
    Case("visualize_text_b_count", "config", "visualize", _visualize("--text_b=b", "--text_b=c"),
         _name("--text_b"), r"1 --text but 2 --text_b; give one --text_b per --text"),
    Case("visualize_bad_mlm_positions", "config", "visualize", _visualize("--mlm_positions=1,x"),
         _name("--mlm_positions=1,x"), r"use all, none, or token indices"),
    Case("visualize_too_long_max_seq_length", "config", "visualize", _visualize("--max_seq_length=4096"),
         _name("max_seq_length=4096"), r"must be between 3 and the model's \d+ position embeddings"),
    Case("from_hf_on_a_workdir", "checkpoint", "convert", _args("from-hf", "--input={w.run}", "--output={out}/o"),
         _name("{w.run}"), r"is a bertjax checkpoint, not a Hugging Face directory; use `to-hf`", trained=True),
]


def test_the_table_covers_every_kind_and_entry_point():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)
    assert {case.kind for case in CASES} == {"config", "corpus", "vocab", "dataset", "checkpoint"}
    assert {case.entry for case in CASES} == {"main", "aot", "benchmark", "cpd", "vocab", "convert", "visualize"}


def check_case(case: Case, world, out: Path, capsys) -> None:
    """Run one case: one line, exit 2, no traceback, the input and the fix named, nothing changed or left."""
    out.mkdir()
    before = snapshot(world.root, FIXTURES)
    capsys.readouterr()
    status = run_entry(case.entry, case.args(world, out))
    stderr = capsys.readouterr().err
    assert status == 2, (case.id, stderr)
    assert "Traceback" not in stderr, (case.id, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (case.id, stderr)
    assert case.names(world, out) in lines[0], (case.id, lines[0])
    assert re.search(case.expect, lines[0]), (case.id, lines[0])
    assert snapshot(world.root, FIXTURES) == before, case.id  # nothing that existed was touched
    left = [str(p) for p in out.rglob("*") if not p.is_dir()]
    assert left == [], (case.id, left)  # no file was left in the new output directory


@pytest.mark.parametrize("case", [case for case in CASES if not case.trained], ids=str)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, world, tmp_path, capsys, monkeypatch):
    """Injects the case's bad input (see CASES)."""
    if case.missing_module:
        monkeypatch.setitem(sys.modules, case.missing_module, None)  # `import` raises ImportError
    check_case(case, world, tmp_path / "out", capsys)


@pytest.mark.slow
def test_bad_input_about_a_trained_run_is_one_line_exit_2_and_changes_nothing(trained, tmp_path, capsys):
    """Injects the cases that need a real workdir (corrupt or incompatible checkpoint, a workdir given where a
    Hugging Face directory is expected, phase 2 from it): one test, so that under xdist one worker trains it."""
    for case in CASES:
        if case.trained:
            check_case(case, trained, tmp_path / case.id, capsys)


def test_verbose_raises_with_the_traceback(world, tmp_path, capsys):
    """Injects a bad input plus --verbose into every entry point: the BertjaxError (or the flag error) propagates
    with its traceback instead of one line."""
    cases = [("main", _main("--config.data.dir={w.root}/nodata", "--verbose")),
             ("cpd", _cpd("--verbose", vocab="{w.root}/novocab/vocab.txt")),
             ("vocab", _args("--input={w.root}/nothing*.txt", "--vocab_size=50", "--output={out}/v", "--verbose")),
             ("convert", _args("to-hf", "--checkpoint={w.dataset}", "--output={out}/hf", "--verbose")),
             ("aot", _args(f"--config={CONFIGS / 'base.py'}", "--topology=v9-8", "--verbose"))]
    for entry, args in cases:
        with pytest.raises(BertjaxError):
            run_entry(entry, args(world, tmp_path))
        assert "error:" not in capsys.readouterr().err
    with pytest.raises(AttributeError, match="batchsize"):  # a bad --config field: ml_collections' own error
        run_entry("main", _main("--config.train.batchsize=3", "--verbose")(world, tmp_path))


def _subprocess(*argv):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=REPO_ROOT)


def test_the_real_command_line_prints_the_same_line(world, tmp_path, capsys):
    """Injects an unknown --config field into main.py and a missing vocab into create_pretraining_data, as real
    processes: the same one line and exit 2 as in-process; with --verbose the traceback and a non-zero status."""
    for entry, script, case_id in [("main", ["main.py"], "unknown_field"),
                                   ("cpd", ["-m", "bertjax.data.create_pretraining_data"], "cpd_missing_vocab")]:
        case = next(c for c in CASES if c.id == case_id)
        args = case.args(world, tmp_path)
        run_entry(entry, args)
        expected = capsys.readouterr().err
        result = _subprocess(*script, *args)
        assert (result.returncode, result.stderr) == (2, expected)
    result = _subprocess("-m", "bertjax.data.create_pretraining_data", *case.args(world, tmp_path), "--verbose")
    assert result.returncode == 1 and "Traceback" in result.stderr and "BertjaxError" in result.stderr
    assert not (tmp_path / "ds").exists()
