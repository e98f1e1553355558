"""Masked-LM sampling: counts, 80/10/10 split, whole-word grouping, padding and determinism."""
import numpy as np
import pytest

from bertjax.data import masking
from bertjax.errors import BertjaxError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
VOCAB_SIZE = 50
IS_CONT = np.zeros(VOCAB_SIZE, bool)
IS_CONT[30:] = True  # ids 30.. are "##" pieces
ARGS = dict(masked_lm_prob=0.15, max_predictions_per_seq=20, vocab_size=VOCAB_SIZE, mask_id=MASK, cls_id=CLS,
            sep_id=SEP)


def _pair(rng, len_a, len_b, length=128, words=False):
    """[CLS] a [SEP] b [SEP] padded to `length`; with words=True some pieces are continuations."""
    body = rng.integers(5, 50 if words else 30, size=len_a + len_b)
    ids = np.concatenate([[CLS], body[:len_a], [SEP], body[len_a:], [SEP]]).astype(np.int32)
    return np.pad(ids, (0, length - len(ids))), len(ids)


def test_num_to_predict_rounds_half_to_even_and_clips():
    assert masking.num_to_predict(np.array([10, 30, 50, 3, 1000]), 0.15, 20).tolist() == [2, 4, 8, 1, 20]
    assert masking.num_to_predict(np.array([10]), 0.25, 20).tolist() == [2]  # 2.5 -> 2 (banker's)
    assert masking.num_to_predict(np.array([14]), 0.25, 20).tolist() == [4]  # 3.5 -> 4


def test_mask_tokens_shapes_padding_and_labels():
    rng = np.random.default_rng(0)
    ids, n = _pair(rng, 40, 50)
    out_ids, pos, lab, w = masking.mask_tokens(ids, n, np.random.default_rng(1), **ARGS)
    assert out_ids.dtype == np.int32 and pos.dtype == np.int32 and lab.dtype == np.int32 and w.dtype == np.float32
    assert out_ids.shape == (128,) and pos.shape == lab.shape == w.shape == (20,)
    k = int(w.sum())
    assert k == 14  # round(93 * 0.15) = 14
    assert np.all(np.diff(pos[:k]) > 0) and np.all(pos[k:] == 0) and np.all(lab[k:] == 0)
    assert np.array_equal(lab[:k], ids[pos[:k]])
    assert not np.isin(ids[pos[:k]], [CLS, SEP, PAD]).any()
    untouched = np.ones(128, bool)
    untouched[pos[:k]] = False
    assert np.array_equal(out_ids[untouched], ids[untouched])


def test_statistics_match_80_10_10_and_masked_fraction():
    rng = np.random.default_rng(2)
    rows = [_pair(rng, int(a), int(b)) for a, b in rng.integers(5, 60, size=(3000, 2))]
    ids = np.stack([r[0] for r in rows])
    n = np.array([r[1] for r in rows])
    out, pos, lab, w = masking.mask_batch(ids, n, np.random.default_rng(3), **ARGS)
    assert np.array_equal(w.sum(1), masking.num_to_predict(n, 0.15, 20))
    valid = w > 0
    replaced = np.take_along_axis(out, pos, 1)[valid]
    labels = lab[valid]
    frac_mask = np.mean(replaced == MASK)
    frac_same = np.mean(replaced == labels)
    assert abs(frac_mask - 0.8) < 0.01
    # kept = 10% plus random draws that hit the same id (1/50 of 10%)
    assert abs(frac_same - (0.1 + 0.1 / VOCAB_SIZE)) < 0.01
    random_ids = replaced[(replaced != MASK) & (replaced != labels)]
    assert random_ids.min() >= 0 and random_ids.max() < VOCAB_SIZE
    assert len(np.unique(random_ids)) > 40  # drawn from the whole vocabulary, specials included
    # every candidate position is equally likely to be chosen
    first = np.bincount(pos[valid & (pos < 6)], minlength=6)[1:6]
    assert first.min() > 0.8 * first.mean()


@pytest.mark.parametrize("mode", ["original", "per_word"])
def test_whole_word_masks_complete_words(mode):
    rng = np.random.default_rng(4)
    rows = [_pair(rng, int(a), int(b), words=True) for a, b in rng.integers(10, 60, size=(400, 2))]
    ids = np.stack([r[0] for r in rows])
    n = np.array([r[1] for r in rows])
    out, pos, lab, w = masking.mask_batch(ids, n, np.random.default_rng(5), whole_word=mode, is_continuation=IS_CONT,
                                          **ARGS)
    wanted = masking.num_to_predict(n, 0.15, 20)
    assert np.all(w.sum(1) <= wanted) and np.mean(w.sum(1) == wanted) > 0.9
    mixed_words = words = 0
    for row in range(len(ids)):
        chosen = set(pos[row][w[row] > 0].tolist())
        for p in chosen:  # a chosen piece's neighbours in the same word are chosen too
            nxt = p + 1
            if nxt < n[row] and IS_CONT[ids[row, nxt]] and ids[row, nxt] not in (CLS, SEP):
                assert nxt in chosen
            if IS_CONT[ids[row, p]] and p - 1 > 0 and ids[row, p - 1] not in (CLS, SEP):
                assert p - 1 in chosen
        # per_word: all pieces of a word share one outcome (mask / keep / random)
        groups = masking._word_groups(ids[row:row + 1], masking._candidates(ids[row:row + 1], n[row:row + 1], CLS, SEP),
                                      IS_CONT)[0]
        for g in set(groups[list(chosen)].tolist()):
            outcome = {out[row, p] == MASK for p in np.flatnonzero(groups == g)}
            mixed_words += len(outcome) > 1
            words += int(np.sum(groups == g)) > 1
    if mode == "per_word":  # only a random replacement that happens to draw [MASK] can mix outcomes
        assert mixed_words < 0.02 * words
    else:  # per-wordpiece draws mix outcomes inside words (google-research/bert#910)
        assert mixed_words > 0.15 * words


def test_same_rng_same_result_and_batch_matches_rows():
    rng = np.random.default_rng(6)
    ids, n = _pair(rng, 30, 30)
    a = masking.mask_tokens(ids, n, np.random.default_rng(7), **ARGS)
    b = masking.mask_tokens(ids, n, np.random.default_rng(7), **ARGS)
    c = masking.mask_tokens(ids, n, np.random.default_rng(8), **ARGS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_short_sequence_with_few_candidates():
    ids = np.array([CLS, 7, SEP, 8, SEP, 0, 0, 0], np.int32)
    out, pos, lab, w = masking.mask_tokens(ids, 5, np.random.default_rng(0), **{**ARGS, "max_predictions_per_seq": 4,
                                                                              "masked_lm_prob": 0.9})
    assert int(w.sum()) == 2 and sorted(pos[:2].tolist()) == [1, 3]


def test_bad_arguments_raise_one_clear_error():
    ids = np.zeros(8, np.int32)
    with pytest.raises(BertjaxError, match="max_predictions_per_seq=20 is larger than max_seq_length=8"):
        masking.mask_tokens(ids, 5, np.random.default_rng(0), **ARGS)
    with pytest.raises(BertjaxError, match="is_continuation"):
        masking.mask_tokens(ids, 5, np.random.default_rng(0), **{**ARGS, "max_predictions_per_seq": 2},
                            whole_word="original")
    with pytest.raises(BertjaxError, match=r"is_continuation has shape \(10,\), but vocab_size=50"):
        masking.mask_tokens(ids, 5, np.random.default_rng(0), **{**ARGS, "max_predictions_per_seq": 2},
                            whole_word="per_word", is_continuation=IS_CONT[:10])
    with pytest.raises(BertjaxError, match="whole_word"):
        masking.mask_tokens(ids, 5, np.random.default_rng(0), **{**ARGS, "max_predictions_per_seq": 2},
                            whole_word="bogus")


@pytest.mark.parametrize("mode", ["none", "original", "per_word"])
def test_row_generators_mask_each_row_as_mask_tokens_whatever_the_batch(mode):
    rng = np.random.default_rng(9)
    rows = [_pair(rng, int(a), int(b), words=True) for a, b in rng.integers(3, 60, size=(6, 2))]
    ids = np.stack([r[0] for r in rows])
    n = np.array([r[1] for r in rows])
    args = dict(ARGS, whole_word=mode, is_continuation=IS_CONT)
    whole = masking.mask_batch(ids, n, masking.RowGenerators([np.random.default_rng(s) for s in range(6)]), **args)
    part = masking.mask_batch(ids[3:], n[3:], masking.RowGenerators([np.random.default_rng(s) for s in (3, 4, 5)]),
                              **args)
    for row in range(6):
        alone = masking.mask_tokens(ids[row], int(n[row]), np.random.default_rng(row), **args)
        for got, want in zip(whole, alone):
            np.testing.assert_array_equal(got[row], want)
        if row >= 3:
            for got, want in zip(part, alone):
                np.testing.assert_array_equal(got[row - 3], want)
    with pytest.raises(BertjaxError, match="needs 6 generators, got 2"):
        masking.mask_batch(ids, n, masking.RowGenerators([np.random.default_rng(0)] * 2), **args)
