"""The tests' one synthetic-batch generator: the seven pretraining features (bertjax.data.features.FEATURE_NAMES)
as a host-local numpy batch, every example a function of (seed, its index) alone, so any slice of a dataset can be
made again on its own (Grain sources, stored shards, several hosts)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The defaults: the training tests' tiny pretraining data (tests/_train_helpers.py).
VOCAB_SIZE = 96
SEQ_LENGTH = 16
PREDICTIONS = 4
# [CLS], [SEP], [MASK] in a vocab that starts with bertjax.data.vocab_files.SPECIAL_TOKENS ([PAD] [UNK] [CLS] ...).
SPECIALS = (2, 3, 4)
FIRST_WORD = 5  # random tokens are drawn from [FIRST_WORD, vocab_size): never a special token
ID_OFFSET = 1000  # numbered=True: example i holds tokens ID_OFFSET + i, ID_OFFSET + i + 1, ...


def make_batch(num: int, start: int = 0, *, seed: int = 0, seq_length: int = SEQ_LENGTH,
               predictions: int = PREDICTIONS, vocab_size: int = VOCAB_SIZE, lengths: Sequence[int] | None = None,
               numbered: bool = False, masks: str = "random", specials: tuple[int, int, int] = SPECIALS
               ) -> dict[str, np.ndarray]:
    """Examples start..start+num-1, stacked.

    Example i is [CLS] tokens [SEP] then padding, in segment 0 up to half its length and segment 1 after that, with
    next-sentence label i % 2.
    - lengths: example i has lengths[i % len(lengths)] real tokens (at least 3); None: all seq_length.
    - numbered: its tokens are ID_OFFSET + i + j, so a row can be identified by its second token; otherwise they
      are random in [FIRST_WORD, vocab_size), drawn from numpy's generator seeded with (seed, i).
    - masks: "random": min(predictions, length - 2) distinct random positions inside [CLS] ... [SEP] are replaced
      by [MASK]; the first 1 to all of them (sorted, a random number) are the predictions, labelled with the
      original tokens; unused slots are 0 with weight 0. "first": one prediction, at position 1. "none": no
      predictions (unmasked examples, for dynamic masking).
    - specials: the ids of [CLS], [SEP] and [MASK].
    """
    if masks not in ("random", "first", "none"):
        raise ValueError(f"masks={masks!r}: use random, first or none")
    cls_id, sep_id, mask_id = specials
    T, P = seq_length, predictions
    batch = {"input_ids": np.zeros((num, T), np.int32), "input_mask": np.zeros((num, T), np.int32),
             "segment_ids": np.zeros((num, T), np.int32), "masked_lm_positions": np.zeros((num, P), np.int32),
             "masked_lm_ids": np.zeros((num, P), np.int32), "masked_lm_weights": np.zeros((num, P), np.float32),
             "next_sentence_labels": np.zeros(num, np.int32)}
    for row, index in enumerate(range(start, start + num)):
        rng = np.random.default_rng([seed, index])
        length = T if lengths is None else lengths[index % len(lengths)]
        assert 3 <= length <= T, (length, T)
        ids = batch["input_ids"][row]
        if numbered:
            ids[1:length - 1] = ID_OFFSET + index + np.arange(length - 2)
        else:
            ids[:length] = rng.integers(FIRST_WORD, vocab_size, size=length)
        ids[0], ids[length - 1] = cls_id, sep_id
        if masks == "random":
            masked = np.sort(rng.choice(np.arange(1, length - 1), size=min(P, length - 2), replace=False))
            real = masked[:rng.integers(1, len(masked) + 1)]
        else:
            masked = real = np.array([1] if masks == "first" else [], np.int32)
        batch["masked_lm_positions"][row, :len(real)] = real
        batch["masked_lm_ids"][row, :len(real)] = ids[real]
        batch["masked_lm_weights"][row, :len(real)] = 1.0
        ids[masked] = mask_id
        batch["input_mask"][row, :length] = 1
        batch["segment_ids"][row, length // 2:length] = 1
        batch["next_sentence_labels"][row] = index % 2
    return batch
