"""Synthetic data for the attention viewer's page (format "bertjax-attention-view/1"), made from random numpy.

    data, raw = synthetic_view_data(num_layers=2, num_heads=3, seq=9, pairs=2)

The attention really is softmax(q·k/√D) of the random query/key vectors (masked to each packed pair's block), so
the page's neuron view can be checked against the stored probabilities. One example per call; a page with several
examples concatenates the calls' data["examples"].
"""
import numpy as np

from bertjax.attention_viewer.encoding import ATTENTION_ERROR, encode_int8_vectors, encode_uint8_probs

WORDS = ["the", "cat", "sat", "on", "mat", "##s", "dog", "ran", "home", "</script>", "<!--", "naïve", "\"quoted\"",
         "a&b", "모델", "over", "it", "##ing"]
TOP_K = 5


def _tokens(seq: int, pairs: int, rng):
    """[CLS] A [SEP] B [SEP] for each pair: tokens, segment ids, pair ids, each pair's [CLS] and [SEP] positions."""
    sizes = [seq // pairs] * pairs
    sizes[-1] += seq - sum(sizes)
    if min(sizes) < 5:
        raise ValueError(f"seq={seq} is too short for {pairs} pairs of [CLS] a [SEP] b [SEP]")
    tokens, segments, pair_ids, blocks = [], [], [], []
    for pair, size in enumerate(sizes):
        words = size - 3
        a = max(1, words // 2)
        start = len(tokens)
        chosen = [str(w) for w in rng.choice(WORDS, size=words)]
        if pair == 0:
            chosen[0] = "</script>"  # the page must carry it without closing its script element
        block = ["[CLS]", *chosen[:a], "[SEP]", *chosen[a:], "[SEP]"]
        tokens += block
        segments += [0] * (a + 2) + [1] * (words - a + 1)
        pair_ids += [pair] * size
        blocks.append((start, start + size, start + a + 1, start + size - 1))  # start, end, first [SEP], last [SEP]
    return tokens, segments, pair_ids, blocks


def synthetic_view_data(num_layers=2, num_heads=3, seq=9, head_dim=4, pairs=1, seed=0):
    """(data, raw): a valid one-example view-data dict, and the float arrays it was made from:
    raw = {"probs_LxNxTxT", "query_LxTxNxD", "key_LxTxNxD", "tokens", "segment_ids", "pair_ids", "blocks"}.
    pairs > 1 makes a packed row (pair_ids set; each pair attends only within its own block)."""
    rng = np.random.default_rng(seed)
    L, N, T, D = num_layers, num_heads, seq, head_dim
    tokens, segments, pair_ids, blocks = _tokens(T, pairs, rng)
    query = rng.normal(0.0, 1.5, size=(L, T, N, D))
    key = rng.normal(0.0, 1.5, size=(L, T, N, D))
    key[0, -1, 0, :] = 0.0  # a zero vector: scale 0
    pair_T = np.asarray(pair_ids)
    allowed_TxT = pair_T[:, None] == pair_T[None, :]
    scores = np.einsum("ltnd,lsnd->lnts", query, key) / np.sqrt(D)
    scores = np.where(allowed_TxT, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)

    cls_entries = []
    for start, end, first_sep, last_sep in blocks:
        keys = {
            "cls": [start], "sep": [first_sep, last_sep],
            "segment_a": list(range(start + 1, first_sep)), "segment_b": list(range(first_sep + 1, last_sep)),
        }
        row_LxNxT = probs[:, :, start, :]
        parts = {name: row_LxNxT[..., idx].sum(-1).mean(-1).tolist() for name, idx in keys.items()}
        p = row_LxNxT[..., start:end]
        entropy_LxN = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(-1)
        cls_entries.append({
            "position": start, "parts": parts, "entropy": entropy_LxN.mean(-1).tolist(),
            "entropy_per_head": entropy_LxN.tolist(), "uniform_entropy": float(np.log(end - start)),
        })

    guesses = {}
    for position, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        words = [str(w) for w in rng.choice(WORDS, size=TOP_K, replace=False)]
        if position % 2 == 0 and token not in words:
            words[0] = token  # the original token among the guesses
        chance = np.sort(rng.dirichlet(np.ones(TOP_K + 1)))[::-1][:TOP_K]
        guesses[str(position)] = [[w, float(c)] for w, c in zip(words, chance)]

    example = {
        "name": f"synthetic ({pairs} pair{'s' if pairs > 1 else ''}, seed {seed})",
        "tokens": tokens,
        "segment_ids": segments,
        "pair_ids": pair_ids if pairs > 1 else None,
        "attention": encode_uint8_probs(probs),
        "cls": cls_entries,
        "mlm": {"top_k": TOP_K, "guesses": guesses},
        "neurons": {"shape": [L, T, N, D], "query": encode_int8_vectors(query), "key": encode_int8_vectors(key)},
    }
    data = {
        "format": "bertjax-attention-view/1",
        "model": {"source": "synthetic (tests/viewer_fixture.py)", "num_layers": L, "num_heads": N, "head_dim": D},
        "attention_error": ATTENTION_ERROR,
        "examples": [example],
    }
    raw = {"probs_LxNxTxT": probs, "query_LxTxNxD": query, "key_LxTxNxD": key, "tokens": tokens,
           "segment_ids": segments, "pair_ids": pair_ids if pairs > 1 else None, "blocks": blocks}
    return data, raw
