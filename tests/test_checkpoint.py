"""Checkpoints: round trip onto another device count, params export / init_from, and clear errors."""
import shutil

import jax
import numpy as np
import pytest

from _train_helpers import VOCAB_SIZE, params_digest, synthetic_data, tiny_config
from bertjax import checkpoint, run_config, sharding
from bertjax.convert import hf
from bertjax.errors import BertjaxError
from bertjax.model import unpad_vocab
from bertjax.task import pretraining_objective
from bertjax.train import Trainer, train_and_evaluate


def _trainer(config, devices):
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp, devices)
    with jax.set_mesh(mesh):
        return Trainer(config, run_config.bert_config(config, VOCAB_SIZE), mesh, pretraining_objective(config))


def _saved_fsdp_state(workdir):
    """A fresh state of the tiny model with fsdp 4, at step 7, saved in `workdir`: (its config, the state)."""
    config = tiny_config()
    config.mesh.fsdp = 4
    state = _trainer(config, jax.devices()).initial_state()
    state = state.replace(step=state.step + 7)
    saver = checkpoint.Checkpointer(str(workdir), every_steps=100, keep=2)
    assert saver.save(7, state, config=config.to_dict(), force=True)
    saver.close()
    return config, state


def test_restore_onto_a_different_device_count(tmp_path):
    config, state = _saved_fsdp_state(tmp_path)

    config.mesh.fsdp = 1
    target = _trainer(config, jax.devices()[:1])
    loader = checkpoint.Checkpointer(str(tmp_path), every_steps=100, keep=2)
    assert loader.latest_step() == 7
    restored = loader.restore(7, target.abstract_state_with_shardings())
    loader.close()
    assert int(restored.step) == 7
    assert params_digest(restored.params) == params_digest(state.params)
    leaf = jax.tree.leaves(restored.params)[0]
    assert leaf.sharding.mesh.devices.size == 1
    assert jax.random.key_data(restored.rng).tolist() == jax.random.key_data(state.rng).tolist()


def test_incompatible_checkpoint_is_a_clear_error(tmp_path):
    config, _ = _saved_fsdp_state(tmp_path)
    config.model.hidden_size = 64
    other = _trainer(config, jax.devices())
    loader = checkpoint.Checkpointer(str(tmp_path), every_steps=100, keep=2)
    with pytest.raises(BertjaxError, match=rf"--workdir {tmp_path} holds a checkpoint .*incompatible.*--workdir"):
        loader.restore(7, other.abstract_state_with_shardings())
    loader.close()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    config, _ = _saved_fsdp_state(tmp_path)
    for path in (tmp_path / "checkpoints" / "7" / "state").rglob("*"):
        if path.is_file() and "manifest" not in path.name and path.stat().st_size > 100:
            path.write_bytes(b"\0garbage" * 4)
    loader = checkpoint.Checkpointer(str(tmp_path), every_steps=100, keep=2)
    with pytest.raises(BertjaxError, match=r"--workdir .*checkpoint step 7 is unreadable.*--workdir"):
        loader.restore(7, _trainer(config, jax.devices()).abstract_state_with_shardings())
    loader.close()


@pytest.mark.slow
def test_run_exports_params_resumes_and_refuses_another_models_workdir(synthetic_run, tmp_path):
    workdir, config, metrics = synthetic_run.workdir, synthetic_run.config, synthetic_run.metrics
    assert set(metrics) >= {"masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                            "next_sentence_loss", "loss", "perplexity", "masked_lm_accuracy_baseline"}
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 6]
    assert (workdir / "export" / "config.json").is_file()
    # The export is also a Hugging Face checkpoint that bertjax.convert reads back.
    hf_config, hf_params = hf.load_hf_checkpoint(workdir / "export")
    assert hf_config.hidden_size == config.model.hidden_size
    assert (workdir / "config.json").is_file()

    # Phase-2 style: params from the export (and from the workdir's checkpoints) initialise a new run.
    trainer = _trainer(config.copy_and_resolve_references(), jax.devices())
    abstract = trainer.abstract_state_with_shardings().params
    exported = checkpoint.load_params(str(workdir / "export"), abstract)
    from_checkpoints = checkpoint.load_params(str(workdir), abstract)
    assert params_digest(exported) == params_digest(from_checkpoints)
    # (The run pads its vocab to 128 rows, configs/base.py; the export has the real VOCAB_SIZE rows.)
    exported_hf, loaded_hf = hf.params_to_hf(unpad_vocab(exported, VOCAB_SIZE)), hf.params_to_hf(hf_params)
    assert exported_hf.keys() == loaded_hf.keys()
    assert all(np.array_equal(exported_hf[k], loaded_hf[k]) for k in exported_hf)
    phase2 = tiny_config(num_train_steps=config.train.num_train_steps, init_from=str(workdir), eval_only=True)
    assert train_and_evaluate(phase2, str(tmp_path / "phase2"), data=synthetic_data(phase2)) == metrics

    # Same workdir, different model: refuse (naming the field and the fix) instead of overwriting.
    own = tmp_path / "run"  # a copy: the shared run stays as it is whatever happens
    shutil.copytree(workdir, own)
    before = {str(p.relative_to(own)): p.read_bytes() for p in own.rglob("*") if p.is_file()}
    other = config.copy_and_resolve_references()
    other.model.hidden_size = 64
    with pytest.raises(BertjaxError, match=r"incompatible run: config.model.hidden_size was 32, now 64.*--workdir"):
        train_and_evaluate(other, str(own), data=synthetic_data(other))
    assert {str(p.relative_to(own)): p.read_bytes() for p in own.rglob("*") if p.is_file()} == before


def test_init_from_nothing_is_a_clear_error(tmp_path):
    config = tiny_config()
    trainer = _trainer(config, jax.devices())
    with pytest.raises(BertjaxError, match="config.train.init_from"):
        checkpoint.load_params(str(tmp_path), trainer.abstract_state_with_shardings().params)
