"""A pretraining run on Cloud Storage, end to end, against the local emulator (tests/_gcs_emulator.py).

`create_pretraining_data` reads its text and vocab from gs:// and writes the dataset there; 2 processes train from
it with the workdir on gs:// (checkpoints through Orbax/tensorstore, TensorBoard, config.json, model/); SIGTERM to one
of them stops both at the same step with one checkpoint on gs://; 2 processes resume from it and end bitwise where
the same run on local disk ends; the export lands on gs:// and reads back as those params.
"""
import signal
import subprocess
import sys

import numpy as np
import pytest

from bertjax import paths
from bertjax.convert import sources
from bertjax.data import catalog

from test_gcs import _upload
from test_instances import write_corpus, write_small_vocab
from test_train_multiprocess import _finish, _report, _start, _stopped_at, _wait_for


def _steps(workdir: str) -> list[int]:
    return sorted(int(p.name) for p in paths.path(f"{workdir}/checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.slow
@pytest.mark.multiprocess
def test_data_and_two_process_run_on_gs_stop_resume_and_export(gcs_dir, gcs_env, tmp_path, monkeypatch):
    for name, value in gcs_env.items():              # the training subprocesses inherit os.environ
        monkeypatch.setenv(name, value)
    vocab_dir = write_small_vocab(tmp_path / "vocab")
    for name in ("vocab.txt", "tokenizer_config.json"):
        _upload(vocab_dir / name, f"{gcs_dir}/vocab/{name}")
    for part in range(2):
        _upload(write_corpus(tmp_path / f"part-{part}.txt", 60, seed=part), f"{gcs_dir}/text/part-{part}.txt")
    flags = ["--max_seq_length=16", "--max_predictions_per_seq=4", "--dupe_factor=2", "--num_workers=1",
             "--eval_fraction=0.2"]
    for inputs, output, vocab in ((f"{gcs_dir}/text/*.txt", f"{gcs_dir}/dataset", f"{gcs_dir}/vocab/vocab.txt"),
                                  (str(tmp_path / "part-*.txt"), str(tmp_path / "dataset"), str(vocab_dir))):
        made = subprocess.run([sys.executable, "-m", "bertjax.data.create_pretraining_data", f"--input_file={inputs}",
                               f"--output_dir={output}", f"--vocab_file={vocab}", *flags],
                              capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr[-2000:]
    assert catalog.read_manifest(f"{gcs_dir}/dataset")["statistics"]["instances"] == \
        catalog.read_manifest(tmp_path / "dataset")["statistics"]["instances"] > 32

    steps = 6
    workdir = f"{gcs_dir}/run"
    on_gs = ("--steps", steps, "--checkpoint_every", 1000, "--data_dir", f"{gcs_dir}/dataset", "--tensorboard")
    local = _start(tmp_path, "local", "--steps", steps, "--checkpoint_every", 1000, "--data_dir", tmp_path / "dataset")
    preempted = _start(tmp_path, "gs", *on_gs, "--step_delay", 0.5, "--workdir", workdir)
    _wait_for(lambda: "2" in _report(tmp_path, "gs")["losses"], "step 2 of the gs:// run", preempted)
    preempted[1].send_signal(signal.SIGTERM)          # one process: the JAX preemption service tells the other
    stopped = {_stopped_at(output) for output in _finish(preempted)}
    assert len(stopped) == 1 and 2 <= min(stopped) < steps
    assert _steps(workdir) == sorted(stopped)          # both processes saved the same step, on gs://
    first = _report(tmp_path, "gs")

    _finish(_start(tmp_path, "gs", *on_gs, "--workdir", workdir))
    _finish(local)
    reference, resumed = _report(tmp_path, "local"), _report(tmp_path, "gs")
    assert sorted(map(int, resumed["batches"])) == list(range(min(stopped) + 1, steps + 1))
    assert {**first["batches"], **resumed["batches"]} == reference["batches"]
    assert resumed["params"] == reference["params"] is not None     # bitwise the run on local disk
    assert _steps(workdir) == sorted({*stopped, steps})

    run = paths.path(workdir)
    for written in ("config.json", "model/config.json", "model/vocab.txt", "export/config.json",
                    "export/model.safetensors", "export/vocab.txt"):
        assert (run / written).is_file(), written
    assert paths.glob(f"{workdir}/tensorboard/events.out.tfevents.*")
    exported, local_export = (sources.load_pretrained(d) for d in (f"{workdir}/export", tmp_path / "local" / "export"))
    for (path, value), (_, expected) in zip(sorted(_flat(exported.params).items()),
                                            sorted(_flat(local_export.params).items())):
        np.testing.assert_array_equal(value, expected, err_msg=path)


def _flat(params: dict) -> dict:
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}
