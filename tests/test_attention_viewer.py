"""The attention viewer's data and its entry points (the page in a real browser: test_attention_viewer_browser.py).

What the page shows must be the model's own numbers: attention equal to `attention_maps` within the stated
quantisation error, queries and keys that reproduce it, masked-LM guesses equal to a direct BertForPreTraining call,
and packed rows whose blocks equal each pair alone.
"""
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from _train_helpers import write_random_bert
from bertjax.attention_viewer import attention_view, data as view_data, encoding
from bertjax.convert import sources
from bertjax.errors import BertjaxError
from bertjax.model import BertForPreTraining
from bertjax.visualization import attention_maps

TEXT_A, TEXT_B, TEXT_C = "the cat sat on the mat .", "it was warm .", "a dog ran"
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("viewer") / "hf"
    words = re.findall(r"\w+|[^\w\s]", " ".join([TEXT_A, TEXT_B, TEXT_C]))
    write_random_bert(directory, words, **SIZES)
    return directory


@pytest.fixture(scope="module")
def pretrained(checkpoint):
    return sources.load_pretrained(checkpoint)


@pytest.fixture(scope="module")
def view(pretrained):
    return attention_view(pretrained, [TEXT_A, TEXT_C], [TEXT_B, None], top_k=5)


def test_the_page_data_is_the_models_attention_within_the_stated_error(view, pretrained):
    assert view.data["format"] == view_data.FORMAT and view.data["attention_error"] == pytest.approx(1 / 510)
    for example, row in zip(view.data["examples"], view.rows):
        maps = np.asarray(attention_maps(pretrained.config, pretrained.params, row.input_ids[None], None,
                                         row.segment_ids[None]))[:, 0]
        drawn = encoding.decode_uint8_probs(example["attention"])
        assert drawn.shape == maps.shape == (2, 4, len(example["tokens"]), len(example["tokens"]))
        assert np.abs(drawn - maps).max() <= view.data["attention_error"] + 1e-6
    first = view.data["examples"][0]
    assert first["tokens"][:3] == ["[CLS]", "the", "cat"] and first["tokens"].count("[SEP]") == 2
    assert first["segment_ids"] == [0] * 9 + [1] * 5 and view.data["examples"][1]["pair_ids"] is None


def test_queries_and_keys_reproduce_the_attention(view, pretrained):
    """The neuron view's q and k (sown from the real model, int8 per vector) give the attention back."""
    example = view.data["examples"][0]
    head_dim = view.data["model"]["head_dim"]
    shape = example["neurons"]["shape"]
    q_LxTxNxD = encoding.decode_int8_vectors(example["neurons"]["query"], shape)
    k_LxTxNxD = encoding.decode_int8_vectors(example["neurons"]["key"], shape)
    scores_LxNxTxT = np.einsum("lqnd,lknd->lnqk", q_LxTxNxD, k_LxTxNxD) / np.sqrt(head_dim)
    recomputed = np.asarray(jax.nn.softmax(scores_LxNxTxT, axis=-1))
    assert np.abs(recomputed - encoding.decode_uint8_probs(example["attention"])).max() < 0.02
    assert example["neurons"]["shape"] == [2, len(example["tokens"]), 4, head_dim]


def test_masked_lm_guesses_are_the_models_with_that_token_masked(view, pretrained):
    row, example = view.rows[0], view.data["examples"][0]
    guessed = sorted(int(p) for p in example["mlm"]["guesses"])
    assert guessed == [i for i, t in enumerate(row.tokens) if t not in ("[CLS]", "[SEP]")]
    position = 2
    ids = row.input_ids.copy()
    ids[position] = view.tokenizer.mask_id
    logits = BertForPreTraining(pretrained.config).apply(
        {"params": pretrained.params}, ids[None], None, row.segment_ids[None], np.array([[position]]))["mlm_logits"]
    probs = np.asarray(jax.nn.softmax(logits[0, 0]))
    best = np.argsort(-probs)[:5]
    stored = example["mlm"]["guesses"][str(position)]
    assert [token for token, _ in stored] == view.tokenizer.convert_ids_to_tokens(best.tolist())
    np.testing.assert_allclose([p for _, p in stored], probs[best], atol=1e-5)
    assert view.guesses(position)[position] == stored                     # live, one token: the same
    together = view.guesses([2, 3])                                       # live, two tokens masked at once
    assert set(together) == {2, 3} and together[2] != stored


def test_long_guess_runs_report_progress_and_batching_does_not_change_them(view, pretrained, monkeypatch):
    row, example = view.rows[0], view.data["examples"][0]
    positions = sorted(int(p) for p in example["mlm"]["guesses"])
    lines = []
    monkeypatch.setattr(view_data, "MLM_BATCH", 4)                      # 12 tokens: three passes of four
    again = view_data.mlm_guesses(pretrained, row, positions, view.tokenizer, top_k=5, log=lines.append)
    for p, guesses in again.items():                                    # other batch shapes: the same to ~1e-6
        stored = example["mlm"]["guesses"][str(p)]
        assert [t for t, _ in guesses] == [t for t, _ in stored]
        np.testing.assert_allclose([q for _, q in guesses], [q for _, q in stored], atol=5e-6)
    assert sorted(again) == positions and len(lines) == 3 and f"{len(positions)}/{len(positions)} tokens" in lines[-1] and "ETA 0:00:00" in lines[-1]


def test_a_live_notebook_view_answers_each_pick_by_rerunning_the_model(pretrained):
    from bertjax.attention_viewer.live import LiveAttentionView

    view = attention_view(pretrained, TEXT_A, TEXT_B, mlm_positions="none", top_k=5)
    widget = LiveAttentionView(view)
    assert '"mlm_live":true' in widget.page and view.data["examples"][0]["mlm"]["guesses"] == {}
    widget.picked = {"example": 0, "position": 3}                        # what the page posts on a pick
    assert widget.answer == {"example": 0, "position": 3, "guesses": view.guesses(3)[3]}
    assert len(widget.answer["guesses"]) == 5


def test_a_packed_row_shows_each_pairs_own_block(view, pretrained):
    packed = attention_view(pretrained, [TEXT_A, TEXT_C], [TEXT_B, None], packed=True, mlm_positions=[1, 10])
    (example,) = packed.data["examples"]
    alone = [encoding.decode_uint8_probs(e["attention"]) for e in view.data["examples"]]
    drawn = encoding.decode_uint8_probs(example["attention"])
    first = len(view.data["examples"][0]["tokens"])
    assert example["pair_ids"] == [0] * first + [1] * (len(example["tokens"]) - first)
    assert np.abs(drawn[:, :, :first, :first] - alone[0]).max() <= 2 / 510 + 1e-6
    assert np.abs(drawn[:, :, first:, first:] - alone[1]).max() <= 2 / 510 + 1e-6
    assert drawn[:, :, :first, first:].max() == 0                         # nothing across pairs
    assert [c["position"] for c in example["cls"]] == [0, first]
    assert example["cls"][1]["parts"] == view.data["examples"][1]["cls"][0]["parts"]
    assert sorted(example["mlm"]["guesses"]) == ["1", "10"]


def test_cls_summary_is_where_each_cls_attends(view):
    cls = view.data["examples"][0]["cls"][0]
    masses = np.sum([cls["parts"][part] for part in ("cls", "sep", "segment_a", "segment_b")], axis=0)
    np.testing.assert_allclose(masses, 1.0, atol=1e-5)
    assert len(cls["entropy"]) == 2 and len(cls["entropy_per_head"][0]) == 4
    assert 0 < max(cls["entropy"]) <= cls["uniform_entropy"] + 1e-6


@pytest.mark.parametrize("kwargs, message", [
    (dict(texts_a=[]), "non-empty"),
    (dict(texts_a=["a", "b"], texts_b=["c"]), "one text_b per text_a"),
    (dict(texts_a=["the cat"], mlm_positions=[40]), "token 40 does not exist"),
    (dict(texts_a=["the cat"], mlm_positions="some"), "'all', 'none'"),
    (dict(texts_a=["the cat"], max_seq_length=100), "position embeddings"),
    (dict(texts_a=[TEXT_A] * 6, texts_b=[TEXT_B] * 6, packed=True), "more than max_seq_length"),
])
def test_bad_input_is_one_clear_error(pretrained, kwargs, message):
    with pytest.raises(BertjaxError, match=re.escape(message)):
        view_data.view_data(pretrained, kwargs.pop("texts_a"), kwargs.pop("texts_b", None), **kwargs)


def test_the_command_writes_one_offline_page(checkpoint, tmp_path):
    output = tmp_path / "view.html"
    result = subprocess.run([sys.executable, "-m", "bertjax.visualize", "--checkpoint", str(checkpoint),
                             "--text", TEXT_A, "--text_b", TEXT_B, "--output", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    html = output.read_text(encoding="utf-8")
    assert "wrote" in result.stderr and "2 layers x 4 heads" in result.stderr
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)   # nothing from the network
    assert "bertjax-attention-view/1" in html and html.count("<script") >= 2


def test_a_bert_base_page_at_128_tokens_stays_within_its_size_budget():
    """The stated budget (docs/attention_viewer.md): BERT-base at 128 tokens in at most 7 MB, even when the attention
    does not compress at all (random bytes here; a trained model's peaked maps compress far better)."""
    from viewer_fixture import synthetic_view_data
    from bertjax.attention_viewer import page

    data, _ = synthetic_view_data(num_layers=12, num_heads=12, seq=128, head_dim=64)
    noise = np.random.default_rng(0).random((12, 12, 128, 128))
    data["examples"][0]["attention"] = encoding.encode_uint8_probs(noise)       # incompressible
    html = page.render_page(data)
    assert len(html.encode()) <= 7_000_000
    assert len(data["examples"][0]["attention"]["data"]) >= 4 / 3 * 12 * 12 * 128 * 128  # it did not compress
