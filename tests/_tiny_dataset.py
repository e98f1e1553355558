"""Tiny bertjax datasets for the data tests, written with bertjax.data.features (no text, no tokenizer).

Example `i` of a dataset is `_batches.make_batch(..., **rows())`'s: input_ids = [CLS] (i + 1000 + j for j in
0..n-3) [SEP] [PAD]... so a row can be identified by `example_id(row)`, even after dynamic masking (the original
tokens are restored from the labels).
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from _batches import ID_OFFSET, make_batch
from bertjax.data import catalog, features

PAD, CLS, SEP, MASK = 0, 101, 102, 103
VOCAB_SIZE = 5000


def rows(max_seq_length: int = 16, masking: str = "static") -> dict:
    """_batches.make_batch's arguments for this dataset's examples: numbered tokens (`example_id` reads them back),
    3 to max_seq_length - 1 real tokens, BERT's special ids; static masking: one prediction, at position 1; dynamic:
    none (the pipeline draws them)."""
    return dict(seq_length=max_seq_length, numbered=True, lengths=range(3, max_seq_length),
                specials=(CLS, SEP, MASK), masks="first" if masking == "static" else "none")


def example_id(row: dict[str, np.ndarray]) -> int:
    """The id of an example made with `rows()`, read from its (unmasked) second token."""
    ids = np.array(row["input_ids"])
    real = np.asarray(row["masked_lm_weights"]) > 0
    ids[np.asarray(row["masked_lm_positions"])[real]] = np.asarray(row["masked_lm_ids"])[real]
    return int(ids[1]) - ID_OFFSET


def write_vocab(directory: str) -> str:
    """A vocab.txt of VOCAB_SIZE tokens with [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103; every fifth
    word above is a `##` continuation piece."""
    tokens = [f"[unused{i}]" for i in range(VOCAB_SIZE)]
    tokens[PAD], tokens[100], tokens[CLS], tokens[SEP], tokens[MASK] = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    for i in range(MASK + 1, VOCAB_SIZE):
        tokens[i] = f"##w{i}" if i % 5 == 0 else f"w{i}"
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def sha256(path: str) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def manifest(max_seq_length: int = 16, max_predictions_per_seq: int = 4, masking: str = "static",
             vocab_sha256: str = "0" * 64, whole_word_mask: str = "none") -> dict:
    """A complete manifest for a tiny dataset (num_examples is filled in by finalize_dataset)."""
    return {
        "vocab_size": VOCAB_SIZE, "vocab_sha256": vocab_sha256, "do_lower_case": True, "strip_accents": True,
        "max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions_per_seq, "masking": masking,
        "masked_lm_prob": 0.15, "whole_word_mask": whole_word_mask, "random_seed": 12345, "dupe_factor": 1,
    }


def write_dataset(output_dir: str, split_sizes: dict[str, list[int]], max_seq_length: int = 16,
                  max_predictions_per_seq: int = 4, masking: str = "static", whole_word_mask: str = "none") -> str:
    """A finalized dataset with its vocab; split_sizes maps split -> examples per shard. Ids run on across shards
    and splits. With masking="dynamic" the stored examples are unmasked (no predictions)."""
    os.makedirs(output_dir, exist_ok=True)
    shards, start = {}, 0
    for split, sizes in split_sizes.items():
        shards[split] = []
        for k, n in enumerate(sizes):
            name = f"{split}-part{k}.tmp"
            batch = make_batch(n, start, predictions=max_predictions_per_seq, **rows(max_seq_length, masking))
            features.write_shard(os.path.join(output_dir, name), batch)
            shards[split].append((name, n))
            start += n
    vocab = write_vocab(output_dir.rstrip("/") + "-vocab")
    stored = manifest(max_seq_length, max_predictions_per_seq, masking, sha256(vocab), whole_word_mask)
    catalog.finalize_dataset(output_dir, shards, stored, vocab_file=vocab)
    return output_dir
