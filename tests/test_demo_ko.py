"""Checks on the committed Korean demo data (data/demo_ko/), on configs/demo_ko.py and on Hangul tokenization."""
from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import SPECIAL_TOKENS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "demo_ko"
LABELS = {"writer", "calc", "impress", "basic", "math", "chart"}
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _rows(name: str) -> list[list[str]]:
    lines = (DATA / "topic" / f"{name}.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "sentence\tlabel" and lines[-1] == ""
    return [line.split("\t") for line in lines[1:-1]]


@pytest.fixture(scope="module")
def corpus_text() -> str:
    """The committed corpus, decoded strictly as UTF-8."""
    return (DATA / "corpus.txt").read_bytes().decode("utf-8")


def test_corpus_matches_sources_md(corpus_text: str) -> None:
    sources = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    docs = corpus_text.rstrip("\n").split("\n\n")
    lines = [line for doc in docs for line in doc.split("\n")]
    size, n_syllables = len(corpus_text.encode("utf-8")), len(HANGUL.findall(corpus_text))
    for fact in (f"{size:,} bytes", f"{len(docs):,} documents", f"{len(lines):,} sentences",
                 f"{len(corpus_text.split()):,} words", f"{n_syllables:,} Hangul syllables"):
        assert fact in sources
    assert "MPL-2.0" in sources and "4:7.4.7-1+deb12u14" in sources
    # The bert input format: a blank line between documents, no empty document, no stray whitespace.
    assert not corpus_text.startswith("\n") and corpus_text.endswith("\n") and "\n\n\n" not in corpus_text
    assert all(line and line == line.strip() for line in lines)
    assert len(set(lines)) == len(lines)  # deduplicated


def test_topic_set_matches_sources_md() -> None:
    sources = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    train, dev = _rows("train"), _rows("dev")
    assert all(len(row) == 2 for row in train + dev)
    assert f"{len(train):,} rows" in sources and f"{len(dev):,} rows" in sources
    train_counts = collections.Counter(label for _, label in train)
    dev_counts = collections.Counter(label for _, label in dev)
    assert set(train_counts) == set(dev_counts) == LABELS
    for label in LABELS:
        assert f"| {label} | {train_counts[label]:,} | {dev_counts[label]:,} |" in sources
    majority = max(dev_counts.values())
    assert f"{majority:,} / {len(dev):,} = {100 * majority / len(dev):.1f}%" in sources
    sentences = [s for s, _ in train + dev]
    assert len(set(sentences)) == len(sentences)  # no sentence twice, nor in both splits


def test_no_dev_sentence_in_the_pretraining_corpus(corpus_text: str) -> None:
    corpus_lines = set(corpus_text.split("\n"))
    assert not [s for s, _ in _rows("dev") if s in corpus_lines]


def test_licence_files_shipped() -> None:
    assert "License: MPL-2.0" in (DATA / "LICENSES" / "libreoffice-help-ko.copyright").read_text(encoding="utf-8")
    assert (DATA / "LICENSES" / "MPL-2.0.txt").read_text(encoding="utf-8").startswith("Mozilla Public License")
    assert "Apache License" in (DATA / "LICENSES" / "Apache-2.0.txt").read_text(encoding="utf-8")


def test_config_docstring_is_its_run_command_and_cased() -> None:
    source = (ROOT / "configs" / "demo_ko.py").read_text(encoding="utf-8")
    assert "python main.py --config=configs/demo_ko.py --workdir=" in source
    from configs import demo_ko

    build = demo_ko.get_config().data.build
    assert Path(build.corpus) == DATA / "corpus.txt"
    assert (build.do_lower_case, build.strip_accents) == (False, False)


@pytest.mark.parametrize("do_lower_case", [False, True])
def test_hangul_syllables_survive_the_tokenizer_whole(do_lower_case: bool) -> None:
    # Syllable-level pieces, as the demo's vocab has them; NFD would turn 설정 into jamo and find none of them.
    tokens = [*SPECIAL_TOKENS, "설정", "##을", "선택", "##합니다", "."]
    tokenizer = BertTokenizer(tokens, do_lower_case=do_lower_case, strip_accents=False)
    assert tokenizer.tokenize("설정을 선택합니다.") == ["설정", "##을", "선택", "##합니다", "."]
    nfd = BertTokenizer(tokens, do_lower_case=True, strip_accents=True)
    assert "설정" not in nfd.tokenize("설정을 선택합니다.")


def test_script_extracts_korean_sentences_from_help_html() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_korean_corpus", ROOT / "scripts" / "make_korean_corpus.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = ('<html><head><title>제목</title></head><body><h1>Title is: 셀 서식 지정하기</h1>'
            '<p>셀을 선택합니다. <span hidden="true" class="MAC">Command</span>서식 대화 상자를 엽니다.</p>'
            '<p>Click &amp; drag</p><script>var x = "무시되는 스크립트 문자열입니다.";</script></body></html>')
    lines = script.page_lines(page)
    assert lines == ["셀을 선택합니다. 서식 대화 상자를 엽니다.", "Click & drag"]
    assert script.split_sentences(lines[0]) == ["셀을 선택합니다.", "서식 대화 상자를 엽니다."]
    assert [script.is_korean(s) for s in ("서식 대화 상자를 엽니다.", "셀을 선택합니다.", "Click & drag")] == [
        True, False, False]


def test_the_small_train_set_is_the_first_rows_of_train() -> None:
    assert _rows("train_500") == _rows("train")[:500]
