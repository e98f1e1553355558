"""Grain input pipeline: a bertjax dataset directory -> per-host numpy batches -> global jax.Arrays.

    it = create_iterator(data_dir, "train", global_batch_size=256, seed=0)    # shuffled, repeats forever
    batch = to_global_batch(next(it), NamedSharding(mesh, P("data")))
    state = it.get_state(); ...; it.set_state(state)                          # resumes on exactly the next batch

The global batch sequence does not depend on the number of hosts (all on record indices, so shuffling and sharding
cost nothing):
  * the split's N records are shuffled with `seed` (a fresh permutation every epoch; shuffle=False keeps file
    order) and repeated `num_epochs` times (None: forever);
  * global batch s is the contiguous slice [s * B, (s + 1) * B) of that sequence (B = global_batch_size;
    drop_remainder: with num_epochs=None a batch may span two epochs, so nothing is dropped; with a finite num_epochs
    only the last partial batch is);
  * host i of P takes rows [i * B / P, (i + 1) * B / P) of every global batch, so the hosts' local batches,
    concatenated in process order, are the global batch, and every host yields the same number of batches;
  * the iterator state is the index of the next global batch, the same on every host: a checkpoint written by P
    hosts resumes on any other number of hosts on exactly the next global batch;
  * a host's rows are read with one batched ArrayRecord read, decoded, and, when the manifest says
    masking="dynamic", masked afresh: example r of epoch e gets its masks from
    `numpy.random.default_rng((seed, e, r))`, so masks differ between epochs, do not depend on the number of hosts,
    and are reproduced exactly by a resumed iterator;
  * batches are prefetched by `num_threads` threads (and optionally `worker_count` processes).
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from absl import flags, logging

from bertjax.data import catalog, features, masking, tokenizer, vocab_files
from bertjax.errors import BertjaxError

Example = dict[str, np.ndarray]
Masker = Callable[[Example, Any], Example]      # (batch, rng or masking.RowGenerators) -> masked batch


# ----------------------------------------------------------------------------------------------------------------
# Dataset facts


def split_filepaths(data_dir: str, split: str) -> list[str]:
    """The ArrayRecord shard paths of a split, in reading order."""
    # TFDS, Grain and JAX are imported in the functions that need them: bertjax.train imports this module also for
    # runs on synthetic data, and the TFDS builder imports it only to list a split's files.
    import tensorflow_datasets as tfds  # noqa: PLC0415

    builder = tfds.builder_from_directory(catalog.resolve_dataset_dir(data_dir))
    splits = builder.info.splits
    if split not in splits:
        raise BertjaxError(f"dataset {data_dir} has no split {split!r}; it has {sorted(splits)}")
    return [str(path) for path in splits[split].filepaths]


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
    """The rows of a global batch each host reads; raises BertjaxError for an unusable combination."""
    if global_batch_size is None or int(global_batch_size) <= 0:
        raise BertjaxError(f"global_batch_size={global_batch_size}; it must be a positive integer")
    if global_batch_size % process_count:
        raise BertjaxError(f"global_batch_size={global_batch_size} is not divisible by the number of processes "
                           f"({process_count}); pick a multiple of {process_count}")
    return int(global_batch_size) // process_count


def batches_per_epoch(data_dir: str, split: str, global_batch_size: int, process_count: int | None = None) -> int:
    """How many batches every host yields per epoch of `split` (the epoch length in steps); `process_count` only
    checks that the global batch splits over the hosts: the number does not depend on it."""
    num_examples = _num_examples(catalog.read_manifest(data_dir), data_dir, split)
    _local_batch_size(global_batch_size, _process_count(process_count))
    return num_examples // int(global_batch_size)


def _num_examples(manifest: Mapping[str, Any], data_dir: str, split: str) -> int:
    counts = manifest["num_examples"]
    if split not in counts:
        raise BertjaxError(f"dataset {data_dir} has no split {split!r}; it has {sorted(counts)}")
    return int(counts[split])


def _process_count(process_count: int | None) -> int:
    if process_count is not None:
        return int(process_count)
    import jax  # noqa: PLC0415  (see split_filepaths)

    return jax.process_count()


def _process_index(process_index: int | None) -> int:
    if process_index is not None:
        return int(process_index)
    import jax  # noqa: PLC0415  (see split_filepaths)

    return jax.process_index()


# ----------------------------------------------------------------------------------------------------------------
# Per-batch work (picklable, so it also runs in Grain worker processes)


class DynamicMasker:
    """(batch, rng) -> the batch with fresh masked-LM predictions, drawn by `bertjax.data.masking.mask_batch`.

    The stored examples hold the unmasked input_ids; the masking settings come from the manifest, the special token
    ids and continuation pieces from the dataset's own vocab.txt. `masked_lm_prob` replaces the manifest's rate
    (with `masking.predictions_per_seq_at_rate` prediction slots).
    """

    def __init__(self, manifest: Mapping[str, Any], data_dir: str, masked_lm_prob: float | None = None):
        vocab_path = catalog.dataset_vocab_path(data_dir)
        if vocab_files.vocab_sha256(vocab_path) != manifest["vocab_sha256"]:
            raise BertjaxError(f"{vocab_path} does not match the manifest's vocab_sha256; recreate the dataset")
        vocab = tokenizer.BertTokenizer(vocab_files.read_vocab(vocab_path), do_lower_case=manifest["do_lower_case"],
                                        strip_accents=manifest["strip_accents"])
        predictions = int(manifest["max_predictions_per_seq"])
        if masked_lm_prob is not None:
            predictions = masking.predictions_per_seq_at_rate(predictions, int(manifest["max_seq_length"]),
                                                              masked_lm_prob)
        self._settings = masking.masking_args(
            vocab, masked_lm_prob=float(manifest["masked_lm_prob"] if masked_lm_prob is None else masked_lm_prob),
            max_predictions_per_seq=predictions, whole_word=manifest["whole_word_mask"])

    def __call__(self, batch: Example, rng) -> Example:
        """Mask a batch ([B, ...] arrays) with `rng`: a Generator, or `masking.RowGenerators` (one per row)."""
        input_ids, positions, labels, weights = masking.mask_batch(
            batch["input_ids"], batch["input_mask"].sum(axis=1), rng, **self._settings)
        return {**batch, "input_ids": input_ids, "masked_lm_positions": positions, "masked_lm_ids": labels,
                "masked_lm_weights": weights}


def make_masker(manifest: Mapping[str, Any], data_dir: str, masked_lm_prob: float | None = None) -> Masker | None:
    """The dynamic-masking function for a dataset, or None when its masks are static (stored in the records).
    `masked_lm_prob` (dynamic datasets only) masks at another rate than the manifest's."""
    if manifest["masking"] != "dynamic":
        if masked_lm_prob is not None:
            raise BertjaxError(f"dataset {data_dir} has static masks (masked at {manifest['masked_lm_prob']} when it "
                               "was made), so it cannot be masked at another rate; rebuild it with --masking=dynamic")
        return None
    return DynamicMasker(manifest, data_dir, masked_lm_prob)


class BatchReader:
    """A global batch of record indices -> this host's rows of it as a batch dict: batched read, decode, stack,
    optional dynamic masking. The host's rows are [first_row, first_row + local_batch_size) of the global batch.

    The ArrayRecord source is opened, and the decoder's imports (tensorflow_datasets' protobuf classes) done, when
    the reader is made or unpickled (in the main thread of a Grain worker process), never first by several prefetch
    threads at once: two threads importing tensorflow_datasets for the first time can deadlock.
    """

    def __init__(self, paths: list[str], examples_per_epoch: int, seed: int, masker: Masker | None, *,
                 first_row: int = 0, local_batch_size: int | None = None):
        self._paths = list(paths)
        self._examples_per_epoch = examples_per_epoch
        self._first_row = first_row
        self._local_batch_size = local_batch_size
        self._seed = seed
        self._masker = masker
        self._open()

    def _open(self) -> None:
        import grain  # noqa: PLC0415  (see split_filepaths)

        features.import_decoder()
        self._source = grain.sources.ArrayRecordDataSource(self._paths)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}            # readers are reopened in each worker process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __call__(self, batch_index: int, record_ids: np.ndarray) -> Example:
        """Build this host's part of global batch number `batch_index` (counted over all epochs) from the global
        batch's record indices.

        With dynamic masking, example r of epoch e is masked with `numpy.random.default_rng((seed, e, r))`.
        """
        global_size = len(record_ids)
        local_size = global_size if self._local_batch_size is None else self._local_batch_size
        ids = [int(i) for i in record_ids[self._first_row:self._first_row + local_size]]
        try:
            examples = [features.parse_example(record) for record in self._source.__getitems__(ids)]
        except Exception as e:  # noqa: BLE001  (array_record: bare RuntimeErrors; protobuf: DecodeError)
            raise self._unreadable_record(ids, e) from e
        batch = {name: np.stack([example[name] for example in examples]) for name in examples[0]}
        if self._masker is None:
            return batch
        first = batch_index * global_size + self._first_row       # position in the repeated global sequence
        rngs = [np.random.default_rng((self._seed, (first + j) // self._examples_per_epoch, record_id))
                for j, record_id in enumerate(ids)]
        return self._masker(batch, masking.RowGenerators(rngs))

    def _unreadable_record(self, ids: list[int], error: Exception) -> Exception:
        """A BertjaxError naming the shard file and record of `ids` that does not read (a shard corrupted after
        its index, e.g. bytes overwritten in the middle: the file opens, the checksum of the record's chunk fails
        when it is read), or `error` itself when every record reads on its own."""
        starts = [0]
        for path in self._paths:  # the indexes only (they opened; one changed since is named as it is)
            try:
                starts.append(starts[-1] + features.count_records(path))
            except Exception as e:  # noqa: BLE001  (see __call__)
                return _corrupt_shard(path, "", e)
        for record_id in ids:
            try:
                features.parse_example(self._source[record_id])
            except Exception as e:  # noqa: BLE001  (see __call__)
                shard = bisect.bisect_right(starts, record_id) - 1
                count = starts[shard + 1] - starts[shard]
                return _corrupt_shard(self._paths[shard], f" at record {record_id - starts[shard]} of {count}", e)
        return error


def _corrupt_shard(path: str, where: str, error: Exception) -> BertjaxError:
    reason = " ".join(f"{type(error).__name__}: {error}".split())   # one line
    return BertjaxError(f"{path} is corrupt{where} ({reason}); restore the file, or rebuild the dataset with "
                        "create_pretraining_data --overwrite")


def _unreadable_shard(filepaths: list[str], split: str) -> str:
    """The first shard file that array_record cannot read (or reads as empty), for an error message."""
    for path in filepaths:
        try:
            if features.count_records(path) == 0:
                return path
        except Exception:  # noqa: BLE001  (array_record raises bare RuntimeErrors)
            return path
    return f"a shard of split {split!r}"


# ----------------------------------------------------------------------------------------------------------------
# The pipeline


def create_dataset(data_dir: str, split: str = "train", global_batch_size: int | None = None, seed: int = 0,
                   shuffle: bool = True, num_epochs: int | None = None, process_index: int | None = None,
                   process_count: int | None = None, *, num_threads: int = 2, prefetch_buffer_size: int = 4,
                   worker_count: int = 0, masked_lm_prob: float | None = None):
    """The Grain IterDataset behind `create_iterator` (same arguments)."""
    import grain  # noqa: PLC0415  (see split_filepaths)

    process_count = _process_count(process_count)
    process_index = _process_index(process_index)
    if not 0 <= process_index < process_count:
        raise BertjaxError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if num_epochs is not None and int(num_epochs) < 1:
        raise BertjaxError(f"num_epochs={num_epochs}; use a positive number, or None to repeat forever")
    if not 0 <= int(seed) < 2**32:
        raise BertjaxError(f"seed={seed}; it must be in [0, 2**32)")
    manifest = catalog.read_manifest(data_dir)
    num_examples = _num_examples(manifest, data_dir, split)
    local_batch_size = _local_batch_size(global_batch_size, process_count)
    global_batch_size = int(global_batch_size)
    if num_examples < global_batch_size:
        raise BertjaxError(f"split {split!r} of {data_dir} has {num_examples} examples, fewer than one batch of "
                           f"global_batch_size={global_batch_size}; lower global_batch_size")

    ds = grain.MapDataset.range(num_examples)           # the global sequence, the same on every host
    if shuffle:
        ds = ds.shuffle(seed=int(seed))
    ds = ds.repeat(num_epochs)
    ds = ds.batch(global_batch_size, drop_remainder=True)
    filepaths = split_filepaths(data_dir, split)
    try:
        reader = BatchReader(filepaths, num_examples, int(seed), make_masker(manifest, data_dir, masked_lm_prob),
                             first_row=process_index * local_batch_size, local_batch_size=local_batch_size)
    except RuntimeError as e:  # array_record cannot open a shard (and says little more)
        raise BertjaxError(
            f"dataset {data_dir}: {_unreadable_shard(filepaths, split)} does not read as an ArrayRecord file "
            f"(truncated or corrupt; {type(e).__name__}{f': {e}' if str(e) else ''}); restore it, or rebuild the "
            "dataset with create_pretraining_data --overwrite") from e
    ds = ds.map_with_index(reader)
    iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():       # Grain workers read absl flags; outside absl.app use their defaults
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    if process_index == 0:
        logging.info("%s/%s: %d examples, global batches of %d (%d rows from each of %d processes), %d batches per "
                     "epoch, masking=%s, shuffle=%s, num_epochs=%s", data_dir, split, num_examples, global_batch_size,
                     local_batch_size, process_count, num_examples // global_batch_size, manifest["masking"], shuffle,
                     num_epochs)
    return iter_ds


def create_iterator(data_dir: str, split: str = "train", global_batch_size: int | None = None, seed: int = 0,
                    shuffle: bool = True, num_epochs: int | None = None, process_index: int | None = None,
                    process_count: int | None = None, *, num_threads: int = 2, prefetch_buffer_size: int = 4,
                    worker_count: int = 0, masked_lm_prob: float | None = None):
    """A Grain DatasetIterator of host-local numpy batches ([global_batch_size // process_count, ...] per key): this
    host's rows of each global batch (see the module docstring).

    process_index / process_count default to jax.process_index() / jax.process_count(). Eval: shuffle=False,
    num_epochs=1 gives every host batches_per_epoch(...) deterministic batches, then StopIteration.
    The iterator has get_state() / set_state() and works with grain.checkpoint.CheckpointSave / CheckpointRestore;
    without Grain worker processes (worker_count=0) its state is the next global batch's index, the same on every
    host, so a state saved with one process count restores with another.
    `masked_lm_prob` masks a dynamic-masking dataset at another rate than its manifest's (budget recipes train at
    0.3 and evaluate at the dataset's 0.15); a static dataset refuses it.
    """
    return iter(create_dataset(data_dir, split, global_batch_size, seed, shuffle, num_epochs, process_index,
                               process_count, num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size,
                               worker_count=worker_count, masked_lm_prob=masked_lm_prob))


def to_global_batch(batch: Mapping[str, np.ndarray], sharding) -> dict[str, Any]:
    """Host-local numpy batch -> dict of global jax.Arrays (leading axis = global batch) placed with `sharding`.

    `sharding` is one jax.sharding.Sharding for every key (e.g. NamedSharding(mesh, P("data"))), or a dict of them.
    """
    import jax  # noqa: PLC0415  (see split_filepaths)

    def sharding_for(name: str):
        return sharding[name] if isinstance(sharding, Mapping) else sharding

    return {name: jax.make_array_from_process_local_data(sharding_for(name), np.asarray(value))
            for name, value in batch.items()}
