"""One text shard -> ArrayRecord files of pretraining examples, in any process of create_pretraining_data.

`bertjax.data.worker_pool` runs it in the worker processes and in the main one. `init_worker` loads the tokenizer
once per process; `process_shard` reads a shard's sentences (`bertjax.data.corpus`: any input format, split into
sentences and cleaned), tokenizes its documents once, makes
their instances with the original algorithm (`bertjax.data.instances`), masks them (`bertjax.data.masking`, static
masking) and writes one file per split. All randomness comes from SeedSequence([random_seed, shard index]).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertjax.data import corpus, features, instances, masking, packing, sentences, text
from bertjax.data.tokenizer import BertTokenizer

MASK_BLOCK_ROWS = 4096  # instances masked / serialised at a time (bounds temporary memory)
STAT_KEYS = ("documents", "documents_with_2plus_sentences", "sentences", "tokens", "unk_tokens", "instances",
             "rows", "instance_tokens", "full_length", "random_next", "short_target", "masked_tokens", "lines",
             "invalid_utf8_lines", "split_long_lines", "bytes", *corpus.COUNT_KEYS)


@dataclass(frozen=True)
class Settings:
    """Everything that determines the dataset's content (the manifest stores it to detect reuse)."""

    vocab_sha256: str
    vocab_size: int
    do_lower_case: bool
    strip_accents: bool
    max_seq_length: int
    max_predictions_per_seq: int
    masked_lm_prob: float
    short_seq_prob: float
    dupe_factor: int
    random_seed: int
    masking: str
    whole_word_mask: str
    eval_fraction: float
    shard_bytes: int
    inputs: tuple[tuple[str, int], ...]  # (absolute path, size in bytes) of every input file
    max_pairs_per_seq: int = 0  # > 0: pairs packed, up to this many a row (bertjax.data.packing)
    corpus: corpus.CorpusSpec = corpus.CorpusSpec()  # input format, sentence splitter, cleaning


@dataclass
class ShardResult:
    """What a worker wrote for one shard: file name and count per split, and statistics."""

    index: int
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))


WORKER_STATE: dict[str, Any] = {}


def init_worker(vocab_path: str, settings: Settings, staging: str, tokenizer: BertTokenizer | None = None) -> None:
    """Load the tokenizer once per process (or take `tokenizer`, in-process); one tokenizer thread per worker."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tok = tokenizer or BertTokenizer.from_vocab(vocab_path, do_lower_case=settings.do_lower_case,
                                                strip_accents=settings.strip_accents)
    mask_args = masking.masking_args(tok, masked_lm_prob=settings.masked_lm_prob,
                                     max_predictions_per_seq=settings.max_predictions_per_seq,
                                     whole_word=settings.whole_word_mask)
    spec = settings.corpus
    splitter = sentences.SentenceSplitter(spec.sentence_splitter, spec.language or None) if spec.splits_sentences \
        else None
    WORKER_STATE.update(tokenizer=tok, settings=settings, staging=staging, mask_args=mask_args, splitter=splitter)


def _write_split(docs: instances.Documents, path: str, walk_rng: random.Random, np_rng: np.random.Generator,
                 pack_rng: np.random.Generator, stats: dict[str, int]) -> int:
    """Instances of some documents -> one ArrayRecord file; returns the number written."""
    settings: Settings = WORKER_STATE["settings"]
    tok: BertTokenizer = WORKER_STATE["tokenizer"]
    made = instances.create_instances(docs, walk_rng, max_seq_length=settings.max_seq_length,
                                      short_seq_prob=settings.short_seq_prob, dupe_factor=settings.dupe_factor)
    made = instances.truncate_pairs(made, settings.max_seq_length - 3, np_rng)
    made = made.take(np_rng.permutation(len(made)))
    mask_args = WORKER_STATE["mask_args"]
    p = settings.max_predictions_per_seq
    with features.ShardWriter(path, settings.max_seq_length, p, settings.max_pairs_per_seq) as writer:
        for start in range(0, len(made), MASK_BLOCK_ROWS):
            block = made.take(np.arange(start, min(start + MASK_BLOCK_ROWS, len(made))))
            rows = instances.build_features(docs.tokens, block, settings.max_seq_length, tok.cls_id, tok.sep_id)
            num_tokens = rows.pop("num_tokens")
            if settings.masking == "static":
                ids, positions, labels, weights = masking.mask_batch(rows["input_ids"], num_tokens, np_rng,
                                                                     **mask_args)
                rows.update(input_ids=ids, masked_lm_positions=positions, masked_lm_ids=labels,
                            masked_lm_weights=weights)
                stats["masked_tokens"] += int(weights.sum())
            else:
                rows.update(masked_lm_positions=np.zeros((len(block), p), np.int32),
                            masked_lm_ids=np.zeros((len(block), p), np.int32),
                            masked_lm_weights=np.zeros((len(block), p), np.float32))
            if settings.max_pairs_per_seq:
                plan = packing.plan_rows(num_tokens, (rows["masked_lm_weights"] > 0).sum(axis=1),
                                         settings.max_seq_length, p, settings.max_pairs_per_seq)
                plan = [plan[r] for r in pack_rng.permutation(len(plan))]   # rows were made longest first
                rows = packing.pack(rows, num_tokens, plan, settings.max_pairs_per_seq)
            writer.write_batch(rows)
            stats["instance_tokens"] += int(num_tokens.sum())
            stats["full_length"] += int((num_tokens == settings.max_seq_length).sum())
            stats["random_next"] += int(block.is_random_next.sum())
            stats["short_target"] += int(block.short_target.sum())
    stats["instances"] += len(made)
    stats["rows"] += writer.num_examples
    return writer.num_examples


def process_shard(shard: text.TextShard) -> ShardResult:
    """Read one shard, tokenize it once, make its instances (train, and eval documents apart), mask and write them."""
    settings: Settings = WORKER_STATE["settings"]
    tok: BertTokenizer = WORKER_STATE["tokenizer"]
    result = ShardResult(shard.index)
    stats = result.stats
    lines, text_stats, counts = corpus.shard_lines(shard, settings.corpus, WORKER_STATE["splitter"])
    stats.update(lines=text_stats.lines, invalid_utf8_lines=text_stats.invalid_utf8_lines,
                 split_long_lines=text_stats.split_long_lines, bytes=text_stats.bytes, **counts)
    docs = instances.tokenize_documents(lines, tok.encode_batch)
    stats.update(documents=docs.num_documents, sentences=docs.num_sentences, tokens=int(len(docs.tokens)),
                 unk_tokens=int(np.count_nonzero(docs.tokens == tok.unk_id)),
                 documents_with_2plus_sentences=sum(1 for a, b in docs.doc_bounds if b - a >= 2))
    # The 4th stream orders packed rows only, so packing leaves the pairs and masks as they are unpacked.
    split_seq, walk_seq, mask_seq, pack_seq = np.random.SeedSequence([settings.random_seed, shard.index]).spawn(4)
    is_eval = np.random.default_rng(split_seq).random(docs.num_documents) < settings.eval_fraction
    walk_rng = random.Random(int(walk_seq.generate_state(1, np.uint64)[0]))
    np_rng, pack_rng = np.random.default_rng(mask_seq), np.random.default_rng(pack_seq)
    for split, selected in (("train", ~is_eval), ("eval", is_eval)):
        if not selected.any():
            continue
        name = f"{split}-{shard.index:06d}.array_record"
        count = _write_split(docs.select(np.flatnonzero(selected).tolist()),
                             os.path.join(WORKER_STATE["staging"], name), walk_rng, np_rng, pack_rng, stats)
        result.files[split] = (name, count)
    return result


@dataclass
class ShardHashes:
    """The first pass of --dedup_documents over one shard: its documents' hashes, in order."""

    index: int
    hashes: np.ndarray
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))


def hash_shard(shard: text.TextShard) -> ShardHashes:
    """Hash every document of a shard (`bertjax.data.corpus.document_hashes`)."""
    return ShardHashes(shard.index, corpus.document_hashes(shard, WORKER_STATE["settings"].corpus))
