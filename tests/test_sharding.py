"""Mesh and partition rules; the same losses on 1 device, 8 data-parallel devices and 2x4 data x fsdp."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from _train_helpers import run_steps, tiny_config
from bertjax import run_config, sharding
from bertjax.task import pretraining_objective
from bertjax.errors import BertjaxError


def test_mesh_shape_fills_the_auto_axis_and_rejects_bad_products():
    assert sharding.mesh_shape(8, -1, 1) == (8, 1)
    assert sharding.mesh_shape(8, -1, 4) == (2, 4)
    assert sharding.mesh_shape(8, 2, -1) == (2, 4)
    with pytest.raises(BertjaxError, match="mesh.data=3"):
        sharding.mesh_shape(8, 3, 1)


def test_create_mesh_uses_auto_axes_and_the_given_devices():
    mesh = sharding.create_mesh(-1, 2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 2
    assert sharding.create_mesh(devices=jax.devices()[:1]).devices.size == 1


def test_fsdp_spec_shards_the_largest_divisible_axis_of_large_leaves():
    assert sharding.fsdp_spec((30522, 768), 2) == P("fsdp")
    assert sharding.fsdp_spec((768, 3072), 4) == P(None, "fsdp")
    assert sharding.fsdp_spec((12, 768, 3072), 4) == P(None, None, "fsdp")
    assert sharding.fsdp_spec((30522, 768), 4) == P(None, "fsdp")  # 30522 is not divisible by 4
    assert sharding.fsdp_spec((768,), 4) == P()  # small leaf replicated
    assert sharding.fsdp_spec((30522, 768), 1) == P()  # no fsdp axis
    assert sharding.fsdp_spec((), 4) == P()


def test_state_shardings_shard_params_and_adam_moments_alike():
    config = tiny_config()
    config.mesh.fsdp = 4
    mesh = sharding.create_mesh(-1, 4)
    with jax.set_mesh(mesh):
        from bertjax.train import Trainer

        trainer = Trainer(config, run_config.bert_config(config, 96), mesh, pretraining_objective(config))
        state = trainer.initial_state()
    kernel = state.params["bert"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"]
    assert kernel.sharding.spec == P(None, "fsdp")
    assert kernel.addressable_shards[0].data.shape == (32, 16)
    moments = [leaf for leaf in jax.tree.leaves(state.opt_state) if getattr(leaf, "shape", None) == kernel.shape]
    assert moments and all(m.sharding.spec == P(None, "fsdp") for m in moments)
    assert state.params["bert"]["embeddings"]["LayerNorm"]["scale"].sharding.spec == P()


@pytest.mark.slow
def test_eight_devices_data_parallel_and_fsdp_match_one_device():
    steps = 20
    config = tiny_config(num_train_steps=steps)
    config.model.hidden_dropout_prob = 0.1  # dropout masks must not depend on the sharding either
    single, _, _ = run_steps(config, steps, devices=jax.devices()[:1])
    data_parallel, _, _ = run_steps(config, steps)
    config.mesh.fsdp = 4
    fsdp, state, _ = run_steps(config, steps)
    assert {leaf.sharding.spec for leaf in jax.tree.leaves(state.params)} >= {P(), P("fsdp")}
    assert single[-1] != single[0]
    np.testing.assert_allclose(data_parallel, single, rtol=1e-5)
    np.testing.assert_allclose(fsdp, single, rtol=1e-5)
