"""Shared by the training tests and the worker scripts: a tiny config and a synthetic, checkpointable dataset."""
import importlib.util
import pathlib
import sys

import jax
import ml_collections
import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # configs/*.py import each other as `configs.base`
    sys.path.insert(0, str(REPO_ROOT))

VOCAB_SIZE = 96
SEQ_LENGTH = 16
PREDICTIONS = 4


def load_config(name: str) -> ml_collections.ConfigDict:
    """get_config() of configs/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"configs.{name}", REPO_ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
    """A 2-layer, 32-wide float32 BERT config with small batches, no dropout, frequent logs."""
    config = load_config("base")
    config.dtype = "float32"
    config.model.size = "tiny"
    config.model.hidden_size = 32
    config.model.num_hidden_layers = 2
    config.model.num_attention_heads = 2
    config.model.intermediate_size = 64
    config.model.hidden_dropout_prob = 0.0
    config.model.attention_probs_dropout_prob = 0.0
    config.data.max_seq_length = SEQ_LENGTH
    config.data.max_predictions_per_seq = PREDICTIONS
    config.train.batch_size = 16
    config.train.num_train_steps = 20
    config.eval.batch_size = 16
    config.eval.every_steps = 1000
    config.eval.num_batches = 2
    config.checkpoint.every_steps = 1000
    config.log.every_steps = 5
    config.log.tensorboard = False
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 2
    config.mesh.min_shard_size = 64
    for key, value in train_overrides.items():
        config.train[key] = value
    return config


def make_example(index: int, seed: int = 0) -> dict:
    """One deterministic synthetic example (a function of its index): learnable, not constant."""
    rng = np.random.default_rng([seed, index])
    length = SEQ_LENGTH
    input_ids = rng.integers(5, VOCAB_SIZE, size=length).astype(np.int32)
    input_ids[0], input_ids[-1] = 2, 3
    positions = np.sort(rng.choice(np.arange(1, length - 1), size=PREDICTIONS, replace=False)).astype(np.int32)
    masked_ids = input_ids[positions].copy()
    input_ids[positions] = 4
    num_real = rng.integers(1, PREDICTIONS + 1)
    weights = (np.arange(PREDICTIONS) < num_real).astype(np.float32)
    return {
        "input_ids": input_ids,
        "input_mask": np.ones(length, np.int32),
        "segment_ids": (np.arange(length) >= length // 2).astype(np.int32),
        "masked_lm_positions": np.where(weights > 0, positions, 0).astype(np.int32),
        "masked_lm_ids": np.where(weights > 0, masked_ids, 0).astype(np.int32),
        "masked_lm_weights": weights,
        "next_sentence_labels": np.int32(index % 2),
    }


def make_batch(batch_size: int, start: int = 0, seed: int = 0) -> dict:
    """A host-local numpy batch of examples start..start+batch_size."""
    examples = [make_example(start + i, seed) for i in range(batch_size)]
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def grain_batches(global_batch_size: int, *, num_batches: int, seed: int, repeat: bool):
    """A checkpointable Grain iterator of this process's rows of global batches 0, 1, 2, ..."""
    import grain  # noqa: PLC0415

    per_host = global_batch_size // jax.process_count()
    offset = jax.process_index() * per_host

    def host_rows(batch_index):
        return make_batch(per_host, start=batch_index * global_batch_size + offset, seed=seed)

    dataset = grain.MapDataset.range(num_batches)
    if repeat:
        dataset = dataset.repeat()
    return iter(dataset.map(host_rows).to_iter_dataset())


def synthetic_data(config: ml_collections.ConfigDict, *, train_batches: int = 64, eval_batches: int = 2):
    """A bertjax.train.DataSource of synthetic examples (train: seed 0, repeating; eval: seed 1, finite)."""
    from bertjax.train import DataSource  # noqa: PLC0415

    return DataSource(
        vocab_size=VOCAB_SIZE,
        train_iterator=lambda: grain_batches(config.train.batch_size, num_batches=train_batches, seed=0,
                                             repeat=True),
        eval_iterator=lambda: grain_batches(config.eval.batch_size, num_batches=eval_batches, seed=1,
                                            repeat=False))


def params_digest(params) -> dict:
    """{path: bytes} of every leaf, for bitwise comparisons."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf).tobytes() for path, leaf in flat}


def run_steps(config: ml_collections.ConfigDict, num_steps: int, *, devices=None, batches=None,
              initial_params=None):
    """Train `num_steps` steps in-process on synthetic batches; return (per-step losses, final state, trainer)."""
    from bertjax import losses, run_config, sharding  # noqa: PLC0415
    from bertjax.train import Trainer  # noqa: PLC0415

    devices = list(jax.devices() if devices is None else devices)
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp, devices)
    with jax.set_mesh(mesh):
        trainer = Trainer(config, run_config.bert_config(config, VOCAB_SIZE), mesh)
        state = trainer.initial_state()
        if initial_params is not None:
            state = state.replace(params=jax.device_put(initial_params, trainer.state_shardings.params))
        step_losses = []
        for step in range(num_steps):
            host_batch = batches[step] if batches is not None else make_batch(
                config.train.batch_size, start=step * config.train.batch_size)
            state, metrics = trainer.jit_train_step(state, trainer.global_batch(host_batch))
            step_losses.append(float(losses.compute_metrics(jax.device_get(metrics))["loss"]))
    return step_losses, state, trainer
