"""`python -m bertjax.convert`: a trained run to Hugging Face and back, checked with transformers itself.

A tiny real run (vocab trained on text with accents, CJK and punctuation; cased, accents kept) is converted with
`to-hf`; transformers loads it with no missing or unexpected keys, its logits equal bertjax's, and its tokenizer gives
bertjax's ids. `from-hf` brings it back bitwise, and continued pretraining starts from any of these directories.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from _train_helpers import REPO_ROOT, params_digest, tiny_config
from bertjax.convert import __main__ as cli
from bertjax.convert import hf, sources
from bertjax.data import create_pretraining_data, vocab
from bertjax.data.tokenizer import BertTokenizer
from bertjax.errors import BertjaxError
from bertjax.model import BertForPreTraining
from bertjax.train import train_and_evaluate

SEQ, PREDICTIONS = 32, 5
EXTRA_TEXT = [
    "Café au lait, résumé and naïve coöperation: Ünïcödé ÀÉÎÕÜ!",
    "東京と京都は日本の都市です。北京是中国的首都。",
    "Punctuation — “quotes”, ‘single’, «guillemets», ¿qué? ¡sí! 50% off (really) [sic] {x} #1 @home",
    "Mixed: naïve 東京 résumé — fin.",
]
CHECK_TEXTS = EXTRA_TEXT + ["It is a truth universally acknowledged, that a single man in possession of a good "
                            "fortune, must be in want of a wife.", "ÉLAN Élan élan", "Zürich’s “Größe” 日本"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step run on a real dataset made from demo text plus accented and CJK lines (cased vocab)."""
    root = tmp_path_factory.mktemp("convert")
    lines = (REPO_ROOT / "data" / "demo" / "corpus.txt").read_text(encoding="utf-8").splitlines()[:1500]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines + [""] + EXTRA_TEXT * 3) + "\n", encoding="utf-8")
    vocab_file = vocab.train_vocab(str(corpus), 700, root / "vocab", do_lower_case=False, strip_accents=False,
                                   show_progress=False)
    data_dir = root / "dataset"
    create_pretraining_data.create_pretraining_data(
        str(corpus), data_dir, vocab_file, max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS, dupe_factor=1,
        eval_fraction=0.2, show_progress=False)
    config = _data_config(str(data_dir), num_train_steps=2)
    workdir = root / "run"
    train_and_evaluate(config, str(workdir))
    return workdir, data_dir


def _data_config(data_dir: str, **train):
    config = tiny_config(**train)
    config.data.dir = data_dir
    config.data.max_seq_length, config.data.max_predictions_per_seq = SEQ, PREDICTIONS
    config.model.max_position_embeddings = 64
    config.eval.batch_size, config.eval.num_batches = 8, 1
    return config


def _convert(*args):
    return subprocess.run([sys.executable, "-m", "bertjax.convert", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=180)


def _hf_outputs(directory, batch):
    model = transformers.BertForPreTraining.from_pretrained(directory).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_ids"]), attention_mask=torch.tensor(batch["input_mask"]),
                    token_type_ids=torch.tensor(batch["segment_ids"]), output_hidden_states=True)
    positions = torch.tensor(batch["masked_lm_positions"]).long()
    mlm = torch.take_along_dim(out.prediction_logits, positions[..., None], dim=1)
    return {"sequence_output": out.hidden_states[-1].numpy(), "mlm_logits": mlm.numpy(),
            "nsp_logits": out.seq_relationship_logits.numpy()}


def _batch(vocab_size):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab_size, size=(3, SEQ)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 20:] = 0
    mask[2, 9:] = 0
    segments = np.zeros_like(ids)
    segments[:, 12:] = 1
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": segments * mask,
            "masked_lm_positions": np.array([[1, 5, 30, 0, 0], [2, 3, 19, 0, 0], [1, 8, 0, 0, 0]], np.int32)}


@pytest.mark.slow
def test_to_hf_loads_in_transformers_with_equal_logits_and_tokens(trained_run, tmp_path):
    workdir, _ = trained_run
    result = _convert("to-hf", "--checkpoint", workdir, "--output", tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert "do_lower_case=False strip_accents=False" in result.stdout
    out_dir = tmp_path / "hf"
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer_config.json",
                                                         "vocab.txt"]
    from safetensors import safe_open
    with safe_open(out_dir / "model.safetensors", "np") as f:
        assert f.metadata() == {"format": "pt"} and "cls.predictions.bias" in f.keys()

    _, info = transformers.BertForPreTraining.from_pretrained(out_dir, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info

    pretrained = sources.load_pretrained(workdir)
    batch = _batch(pretrained.config.vocab_size)
    ours = BertForPreTraining(pretrained.config).apply({"params": pretrained.params}, *batch.values())
    theirs = _hf_outputs(out_dir, batch)
    for name, expected in theirs.items():
        real = batch["input_mask"].astype(bool) if name == "sequence_output" else ...
        assert np.abs(np.asarray(ours[name])[real] - expected[real]).max() <= 1e-5, name

    hf_tokenizer = transformers.BertTokenizerFast.from_pretrained(out_dir)
    ours_tokenizer = BertTokenizer.from_vocab(out_dir)
    assert (ours_tokenizer.do_lower_case, ours_tokenizer.strip_accents) == (False, False)
    for text in CHECK_TEXTS:
        expected = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours_tokenizer.encode(text).tolist() == expected, text
    assert any(hf_tokenizer.unk_token_id not in hf_tokenizer(t)["input_ids"] for t in EXTRA_TEXT[:2])


@pytest.mark.slow
def test_bertjax_to_hf_to_bertjax_is_bitwise(trained_run, tmp_path):
    workdir, _ = trained_run
    cli.convert("to-hf", str(workdir), str(tmp_path / "hf"))
    back = cli.convert("from-hf", str(tmp_path / "hf"), str(tmp_path / "back"))
    original = sources.load_pretrained(workdir)
    again = sources.load_pretrained(tmp_path / "back")
    assert params_digest(again.params) == params_digest(original.params)
    assert back.config == original.config == again.config
    assert (again.do_lower_case, again.strip_accents) == (original.do_lower_case, original.strip_accents) == (
        False, False)
    assert (tmp_path / "back" / "vocab.txt").read_bytes() == original.vocab_file.read_bytes()
    # The run's own export is the same directory, written by the same writer.
    export = workdir / "export"
    for name in ("config.json", "tokenizer_config.json", "vocab.txt"):
        assert (export / name).read_bytes() == (tmp_path / "hf" / name).read_bytes(), name


@pytest.mark.slow
def test_continued_pretraining_from_converted_and_hf_directories(trained_run, tmp_path):
    workdir, data_dir = trained_run
    cli.convert("to-hf", str(workdir), str(tmp_path / "hf"))
    for init_from in (tmp_path / "hf", workdir / "export", workdir):
        config = _data_config(str(data_dir), num_train_steps=2, init_from=str(init_from), eval_only=True)
        for field in ("size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            config.model[field] = None  # the model comes from the checkpoint
        metrics = train_and_evaluate(config, str(tmp_path / f"continue_{init_from.name}"))
        assert np.isfinite(metrics["loss"])
    # A config that contradicts the checkpoint is one clear error.
    config = _data_config(str(data_dir), num_train_steps=2, init_from=str(tmp_path / "hf"))
    config.model.hidden_size = 64
    with pytest.raises(BertjaxError, match=r"--config.model.hidden_size gives hidden_size=64, but "
                                           r"--config.train.init_from=.* has hidden_size=32"):
        train_and_evaluate(config, str(tmp_path / "contradiction"))
    # So is a dataset made with another vocab than the checkpoint's (here: the original TF fixture's).
    config = _data_config(str(data_dir), num_train_steps=2, init_from=str(REPO_ROOT / "tests/fixtures/tf_bert"))
    for field in ("size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        config.model[field] = None
    with pytest.raises(BertjaxError, match=r"was made with another vocab than --config.train.init_from=.*tf_bert "
                                           r".*; rebuild the dataset with --vocab_file=.*tf_bert/vocab.txt"):
        train_and_evaluate(config, str(tmp_path / "other_vocab"))
    assert not (tmp_path / "contradiction").exists() and not (tmp_path / "other_vocab").exists()


def test_from_tf_then_to_hf_gives_the_original_weights_outputs_in_transformers(tmp_path):
    source = REPO_ROOT / "tests" / "fixtures" / "tf_bert"
    result = _convert("from-tf", "--input", source, "--output", tmp_path / "export")
    assert result.returncode == 0, result.stderr
    assert "do_lower_case=True strip_accents=True (from the vocab, which has no upper-case entries)" in result.stdout
    assert _convert("to-hf", "--checkpoint", tmp_path / "export", "--output", tmp_path / "hf").returncode == 0
    inputs, expected = np.load(source / "inputs.npz"), np.load(source / "expected.npz")
    batch = {name: inputs[name] for name in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")}
    theirs = _hf_outputs(tmp_path / "hf", batch)
    for name in ("mlm_logits", "nsp_logits"):
        assert np.abs(theirs[name] - expected[name]).max() <= 1e-5, name
    real = batch["input_mask"].astype(bool)
    assert np.abs(theirs["sequence_output"][real] - expected["sequence_output"][real]).max() <= 1e-5
    # Both heads come through exactly, under their original names.
    weights = np.load(source / "weights.npz")
    state = hf.load_state_dict(tmp_path / "hf")
    for tf_name, hf_name, transpose in [
            ("cls/predictions/output_bias", "cls.predictions.bias", False),
            ("cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight", True),
            ("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight", False),
            ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", False),
            ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", False)]:
        np.testing.assert_array_equal(state[hf_name], weights[tf_name].T if transpose else weights[tf_name])


def test_missing_heads_are_listed_unless_allowed(tmp_path):
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20, max_position_embeddings=16)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    (tmp_path / "mlm" / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]) + "\n")
    with pytest.raises(BertjaxError, match=r"lacks the head\(s\) bert.pooler, cls.seq_relationship; pass "
                                           r"--allow_missing_heads"):
        cli.convert("from-hf", str(tmp_path / "mlm"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    result = _convert("from-hf", "--input", tmp_path / "mlm", "--output", tmp_path / "out", "--allow_missing_heads")
    assert result.returncode == 0, result.stderr
    assert "initialised as in pretraining (missing from the checkpoint): bert.pooler, cls.seq_relationship" in (
        result.stdout)
    reloaded = sources.load_pretrained(tmp_path / "out")
    mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path / "mlm").state_dict()
    np.testing.assert_array_equal(reloaded.params["cls"]["predictions"]["transform"]["dense"]["kernel"],
                                  mlm["cls.predictions.transform.dense.weight"].numpy().T)


def test_pytorch_model_bin_and_bare_bert_model(tmp_path):
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20, max_position_embeddings=16)
    torch.manual_seed(1)
    model = transformers.BertModel(config)
    (tmp_path / "bare").mkdir()
    config.save_pretrained(tmp_path / "bare")
    torch.save(model.state_dict(), tmp_path / "bare" / "pytorch_model.bin")
    (tmp_path / "bare" / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"W{i}" for i in range(35)]) + "\n")
    pretrained = cli.convert("from-hf", str(tmp_path / "bare"), str(tmp_path / "out"), allow_missing_heads=True)
    assert pretrained.initialized_heads == ("cls.predictions", "cls.seq_relationship")
    assert pretrained.do_lower_case is False  # guessed from the vocab: upper-case entries
    np.testing.assert_array_equal(pretrained.params["bert"]["pooler"]["dense"]["kernel"],
                                  model.pooler.dense.weight.detach().numpy().T)


@pytest.mark.parametrize("argv, message", [
    (["to-hfx", "--checkpoint", "x", "--output", "y"], "invalid choice: 'to-hfx'"),
    (["to-hf", "--checkpoint", "/no/such/dir", "--output", "{tmp}/o"], "/no/such/dir does not exist"),
    (["from-tf", "--input", "{tmp}/hf", "--output", "{tmp}/o"], "is a Hugging Face directory, not an original TF checkpoint; use `from-hf`"),
    (["from-hf", "--input", "{tmp}/hf", "--output", "{tmp}/full"], "--output {tmp}/full exists and is not empty"),
    (["from-hf", "--input", "{tmp}/novocab", "--output", "{tmp}/o"], "has no vocab.txt"),
    (["from-hf", "--input", "{tmp}/truncated", "--output", "{tmp}/o"], "is not a readable safetensors file"),
    (["from-hf", "--input", "{tmp}/badshape", "--output", "{tmp}/o"], "shape mismatches: bert.embeddings"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, argv, message):
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20, max_position_embeddings=16)
    transformers.BertForPreTraining(config).save_pretrained(tmp_path / "hf")
    vocab_text = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]) + "\n"
    (tmp_path / "hf" / "vocab.txt").write_text(vocab_text)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    transformers.BertForPreTraining(config).save_pretrained(tmp_path / "novocab")
    transformers.BertForPreTraining(config).save_pretrained(tmp_path / "truncated")
    (tmp_path / "truncated" / "vocab.txt").write_text(vocab_text)
    weights = tmp_path / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    transformers.BertForPreTraining(config).save_pretrained(tmp_path / "badshape")
    (tmp_path / "badshape" / "vocab.txt").write_text(vocab_text)
    bad_config = json.loads((tmp_path / "badshape" / "config.json").read_text())
    bad_config["vocab_size"] = 41
    (tmp_path / "badshape" / "config.json").write_text(json.dumps(bad_config))

    result = _convert(*[a.format(tmp=tmp_path) for a in argv])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message.format(tmp=tmp_path) in lines[0]
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    assert not (tmp_path / "o").exists()
