"""Fine-tuning heads: parity with transformers' BertFor{Sequence,Token}Classification and BertForQuestionAnswering,
bfloat16 compute, loading a pretrained encoder, the Hugging Face mapping in both directions, and whole directories:
`from-hf` / `to-hf` and `hf.save_pretrained(head_model=...)` give the matching transformers class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from _batches import make_batch
from bertjax import heads
from bertjax.convert import __main__ as cli
from bertjax.convert import hf, hf_heads, sources
from bertjax.errors import BertjaxError
from bertjax.model import BertConfig, BertForPreTraining, abstract_params, init_params

HF_CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=40, hidden_act="gelu", initializer_range=0.2)
LENGTHS = (12, 7, 3)  # real tokens per row of a [3, 12] batch; the rest is padding
BATCH = make_batch(3, seq_length=max(LENGTHS), vocab_size=HF_CONFIG["vocab_size"], lengths=LENGTHS)
INPUTS = (BATCH["input_ids"], BATCH["input_mask"], BATCH["segment_ids"])  # what the heads take
TOLERANCE = 1e-5

# (bertjax head, transformers class, num_labels or None for QA)
CASES = {
    "classify3": (heads.BertForSequenceClassification, "BertForSequenceClassification", 3),
    "regress": (heads.BertForSequenceClassification, "BertForSequenceClassification", 1),
    "tokens5": (heads.BertForTokenClassification, "BertForTokenClassification", 5),
    "qa": (heads.BertForQuestionAnswering, "BertForQuestionAnswering", None),
}


def make_hf_model(architecture, num_labels):
    torch.manual_seed(0)
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    config = transformers.BertConfig(**HF_CONFIG, **kwargs)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm params, so a dropped or swapped one shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def bertjax_head(case, **kwargs):
    cls, _, num_labels = CASES[case]
    config = BertConfig.from_dict(HF_CONFIG)
    return cls(config, **kwargs) if num_labels is None else cls(config, num_labels, **kwargs)


def outputs_of(case, out):
    """The head's logits as a dict: `logits`, or `start_logits` and `end_logits`."""
    names = ("start_logits", "end_logits") if CASES[case][2] is None else ("logits",)
    return {name: np.asarray(out[name]) for name in names}


@pytest.fixture(scope="module", params=list(CASES))
def converted(request):
    """(case, bertjax head, params from the HF state dict, {name: HF logits})."""
    case = request.param
    _, architecture, num_labels = CASES[case]
    hf_model = make_hf_model(architecture, num_labels)
    input_ids, input_mask, segment_ids = INPUTS
    with torch.no_grad():
        hf_out = hf_model(input_ids=torch.tensor(input_ids, dtype=torch.long),
                          attention_mask=torch.tensor(input_mask, dtype=torch.long),
                          token_type_ids=torch.tensor(segment_ids, dtype=torch.long))
    expected = {k: hf_out[k].numpy() for k in ("logits", "start_logits", "end_logits") if k in hf_out}
    state_dict = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    model = bertjax_head(case)
    return case, model, state_dict, hf.head_params_from_hf(state_dict, model), expected


def real_positions(value):
    """The real (unpadded) positions of a [B, T, ...] array, flattened; [B, C] arrays are returned as they are."""
    if value.ndim == 2 and value.shape[1] != max(LENGTHS):
        return value
    mask = BATCH["input_mask"].astype(bool)
    return value[mask]


@pytest.mark.parametrize("scan_layers", [False, True])
def test_matches_transformers(converted, scan_layers):
    case, model, state_dict, params, expected = converted
    if scan_layers:
        model = bertjax_head(case, scan_layers=True)
        params = hf.head_params_from_hf(state_dict, model)
    out = outputs_of(case, model.apply({"params": params}, *INPUTS))
    assert set(out) == set(expected)
    for name, value in out.items():
        assert value.dtype == np.float32 and value.shape == expected[name].shape, name
        err = np.abs(real_positions(value) - real_positions(expected[name])).max()
        print(f"{case} scan={scan_layers} {name}: max abs diff {err:.2e}")
        assert err <= TOLERANCE, (case, name, err)


def test_bfloat16_compute_gives_float32_logits(converted):
    case, _, _, params, expected = converted
    model = bertjax_head(case, dtype=jnp.bfloat16)
    for name, value in outputs_of(case, model.apply({"params": params}, *INPUTS)).items():
        assert value.dtype == np.float32, name
        err = np.abs(real_positions(value) - real_positions(expected[name])).max()
        print(f"{case} bfloat16 {name}: max abs diff {err:.2e}")
        assert err <= 0.1 * (1 + np.abs(expected[name]).max()), (case, name, err)


def test_export_round_trip(converted):
    case, model, state_dict, params, _ = converted
    back = hf.head_params_to_hf(params, model)
    assert set(back) == set(state_dict) - {"bert.embeddings.position_ids"}
    for key, value in back.items():
        np.testing.assert_array_equal(value, state_dict[key], err_msg=key)


def test_hf_config_fields_round_trip():
    model = heads.BertForSequenceClassification(BertConfig.from_dict(HF_CONFIG), 3, classifier_dropout=0.2)
    data = {**HF_CONFIG, **hf_heads.hf_config_fields(model, ["neg", "neutral", "pos"])}
    hf_config = transformers.BertConfig(**data)
    assert hf_config.num_labels == 3 and hf_config.id2label[2] == "pos"
    assert data["architectures"] == ["BertForSequenceClassification"]
    assert hf_heads.head_from_hf_config(data) == model
    qa = hf_heads.head_from_hf_config({**HF_CONFIG, "architectures": ["BertForQuestionAnswering"]})
    assert isinstance(qa, heads.BertForQuestionAnswering)
    with pytest.raises(BertjaxError, match="BertForMaskedLM"):
        hf_heads.head_class("BertForMaskedLM")


def test_head_scopes_and_wrong_checkpoint(converted):
    case, model, state_dict, _, _ = converted
    spec = hf_heads.head_spec(model)
    assert set(abstract_params(model)) == {"bert", *spec.scopes}
    bad = {k: (v[:-1] if k.startswith(spec.scopes) and k.endswith("bias") else v) for k, v in state_dict.items()}
    with pytest.raises(BertjaxError, match="shape mismatches"):
        hf.head_params_from_hf(bad, model)
    with pytest.raises(BertjaxError, match=r"unexpected keys \(1\): cls.seq_relationship.weight"):
        hf.head_params_from_hf({**state_dict, "cls.seq_relationship.weight": np.zeros((2, 32))}, model)


@pytest.fixture(scope="module")
def pretrained():
    """A BertForPreTraining's params, converted from transformers (no JAX compile, unlike init_params)."""
    torch.manual_seed(1)
    model = transformers.BertForPreTraining(transformers.BertConfig(**HF_CONFIG))
    return hf.params_from_hf({k: v.numpy() for k, v in model.state_dict().items()}, BertConfig.from_dict(HF_CONFIG))


@pytest.mark.parametrize("head_scanned", [False, True])
def test_load_encoder(pretrained, head_scanned):
    model = bertjax_head("classify3", scan_layers=head_scanned)
    state_dict = {k: v.numpy() for k, v in make_hf_model("BertForSequenceClassification", 3).state_dict().items()}
    fresh = hf.head_params_from_hf(state_dict, model)
    loaded = heads.load_encoder(fresh, pretrained)
    assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
    jax.tree.map(np.testing.assert_array_equal, loaded["classifier"], fresh["classifier"])
    if head_scanned:  # scanned -> unrolled on the way back
        loaded = heads.load_encoder(hf.head_params_from_hf(state_dict, bertjax_head("classify3")), loaded)
    jax.tree.map(np.testing.assert_array_equal, loaded["bert"], pretrained["bert"])  # bitwise
    assert "cls" not in loaded

    wider = abstract_params(BertForPreTraining(BertConfig.from_dict({**HF_CONFIG, "hidden_size": 64})))
    with pytest.raises(BertjaxError, match="bert/embeddings/word_embeddings/embedding: pretrained"):
        heads.load_encoder(fresh, wider)


def test_dropout_in_training_mode(converted):
    case, model, _, params, _ = converted
    train = model.apply({"params": params}, *INPUTS, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
    key = "start_logits" if "start_logits" in train else "logits"
    assert not np.allclose(train[key], model.apply({"params": params}, *INPUTS)[key])


def test_load_encoder_follows_the_heads_pooler(converted, pretrained):
    case, model, _, params, _ = converted
    loaded = heads.load_encoder(params, pretrained)  # a pretrained pooler is dropped by a head without one
    assert ("pooler" in loaded["bert"]) == ("pooler" in params["bert"])
    if case == "tokens5":  # an encoder without a pooler: a head with one keeps its fresh pooler
        fresh = hf.head_params_from_hf(
            {k: v.numpy() for k, v in make_hf_model("BertForSequenceClassification", 3).state_dict().items()},
            bertjax_head("classify3"))
        again = heads.load_encoder(fresh, loaded)
        jax.tree.map(np.testing.assert_array_equal, again["bert"]["pooler"], fresh["bert"]["pooler"])
        jax.tree.map(np.testing.assert_array_equal, again["bert"]["encoder"], pretrained["bert"]["encoder"])


# Whole directories, one case per transformers class.
DIRECTORY_CASES = ("classify3", "tokens5", "qa")
LABELS = {"classify3": ("neg", "neutral", "pos"), "tokens5": ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")}


def write_vocab(directory):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(HF_CONFIG["vocab_size"] - 5)]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")


def transformers_logits(directory_or_model, architecture):
    """(the logits of a transformers head model, or of a directory loaded as `architecture`, on the batch; the
    loading info)."""
    info = None
    model = directory_or_model
    if not isinstance(model, torch.nn.Module):
        model, info = getattr(transformers, architecture).from_pretrained(directory_or_model,
                                                                          output_loading_info=True)
    input_ids, input_mask, segment_ids = INPUTS
    with torch.no_grad():
        out = model.eval()(input_ids=torch.tensor(input_ids, dtype=torch.long),
                           attention_mask=torch.tensor(input_mask, dtype=torch.long),
                           token_type_ids=torch.tensor(segment_ids, dtype=torch.long))
    return {k: out[k].numpy() for k in ("logits", "start_logits", "end_logits") if k in out}, info


def assert_close(ours, theirs, what):
    assert set(ours) == set(theirs), what
    for name in ours:
        err = np.abs(real_positions(np.asarray(ours[name])) - real_positions(theirs[name])).max()
        assert err <= TOLERANCE, (what, name, err)


def assert_clean(info, what):
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), (what, info)


@pytest.mark.parametrize("case", DIRECTORY_CASES)
def test_from_hf_and_to_hf_keep_the_transformers_class(case, tmp_path):
    _, architecture, num_labels = CASES[case]
    hf_model = make_hf_model(architecture, num_labels)
    if case in LABELS:
        hf_model.config.id2label = dict(enumerate(LABELS[case]))
        hf_model.config.label2id = {name: i for i, name in enumerate(LABELS[case])}
    original = tmp_path / "original"
    hf_model.save_pretrained(original)
    write_vocab(original)
    expected, _ = transformers_logits(hf_model, architecture)

    pretrained = cli.convert("from-hf", original, tmp_path / "export")
    assert type(pretrained.head).__name__ == architecture and set(pretrained.params) == {"bert"}
    assert sources.read_config(original) == pretrained.config
    converted, info = transformers_logits(tmp_path / "export", architecture)
    assert_clean(info, "from-hf")
    assert_close(converted, expected, "from-hf")
    if case in LABELS:
        assert tuple(transformers.AutoConfig.from_pretrained(tmp_path / "export").id2label.values()) == LABELS[case]

    cli.convert("to-hf", tmp_path / "export", tmp_path / "back")  # an export converts on, still the same class
    back, info = transformers_logits(tmp_path / "back", architecture)
    assert_clean(info, "to-hf")
    assert_close(back, expected, "to-hf")

    head, params = hf.load_hf_head(tmp_path / "export")  # and reloads in bertjax with its classifier
    assert head == pretrained.head
    assert_close(outputs_of(case, head.apply({"params": params}, *INPUTS)), expected, "load_hf_head")


@pytest.mark.parametrize("case", DIRECTORY_CASES)
def test_save_pretrained_of_a_bertjax_head_loads_as_its_class(case, tmp_path):
    model = bertjax_head(case, scan_layers=case == "qa")
    params = init_params(model, jax.random.PRNGKey(3))
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(4), x.shape), params)
    hf.save_pretrained(tmp_path, model.config, params, head_model=model, labels=LABELS.get(case))
    theirs, info = transformers_logits(tmp_path, CASES[case][1])
    assert_clean(info, "save_pretrained")
    assert_close(outputs_of(case, model.apply({"params": params}, *INPUTS)), theirs, "save_pretrained")
    with pytest.raises(BertjaxError, match="not a Bert.*unexpected.*cls.seq_relationship"):
        hf.save_pretrained(tmp_path / "bad", model.config,
                           {**params, "cls": {"seq_relationship": {"bias": np.zeros(2)}}}, head_model=model)


def test_num_labels_contradicting_the_checkpoint(tmp_path):
    make_hf_model("BertForSequenceClassification", 3).save_pretrained(tmp_path)
    with pytest.raises(BertjaxError, match=r"num_labels=5 contradicts .* classifier has 3 outputs.*num_labels=3"):
        hf.load_hf_head(tmp_path, num_labels=5)
    head, _ = hf.load_hf_head(tmp_path, num_labels=3)
    assert head.num_labels == 3
