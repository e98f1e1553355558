"""Fine-tuning on two JAX processes x 1 CPU device (gloo collectives on localhost) equals fine-tuning on one process
x 2 devices with the same mesh and global batch: the same dev metrics, predictions file and exported classifier."""
import json
import os
import subprocess
import sys

import numpy as np
import portpicker
import pytest
from safetensors.numpy import load_file

from test_finetune import _config, _sentiment_task, tiny_checkpoint  # noqa: F401  (tiny_checkpoint: a fixture)
from test_train_multiprocess import _finish

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_finetune_worker.py")


def _start(tmp_path, name: str, processes: int) -> list[subprocess.Popen]:
    """_finetune_worker.py on tmp_path/config.json (workdir tmp_path/name, report tmp_path/name.json), 2 CPU devices
    in all."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    common = [sys.executable, WORKER, "--config", str(tmp_path / "config.json"), "--workdir", str(tmp_path / name),
              "--report", str(tmp_path / f"{name}.json"), "--devices", str(2 // processes)]
    if processes > 1:
        common += ["--coordinator", f"127.0.0.1:{portpicker.pick_unused_port()}", "--num_processes", str(processes)]
    return [subprocess.Popen(common + (["--process_id", str(i)] if processes > 1 else []), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
            for i in range(processes)]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_process_fine_tuning_equals_one_process(tmp_path, tiny_checkpoint):  # noqa: F811
    data = tmp_path / "sst2"
    data.mkdir()
    _sentiment_task(data, seed=5, num_train=320, num_dev=40)  # dev: 2 eval batches of 32, the last one padded
    config = _config("finetune_glue", "sst2", data, tiny_checkpoint, train__num_epochs=3)  # 20 steps an epoch
    config.mesh.data, config.mesh.fsdp = 1, 2  # batches and parameter shards (fsdp) cross the process boundary
    config.mesh.min_shard_size = 64            # (the matrices of a 64-wide model are sharded)
    # The recipe's dropout: its masks are drawn over the global batch, so they fall on the same examples only if
    # the rows of every global batch come in the same order whatever the number of processes.
    config.model.hidden_dropout_prob = 0.1
    (tmp_path / "config.json").write_text(config.to_json())

    two = _start(tmp_path, "two", processes=2)
    one = _start(tmp_path, "one", processes=1)
    try:
        outputs = _finish(one) + _finish(two)
    finally:
        for process in one + two:  # none is left running when another failed
            if process.poll() is None:
                process.kill()
    assert "on 2 devices (2 cpu), mesh {'data': 1, 'fsdp': 2}, 1 processes" in outputs[0], outputs[0][-3000:]
    assert "on 2 devices (2 cpu), mesh {'data': 1, 'fsdp': 2}, 2 processes" in outputs[1], outputs[1][-3000:]
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two")}
    assert [reports[name]["process_count"] for name in ("one", "two")] == [1, 2]
    assert reports["one"]["task"] == reports["two"]["task"] == "sst2"                  # not "pretraining"

    # The fine-tuning path ran in both: the task's files encoded, dev predictions written, a classifier exported.
    for name in ("one", "two"):
        workdir = tmp_path / name
        assert len(list((workdir / "features").glob("train-*.npz"))) == 1
        exported = json.loads((workdir / "export" / "config.json").read_text())
        assert exported["architectures"] == ["BertForSequenceClassification"], exported
    one, two = tmp_path / "one", tmp_path / "two"

    # The same examples, masks and updates; only the collectives differ (gloo across processes, XLA's within one) and
    # may sum in another order, so the numbers agree to float32 rounding over 60 steps (rtol 1e-4, as in the
    # pretraining multi-process test; on these 2 devices they agree bitwise); the predictions (argmaxes) exactly.
    assert reports["two"]["metrics"] == pytest.approx(reports["one"]["metrics"], rel=1e-4)
    assert reports["one"]["metrics"]["eval_batches"] == 2
    assert reports["one"]["metrics"]["accuracy"] >= 0.9  # it learned: the predictions are not one constant label
    assert (two / "predictions_dev.tsv").read_text() == (one / "predictions_dev.tsv").read_text()
    assert len((one / "predictions_dev.tsv").read_text().splitlines()) == 41
    assert json.loads((two / "best" / "metrics.json").read_text()) == pytest.approx(
        json.loads((one / "best" / "metrics.json").read_text()), rel=1e-4)
    for directory in ("export", "best"):
        want, got = load_file(one / directory / "model.safetensors"), load_file(two / directory / "model.safetensors")
        assert sorted(got) == sorted(want) and "classifier.weight" in want
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=f"{directory}: {name}")
