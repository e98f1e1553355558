"""The ORIGINAL create_pretraining_data algorithm, in plain Python: the baseline for tests and benchmarks.

Test support, not part of the package. Written after google-research/bert's `create_pretraining_data.py`
(`create_training_instances`, `create_instances_from_document`, `create_masked_lm_predictions`,
`truncate_seq_pair`) and `tokenization.py` (`FullTokenizer`: `BasicTokenizer` + `WordpieceTokenizer`), without
TensorFlow: the whole corpus is tokenized into Python lists with a pure-Python FullTokenizer, one
`random.Random(seed)` drives every decision in the original call order, all instances of all dupe passes are held
in memory, shuffled once, and written at the end (here with the same per-example tf.train.Example serialisation the
original used). It is deliberately slow and memory-hungry; use `bertjax.data.create_pretraining_data` for real work.
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bertjax.data import features

UNK, CLS, SEP, MASK = "[UNK]", "[CLS]", "[SEP]", "[MASK]"
MAX_INPUT_CHARS_PER_WORD = 200


# ----------------------------------------------------------------------------------------------------------------
# FullTokenizer (basic tokenization + greedy WordPiece)


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


class FullTokenizer:
    """Pure-Python BERT tokenizer: clean, split CJK/punctuation, optional lower-case + accent strip, WordPiece
    (tokenization.py: FullTokenizer)."""

    def __init__(self, vocab_tokens: Sequence[str], do_lower_case: bool = True, strip_accents: bool | None = None):
        """vocab_tokens: the vocab in id order; strip_accents defaults to do_lower_case (the original)."""
        self.vocab = {t: i for i, t in enumerate(vocab_tokens)}
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents

    def basic_tokenize(self, text: str) -> list[str]:
        """Words and punctuation marks of `text` (tokenization.py: BasicTokenizer.tokenize)."""
        cleaned = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            if _is_whitespace(char):
                cleaned.append(" ")
            elif _is_cjk(cp):
                cleaned.append(f" {char} ")
            else:
                cleaned.append(char)
        words = []
        for word in "".join(cleaned).split():
            if self.do_lower_case:
                word = word.lower()
            if self.strip_accents:
                word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            current = ""
            for char in word:
                if _is_punctuation(char):
                    if current:
                        words.append(current)
                    words.append(char)
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first pieces of one word; [UNK] if too long or not coverable (tokenization.py:
        WordpieceTokenizer.tokenize)."""
        if len(word) > MAX_INPUT_CHARS_PER_WORD:
            return [UNK]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Wordpieces of `text`."""
        return [piece for word in self.basic_tokenize(text) for piece in self.wordpiece(word)]


# ----------------------------------------------------------------------------------------------------------------
# The algorithm


@dataclass
class Instance:
    """One training instance (create_pretraining_data.py: TrainingInstance)."""

    tokens: list[str]
    segment_ids: list[int]
    is_random_next: bool
    masked_lm_positions: list[int]
    masked_lm_labels: list[str]


def read_documents(paths: Sequence[Path], tokenizer: FullTokenizer, rng: random.Random) -> list[list[list[str]]]:
    """All documents (lists of tokenized sentences), empty ones removed, shuffled with `rng` (the first part of
    create_pretraining_data.py: create_training_instances)."""
    documents: list[list[list[str]]] = [[]]
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    documents.append([])
                    continue
                tokens = tokenizer.tokenize(line)
                if tokens:
                    documents[-1].append(tokens)
    documents = [d for d in documents if d]
    rng.shuffle(documents)
    return documents


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng: random.Random) -> None:
    """Trim the longer list (ties: B) one token at a time, from the front or back at random
    (create_pretraining_data.py: truncate_seq_pair)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def create_masked_lm_predictions(tokens: list[str], masked_lm_prob: float, max_predictions_per_seq: int,
                                 vocab_words: list[str], rng: random.Random, do_whole_word_mask: bool = False
                                 ) -> tuple[list[str], list[int], list[str]]:
    """(masked tokens, sorted positions, labels) (create_pretraining_data.py: create_masked_lm_predictions)."""
    groups: list[list[int]] = []
    for i, token in enumerate(tokens):
        if token in (CLS, SEP):
            continue
        if do_whole_word_mask and groups and token.startswith("##"):
            groups[-1].append(i)
        else:
            groups.append([i])
    rng.shuffle(groups)
    output = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    chosen: list[int] = []
    covered: set[int] = set()
    for group in groups:
        if len(chosen) >= num_to_predict:
            break
        if len(chosen) + len(group) > num_to_predict or any(i in covered for i in group):
            continue
        for i in group:
            covered.add(i)
            if rng.random() < 0.8:
                output[i] = MASK
            elif rng.random() < 0.5:
                output[i] = tokens[i]
            else:
                output[i] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            chosen.append(i)
    chosen.sort()
    return output, chosen, [tokens[i] for i in chosen]


def create_instances_from_document(documents: list, document_index: int, max_seq_length: int, short_seq_prob: float,
                                   masked_lm_prob: float, max_predictions_per_seq: int, vocab_words: list[str],
                                   rng: random.Random, do_whole_word_mask: bool = False) -> list[Instance]:
    """Instances of one document for one dupe pass, including the "put back" of unused sentences
    (create_pretraining_data.py: create_instances_from_document)."""
    document = documents[document_index]
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)
    instances = []
    chunk: list[list[str]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            tokens_b: list[str] = []
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = True
                target_b = target - len(tokens_a)
                random_index = document_index
                for _ in range(10):
                    random_index = rng.randint(0, len(documents) - 1)
                    if random_index != document_index:
                        break
                random_document = documents[random_index]
                for sentence in random_document[rng.randint(0, len(random_document) - 1):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_b:
                        break
                i -= len(chunk) - a_end
            else:
                is_random_next = False
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            assert tokens_a and tokens_b
            tokens = [CLS] + tokens_a + [SEP] + tokens_b + [SEP]
            segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
            tokens, positions, labels = create_masked_lm_predictions(
                tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng, do_whole_word_mask)
            instances.append(Instance(tokens, segment_ids, is_random_next, positions, labels))
            chunk = []
            length = 0
        i += 1
    return instances


def create_training_instances(paths: Sequence[Path], tokenizer: FullTokenizer, max_seq_length: int = 128,
                              dupe_factor: int = 10, short_seq_prob: float = 0.1, masked_lm_prob: float = 0.15,
                              max_predictions_per_seq: int = 20, random_seed: int = 12345,
                              do_whole_word_mask: bool = False) -> list[Instance]:
    """Every instance of the corpus, all dupe passes, shuffled, in memory, one rng
    (create_pretraining_data.py: create_training_instances)."""
    rng = random.Random(random_seed)
    documents = read_documents(paths, tokenizer, rng)
    vocab_words = list(tokenizer.vocab)
    instances = []
    for _ in range(dupe_factor):
        for index in range(len(documents)):
            instances.extend(create_instances_from_document(
                documents, index, max_seq_length, short_seq_prob, masked_lm_prob, max_predictions_per_seq,
                vocab_words, rng, do_whole_word_mask))
    rng.shuffle(instances)
    return instances


def instance_to_example(instance: Instance, vocab: dict[str, int], max_seq_length: int,
                        max_predictions_per_seq: int) -> dict[str, np.ndarray]:
    """The padded feature dict of one instance (create_pretraining_data.py: write_instance_to_example_files)."""
    input_ids = [vocab[t] for t in instance.tokens]
    input_mask = [1] * len(input_ids)
    segment_ids = list(instance.segment_ids)
    while len(input_ids) < max_seq_length:
        input_ids.append(0)
        input_mask.append(0)
        segment_ids.append(0)
    positions = list(instance.masked_lm_positions)
    ids = [vocab[t] for t in instance.masked_lm_labels]
    weights = [1.0] * len(ids)
    while len(positions) < max_predictions_per_seq:
        positions.append(0)
        ids.append(0)
        weights.append(0.0)
    return {"input_ids": np.array(input_ids, np.int32), "input_mask": np.array(input_mask, np.int32),
            "segment_ids": np.array(segment_ids, np.int32), "masked_lm_positions": np.array(positions, np.int32),
            "masked_lm_ids": np.array(ids, np.int32), "masked_lm_weights": np.array(weights, np.float32),
            "next_sentence_labels": np.array(int(instance.is_random_next), np.int32)}


def write_instances(instances: Sequence[Instance], path: str | Path, vocab: dict[str, int], max_seq_length: int,
                    max_predictions_per_seq: int) -> int:
    """Write instances one tf.train.Example at a time into one ArrayRecord file (as the original's writer)."""
    with features.ShardWriter(path, max_seq_length, max_predictions_per_seq) as writer:
        for instance in instances:
            writer.write(instance_to_example(instance, vocab, max_seq_length, max_predictions_per_seq))
    return writer.num_examples
