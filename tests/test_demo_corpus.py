"""Checks on the committed demo corpus (data/demo/corpus.txt) and on scripts/make_demo_corpus.py's text helpers."""
from __future__ import annotations

import importlib.util
import random
import re
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "demo" / "corpus.txt"
SOURCES = ROOT / "data" / "demo" / "SOURCES.md"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_demo_corpus", ROOT / "scripts" / "make_demo_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


mdc = _load_script()


@pytest.fixture(scope="module")
def corpus_text() -> str:
    """The committed corpus, decoded strictly as UTF-8."""
    return CORPUS.read_bytes().decode("utf-8")  # raises UnicodeDecodeError if not UTF-8


@pytest.fixture(scope="module")
def documents(corpus_text: str) -> list[list[str]]:
    """The corpus as a list of documents, each a list of sentence lines."""
    return [doc.split("\n") for doc in corpus_text.rstrip("\n").split("\n\n")]


def test_corpus_size_is_demo_sized() -> None:
    size = CORPUS.stat().st_size
    assert 1_000_000 <= size <= 2_500_000, size


def test_lines_have_no_surrounding_whitespace(corpus_text: str) -> None:
    assert "\r" not in corpus_text and "\t" not in corpus_text
    bad = [n for n, line in enumerate(corpus_text.split("\n"), 1) if line != line.strip()]
    assert bad == []


def test_documents_separated_by_single_blank_lines(corpus_text: str) -> None:
    assert corpus_text.endswith("\n") and not corpus_text.endswith("\n\n")
    assert not corpus_text.startswith("\n")
    assert "\n\n\n" not in corpus_text
    mdc.check_corpus(corpus_text)  # the script's own validation agrees


def test_enough_documents_with_several_sentences(documents: list[list[str]]) -> None:
    assert len(documents) >= 200
    assert all(all(line for line in doc) for doc in documents)  # blank lines only between documents
    multi = sum(len(doc) >= 2 for doc in documents)
    assert multi >= 0.98 * len(documents)
    sentences = sum(len(doc) for doc in documents)
    assert sentences >= 5_000


def test_no_gutenberg_boilerplate(corpus_text: str) -> None:
    assert "project gutenberg" not in corpus_text.lower()
    assert "*** START OF" not in corpus_text and "*** END OF" not in corpus_text
    assert "gutenberg.org" not in corpus_text.lower()
    assert not re.search(r"^CHAPTER [0-9IVXLC]+", corpus_text, re.MULTILINE)  # headings removed


def test_sources_documented() -> None:
    text = SOURCES.read_text(encoding="utf-8")
    for needle in ("Pride and Prejudice", "Moby-Dick", "State of the Union", "public domain", "make_demo_corpus.py"):
        assert needle.lower() in text.lower(), needle


def test_splitter_handles_titles_initials_and_quotes() -> None:
    para = (
        '"My dear Mr. Bennet," said his lady, "have you heard?" Mrs. Long nodded. '
        'Dr. J. Smith lives on St. James Street. "Oh!" cried she. "Really? Then go." He went.'
    )
    assert mdc.split_sentences(para) == [
        '"My dear Mr. Bennet," said his lady, "have you heard?"',
        "Mrs. Long nodded.",
        "Dr. J. Smith lives on St. James Street.",
        '"Oh!" cried she.',
        '"Really?',
        'Then go."',
        "He went.",
    ]


def test_splitter_keeps_lowercase_continuations_and_numbers() -> None:
    assert mdc.split_sentences('"Is it?" cried his wife. No. 5 is here. It cost 3.5 dollars.') == [
        '"Is it?" cried his wife.',
        "No. 5 is here.",
        "It cost 3.5 dollars.",
    ]
    assert mdc.split_sentences("five altogether--Mr. Bingley came. He stayed.") == [
        "five altogether--Mr. Bingley came.",
        "He stayed.",
    ]


def test_unwrap_and_markup_removal() -> None:
    raw = "It was _very_ cold\nthat day--\nso cold. [Illustration]\n\nNext   paragraph."
    assert mdc.paragraphs(raw) == ["It was very cold that day--so cold.", "Next paragraph."]


def test_book_documents_strip_boilerplate_and_front_matter() -> None:
    book = "\n".join([
        "The Project Gutenberg EBook of Test, by Nobody",
        "*** START OF THIS PROJECT GUTENBERG EBOOK TEST ***",
        "TEST", "", "By Nobody", "", "CHAPTER 1. The",
        "Beginning.", "", "It began. It went", "on.", "", "Chapter II", "", "It ended. Truly.",
        "", "End of the Project Gutenberg EBook of Test", "*** END OF THIS PROJECT GUTENBERG EBOOK TEST ***",
        "licence text",
    ])
    docs = mdc.book_documents(book, "test", max_chapters=10)
    assert [d.sentences for d in docs] == [["It began.", "It went on."], ["It ended.", "Truly."]]
    assert len(mdc.book_documents(book, "test", max_chapters=1)) == 1


def test_sentence_runs_cover_everything_in_bounds() -> None:
    sentences = [f"S{i}." for i in range(123)]
    runs = mdc.sentence_runs(sentences, random.Random(0))
    assert [s for run in runs for s in run] == sentences
    assert all(10 <= len(run) <= 50 for run in runs)


def test_r_unserialize_character_vector() -> None:
    def charsxp(s: str) -> bytes:
        raw = s.encode("utf-8")
        return struct.pack(">ii", 9 | (8 << 12), len(raw)) + raw  # CHARSXP flagged UTF-8

    data = b"X\n" + struct.pack(">iiii", 3, 0x040201, 0x030500, 5) + b"UTF-8"
    data += struct.pack(">ii", 16, 2) + charsxp("Call me Ishmael.") + charsxp("Été")
    obj = mdc.r_unserialize(data)
    assert obj == {"type": 16, "value": ["Call me Ishmael.", "Été"], "attrs": {}}
