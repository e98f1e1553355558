"""Shared by the training tests and the worker scripts: a tiny config and a synthetic, checkpointable dataset (of
_batches.make_batch's default examples)."""
import importlib.util
import pathlib
import sys

import jax
import ml_collections
import numpy as np

from _batches import PREDICTIONS, SEQ_LENGTH, VOCAB_SIZE, make_batch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # configs/*.py import each other as `configs.base`
    sys.path.insert(0, str(REPO_ROOT))


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


def checkpointed_config(num_train_steps: int = 6, every_steps: int = 2) -> ml_collections.ConfigDict:
    """tiny_config with `num_train_steps` steps and a checkpoint every `every_steps`; by default the config of the
    shared synthetic run (conftest.py `synthetic_run`: checkpoints 2, 4 and 6)."""
    config = tiny_config(num_train_steps=num_train_steps)
    config.checkpoint.every_steps = every_steps
    return config


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
    """A bertjax.task.DataSource of synthetic examples (train: seed 0, repeating; eval: seed 1, finite)."""
    from bertjax.task import DataSource  # noqa: PLC0415

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
    from bertjax.task import pretraining_objective  # noqa: PLC0415
    from bertjax.train import Trainer  # noqa: PLC0415

    devices = list(jax.devices() if devices is None else devices)
    mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp, devices)
    with jax.set_mesh(mesh):
        trainer = Trainer(config, run_config.bert_config(config, VOCAB_SIZE), mesh, pretraining_objective(config))
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


def write_random_bert(directory: pathlib.Path, words, **sizes):
    """A randomly initialised BertForPreTraining (PRNGKey(0)) saved as an uncased Hugging Face directory whose vocab
    is the special tokens, then `words` (each once). `sizes`: the other BertConfig fields. Returns the BertConfig."""
    from bertjax.convert import hf  # noqa: PLC0415
    from bertjax.data.vocab_files import SPECIAL_TOKENS  # noqa: PLC0415
    from bertjax.model import BertConfig, BertForPreTraining, init_params  # noqa: PLC0415

    vocab = [*SPECIAL_TOKENS, *dict.fromkeys(words)]
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "source_vocab.txt"  # save_pretrained copies it to vocab.txt
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), **sizes)
    params = init_params(BertForPreTraining(config), jax.random.PRNGKey(0))
    hf.save_pretrained(directory, config, jax.device_get(params), vocab_file=vocab_file, do_lower_case=True,
                       strip_accents=True)
    vocab_file.unlink()
    return config
