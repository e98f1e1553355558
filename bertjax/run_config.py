"""The door of a training run: every check of its config, in one pass, before anything is built.

    spec = run_config.check_run(config, workdir, num_devices=8, process_count=1)

checks the config against itself, the devices and processes, the optimizer fields, the dataset manifest and vocab
(or the fine-tuning task's files), the model fields and what the workdir already holds, and returns a `RunSpec` of
typed values (the `BertConfig`, the `Task`: objective, data, labels, main metric) that the rest of the run takes
without asking the config again. Every problem is a BertjaxError naming the config field (as `--config.a.b`) and the
fix. The door writes nothing in the workdir (the demo's dataset is built on first use, `data/prepare.py`, after the
checks that need no data; fine-tuning features wait in `task.pending_writes`). On several hosts
`check_run_on_every_host` runs the checks on each, and the hosts agree on the outcome before the first collective.
"""
import dataclasses
import hashlib
import json

import ml_collections

from bertjax import batch_ramp, finetune, paths, task as task_lib, workdir_layout
from bertjax.convert import hf, hf_heads, sources
from bertjax.data import catalog, prepare
from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import vocab_sha256
from bertjax.errors import BertjaxError
from bertjax.layers import ATTENTION_IMPLS, DROPOUT_BITS, REMAT_POLICIES
from bertjax.model import BertConfig
from bertjax.train_state import validate_optimizer_config

DTYPES = ("float32", "bfloat16")
RNG_IMPLS = ("threefry", "rbg", "unsafe_rbg")
POSITIVE_FIELDS = ("train.batch_size", "train.micro_batches", "train.num_train_steps", "eval.batch_size",
                   "eval.every_steps", "checkpoint.every_steps", "checkpoint.keep", "log.every_steps",
                   "data.max_seq_length", "data.max_predictions_per_seq")
DEFAULT_SIZE = "base"
# The fields a named size sets, and the ones a run chooses even when the model comes from a checkpoint.
SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
RUN_CHOSEN_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# The BertConfig fields a run config may override (config.model.<name>); unset ones keep the named size's value.
MODEL_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                "max_position_embeddings", "initializer_range", "hidden_dropout_prob", "attention_probs_dropout_prob")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What the checks resolved: the model to build, what it trains on (the Task), and the vocab and casing of the
    data (None when the caller brings its own data)."""

    bert_config: BertConfig
    config: ml_collections.ConfigDict               # the config resolved: model fields, fine-tuning schedule
    task: task_lib.Task                             # the objective, data, labels, main metric
    data_dir: str | None = None                     # pretraining: the dataset directory
    vocab_file: str | None = None
    do_lower_case: bool | None = None
    strip_accents: bool | None = None

    @property
    def vocab_size(self) -> int:
        """The vocab size of the model and of the data."""
        return self.bert_config.vocab_size


def check_run(config: ml_collections.ConfigDict, workdir: str, *, num_devices: int, process_count: int,
              vocab_size: int | None = None) -> RunSpec:
    """All checks of a run, in one pass; returns the resolved RunSpec.

    `vocab_size` is given when the caller brings its own data (tests); otherwise the dataset named by the config
    (or the demo's, built on first use) is checked against its manifest and gives the vocab size.
    """
    validate(config, num_devices, process_count)
    paths.check_writable(workdir, "--workdir")  # before anything is read, built or trained
    pretrained = None
    if config.train.init_from:
        try:
            pretrained = sources.load_pretrained(config.train.init_from, read_params=False)
        except BertjaxError as e:
            raise BertjaxError(f"--config.train.init_from={config.train.init_from}: {e}") from e
    check = _check_pretraining if task_lib.is_pretraining(config) else _check_finetuning
    spec = check(config, workdir, pretrained, vocab_size)
    if workdir:
        check_workdir_task(spec, workdir)
    return spec


def _check_pretraining(config: ml_collections.ConfigDict, workdir: str, pretrained: sources.Pretrained | None,
                       vocab_size: int | None) -> RunSpec:
    """A pretraining run: the dataset's manifest, shards and vocab (or `vocab_size` without data), the model."""
    validate_optimizer_config(config.optimizer, config.train.num_train_steps)
    if vocab_size is not None:
        model = bert_config(config, vocab_size, pretrained)
        task = task_lib.pretraining(config, None, vocab_size)
        return RunSpec(model, resolved_config(config, model, task), task)
    data_dir, vocab_file = prepare.dataset_dir(config, workdir)
    manifest = catalog.read_manifest(data_dir)
    catalog.check_shards(data_dir)
    vocab_size = check_manifest(config, manifest, data_dir, vocab_file)
    dataset_vocab = catalog.dataset_vocab_path(data_dir)
    if pretrained is not None and pretrained.vocab_file is not None:
        check_same_vocab(pretrained, dataset_vocab, manifest, data_dir)
    model = bert_config(config, vocab_size, pretrained)
    task = task_lib.pretraining(config, data_dir, vocab_size)
    return RunSpec(model, resolved_config(config, model, task), task, data_dir, dataset_vocab,
                   bool(manifest["do_lower_case"]), bool(manifest["strip_accents"]))


def check_run_on_every_host(config: ml_collections.ConfigDict, workdir: str, *, num_devices: int,
                            process_count: int, vocab_size: int | None = None) -> RunSpec:
    """`check_run` on every host, then the hosts agree before any collective: each publishes its result (ok, or
    the error) and digests of what it resolved (`host_digests`) through the coordination service. If any host
    failed, or one resolved another config, dataset manifest, vocab or task data than process 0, every host raises
    the same BertjaxError naming the process(es) and what differs. One process: just `check_run`."""
    from bertjax import distributed  # noqa: PLC0415  (imports JAX; the door itself does not)

    spec, error = None, None
    try:
        spec = check_run(config, workdir, num_devices=num_devices, process_count=process_count,
                         vocab_size=vocab_size)
    except Exception as e:  # noqa: BLE001  (published so the other hosts fail too, then raised)
        error = e
    if process_count == 1:
        if error is not None:
            raise error
        return spec
    message = None if error is None else (str(error) if isinstance(error, BertjaxError)
                                          else f"{type(error).__name__}: {error}")
    config_fields = {} if spec is None else {".".join(path): repr(value) for path, value in
                                             _flatten(json.loads(spec.config.to_json_best_effort()))}
    results = distributed.exchange("run checks", {"error": message, "config": config_fields,
                                                  "digests": host_digests(spec) if spec is not None else {}})
    failed = [index for index, result in enumerate(results) if result["error"] is not None]
    if error is not None and not isinstance(error, BertjaxError):
        raise error  # a bug, not bad input: its traceback here; the other hosts stop with its one line
    if failed:
        others = f" (processes {', '.join(map(str, failed[1:]))} failed too)" if len(failed) > 1 else ""
        raise BertjaxError(f"process {failed[0]} of {process_count} failed the run checks{others}: "
                           f"{results[failed[0]]['error']}") from error
    reference = results[0]["digests"]
    differing = {index: [name for name in sorted(set(reference) | set(result["digests"]))
                         if result["digests"].get(name) != reference.get(name)]
                 for index, result in enumerate(results)}
    differing = {index: names for index, names in differing.items() if names}
    if differing:
        def describe(index: int, name: str) -> str:
            if name == "resolved config":
                fields = results[index]["config"]
                changed = sorted(field for field in set(fields) | set(results[0]["config"])
                                 if fields.get(field) != results[0]["config"].get(field))
                if changed:
                    theirs, ours = fields, results[0]["config"]
                    return "config " + ", ".join(f"--config.{field}={theirs.get(field, 'unset')} (process 0: "
                                                 f"{ours.get(field, 'unset')})" for field in changed[:4])
            return (f"{name} {_short(results[index]['digests'].get(name))} (process 0: "
                    f"{_short(reference.get(name))})")

        details = "; ".join(f"process {index}: " + ", ".join(describe(index, name) for name in names)
                            for index, names in differing.items())
        raise BertjaxError(f"the {process_count} processes disagree before training: {details}; every host must "
                           "run the same command and see the same dataset, vocab and init_from (a shared "
                           "filesystem, or identical copies at the same paths).")
    return spec


def host_digests(spec: RunSpec) -> dict[str, str]:
    """sha256 digests of what this host resolved: the config (model fields from the data and init_from included),
    the dataset manifest, the vocab and, for fine-tuning, the task data's size and labels."""
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    digests = {"resolved config": sha(spec.config.to_json_best_effort(sort_keys=True))}
    if spec.data_dir is not None:
        digests["dataset manifest"] = sha(json.dumps(catalog.read_manifest(spec.data_dir), sort_keys=True,
                                                     default=str))
    if spec.vocab_file is not None:
        digests["vocab"] = vocab_sha256(spec.vocab_file)
    if spec.task.num_train_examples is not None:
        digests["task data"] = sha(json.dumps([spec.task.num_train_examples, spec.task.labels], default=str))
    return digests


def _flatten(tree, prefix: tuple = ()):
    """(path, leaf) pairs of a nested dict."""
    if isinstance(tree, dict):
        for key, value in sorted(tree.items()):
            yield from _flatten(value, (*prefix, str(key)))
    else:
        yield prefix, tree


def _short(digest: str | None) -> str:
    return "missing" if digest is None else f"sha256 {digest[:12]}…"


def _check_finetuning(config: ml_collections.ConfigDict, workdir: str, pretrained: sources.Pretrained | None,
                      vocab_size: int | None = None) -> RunSpec:
    """A fine-tuning run: the vocab and casing of init_from (or --config.data.vocab_file), the task's files read and
    encoded, the schedule from the epochs, and the model from init_from (or the named size)."""
    finetune.check_task(config)
    vocab_file = config.data.vocab_file or (pretrained.vocab_file if pretrained is not None else None)
    if vocab_file is None:
        raise BertjaxError("fine-tuning needs a vocab: set --config.train.init_from to a checkpoint with vocab.txt, "
                           "or --config.data.vocab_file")
    lower = config.data.do_lower_case
    if lower is None and pretrained is not None and config.data.vocab_file is None:
        lower = pretrained.do_lower_case
    tokenizer = BertTokenizer.from_vocab(vocab_file, do_lower_case=lower)
    task = finetune.prepare(config, workdir, tokenizer)
    if pretrained is not None and pretrained.head is not None:
        check_same_head(config, pretrained, task)
    resolved = finetune.resolve_schedule(config, task.num_train_examples)
    for path in POSITIVE_FIELDS:
        _positive(resolved, path)
    validate_optimizer_config(resolved.optimizer, resolved.train.num_train_steps)
    model = bert_config(resolved, tokenizer.vocab_size, pretrained)
    return RunSpec(model, resolved_config(resolved, model, task), task, None, str(tokenizer.vocab_path),
                   tokenizer.do_lower_case, tokenizer.strip_accents)


def check_workdir_task(spec: RunSpec, workdir: str) -> None:
    """A workdir with checkpoints continues the model they hold: the head (its transformers class) and its labels
    that `<workdir>/model/config.json` records must be this run's, else the one line names the setting that
    changed, before anything is written (`_check_compatible` in train.py compares the model's size on restore)."""
    step = workdir_layout.latest_step(workdir)
    model_dir = workdir_layout.path(workdir, workdir_layout.MODEL_DIR)
    if step is None or not (model_dir / hf.CONFIG_NAME).is_file():
        return
    saved = hf.read_config_data(model_dir)
    ours = hf_heads.config_fields(spec.task.objective.build_model(spec.bert_config), spec.task.labels)
    if hf_heads.describe(saved) == hf_heads.describe(ours):
        return
    run_json = workdir_layout.path(workdir, workdir_layout.CONFIG_JSON)
    saved_run = json.loads(run_json.read_text()) if run_json.is_file() else {}
    # The settings that choose the head and its labels: the task, and for generic classification, regression.
    ours_fields = {"task": spec.config.task, "data.regression": spec.config.data.get("regression")}
    theirs_fields = {"task": saved_run.get("task"), "data.regression": saved_run.get("data", {}).get("regression")}
    changed = [f"--config.{name}={value} (was {theirs_fields[name]})" for name, value in ours_fields.items()
               if value != theirs_fields[name]]
    what = "; ".join(changed) or "the labels of the task's training file"
    raise BertjaxError(
        f"--workdir {workdir} holds checkpoints (up to step {step}) of a {hf_heads.describe(saved)}, but this run "
        f"trains a {hf_heads.describe(ours)}: {what}; use a new --workdir, or the settings of the run that wrote it.")


def check_same_head(config: ml_collections.ConfigDict, pretrained: sources.Pretrained,
                    task: task_lib.Task) -> None:
    """A fine-tuned init_from of the run's head class continues with its classifier, so its number of labels must
    be the task's; another head class contributes only its encoder."""
    ours = task.objective.build_model(pretrained.config)
    if type(pretrained.head) is not type(ours):
        return
    theirs_n, ours_n = getattr(pretrained.head, "num_labels", None), getattr(ours, "num_labels", None)
    if theirs_n != ours_n:
        raise BertjaxError(
            f"--config.train.init_from={config.train.init_from} is a fine-tuned {type(ours).__name__} with "
            f"num_labels={theirs_n}, but --config.task={config.task} has num_labels={ours_n}; continue from a "
            f"checkpoint with {ours_n} labels, or from a pretrained (not fine-tuned) one.")


def resolved_config(config: ml_collections.ConfigDict, bert_config: BertConfig,
                    task: task_lib.Task) -> ml_collections.ConfigDict:
    """A copy of the config with the model fields the run actually trains (from the named size, the data or
    init_from, and the objective's vocab padding: 1 for a fine-tuning head, which has no vocab-wide matmul); it is
    what checkpoints store and compare on resume."""
    resolved = ml_collections.ConfigDict(config.to_dict())
    for name in ("vocab_size", *MODEL_FIELDS):
        resolved.model[name] = getattr(bert_config, name)
    resolved.model.vocab_pad_multiple = task.objective.vocab_pad_multiple
    return resolved


def _positive(config: ml_collections.ConfigDict, path: str) -> None:
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
    for path in POSITIVE_FIELDS:
        _positive(config, path)
    pad = config.model.vocab_pad_multiple
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 1:
        raise BertjaxError(f"--config.model.vocab_pad_multiple={pad!r} must be a positive integer (1: no padding).")
    bits = config.model.dropout_bits
    if isinstance(bits, bool) or bits not in DROPOUT_BITS:
        raise BertjaxError(f"--config.model.dropout_bits={bits!r} must be one of {', '.join(map(str, DROPOUT_BITS))} "
                           "(random bits per dropout-mask element; 32 = flax's nn.Dropout).")
    impl = config.model.attention_impl
    if impl not in ATTENTION_IMPLS:
        raise BertjaxError(f"--config.model.attention_impl={impl!r} is unknown; use one of "
                           f"{', '.join(ATTENTION_IMPLS)}.")
    if impl == "dot_product_attention" and config.model.attention_probs_dropout_prob:
        raise BertjaxError(f"--config.model.attention_impl={impl} has no dropout on the attention probabilities (the "
                           "fused kernels have none); add --config.model.attention_probs_dropout_prob=0.")
    policy = config.model.remat_policy
    if policy not in REMAT_POLICIES:
        raise BertjaxError(f"--config.model.remat_policy={policy!r} is unknown; use one of {', '.join(REMAT_POLICIES)}.")
    if not config.train.nsp_weight >= 0:
        raise BertjaxError(f"--config.train.nsp_weight={config.train.nsp_weight} must be >= 0 (1: the original loss; "
                           "0: masked LM only).")
    _check_budget_fields(config)
    batch_ramp.validate(config.train, num_devices, process_count)
    if config.train.rng_impl not in RNG_IMPLS:
        raise BertjaxError(f"--config.train.rng_impl={config.train.rng_impl!r} is unknown; use one of "
                           f"{', '.join(RNG_IMPLS)}.")
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
    if task_lib.is_pretraining(config) and config.data.max_predictions_per_seq > config.data.max_seq_length:
        raise BertjaxError("--config.data.max_predictions_per_seq must not exceed --config.data.max_seq_length.")


def _check_budget_fields(config: ml_collections.ConfigDict) -> None:
    """The budget recipe's masking rate and time budget (the batch-size ramp: `batch_ramp.validate`)."""
    rate = config.data.train_masked_lm_prob
    if rate is not None:
        if not task_lib.is_pretraining(config):
            raise BertjaxError("--config.data.train_masked_lm_prob applies to pretraining only; unset it.")
        if isinstance(rate, bool) or not 0.0 < rate <= 1.0:
            raise BertjaxError(f"--config.data.train_masked_lm_prob={rate!r} must be in (0, 1] (0.15: the original; "
                               "budget recipes use 0.3).")
    if batch_ramp.enabled(config.train) and not task_lib.is_pretraining(config):
        raise BertjaxError("--config.train.batch_size_ramp_start applies to pretraining only; unset it.")
    hours = config.train.time_budget_hours
    if hours is not None and (isinstance(hours, bool) or not hours > 0):
        raise BertjaxError(f"--config.train.time_budget_hours={hours!r} must be a positive number of hours; unset it "
                           "to train num_train_steps steps.")


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
        if paths.path(vocab_file).is_dir():
            raise BertjaxError(f"--config.data.vocab_file={vocab_file} is a directory; pass the vocab.txt in it.")
        if not paths.path(vocab_file).is_file():
            raise BertjaxError(f"--config.data.vocab_file={vocab_file} does not exist; fix the path.")
        digest = vocab_sha256(vocab_file)
        if manifest.get("vocab_sha256") and digest != manifest["vocab_sha256"]:
            raise BertjaxError(
                f"--config.data.vocab_file={vocab_file} (sha256 {digest[:12]}…) is not the vocab the "
                f"dataset in {data_dir} was made with (sha256 {str(manifest['vocab_sha256'])[:12]}…); use that vocab "
                "or regenerate the dataset.")
    return vocab_size


def bert_config(config: ml_collections.ConfigDict, vocab_size: int,
                pretrained: sources.Pretrained | None = None) -> BertConfig:
    """The BertConfig the run trains.

    Without init_from: the named size (`--config.model.size`, default base) with the config's overrides. With it:
    the checkpoint's model, with the run's dropout; a size, model field or vocab size the config sets that
    contradicts the checkpoint is an error.
    """
    overrides = {name: config.model[name] for name in MODEL_FIELDS if config.model[name] is not None}
    if pretrained is not None:
        return _pretrained_config(config, vocab_size, pretrained, overrides)
    try:
        model = BertConfig.named(config.model.size or DEFAULT_SIZE, vocab_size=vocab_size, **overrides)
    except BertjaxError as e:
        raise BertjaxError(f"--config.model.*: {e}") from e
    _check_positions(config, model)
    return model


def _pretrained_config(config: ml_collections.ConfigDict, vocab_size: int, pretrained: sources.Pretrained,
                       overrides: dict) -> BertConfig:
    source = f"--config.train.init_from={config.train.init_from}"
    model = pretrained.config
    fixed = {}
    if config.model.size is not None:
        fixed.update({name: getattr(BertConfig.named(config.model.size), name) for name in SIZE_FIELDS})
    fixed.update({name: value for name, value in overrides.items() if name not in RUN_CHOSEN_FIELDS})
    fixed["vocab_size"] = vocab_size
    for name, value in fixed.items():
        if getattr(model, name) != value:
            flag = ("the dataset's vocab_size" if name == "vocab_size" else f"--config.model.{name}"
                    if name in overrides else f"--config.model.size={config.model.size}")
            raise BertjaxError(
                f"{flag} gives {name}={value}, but {source} has {name}={getattr(model, name)}; the model comes from "
                "the checkpoint: leave the model fields unset (and build the dataset with the checkpoint's vocab.txt).")
    model = model.replace(**{name: overrides[name] for name in RUN_CHOSEN_FIELDS if name in overrides})
    _check_positions(config, model)
    return model


def _check_positions(config: ml_collections.ConfigDict, model: BertConfig) -> None:
    if config.data.max_seq_length > model.max_position_embeddings:
        raise BertjaxError(
            f"--config.data.max_seq_length={config.data.max_seq_length} exceeds the model's max_position_embeddings="
            f"{model.max_position_embeddings}; use shorter sequences.")


def check_same_vocab(pretrained: sources.Pretrained, dataset_vocab: str, manifest: dict, data_dir: str) -> None:
    """The dataset must be made with the checkpoint's vocab.txt and casing (ids mean tokens of that vocab)."""
    fix = f"rebuild the dataset with --vocab_file={pretrained.vocab_file}"
    if vocab_sha256(dataset_vocab) != vocab_sha256(pretrained.vocab_file):
        raise BertjaxError(f"the dataset in {data_dir} was made with another vocab than --config.train.init_from="
                           f"{pretrained.path} ({pretrained.vocab_file}); {fix}.")
    if bool(manifest["do_lower_case"]) != pretrained.do_lower_case:
        raise BertjaxError(
            f"the dataset in {data_dir} was made with do_lower_case={bool(manifest['do_lower_case'])}, but "
            f"--config.train.init_from={pretrained.path} is do_lower_case={pretrained.do_lower_case} (from "
            f"{pretrained.casing_from}); {fix} --do_lower_case={str(pretrained.do_lower_case).lower()}.")
