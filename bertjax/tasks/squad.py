"""SQuAD v1.1 / v2.0 span QA data and predictions, after google-research/bert `run_squad.py`.

* `read_squad_examples`: contexts split on whitespace into doc tokens; the answer's character span mapped to doc
  tokens (`read_squad_examples`). Policy on a bad answer (the original warns and skips): for training files, an
  `answer_start` whose context text is not the answer text is a BertjaxError naming the file and question id
  (`skip_mismatched=True` skips such questions instead); evaluation files keep all gold texts unchecked. KLUE-MRC
  (`korean.read_klue_mrc`) is read by the same function: ids in "guid", a training question's first answer.
* `convert_examples_to_features`: query pieces cut to max_query_length, sliding windows over the doc pieces with
  doc_stride, `_check_is_max_context`, `_improve_answer_span`; start/end 0 ([CLS]) for impossible questions and
  answers outside the window.
* `predict`: `write_predictions` (n-best, max_answer_length, v2 null score threshold) and `get_final_text`.
"""
from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tokenizers import pre_tokenizers

from bertjax import paths
from bertjax.data.tokenizer import build_normalizer
from bertjax.errors import BertjaxError
from bertjax.tasks._common import bad_input, pack_row, stack_rows

CLS_INDEX = 0  # start/end position of "no answer"


@dataclass
class SquadExample:
    """A question on a context split into whitespace tokens; start/end_position index doc_tokens (training)."""

    qas_id: str
    question_text: str
    doc_tokens: list[str]
    answers: list[str] = field(default_factory=list)  # all gold texts ([] = no answer), for evaluation
    orig_answer_text: str = ""
    start_position: int = -1
    end_position: int = -1
    is_impossible: bool = False


@dataclass
class SquadFeature:
    """One window of one example: tokens, ids and maps back to the doc tokens."""

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    start_position: int = CLS_INDEX
    end_position: int = CLS_INDEX
    is_impossible: bool = False


def _is_whitespace(c: str) -> bool:
    return c in " \t\r\n" or ord(c) == 0x202F


def split_context(context: str) -> tuple[list[str], list[int]]:
    """(doc tokens split on whitespace, doc token index of each character) as run_squad.py."""
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    previous_whitespace = True
    for c in context:
        if _is_whitespace(c):
            previous_whitespace = True
        else:
            if previous_whitespace:
                doc_tokens.append(c)
            else:
                doc_tokens[-1] += c
            previous_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def read_squad_examples(path: str | os.PathLike, is_training: bool, version_2: bool = False,
                        skip_mismatched: bool = False, *, id_field: str = "id",
                        first_answer: bool = False) -> list[SquadExample]:
    """Examples of a SQuAD JSON file. Training: exactly one answer per answerable question, checked against the
    context (see module doc); v2 `is_impossible` questions get no answer (their `plausible_answers` are ignored).

    Other files in SQuAD's layout: `id_field` names the question id ("guid" in KLUE-MRC), and with `first_answer`
    a training question with several answers learns its first one (KLUE-baseline) instead of being refused."""
    path = paths.path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise BertjaxError(f"{str(path)!r} does not exist; check the path of the SQuAD file") from None
    except (ValueError, KeyError, TypeError) as e:
        raise bad_input(path, None, f"not a SQuAD JSON file ({e!r})", 'give a file {"data": [...]} as SQuAD') from e
    examples = []
    for article in data:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            doc_tokens, char_to_word = split_context(context)
            for qa in paragraph["qas"]:
                if id_field not in qa:
                    raise bad_input(path, None, f"a question of {article.get('title')!r} has no {id_field!r}",
                                    f"give every question its id in {id_field!r}")
                qid = qa[id_field]
                impossible = bool(qa.get("is_impossible", False)) if version_2 else False
                answers = [] if impossible else qa.get("answers", [])
                example = SquadExample(qid, qa["question"], doc_tokens, [a["text"] for a in answers],
                                       is_impossible=impossible)
                if is_training and not impossible:
                    if len(answers) != 1 and not (first_answer and answers):
                        raise bad_input(path, None, f"question {qid!r} has {len(answers)} answers",
                                        "a training question needs exactly one (or is_impossible with SQuAD v2)")
                    text, start = answers[0]["text"], int(answers[0]["answer_start"])
                    if context[start:start + len(text)] != text or not text.strip():
                        if skip_mismatched:
                            continue
                        raise bad_input(path, None, f"question {qid!r}: context at answer_start={start} reads "
                                        f"{context[start:start + len(text)]!r}, not the answer {text!r}",
                                        "fix answer_start/text (or pass skip_mismatched=True to skip, as the "
                                        "original run_squad.py does)")
                    example.orig_answer_text = text
                    example.start_position = char_to_word[start]
                    example.end_position = char_to_word[start + len(text) - 1]
                examples.append(example)
    return examples


def gold_answers(examples: Sequence[SquadExample]) -> dict[str, list[str]]:
    """qid -> gold answer texts ([] = no answer), the input of `metrics.squad_scores`."""
    return {e.qas_id: list(e.answers) for e in examples}


def _improve_answer_span(doc_pieces: list[str], start: int, end: int, tokenizer, answer_text: str) -> tuple[int, int]:
    """The smallest piece span inside [start, end] whose pieces equal the answer's pieces (run_squad.py)."""
    answer = " ".join(tokenizer.tokenize(answer_text))
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if " ".join(doc_pieces[new_start:new_end + 1]) == answer:
                return new_start, new_end
    return start, end


def _check_is_max_context(doc_spans: list[tuple[int, int]], span_index: int, position: int) -> bool:
    """Whether window span_index gives the piece at `position` its most context (min of left/right context,
    plus 0.01 * window length), as run_squad.py `_check_is_max_context`."""
    best_score, best_index = None, None
    for index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return span_index == best_index


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384,
                                 doc_stride: int = 128, max_query_length: int = 64,
                                 is_training: bool = False) -> list[SquadFeature]:
    """Windows [CLS] query [SEP] doc-window [SEP] of each example (run_squad.py convert_examples_to_features)."""
    features = []
    for example_index, example in enumerate(examples):
        query = tokenizer.tokenize(example.question_text)[:max_query_length]
        max_doc = max_seq_length - len(query) - 3
        if max_doc <= 0 or doc_stride <= 0:
            raise BertjaxError(f"max_seq_length={max_seq_length} leaves no room for the document after a "
                               f"{len(query)}-piece query (or doc_stride={doc_stride} <= 0); raise max_seq_length or "
                               "lower max_query_length, and use doc_stride > 0")
        tok_to_orig, orig_to_tok, doc_pieces = [], [], []
        for i, token in enumerate(example.doc_tokens):
            orig_to_tok.append(len(doc_pieces))
            for piece in tokenizer.tokenize(token):
                tok_to_orig.append(i)
                doc_pieces.append(piece)
        tok_start = tok_end = None
        if is_training and not example.is_impossible:
            tok_start = orig_to_tok[example.start_position]
            tok_end = (orig_to_tok[example.end_position + 1] - 1 if example.end_position + 1 < len(example.doc_tokens)
                       else len(doc_pieces) - 1)
            tok_start, tok_end = _improve_answer_span(doc_pieces, tok_start, tok_end, tokenizer,
                                                      example.orig_answer_text)
        doc_spans = []
        start_offset = 0
        while start_offset < len(doc_pieces):
            length = min(len(doc_pieces) - start_offset, max_doc)
            doc_spans.append((start_offset, length))
            if start_offset + length == len(doc_pieces):
                break
            start_offset += min(length, doc_stride)
        for span_index, (span_start, span_length) in enumerate(doc_spans):
            tokens = ["[CLS]", *query, "[SEP]"]
            token_to_orig, is_max_context = {}, {}
            for i in range(span_length):
                split = span_start + i
                token_to_orig[len(tokens)] = tok_to_orig[split]
                is_max_context[len(tokens)] = _check_is_max_context(doc_spans, span_index, split)
                tokens.append(doc_pieces[split])
            tokens.append("[SEP]")
            segments = [0] * (len(query) + 2) + [1] * (span_length + 1)
            ids = [tokenizer.vocab[t] for t in tokens]
            input_ids, input_mask, segment_ids = pack_row(ids, segments, max_seq_length, tokenizer.pad_id)
            start = end = CLS_INDEX
            if tok_start is not None and span_start <= tok_start and tok_end <= span_start + span_length - 1:
                offset = len(query) + 2 - span_start
                start, end = tok_start + offset, tok_end + offset
            features.append(SquadFeature(1000000000 + len(features), example_index, span_index, tokens,
                                         token_to_orig, is_max_context, input_ids, input_mask, segment_ids, start,
                                         end, example.is_impossible))
    return features


def features_to_arrays(features: Sequence[SquadFeature]) -> dict[str, np.ndarray]:
    """{input_ids, input_mask, segment_ids: int32[B, T], start_positions, end_positions: int32[B]}."""
    max_seq_length = len(features[0].input_ids) if features else 0
    arrays = stack_rows([(f.input_ids, f.input_mask, f.segment_ids) for f in features], max_seq_length)
    arrays["start_positions"] = np.array([f.start_position for f in features], np.int32)
    arrays["end_positions"] = np.array([f.end_position for f in features], np.int32)
    return arrays


@dataclass
class SquadPredictions:
    """answers: qid -> text ("" = no answer, v2); null_odds: qid -> null score minus best span score (v2 only);
    nbest: qid -> list of {text, probability, start_logit, end_logit}."""

    answers: dict[str, str]
    null_odds: dict[str, float]
    nbest: dict[str, list[dict]]


def _best_indexes(logits: np.ndarray, n: int) -> list[int]:
    """Indices of the n largest logits, largest first (stable on ties, as the original's sort)."""
    return sorted(range(len(logits)), key=lambda i: -logits[i])[:n]


def predict(all_start_logits, all_end_logits, features: Sequence[SquadFeature], examples: Sequence[SquadExample],
            n_best_size: int = 20, max_answer_length: int = 30, null_score_diff_threshold: float = 0.0,
            version_2: bool = False, do_lower_case: bool = True,
            strip_accents: bool | None = None) -> SquadPredictions:
    """Answer texts from start/end logits [B, T] (row i belongs to features[i]), as run_squad.py write_predictions.

    v2: a question is answered "" when null score - best span score > null_score_diff_threshold; a question whose
    n-best holds no span gets "" and null odds +inf. Casing flags must be the tokenizer's (for get_final_text)."""
    starts_BxT, ends_BxT = np.asarray(all_start_logits, np.float64), np.asarray(all_end_logits, np.float64)
    if starts_BxT.shape[0] != len(features) or ends_BxT.shape[0] != len(features):
        raise BertjaxError(f"{starts_BxT.shape[0]}/{ends_BxT.shape[0]} rows of start/end logits for "
                           f"{len(features)} features; pass one row per feature, in order")
    by_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        by_example[feature.example_index].append(i)
    out = SquadPredictions({}, {}, {})
    for example_index, example in enumerate(examples):
        prelim = []  # (score, feature row, start, end)
        score_null, null_row = math.inf, None
        for row in by_example[example_index]:
            feature, start_logits, end_logits = features[row], starts_BxT[row], ends_BxT[row]
            if version_2 and start_logits[0] + end_logits[0] < score_null:
                score_null, null_row = start_logits[0] + end_logits[0], row
            for s in _best_indexes(start_logits, n_best_size):
                for e in _best_indexes(end_logits, n_best_size):
                    if (s >= len(feature.tokens) or e >= len(feature.tokens) or s not in feature.token_to_orig_map
                            or e not in feature.token_to_orig_map or not feature.token_is_max_context.get(s, False)
                            or e < s or e - s + 1 > max_answer_length):
                        continue
                    prelim.append((start_logits[s] + end_logits[e], row, s, e))
        if version_2 and null_row is not None:
            prelim.append((score_null, null_row, 0, 0))
        prelim.sort(key=lambda p: -p[0])
        nbest, seen = [], set()
        for _, row, s, e in prelim:
            if len(nbest) >= n_best_size:
                break
            feature = features[row]
            text = ""
            if s > 0:
                pieces = " ".join(feature.tokens[s:e + 1]).replace(" ##", "").replace("##", "")
                orig = " ".join(example.doc_tokens[feature.token_to_orig_map[s]:feature.token_to_orig_map[e] + 1])
                text = get_final_text(" ".join(pieces.split()), orig, do_lower_case, strip_accents)
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": float(starts_BxT[row][s]),
                          "end_logit": float(ends_BxT[row][e])})
        if version_2 and "" not in seen and null_row is not None:
            nbest.append({"text": "", "start_logit": float(starts_BxT[null_row][0]),
                          "end_logit": float(ends_BxT[null_row][0])})
        if not nbest:
            nbest.append({"text": "empty", "start_logit": 0.0, "end_logit": 0.0})
        totals = np.array([n["start_logit"] + n["end_logit"] for n in nbest])
        probs = np.exp(totals - totals.max())
        for n, p in zip(nbest, probs / probs.sum()):
            n["probability"] = float(p)
        out.nbest[example.qas_id] = nbest
        if not version_2:
            out.answers[example.qas_id] = nbest[0]["text"]
            continue
        best = next((n for n in nbest if n["text"]), None)
        diff = math.inf if best is None else score_null - best["start_logit"] - best["end_logit"]
        out.null_odds[example.qas_id] = float(diff)
        out.answers[example.qas_id] = "" if diff > null_score_diff_threshold else best["text"]
    return out


def _basic_tokens(text: str, do_lower_case: bool, strip_accents: bool | None) -> list[str]:
    """BasicTokenizer words of text (cleaning, CJK spacing, casing, whitespace and punctuation splits)."""
    normalizer = build_normalizer(do_lower_case, do_lower_case if strip_accents is None else strip_accents)
    return [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalizer.normalize_str(text))]


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    """text without spaces, and the map from its character positions to those in text."""
    chars, mapping = [], {}
    for i, c in enumerate(text):
        if c != " ":
            mapping[len(chars)] = i
            chars.append(c)
    return "".join(chars), mapping


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool = True,
                   strip_accents: bool | None = None) -> str:
    """The span of orig_text that the de-tokenized prediction pred_text covers (run_squad.py get_final_text):
    orig_text re-tokenized as BasicTokenizer does, pred_text found in it, positions mapped back by aligning the
    two texts without spaces; orig_text itself when any step fails."""
    tok_text = " ".join(_basic_tokens(orig_text, do_lower_case, strip_accents))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_map = _strip_spaces(orig_text)
    tok_ns, tok_map = _strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_to_ns = {i: k for k, i in tok_map.items()}
    ns_start, ns_end = tok_to_ns.get(start), tok_to_ns.get(end)
    if ns_start is None or ns_end is None or ns_start not in orig_map or ns_end not in orig_map:
        return orig_text
    return orig_text[orig_map[ns_start]:orig_map[ns_end] + 1]
