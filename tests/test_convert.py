"""Hugging Face parity and the parameter mapping in both directions.

The fixtures in tests/fixtures/hf_bert come from scripts/make_hf_fixtures.py (transformers BertForPreTraining,
random non-default sizes, eval mode).
"""

from pathlib import Path

import jax
import numpy as np
import pytest

from bertjax.convert import hf
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, BertModel, init_params, stack_layers

FIXTURES = Path(__file__).parent / "fixtures" / "hf_bert"


@pytest.fixture(scope="module")
def hf_state_dict():
    return hf.load_safetensors(FIXTURES / hf.WEIGHTS_NAME)


@pytest.fixture(scope="module")
def hf_config():
    return BertConfig.from_json_file(FIXTURES / hf.CONFIG_NAME)


def test_fixture_config_is_non_default(hf_config):
    assert (hf_config.num_hidden_layers, hf_config.hidden_size, hf_config.num_attention_heads,
            hf_config.intermediate_size, hf_config.vocab_size) == (3, 96, 4, 200, 1000)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_matches_hugging_face_outputs(hf_config, scan_layers):
    config, params = hf.load_hf_checkpoint(FIXTURES)
    if scan_layers:
        params = stack_layers(params, config.num_hidden_layers)
    inputs = np.load(FIXTURES / "inputs.npz")
    expected = np.load(FIXTURES / "expected.npz")
    out = BertForPreTraining(config, scan_layers=scan_layers).apply(
        {"params": params}, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
        inputs["masked_lm_positions"])
    pairs = {"sequence_output": "sequence_output", "pooled_output": "pooled_output",
             "mlm_logits": "mlm_logits_at_positions", "nsp_logits": "nsp_logits"}
    for ours, theirs in pairs.items():
        err = np.abs(np.asarray(out[ours]) - expected[theirs]).max()
        assert err <= 1e-5, (ours, err)


def test_round_trip_to_hf_is_exact(hf_state_dict, hf_config):
    params = hf.params_from_hf(hf_state_dict, hf_config)
    back = hf.params_to_hf(params)
    assert set(back) == set(hf_state_dict)
    for key, value in hf_state_dict.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    # Scanned params export to the same state dict.
    stacked = hf.params_to_hf(stack_layers(params, hf_config.num_hidden_layers))
    for key, value in hf_state_dict.items():
        np.testing.assert_array_equal(stacked[key], value, err_msg=key)


def test_linear_weights_are_transposed(hf_state_dict, hf_config):
    params = hf.params_from_hf(hf_state_dict, hf_config)
    np.testing.assert_array_equal(params["bert"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"],
                                  hf_state_dict["bert.encoder.layer.0.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(params["cls"]["seq_relationship"]["kernel"],
                                  hf_state_dict["cls.seq_relationship.weight"].T)
    np.testing.assert_array_equal(params["cls"]["predictions"]["output_bias"], hf_state_dict["cls.predictions.bias"])


def test_save_and_load_checkpoint_directory(tmp_path, hf_config):
    params = init_params(BertForPreTraining(hf_config), jax.random.PRNGKey(1))
    hf.save_pretrained(tmp_path, hf_config, params)
    config2, params2 = hf.load_hf_checkpoint(tmp_path)
    assert config2 == hf_config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, params2)


def test_tied_decoder_and_legacy_keys_are_accepted(hf_state_dict, hf_config):
    legacy = dict(hf_state_dict)
    legacy["cls.predictions.decoder.weight"] = hf_state_dict["bert.embeddings.word_embeddings.weight"]
    legacy["cls.predictions.decoder.bias"] = hf_state_dict["cls.predictions.bias"]
    legacy["bert.embeddings.position_ids"] = np.arange(64)[None]
    legacy["bert.embeddings.LayerNorm.gamma"] = legacy.pop("bert.embeddings.LayerNorm.weight")
    params = hf.params_from_hf(legacy, hf_config)
    np.testing.assert_array_equal(params["bert"]["embeddings"]["LayerNorm"]["scale"],
                                  hf_state_dict["bert.embeddings.LayerNorm.weight"])


def test_untied_decoder_is_an_error(hf_state_dict, hf_config):
    bad = dict(hf_state_dict)
    bad["cls.predictions.decoder.weight"] = hf_state_dict["bert.embeddings.word_embeddings.weight"] + 1
    with pytest.raises(BertjaxError, match="differs from the word embeddings"):
        hf.params_from_hf(bad, hf_config)


def test_missing_unexpected_and_mismatched_keys_are_errors(hf_state_dict, hf_config):
    missing = {k: v for k, v in hf_state_dict.items() if k != "bert.pooler.dense.bias"}
    with pytest.raises(BertjaxError, match=r"missing keys \(1\): bert.pooler.dense.bias"):
        hf.params_from_hf(missing, hf_config)
    extra = dict(hf_state_dict, **{"classifier.weight": np.zeros((2, 96), np.float32)})
    with pytest.raises(BertjaxError, match=r"unexpected keys \(1\): classifier.weight"):
        hf.params_from_hf(extra, hf_config)
    with pytest.raises(BertjaxError, match="shape mismatches: bert.embeddings.word_embeddings.weight"):
        hf.params_from_hf(hf_state_dict, hf_config.replace(vocab_size=999))
    heads_missing = {k: v for k, v in hf_state_dict.items() if not k.startswith("cls.")}
    with pytest.raises(BertjaxError, match="encoder_only=True"):
        hf.params_from_hf(heads_missing, hf_config)


def test_encoder_only_loading_of_a_bare_bert_model(hf_state_dict, hf_config):
    """A BertModel state dict (no `bert.` prefix, no heads) plus a classifier loads with encoder_only=True."""
    bare = {k[len("bert."):]: v for k, v in hf_state_dict.items() if k.startswith("bert.")}
    bare["classifier.weight"] = np.zeros((2, 96), np.float32)
    params = hf.params_from_hf(bare, hf_config, encoder_only=True)
    assert set(params) == {"bert"}
    inputs = np.load(FIXTURES / "inputs.npz")
    expected = np.load(FIXTURES / "expected.npz")
    out = BertModel(hf_config).apply({"params": params["bert"]}, inputs["input_ids"], inputs["attention_mask"],
                                     inputs["token_type_ids"])
    assert np.abs(np.asarray(out["sequence_output"]) - expected["sequence_output"]).max() <= 1e-5


def test_corrupt_and_missing_weights_files(tmp_path):
    with pytest.raises(BertjaxError, match="does not exist"):
        hf.load_safetensors(tmp_path / "nope.safetensors")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(BertjaxError, match="not a readable safetensors file"):
        hf.load_safetensors(bad)
