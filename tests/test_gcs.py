"""Cloud Storage (gs://) everywhere a path is taken, against a local emulator (tests/_gcs_emulator.py).

create_pretraining_data reads its corpus and vocab from gs:// and writes the dataset there; the Grain pipeline
reads its ArrayRecord shards straight from gs://; a bad gs:// location is one clear error.
"""
import os

import numpy as np
import pytest

from bertjax import paths
from bertjax.data import catalog, pipeline
from bertjax.data import create_pretraining_data as cpd
from bertjax.errors import BertjaxError

from test_instances import small_vocab, write_corpus, write_small_vocab


def _upload(local, remote):
    paths.path(remote).parent.mkdir(parents=True, exist_ok=True)
    paths.path(local).copy(paths.path(remote))


def test_path_layer_lists_copies_and_checks_on_gs(gcs_dir, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    (tmp_path / "a" / "y.txt").write_text("y")
    (tmp_path / "done").write_text("d")
    paths.upload_tree(tmp_path, gcs_dir, last=["done"])
    assert [p.name for p in paths.glob(f"{gcs_dir}/**/*.txt")] == ["x.txt", "y.txt"]
    assert [p.name for p in paths.glob(f"{gcs_dir}/a/*.txt")] == ["y.txt"]
    assert paths.glob(f"{gcs_dir}/nothing*") == []
    assert [os.fspath(p) for p in paths.files_under(gcs_dir, max_depth=1)] == [f"{gcs_dir}/a/y.txt",
                                                                              f"{gcs_dir}/done"]
    with paths.local_copy(f"{gcs_dir}/a") as local:
        assert not paths.is_remote(local)
        assert (local / "b" / "x.txt").read_text() == "x"
    paths.write_text_atomically(f"{gcs_dir}/c.json", "{}")
    assert paths.path(f"{gcs_dir}/c.json").read_text() == "{}"
    assert paths.check_writable(f"{gcs_dir}/work", "--workdir") == paths.path(f"{gcs_dir}/work")
    with pytest.raises(BertjaxError, match="--workdir gs://no-such-bucket-here/w is not writable"):
        paths.check_writable("gs://no-such-bucket-here/w", "--workdir")


@pytest.mark.slow
def test_create_pretraining_data_reads_and_writes_gs(gcs_dir, tmp_path):
    vocab_dir = write_small_vocab(tmp_path / "vocab")
    corpus = write_corpus(tmp_path / "corpus.txt", 200, seed=4)
    for name in ("vocab.txt", "tokenizer_config.json"):
        _upload(vocab_dir / name, f"{gcs_dir}/vocab/{name}")
    _upload(corpus, f"{gcs_dir}/text/part-0.txt")
    settings = dict(dupe_factor=2, num_workers=1, show_progress=False, max_seq_length=32, max_predictions_per_seq=5)

    local = cpd.create_pretraining_data(str(corpus), tmp_path / "local", vocab_dir, **settings)
    remote_dir = f"{gcs_dir}/dataset"
    remote = cpd.create_pretraining_data(f"{gcs_dir}/text/*.txt", remote_dir, f"{gcs_dir}/vocab", **settings)
    assert remote["instances"] == local["instances"] > 0
    manifest = catalog.read_manifest(remote_dir)
    assert manifest["vocab_sha256"] == catalog.read_manifest(tmp_path / "local")["vocab_sha256"]
    assert catalog.dataset_vocab_path(remote_dir).startswith("gs://")
    # Grain reads the ArrayRecord shards from gs:// directly: the same batches as from the local copy.
    batches = [next(pipeline.create_iterator(d, "train", global_batch_size=8, seed=1, process_index=0,
                                             process_count=1)) for d in (str(tmp_path / "local"), remote_dir)]
    for key in batches[0]:
        np.testing.assert_array_equal(batches[0][key], batches[1][key])
    # Same settings and inputs: reused, not rebuilt; nothing was left in a staging place on the bucket.
    assert cpd.create_pretraining_data(f"{gcs_dir}/text/*.txt", remote_dir, f"{gcs_dir}/vocab", **settings) == remote
    assert sorted(p.name for p in paths.path(gcs_dir).iterdir()) == ["dataset", "text", "vocab"]


def test_missing_gs_inputs_are_one_line_errors(gcs_dir, tmp_path):
    with pytest.raises(BertjaxError, match="matches no file"):
        cpd.create_pretraining_data(f"{gcs_dir}/none/*.txt", tmp_path / "out", tmp_path, show_progress=False)
    with pytest.raises(BertjaxError, match="does not exist"):
        catalog.read_manifest(f"{gcs_dir}/no-dataset")


@pytest.mark.parametrize("workdir, expected", [
    ("gs://no-such-bucket-here/run", "--workdir gs://no-such-bucket-here/run is not writable"),
    ("{tmp}/a-file", "is a file, not a directory"),
    ("{tmp}/a-file/run", "is a file (inside the file"),
])
def test_a_workdir_without_write_access_is_one_line_before_anything_runs(gcs_env, tmp_path, workdir, expected):
    from test_main import _main, _one_error_line

    (tmp_path / "a-file").write_text("not a directory")
    os.environ.update(gcs_env)
    line = _one_error_line(_main("--config=configs/demo.py", workdir=workdir.format(tmp=tmp_path)))
    assert expected in line
    assert (tmp_path / "a-file").read_text() == "not a directory"   # nothing that was there is changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]   # and the demo built nothing


@pytest.mark.slow
def test_conversion_cli_reads_and_writes_gs(gcs_env, gcs_dir, tmp_path, monkeypatch):
    import subprocess
    import sys

    import jax
    from flax import traverse_util

    from bertjax.convert import hf, sources
    from bertjax.model import BertConfig, BertForPreTraining, init_params

    for name, value in gcs_env.items():
        monkeypatch.setenv(name, value)
    vocab_dir = write_small_vocab(tmp_path / "vocab")
    config = BertConfig.named("tiny", vocab_size=len(small_vocab()), hidden_size=32, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=64)
    params = jax.device_get(init_params(BertForPreTraining(config), jax.random.PRNGKey(3)))
    hf.save_pretrained(tmp_path / "hf", config, params, vocab_file=vocab_dir / "vocab.txt", do_lower_case=True)
    paths.upload_tree(tmp_path / "hf", f"{gcs_dir}/hf")

    for command, source, output in (("from-hf", "--input", "converted"), ("to-hf", "--checkpoint", "back")):
        result = subprocess.run([sys.executable, "-m", "bertjax.convert", command, source,
                                 f"{gcs_dir}/{'hf' if command == 'from-hf' else 'converted'}", "--output",
                                 f"{gcs_dir}/{output}"], capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"wrote {gcs_dir}/{output}: config.json, model.safetensors, tokenizer_config.json, vocab.txt" \
            in result.stdout
    back = traverse_util.flatten_dict(sources.load_pretrained(f"{gcs_dir}/back").params)
    for path, value in traverse_util.flatten_dict(params).items():
        np.testing.assert_array_equal(back[path], value, err_msg="/".join(path))
    refused = subprocess.run([sys.executable, "-m", "bertjax.convert", "from-hf", "--input", f"{gcs_dir}/hf",
                              "--output", f"{gcs_dir}/back"], capture_output=True, text=True, timeout=180)
    assert refused.returncode == 2 and "exists and is not empty" in refused.stderr


@pytest.mark.parametrize("fmt,compression", [("jsonl", ".zst"), ("parquet", ""), ("documents", ".gz")])
def test_corpus_formats_read_from_gs_as_locally(gcs_dir, tmp_path, fmt, compression):
    from test_corpus import documents, write_corpus  # noqa: PLC0415

    from bertjax.data import corpus, corpus_formats  # noqa: PLC0415

    local = write_corpus(tmp_path, fmt, compression)
    remote = f"{gcs_dir}/corpus/{local.name}"
    _upload(local, remote)
    files = [paths.path(remote)]
    spec = corpus.CorpusSpec(input_format=corpus_formats.resolve_format(files, fmt), text_field="text")
    corpus_formats.check_inputs(files, spec.input_format, spec.text_field)
    assert documents(files, spec)[0] == documents([local], spec)[0] != []
