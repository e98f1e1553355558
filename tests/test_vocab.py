"""Vocab training: specials first, casing stored, the trained vocab tokenizes its corpus, CLI errors."""
import json

import pytest

from bertjax.data import vocab
from bertjax.data.tokenizer import BertTokenizer

from test_instances import write_corpus


def test_train_vocab_writes_specials_first_and_casing(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 60)
    with open(corpus, "a", encoding="utf-8") as f:
        f.write("Hello World Café\n" * 5)
    path = vocab.train_vocab(str(corpus), 120, tmp_path / "v", do_lower_case=True, show_progress=False)
    tokens = path.read_text(encoding="utf-8").splitlines()
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 20 < len(tokens) <= 120 and len(set(tokens)) == len(tokens)
    assert any(t.startswith("##") for t in tokens)
    assert not any(t != t.lower() for t in tokens[5:])
    assert json.loads((tmp_path / "v" / "tokenizer_config.json").read_text())["do_lower_case"] is True
    tok = BertTokenizer.from_vocab(tmp_path / "v")
    assert tok.do_lower_case and tok.tokenize("Hello") == ["hello"]
    assert tok.unk_id not in tok.encode("hello world w12 cafe").tolist()


def test_cased_vocab_keeps_upper_case(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("Hello World\nhello world\n한국어 문장\n" * 20, encoding="utf-8")
    vocab.train_vocab(str(corpus), 60, tmp_path / "v", do_lower_case=False, show_progress=False)
    tok = BertTokenizer.from_vocab(tmp_path / "v")
    assert (tok.do_lower_case, tok.strip_accents) == (False, False)
    assert "Hello" in tok.vocab and "hello" in tok.vocab
    assert tok.tokenize("한국어") == ["한국어"]  # syllables, not jamo


def test_cli_trains_and_reports_bad_input(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.txt", 20)
    vocab.main(["--input", str(corpus), "--vocab_size", "80", "--output", str(tmp_path / "v"), "--no-lowercase"])
    assert "wrote" in capsys.readouterr().out
    assert BertTokenizer.from_vocab(tmp_path / "v").do_lower_case is False
    with pytest.raises(SystemExit) as exit_info:
        vocab.main(["--input", str(tmp_path / "missing*.txt"), "--vocab_size", "80", "--output", str(tmp_path / "w")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: input") and not (tmp_path / "w").exists()


def test_what_built_the_vocab_is_recorded_and_a_foreign_vocab_says_nothing(tmp_path):
    import tokenizers
    from bertjax.data import vocab_files

    corpus = write_corpus(tmp_path / "c.txt", 20)
    path = vocab.train_vocab(str(corpus), 80, tmp_path / "v", show_progress=False)
    assert vocab_files.read_trained_with(path) == {"tokenizers": tokenizers.__version__}
    assert vocab_files.read_trained_with(tmp_path / "v") == {"tokenizers": tokenizers.__version__}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "vocab.txt").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert vocab_files.read_trained_with(foreign) is None                     # no tokenizer_config.json
    (foreign / "tokenizer_config.json").write_text('{"do_lower_case": true}', encoding="utf-8")
    assert vocab_files.read_trained_with(foreign) is None                     # one that does not say
