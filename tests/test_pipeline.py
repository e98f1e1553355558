"""pipeline.py: batches, shuffling, epochs, host sharding, resume, global arrays on 8 CPU devices, errors."""
import json
import os
import pickle

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from bertjax.data import features, masking, pipeline
from bertjax.errors import BertjaxError

import _tiny_dataset as tiny
from _batches import make_batch

T, P = 16, 4


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    """train: 35 examples in 3 shards (ids 0..34); eval: 10 examples (ids 35..44)."""
    return tiny.write_dataset(str(tmp_path_factory.mktemp("static") / "ds"), {"train": [12, 13, 10], "eval": [10]})


def _ids(batch):
    return [tiny.example_id({k: v[j] for k, v in batch.items()}) for j in range(len(batch["input_ids"]))]


def _take(it, n):
    return [next(it) for _ in range(n)]


def _single(data_dir, split="train", batch_size=5, **kwargs):
    return pipeline.create_iterator(data_dir, split, batch_size, process_index=0, process_count=1, **kwargs)


def test_batches_have_the_design_keys_shapes_and_dtypes(static_dir):
    batch = next(_single(static_dir, batch_size=4))
    shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
    assert shapes == {
        "input_ids": ((4, T), np.int32), "input_mask": ((4, T), np.int32), "segment_ids": ((4, T), np.int32),
        "masked_lm_positions": ((4, P), np.int32), "masked_lm_ids": ((4, P), np.int32),
        "masked_lm_weights": ((4, P), np.float32), "next_sentence_labels": ((4,), np.int32),
    }
    want = make_batch(35, **tiny.rows())                            # the stored rows, by id
    for j, i in enumerate(_ids(batch)):
        for name in features.FEATURE_NAMES:
            np.testing.assert_array_equal(batch[name][j], want[name][i])


def test_eval_is_sequential_finite_and_deterministic(static_dir):
    runs = [[_ids(b) for b in _single(static_dir, "eval", 3, shuffle=False, num_epochs=1)] for _ in range(2)]
    assert runs[0] == runs[1] == [[35, 36, 37], [38, 39, 40], [41, 42, 43]]    # 10 // 3 batches, id 44 dropped
    assert pipeline.batches_per_epoch(static_dir, "eval", 3, process_count=1) == 3


def test_shuffle_is_seeded_and_covers_the_epoch(static_dir):
    first = [_ids(b) for b in _single(static_dir, batch_size=5, seed=1, num_epochs=1)]
    again = [_ids(b) for b in _single(static_dir, batch_size=5, seed=1, num_epochs=1)]
    other = [_ids(b) for b in _single(static_dir, batch_size=5, seed=2, num_epochs=1)]
    flat = sum(first, [])
    assert first == again and first != other
    assert sorted(flat) == list(range(35)) and flat != sorted(flat)          # 35 = 7 full batches, nothing lost
    assert pipeline.batches_per_epoch(static_dir, "train", 5, process_count=1) == len(first) == 7


def test_every_epoch_has_a_new_order(static_dir):
    it = _single(static_dir, batch_size=5, seed=3)                          # repeats forever
    epochs = [sum((_ids(b) for b in _take(it, 7)), []) for _ in range(3)]
    assert all(sorted(e) == list(range(35)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_num_epochs_bounds_the_iterator(static_dir):
    batches = list(_single(static_dir, batch_size=5, num_epochs=2))
    assert len(batches) == 14


def test_resumed_iterator_continues_on_the_next_batch(static_dir):
    it = _single(static_dir, batch_size=4, seed=5)
    _take(it, 6)
    state = json.loads(json.dumps(it.get_state()))                         # the state survives JSON
    want = [_ids(b) for b in _take(it, 6)]                                  # crosses the epoch boundary (8 per epoch)
    resumed = _single(static_dir, batch_size=4, seed=5)
    resumed.set_state(state)
    assert [_ids(b) for b in _take(resumed, 6)] == want


@pytest.mark.parametrize("process_count", [2, 3])
def test_hosts_take_contiguous_rows_of_the_one_global_batch_sequence(static_dir, process_count):
    """Host i takes rows [i * B / P, (i + 1) * B / P) of every global batch; the global sequence is the 1-host one."""
    batch_size = 2 * process_count
    one_host = [_ids(b) for b in _single(static_dir, batch_size=batch_size, seed=0, num_epochs=1)]
    per_host = [[_ids(b) for b in pipeline.create_iterator(static_dir, "train", batch_size, seed=0,
                                                           num_epochs=1, process_index=i, process_count=process_count)]
                for i in range(process_count)]
    assert [len(batches) for batches in per_host] == [35 // batch_size] * process_count
    assert len(one_host) == 35 // batch_size
    assert len(per_host[0]) == pipeline.batches_per_epoch(static_dir, "train", batch_size, process_count)
    assert all(len(rows) == 2 for batches in per_host for rows in batches)
    assert [sum((batches[s] for batches in per_host), []) for s in range(len(one_host))] == one_host
    rows = sum((sum(batches, []) for batches in per_host), [])
    assert len(set(rows)) == len(rows) == 35 - 35 % batch_size                # nothing read twice


@pytest.mark.parametrize("saved_by, resumed_by", [(2, 1), (1, 3), (3, 2)])
def test_iterator_state_resumes_on_another_process_count(static_dir, saved_by, resumed_by):
    """The state is the next global batch's index, the same on every host; it continues on any host count, also
    across the epoch boundary (7 batches of 6 per epoch)."""
    batch_size = 6
    want = [_ids(b) for b in _take(_single(static_dir, batch_size=batch_size, seed=3), 9)]
    savers = [pipeline.create_iterator(static_dir, "train", batch_size, seed=3, process_index=i,
                                       process_count=saved_by) for i in range(saved_by)]
    for it in savers:
        _take(it, 4)
    states = [it.get_state() for it in savers]
    assert all(state == states[0] for state in states)
    resumed = []
    for i in range(resumed_by):
        it = pipeline.create_iterator(static_dir, "train", batch_size, seed=3, process_index=i,
                                      process_count=resumed_by)
        it.set_state(json.loads(json.dumps(states[0])))
        resumed.append([_ids(b) for b in _take(it, 5)])
    assert [sum((host[s] for host in resumed), []) for s in range(5)] == want[4:]


def test_global_batch_on_eight_devices(static_dir):
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    local = next(pipeline.create_iterator(static_dir, "train", 16, seed=0))   # jax.process_count() == 1
    batch = pipeline.to_global_batch(local, sharding)
    assert batch["input_ids"].shape == (16, T) and batch["next_sentence_labels"].shape == (16,)
    assert batch["masked_lm_weights"].dtype == np.float32
    assert batch["input_ids"].sharding == sharding
    assert {s.data.shape for s in batch["input_ids"].addressable_shards} == {(2, T)}
    for name in features.FEATURE_NAMES:
        np.testing.assert_array_equal(np.asarray(batch[name]), local[name])


@pytest.mark.parametrize("kwargs, message", [
    (dict(global_batch_size=5, process_count=2, process_index=0), "not divisible by the number of processes"),
    (dict(global_batch_size=40), "fewer than one batch"),
    (dict(global_batch_size=4, split="test"), "no split 'test'"),
    (dict(global_batch_size=4, process_index=2, process_count=2), r"process_index=2 is not in \[0"),
    (dict(global_batch_size=4, num_epochs=0), "num_epochs=0"),
    (dict(global_batch_size=0), "global_batch_size=0"),
    (dict(), "global_batch_size=None"),
])
def test_bad_arguments_raise_one_clear_error(static_dir, kwargs, message):
    kwargs = {"split": "train", "process_index": 0, "process_count": 1, **kwargs}
    with pytest.raises(BertjaxError, match=message):
        pipeline.create_iterator(static_dir, **kwargs)


def test_missing_dataset_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        pipeline.create_iterator(str(tmp_path / "nope"), "train", 4)


# ---------------------------------------------------------------------------------------------------------------
# Dynamic masking


@pytest.fixture(scope="module")
def dynamic_dir(tmp_path_factory):
    """train: 24 unmasked examples (ids 0..23) in 2 shards; masks are drawn by the pipeline."""
    return tiny.write_dataset(str(tmp_path_factory.mktemp("dynamic") / "ds"), {"train": [12, 12]}, masking="dynamic")


def _masks_by_id(batches):
    return {i: (b["masked_lm_positions"][j].tolist(), b["input_ids"][j].tolist())
            for b in batches for j, i in enumerate(_ids(b))}


def test_dynamic_masks_are_valid_and_follow_the_documented_rng(dynamic_dir):
    batches = _take(_single(dynamic_dir, batch_size=4, seed=11, shuffle=False), 12)    # 2 epochs of 6 batches
    stored = make_batch(24, **tiny.rows(masking="dynamic"))
    for k, batch in enumerate(batches):
        epoch = k // 6
        for j, i in enumerate(_ids(batch)):
            want = masking.mask_tokens(stored["input_ids"][i], int(stored["input_mask"][i].sum()),
                                       np.random.default_rng((11, epoch, i)), masked_lm_prob=0.15,
                                       max_predictions_per_seq=P, vocab_size=tiny.VOCAB_SIZE, mask_id=tiny.MASK,
                                       cls_id=tiny.CLS, sep_id=tiny.SEP)
            for name, value in zip(("input_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights"), want):
                np.testing.assert_array_equal(batch[name][j], value, err_msg=f"{name} of example {i}, epoch {epoch}")
            np.testing.assert_array_equal(batch["input_mask"][j], stored["input_mask"][i])
            assert batch["masked_lm_weights"][j].sum() >= 1


def test_dynamic_masks_change_every_epoch_and_are_reproducible(dynamic_dir):
    run = _take(_single(dynamic_dir, batch_size=4, seed=11, shuffle=False), 12)
    again = _take(_single(dynamic_dir, batch_size=4, seed=11, shuffle=False), 12)
    other_seed = _take(_single(dynamic_dir, batch_size=4, seed=12, shuffle=False), 6)
    epoch0, epoch1 = _masks_by_id(run[:6]), _masks_by_id(run[6:])
    assert sorted(epoch0) == sorted(epoch1) == list(range(24))
    assert sum(epoch0[i] != epoch1[i] for i in range(24)) >= 12                  # fresh masks in epoch 1
    for a, b in zip(run, again):
        for name in features.FEATURE_NAMES:
            np.testing.assert_array_equal(a[name], b[name])
    assert sum(_masks_by_id(other_seed)[i] != epoch0[i] for i in range(24)) >= 12


def test_dynamic_masks_do_not_depend_on_hosts_or_batch_size(dynamic_dir):
    one_host = _masks_by_id(_take(_single(dynamic_dir, batch_size=6, seed=4), 4))       # epoch 0, shuffled
    two_hosts = {}
    for index in range(2):
        it = pipeline.create_iterator(dynamic_dir, "train", 4, seed=4, num_epochs=1, process_index=index,
                                      process_count=2)
        two_hosts.update(_masks_by_id(list(it)))
    assert sorted(two_hosts) == list(range(24))
    assert two_hosts == one_host


def test_another_masking_rate_masks_more_in_more_slots_and_static_data_refuses_it(dynamic_dir, static_dir):
    slots = masking.predictions_per_seq_at_rate(P, T, 0.5)
    assert slots == 8                                           # ceil(16 * 0.5) > P = 4
    higher = next(_single(dynamic_dir, batch_size=8, seed=11, shuffle=False, masked_lm_prob=0.5))
    default = next(_single(dynamic_dir, batch_size=8, seed=11, shuffle=False))
    tokens = default["input_mask"].sum(axis=1)    # all but [CLS] and [SEP] are candidates
    assert higher["masked_lm_positions"].shape == (8, slots) and default["masked_lm_positions"].shape == (8, P)
    for batch, rate, cap in ((higher, 0.5, slots), (default, 0.15, P)):
        wanted = np.minimum(cap, np.maximum(1, np.rint(tokens * rate)))
        np.testing.assert_array_equal(batch["masked_lm_weights"].sum(axis=1), np.minimum(wanted, tokens - 2))
    assert _ids(higher) == _ids(default)                        # the same examples, only masked more
    with pytest.raises(BertjaxError, match="static masks .*rebuild it with --masking=dynamic"):
        _single(static_dir, masked_lm_prob=0.3)


def test_static_masks_stay_the_same_every_epoch(static_dir):
    batches = _take(_single(static_dir, batch_size=5, seed=0), 14)
    assert _masks_by_id(batches[:7]) == _masks_by_id(batches[7:])


def test_resume_reproduces_dynamic_masks(dynamic_dir):
    it = _single(dynamic_dir, batch_size=4, seed=2)
    _take(it, 5)
    state = it.get_state()
    want = _take(it, 4)
    resumed = _single(dynamic_dir, batch_size=4, seed=2)
    resumed.set_state(state)
    for a, b in zip(want, _take(resumed, 4)):
        for name in features.FEATURE_NAMES:
            np.testing.assert_array_equal(a[name], b[name])


def test_dynamic_dataset_without_vocab_is_a_clear_error(tmp_path):
    out = tiny.write_dataset(str(tmp_path / "ds"), {"train": [8]}, masking="dynamic")
    os.remove(os.path.join(out, "vocab.txt"))
    with pytest.raises(BertjaxError, match="has no vocab.txt"):
        _single(out, batch_size=4)


def test_orbax_checkpoints_the_iterator(static_dir, tmp_path):
    it = _single(static_dir, batch_size=4, seed=9)
    _take(it, 3)
    with ocp.CheckpointManager(str(tmp_path / "ckpt")) as manager:
        manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
        want = [_ids(b) for b in _take(it, 3)]
        resumed = _single(static_dir, batch_size=4, seed=9)
        manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    assert [_ids(b) for b in _take(resumed, 3)] == want


def test_a_batch_reader_imports_its_decoder_when_unpickled(static_dir, monkeypatch):
    """Grain worker processes unpickle the reader in their main thread: the decoder's first import happens there,
    not in several prefetch threads at once (a first import of tensorflow_datasets from two threads can deadlock)."""
    reader = pipeline.BatchReader(pipeline.split_filepaths(static_dir, "train"), 35, 0, None)
    calls = []
    monkeypatch.setattr(features, "import_decoder", lambda: calls.append(1))
    copy = pickle.loads(pickle.dumps(reader))
    assert calls == [1] and copy._source is not None
    assert _ids(copy(0, np.array([3, 0, 34]))) == [3, 0, 34]
