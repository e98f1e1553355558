"""Token tagging (NER) data: CoNLL-2003-style files, word-piece encoding with first-piece labels, decoding.

Tag scheme: tags are converted to IOB2 when read (`to_iob2`; IOB2 input is unchanged), so training targets and
the gold tags of evaluation are IOB2 whatever the file used. The chunks are the same under conlleval semantics
(an I-X after O or after another type starts a chunk), which `metrics.entity_scores` uses (seqeval, mode=None).

Encoding: [CLS] pieces [SEP]; only the FIRST piece of each word carries its label, the other pieces, [CLS],
[SEP] and padding get IGNORE_LABEL (-100), ignored by the loss and the metric. A word the tokenizer drops
entirely (e.g. only control characters) is given one [UNK] piece, so every word has a first piece. Sentences
longer than max_seq_length - 2 pieces are cut at a piece; words whose first piece is cut get the prediction "O"
from `decode` (and count as such in the metric).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bertjax import paths
from bertjax.errors import BertjaxError
from bertjax.tasks import IGNORE_LABEL
from bertjax.tasks._common import bad_input, check_max_seq_length, pack_row, stack_rows

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"


@dataclass(frozen=True)
class Sentence:
    """Words and their tags (IOB2), with the file and line of the first word (in CoNLL files word k is on line + k)
    and the sentence's id where the file gives one (KLUE-NER)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    path: str = ""
    line: int = 0
    guid: str = ""


@dataclass
class TaggingEncoding:
    """Model inputs and what `decode` needs: arrays {input_ids, input_mask, segment_ids, label_ids: int32[B, T]},
    the token position of each kept word's first piece per sentence, and the number of words per sentence."""

    arrays: dict[str, np.ndarray]
    word_starts: list[np.ndarray]
    num_words: list[int]
    label_list: list[str]


def to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (or IOB2) tags -> IOB2: an I-X that does not continue an X chunk becomes B-X."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-"):
            previous = out[i - 1] if i else OUTSIDE
            if previous == OUTSIDE or previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
        out.append(tag)
    return out


def read_conll(path: str | os.PathLike) -> list[Sentence]:
    """Sentences of a CoNLL file: one `word ... tag` line per word (whitespace-separated, the tag is the last
    column, the same number of columns on every line), a blank line between sentences, -DOCSTART- lines ignored."""
    path = paths.path(path)
    if not path.is_file():
        raise BertjaxError(f"{str(path)!r} does not exist; check the path of the CoNLL file")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line, n_columns = 0, None

    def flush():
        if words:
            sentences.append(Sentence(tuple(words), tuple(to_iob2(tags)), str(path), first_line))
            words.clear()
            tags.clear()

    with paths.open_text(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                flush()
                continue
            if fields[0] == DOCSTART:
                flush()
                continue
            if n_columns is None:
                n_columns = len(fields)
                if n_columns < 2:
                    raise bad_input(path, number, "a single column", "write `word ... tag` (at least 2 columns)")
            if len(fields) != n_columns:
                raise bad_input(path, number, f"{len(fields)} columns where the file has {n_columns}",
                                f"write {n_columns} whitespace-separated columns on every line (the tag last)")
            if not words:
                first_line = number
            tag = fields[-1]
            if tag != OUTSIDE and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise bad_input(path, number, f"tag {tag!r} is not O, B-<type> or I-<type>",
                                "use IOB1 or IOB2 tags in the last column")
            words.append(fields[0])
            tags.append(tag)
    flush()
    return sentences


def labels_of(sentences: Sequence[Sentence]) -> list[str]:
    """Label list of training sentences: "O" first, then the other tags sorted."""
    return [OUTSIDE] + sorted({t for s in sentences for t in s.tags} - {OUTSIDE})


def encode(sentences: Sequence[Sentence], tokenizer, max_seq_length: int,
           label_list: Sequence[str]) -> TaggingEncoding:
    """Word pieces of each sentence with first-piece labels (see module doc); a tag outside label_list is an
    error naming the sentence's file and line."""
    check_max_seq_length(max_seq_length)
    label_ids = {label: i for i, label in enumerate(label_list)}
    rows, label_rows, word_starts = [], [], []
    for sentence in sentences:
        ids, labels, starts = [tokenizer.cls_id], [IGNORE_LABEL], []
        for k, (word, tag) in enumerate(zip(sentence.words, sentence.tags)):
            if tag not in label_ids:
                raise bad_input(sentence.path, sentence.line + k, f"tag {tag!r} (word {word!r}) is not in the label "
                                f"list {list(label_list)}", "build the label list from the training file")
            pieces = tokenizer.encode(word).tolist() or [tokenizer.unk_id]
            room = max_seq_length - 1 - len(ids)
            if room <= 0:
                break
            starts.append(len(ids))
            ids += pieces[:room]
            labels += [label_ids[tag]] + [IGNORE_LABEL] * (len(pieces[:room]) - 1)
        ids.append(tokenizer.sep_id)
        labels.append(IGNORE_LABEL)
        rows.append(pack_row(ids, [0] * len(ids), max_seq_length, tokenizer.pad_id))
        label_row = np.full(max_seq_length, IGNORE_LABEL, np.int32)
        label_row[:len(labels)] = labels
        label_rows.append(label_row)
        word_starts.append(np.array(starts, np.int64))
    arrays = stack_rows(rows, max_seq_length)
    arrays["label_ids"] = np.stack(label_rows) if label_rows else np.zeros((0, max_seq_length), np.int32)
    return TaggingEncoding(arrays, word_starts, [len(s.words) for s in sentences], list(label_list))


def decode(predicted_ids, encoding: TaggingEncoding) -> list[list[str]]:
    """Predicted label ids int[B, T] (e.g. argmax of the logits) -> one tag per original word per sentence;
    words cut by truncation get "O"."""
    predicted = np.asarray(predicted_ids)
    if predicted.ndim != 2 or predicted.shape[0] != len(encoding.word_starts):
        raise BertjaxError(f"predictions of shape {predicted.shape} for {len(encoding.word_starts)} sentences; "
                           "pass label ids [B, T] in the order of the encoded sentences")
    out = []
    for row, starts, n_words in zip(predicted, encoding.word_starts, encoding.num_words):
        tags = [encoding.label_list[int(i)] for i in row[starts]]
        out.append(tags + [OUTSIDE] * (n_words - len(tags)))
    return out


def write_predictions(path: str | os.PathLike, sentences: Sequence[Sentence],
                      predicted_tags: Sequence[Sequence[str]]) -> None:
    """CoNLL columns `word gold predicted`, a blank line after each sentence (the input of conlleval)."""
    if len(sentences) != len(predicted_tags):
        raise BertjaxError(f"{len(predicted_tags)} predicted sentences for {len(sentences)} sentences; "
                           "pass decode()'s output for the same sentences")
    lines = []
    for sentence, tags in zip(sentences, predicted_tags):
        lines.extend(f"{word} {gold} {pred}\n" for word, gold, pred in zip(sentence.words, sentence.tags, tags,
                                                                             strict=True))
        lines.append("\n")
    paths.write_text_atomically(path, "".join(lines))
