"""bertjax.data.sentences: where the splitters cut, the text they give back, auto's routing, the install checks."""
import pathlib
import re
import unicodedata

import pytest

from bertjax.data import sentences
from bertjax.errors import BertjaxError

ROOT = pathlib.Path(__file__).resolve().parents[1]
AUSTEN = ('"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?" '
          'Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here." '
          'Mr. Bennet made no answer.')
REVIEW = "영화 정말 재밌었다 배우들 연기도 좋고 다음에 또 볼래요"  # no punctuation: only morphology finds the end


@pytest.fixture(scope="module")
def splitters():
    return {name: sentences.SentenceSplitter(name) for name in ("auto", "blingfire", "kiwi", "kiwi_full")}


def demo_paragraphs(corpus: str, docs: int) -> list[str]:
    text = (ROOT / "data" / corpus / "corpus.txt").read_text(encoding="utf-8")
    return [" ".join(doc.split()) for doc in text.split("\n\n") if doc.strip()][:docs]


def test_english_paragraph_is_cut_after_each_sentence_not_after_mr(splitters):
    assert splitters["blingfire"].split([AUSTEN]) == [[
        '"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"',
        "Mr. Bennet replied that he had not.",
        '"But it is," returned she; "for Mrs. Long has just been here."',
        "Mr. Bennet made no answer."]]
    assert splitters["auto"].split([AUSTEN]) == splitters["blingfire"].split([AUSTEN])


def test_korean_without_punctuation_is_cut_where_kiwi_cuts(splitters):
    plain = [s.text for s in splitters["kiwi"]._cuts("kiwi").kiwi.split_into_sents(REVIEW)]  # on the whole text
    assert plain == ["영화 정말 재밌었다", "배우들 연기도 좋고 다음에 또 볼래요"]
    assert splitters["kiwi"].split([REVIEW]) == splitters["kiwi_full"].split([REVIEW]) == [plain]


def test_gated_kiwi_cuts_like_plain_kiwi_where_blingfire_cannot(splitters):
    paragraph = "너무 재미있었습니다. ㅠㅠ 다음에 또 볼래요!다시 볼 거예요ㅋㅋ 최고"
    kiwi = [["너무 재미있었습니다. ㅠㅠ", "다음에 또 볼래요!", "다시 볼 거예요ㅋㅋ", "최고"]]
    assert splitters["kiwi"].split([paragraph]) == splitters["kiwi_full"].split([paragraph]) == kiwi
    assert splitters["blingfire"].split([paragraph]) == [["너무 재미있었습니다.", "ㅠㅠ 다음에 또 볼래요!다시 볼 거예요ㅋㅋ 최고"]]
    assert splitters["auto"].split([paragraph]) == splitters[sentences.KOREAN_SPLITTER].split([paragraph])


@pytest.mark.parametrize("corpus", ["demo", "demo_ko"])
@pytest.mark.parametrize("name", ["auto", "kiwi"])
def test_sentences_give_back_the_paragraph_unchanged(splitters, corpus, name):
    paragraphs = demo_paragraphs(corpus, 12) + ["", "  ", "하나", "ㅋㅋㅋ ㅎㅎ", "끝. 😀 👍🏻 다음!! 𝒜𝒷 끝이다 다음"]
    for paragraph, out in zip(paragraphs, splitters[name].split(paragraphs), strict=True):
        assert all(s and s == s.strip() for s in out)
        assert "".join(out).replace(" ", "") == paragraph.replace(" ", "")


def test_hangul_stays_precomposed(splitters):
    paragraphs = demo_paragraphs("demo_ko", 12) + [REVIEW]
    for name in ("auto", "kiwi", "kiwi_full"):
        text = "".join(s for out in splitters[name].split(paragraphs) for s in out)
        assert not re.search("[\u1100-\u11ff]", text) and unicodedata.is_normalized("NFC", text)


def test_auto_routes_each_paragraph_by_its_script_or_by_language(monkeypatch):
    monkeypatch.setattr(sentences, "KOREAN_SPLITTER", "kiwi")
    monkeypatch.setattr(sentences, "DEFAULT_SPLITTER", "blingfire")
    seen = []
    monkeypatch.setattr(sentences.SentenceSplitter, "_load", staticmethod(
        lambda name, language: lambda ps: [seen.append((name, p)) or [] for p in ps]))
    mixed = ["Open the LibreOffice 도움말", "LibreOffice 도움말 페이지를 열고 읽습니다", "Ein Satz. Noch einer.", "ㅋㅋㅋ"]
    assert sentences.SentenceSplitter("auto").split(mixed) == [[p] for p in mixed]
    assert set(seen) == {("blingfire", mixed[0]), ("kiwi", mixed[1]), ("blingfire", mixed[2]), ("kiwi", mixed[3])}
    for language, expected in (("ko", "kiwi"), ("de", "blingfire")):
        seen.clear()
        sentences.SentenceSplitter("auto", language).split(mixed)
        assert {name for name, _ in seen} == {expected}


def test_check_splitter_names_the_choices_and_the_extra_to_install(monkeypatch):
    with pytest.raises(BertjaxError, match="choose one of auto, blingfire, kiwi"):
        sentences.check_splitter("punkt")
    real = sentences.importlib.import_module
    missing = set()

    def import_module(name, *args):
        if name in missing:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)
    monkeypatch.setattr(sentences.importlib, "import_module", import_module)
    monkeypatch.setattr(sentences, "KOREAN_SPLITTER", "kiwi")
    missing.add("kiwipiepy")
    for name, language in (("kiwi", None), ("kiwi_full", "ko"), ("auto", None), ("auto", "ko")):
        with pytest.raises(BertjaxError, match=re.escape("pip install 'bertjax[korean]'")) as error:
            sentences.check_splitter(name, language)
        assert "\n" not in str(error.value)
    sentences.check_splitter("auto", "en")  # English never needs Kiwi
    missing.add("blingfire")
    for name, language in (("blingfire", None), ("auto", "de")):
        with pytest.raises(BertjaxError, match=re.escape("pip install 'bertjax[corpus]'")):
            sentences.check_splitter(name, language)


def test_splitter_versions_name_every_library_that_decides():
    import importlib.metadata as metadata
    assert sentences.splitter_versions("blingfire", "en") == {
        "splitter": "blingfire", "language": "en", "blingfire": metadata.version("blingfire")}
    kiwi = sentences.splitter_versions("kiwi")
    assert kiwi == {"splitter": "kiwi", "language": "", "kiwipiepy": metadata.version("kiwipiepy"),
                    "kiwipiepy_model": metadata.version("kiwipiepy_model"), "kiwi_gate": sentences.KIWI_GATE_VERSION}
    auto = sentences.splitter_versions("auto")
    korean_library = sentences._LIBRARIES[sentences.KOREAN_SPLITTER][1][0]
    assert auto["splitter"] == "auto" and {"blingfire", korean_library} <= set(auto)
    assert set(sentences.splitter_versions("auto", "de")) == {"splitter", "language", "blingfire"}
