"""Helpers shared by the task readers and encoders: error lines naming file:line, and padding to T."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from bertjax.errors import BertjaxError



def bad_input(path: str | os.PathLike, line: int | None, problem: str, fix: str) -> BertjaxError:
    """A BertjaxError reading `<path>:<line>: <problem>; <fix>` (one line)."""
    where = f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
    return BertjaxError(f"{where}: {problem}; {fix}".replace("\n", " "))


def check_max_seq_length(max_seq_length: int, minimum: int = 3) -> None:
    """BertjaxError unless max_seq_length leaves room for [CLS], [SEP] and at least one piece."""
    if max_seq_length < minimum:
        raise BertjaxError(f"max_seq_length={max_seq_length} is too small; use at least {minimum} "
                           "(room for [CLS], [SEP] and the text)")


def pack_row(ids: Sequence[int], segment_ids: Sequence[int], max_seq_length: int,
             pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, input_mask, segment_ids) of one sequence, each int32[T] zero-padded to max_seq_length."""
    n = len(ids)
    assert n <= max_seq_length and len(segment_ids) == n
    input_ids = np.full(max_seq_length, pad_id, np.int32)
    input_ids[:n] = ids
    input_mask = np.zeros(max_seq_length, np.int32)
    input_mask[:n] = 1
    segments = np.zeros(max_seq_length, np.int32)
    segments[:n] = segment_ids
    return input_ids, input_mask, segments


def stack_rows(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], max_seq_length: int) -> dict[str, np.ndarray]:
    """{input_ids, input_mask, segment_ids}: int32[B, T] from `pack_row` results (B may be 0)."""
    names = ("input_ids", "input_mask", "segment_ids")
    if not rows:
        return {name: np.zeros((0, max_seq_length), np.int32) for name in names}
    return {name: np.stack([row[k] for row in rows]) for k, name in enumerate(names)}
