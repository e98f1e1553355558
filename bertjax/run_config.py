"""Checks of a run's config against itself, the devices and the dataset manifest; the model config it implies.

Every problem is a BertjaxError naming the config field (as `--config.a.b`) and the fix.
"""
import pathlib

import ml_collections

from bertjax.errors import BertjaxError

DTYPES = ("float32", "bfloat16")


def _positive(config, path: str) -> None:
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    if not isinstance(value, int) or value < 1:
        raise BertjaxError(f"--config.{path}={value} must be a positive integer.")


def validate(config: ml_collections.ConfigDict, num_devices: int, process_count: int) -> None:
    """Check the config's internal consistency and that its batches split over the devices and processes."""
    if config.train.require_init_from and not config.train.init_from:
        raise BertjaxError("--config.train.init_from is required by this config (phase 2 continues a phase-1 run); "
                           "set it to the phase-1 --workdir or its export directory.")
    for path in ("train.batch_size", "train.micro_batches", "train.num_train_steps", "eval.batch_size",
                 "eval.every_steps", "checkpoint.every_steps", "checkpoint.keep", "log.every_steps",
                 "data.max_seq_length", "data.max_predictions_per_seq"):
        _positive(config, path)
    if config.dtype not in DTYPES:
        raise BertjaxError(f"--config.dtype={config.dtype!r} is not supported; use one of {DTYPES}.")
    batch, micro = config.train.batch_size, config.train.micro_batches
    if batch % (num_devices * micro):
        raise BertjaxError(
            f"--config.train.batch_size={batch} must be divisible by the number of devices ({num_devices}) times "
            f"--config.train.micro_batches ({micro}) = {num_devices * micro}; change the batch size or micro_batches.")
    if config.eval.batch_size % num_devices:
        raise BertjaxError(
            f"--config.eval.batch_size={config.eval.batch_size} must be divisible by the number of devices "
            f"({num_devices}); change it.")
    if batch % process_count or config.eval.batch_size % process_count:
        raise BertjaxError(f"batch sizes must be divisible by the number of processes ({process_count}).")
    if config.data.max_predictions_per_seq > config.data.max_seq_length:
        raise BertjaxError("--config.data.max_predictions_per_seq must not exceed --config.data.max_seq_length.")


def check_manifest(config: ml_collections.ConfigDict, manifest: dict, data_dir: str, vocab_file: str | None) -> int:
    """Compare the dataset manifest with the config; return the vocab size the model must use."""
    fix = f"regenerate the dataset or change the config to match the dataset in {data_dir}"
    for field in ("max_seq_length", "max_predictions_per_seq"):
        if manifest.get(field) != config.data[field]:
            raise BertjaxError(
                f"--config.data.{field}={config.data[field]} does not match the dataset manifest "
                f"({field}={manifest.get(field)}) of {data_dir}; {fix}.")
    splits = manifest.get("num_examples", {})
    for field in ("train_split", "eval_split"):
        if splits and config.data[field] not in splits:
            raise BertjaxError(
                f"--config.data.{field}={config.data[field]!r} is not a split of the dataset in {data_dir} "
                f"(it has {sorted(splits)}); name one of those, or regenerate the dataset with --eval_fraction > 0.")
    vocab_size = int(manifest["vocab_size"])
    if config.model.vocab_size is not None and config.model.vocab_size != vocab_size:
        raise BertjaxError(
            f"--config.model.vocab_size={config.model.vocab_size} does not match the dataset manifest "
            f"(vocab_size={vocab_size}) of {data_dir}; set it to {vocab_size} or leave it unset.")
    if vocab_file is not None:
        if not pathlib.Path(vocab_file).is_file():
            raise BertjaxError(f"--config.data.vocab_file={vocab_file} does not exist; fix the path.")
        from bertjax.data.tokenizer import vocab_sha256  # noqa: PLC0415

        digest = vocab_sha256(vocab_file)
        if manifest.get("vocab_sha256") and digest != manifest["vocab_sha256"]:
            raise BertjaxError(
                f"--config.data.vocab_file={vocab_file} (sha256 {digest[:12]}…) is not the vocab the "
                f"dataset in {data_dir} was made with (sha256 {str(manifest['vocab_sha256'])[:12]}…); use that vocab "
                "or regenerate the dataset.")
    return vocab_size


def bert_config(config: ml_collections.ConfigDict, vocab_size: int):
    """The BertConfig the run trains: a named size with the config's overrides."""
    from bertjax.model import BertConfig  # noqa: PLC0415  (keeps config checks importable without flax)

    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
              "max_position_embeddings", "initializer_range", "hidden_dropout_prob", "attention_probs_dropout_prob")
    overrides = {name: config.model[name] for name in fields if config.model.get(name) is not None}
    try:
        return BertConfig.named(config.model.size, vocab_size=vocab_size, **overrides)
    except BertjaxError as e:
        raise BertjaxError(f"--config.model.*: {e}") from e


def flops_per_example(bert, seq_length: int, num_predictions: int) -> float:
    """Approximate training FLOPs (forward + backward = 3x forward) of one example."""
    hidden, inner = bert.hidden_size, bert.intermediate_size
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * inner) + 2 * 2 * seq_length * hidden
    encoder = bert.num_hidden_layers * seq_length * per_token_layer
    heads = num_predictions * 2 * (hidden * hidden + hidden * bert.vocab_size) + 2 * hidden * hidden
    return 3.0 * (encoder + heads)


def check_token_ids(batch: dict, vocab_size: int) -> None:
    """Raise if a host-local batch has a token id outside [0, vocab_size)."""
    for key in ("input_ids", "masked_lm_ids"):
        values = batch[key]
        if values.size and (values.max() >= vocab_size or values.min() < 0):
            raise BertjaxError(
                f"the dataset has {key} outside [0, {vocab_size}) (max {int(values.max())}); the model's vocab_size "
                "does not fit the data: regenerate the dataset with the matching vocab.")
