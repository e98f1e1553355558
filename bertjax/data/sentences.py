"""Sentence segmentation of paragraphs, for every corpus format but the original (whose lines are the sentences).

Chosen by measurement (bench/sentence_splitters.py -> bench/results/sentence_splitters.md): the demo corpora re-joined
into paragraphs (true boundaries known) and 20,000 NSMC movie reviews (plain Kiwi as the reference).

- blingfire, auto's choice for every paragraph not mostly in Hangul (DEFAULT_SPLITTER): Bling Fire's rule-based
  breaker (C++). English demo: the best recall and precision (97.8% / 97.6%) and the fastest (~30 M chars/CPU-s;
  spaCy's sentencizer 85% / 83%, pysbd 0.1 M chars/s).
- kiwi, auto's choice for Hangul (KOREAN_SPLITTER): Kiwi (kiwipiepy), whose morphology finds the sentence ends that
  carry no punctuation, as in comments ("재밌었다 배우들 연기도"): on reviews Bling Fire finds only half of Kiwi's
  boundaries, kss is slower than Kiwi and no better. Plain Kiwi (kiwi_full) costs ~13 µs a character, several times
  the rest of create_pretraining_data, so `_KiwiGated` runs it only where punctuation does not decide: terminal
  punctuation before a letter is a boundary outright (Kiwi agrees at >99% of such places); Kiwi reads the two words
  around each place where a sentence might end (after a syllable that often ends one, after ^^ or ㅋㅋ) and decides
  there; elsewhere no boundary. Kiwi loads without its typo and multi-word dictionaries (same boundaries on 99.96% of
  reviews; half the start-up). On reviews: the same cuts as plain Kiwi for 94.6% of them, at ~8x its speed.
- spacy (the sentencizer of spacy.blank(language)) and pysbd: supported, measured less accurate and slower.

Every splitter only chooses where to cut: a sentence is the paragraph's text between two cuts, stripped, so the
sentences give back the paragraph's characters unchanged (Hangul stays precomposed), whatever the library returns.
A SentenceSplitter loads each library's model on first use (an English corpus never loads Kiwi); Kiwi runs on one
thread (num_workers=0), so the output is deterministic.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import re
import warnings

from bertjax.errors import BertjaxError

SPLITTERS = ("blingfire", "kiwi", "kiwi_full", "spacy", "pysbd")
AUTO = "auto"
KOREAN_SPLITTER = "kiwi"
DEFAULT_SPLITTER = "blingfire"

# splitter -> (module to import, distributions whose versions define its output, how to install it)
_LIBRARIES = {
    "blingfire": ("blingfire", ("blingfire",), "pip install 'bertjax[corpus]'"),
    "kiwi": ("kiwipiepy", ("kiwipiepy", "kiwipiepy_model"), "pip install 'bertjax[korean]'"),
    "kiwi_full": ("kiwipiepy", ("kiwipiepy", "kiwipiepy_model"), "pip install 'bertjax[korean]'"),
    "spacy": ("spacy", ("spacy",), "pip install spacy"),
    "pysbd": ("pysbd", ("pysbd",), "pip install pysbd"),
}
KIWI_GATE_VERSION = "4"  # bump when _KiwiGated's rules change: part of the dataset's settings

_HANGUL = "\uac00-\ud7a3"  # precomposed syllables
_LETTERS = re.compile(r"[^\W\d_]+")
_HANGUL_LETTERS = re.compile(f"[{_HANGUL}\u1100-\u11ff\u3131-\u318e]+")
_NON_SPACE, _SPACE, _NEWLINE = re.compile(r"\S"), re.compile(r"\s+"), re.compile("\n")


def _splitters_for(name: str, language: str | None) -> tuple[str, ...]:
    if name != AUTO:
        return (name,)
    if language is None:
        return (KOREAN_SPLITTER, DEFAULT_SPLITTER)
    return (KOREAN_SPLITTER,) if language == "ko" else (DEFAULT_SPLITTER,)


def check_splitter(name: str, language: str | None = None) -> None:
    """Raise a one-line BertjaxError if `name` is not a splitter, or a library it (auto: each splitter it may use
    for `language`) needs is not installed or does not know `language`."""
    if name != AUTO and name not in SPLITTERS:
        raise BertjaxError(f"unknown --sentence_splitter={name!r}; choose one of {', '.join((AUTO,) + SPLITTERS)}")
    for splitter in _splitters_for(name, language):
        module, _, install = _LIBRARIES[splitter]
        try:
            library = importlib.import_module(module)
        except ImportError as e:
            other = "Korean" if splitter == KOREAN_SPLITTER else "text in other scripts"
            hint = f" (or pass --language for a corpus without {other})" if name == AUTO and language is None else ""
            raise BertjaxError(f"--sentence_splitter={name} needs {module}, which cannot be imported ({e}); "
                               f"{install}{hint}") from None
        if splitter == "spacy" and language:
            try:
                library.util.get_lang_class(language)
            except ImportError:
                raise BertjaxError(f"spaCy has no language {language!r}; pass a spaCy language code as --language") \
                    from None
        if splitter == "pysbd" and (language or "en") not in importlib.import_module("pysbd.languages").LANGUAGE_CODES:
            raise BertjaxError(f"pysbd has no language {language!r}; choose another --sentence_splitter")


def splitter_versions(name: str, language: str | None = None) -> dict[str, str]:
    """{"splitter": name, "language": language or "", library: version, ...}: what decides the output (for the
    dataset manifest)."""
    versions = {"splitter": name, "language": language or ""}
    for splitter in _splitters_for(name, language):
        for distribution in _LIBRARIES[splitter][1]:
            versions[distribution] = importlib.metadata.version(distribution)
        if splitter == "kiwi":
            versions["kiwi_gate"] = KIWI_GATE_VERSION
    return versions


def is_mostly_hangul(paragraph: str) -> bool:
    """Whether at least half of the letters in the paragraph's first 1,000 characters are Hangul (syllables or
    jamo): auto's rule for Korean."""
    head = paragraph[:1000]
    if not _HANGUL_LETTERS.search(head):
        return False
    return 2 * sum(map(len, _HANGUL_LETTERS.findall(head))) >= sum(map(len, _LETTERS.findall(head)))


def _pieces(paragraph: str, cuts) -> list[str]:
    """The paragraph cut before each of `cuts` (character offsets), stripped, empty pieces dropped."""
    bounds = [0] + sorted(c for c in set(cuts) if 0 < c < len(paragraph)) + [len(paragraph)]
    return [s for s in (paragraph[a:b].strip() for a, b in zip(bounds, bounds[1:])) if s]


def starts_by_count(paragraph: str, sentences: list[str]) -> list[int]:
    """Where the 2nd, 3rd, ... of a library's sentences start in the paragraph, found by counting non-whitespace
    characters (for libraries that return text only; exact as long as they change no such character)."""
    where = [m.start() for m in _NON_SPACE.finditer(paragraph)]
    starts, seen = [], 0
    for sentence in sentences[:-1]:
        seen += len(_SPACE.sub("", sentence))
        if seen < len(where):
            starts.append(where[seen])
    return starts


class _Blingfire:
    """Bling Fire's TextToSentences, called directly with one reused buffer when the library exposes it (its
    text_to_sentences allocates per call, half the speed on short paragraphs such as reviews)."""

    def __init__(self):
        import blingfire
        self.public = blingfire.text_to_sentences
        self.direct = getattr(getattr(blingfire, "blingfire", None), "TextToSentences", None)
        self.buffer = ctypes.create_string_buffer(1 << 16)

    def text(self, paragraph: str) -> str:
        data = paragraph.encode("utf-8")
        if self.direct is None or 2 * len(data) + 1 > len(self.buffer):
            return self.public(paragraph)
        n = self.direct(data, len(data), self.buffer, len(self.buffer))
        return self.buffer.value.decode("utf-8") if 0 < n <= len(self.buffer) else self.public(paragraph)

    def __call__(self, paragraphs: list[str]) -> list[list[int]]:
        out = []
        for p in paragraphs:
            text = self.text(p) if p else ""
            same = text.replace("\n", " ") == p  # a newline in place of the space between two sentences
            out.append([m.end() for m in _NEWLINE.finditer(text)] if same else starts_by_count(p, text.split("\n")))
        return out


def _new_kiwi():
    from kiwipiepy import Kiwi
    with warnings.catch_warnings():  # num_workers=0 (one thread, no async) warns about its pre-0.21 meaning
        warnings.simplefilter("ignore", DeprecationWarning)
        return Kiwi(num_workers=0, load_typo_dict=False, load_multi_dict=False)


class _KiwiGated:
    """Kiwi's boundaries, with Kiwi run only on windows around the places punctuation does not decide."""
    _P = ".!?\u2026\u3002\uff0e\uff01\uff1f"  # terminal punctuation
    _J = "\u3131-\u318e"  # compatibility jamo (ㅋㅋ, ㅠㅠ): ordinary text
    # Hangul syllables after which (then a space, then no punctuation) plain Kiwi ends >= 5% of sentences, 3+ times,
    # in 20,000 NSMC reviews (bench/sentence_splitters.py --gate_syllables, on a sample disjoint from the one the
    # benchmark measures), less 여 어 야 당 구 라: common inside sentences of formal text (하여, 있어, 해당, 도구, 따라),
    # and in reviews they end under 3% of the sentences they are asked about
    SYLLABLES = "다요음네임냐함죠까봄됨옴움줌남봐짐놔워김쁨"
    _NOT_ENDING = ",([{\\-)/:=%"  # symbols after which Kiwi seldom starts a sentence (<5% of such places): not asked
    # the places where the next sentence would start
    DIRECT = re.compile(f"(?<=[{_P}])(?:\\s+(?=[^\\W_{_J}])|(?=[{_HANGUL}]))")  # punctuation, then a letter
    ASK = re.compile(f"(?<=[{SYLLABLES}])\\s+(?=[^\\s{_P}])"  # a syllable that often ends a sentence, a space
                     f"|(?<=[^\\w\\s{_P}{_NOT_ENDING}]|[{_J}])"  # after ^^ or ㅋㅋ ...
                     f"(?:\\s+(?=[{_HANGUL}\\d])|(?=[{_HANGUL}{_P}]))"  # ... before a syllable, digit or punctuation
                     f"|(?<=[{_P}])\\s+(?=[^\\w\\s]|[{_J}])")  # punctuation, a space, a symbol or jamo
    WINDOW_CHARS = 24  # at most this many characters of context on each side

    def __init__(self):
        self.kiwi = _new_kiwi()

    def __call__(self, paragraphs: list[str]) -> list[list[int]]:
        return [self.cuts(p) for p in paragraphs]

    def cuts(self, paragraph: str) -> list[int]:
        asked = [(m.start(), m.end()) for m in self.ASK.finditer(paragraph)]
        return [m.end() for m in self.DIRECT.finditer(paragraph)] + self.decide(paragraph, asked)

    def decide(self, paragraph: str, candidates: list[tuple[int, int]]) -> list[int]:
        """Those of the candidate places (gap start, next sentence's start; in order) where Kiwi, reading the words
        around them (the left one, the right one; merged when they overlap), starts a sentence."""
        spans: list[list] = []  # [start, end, places] of merged windows
        for gap, at in candidates:
            left = paragraph.rfind(" ", 0, max(gap, 1) - 1)  # the space before the word that ends at the gap
            lo = max(left + 1, at - self.WINDOW_CHARS, 0)
            hi = paragraph.find(" ", at + 1)
            hi = min(len(paragraph) if hi < 0 else hi, at + self.WINDOW_CHARS)
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
                spans[-1][2].append(at)
            else:
                spans.append([lo, hi, [at]])
        cuts = []
        for lo, hi, places in spans:
            starts = {lo + s.start for s in self.kiwi.split_into_sents(paragraph[lo:hi], return_sub_sents=False)}
            cuts.extend(c for c in places if c in starts)
        return cuts


class SentenceSplitter:
    """One splitter (or auto's two), its models loaded once; make one per worker process."""

    def __init__(self, name: str, language: str | None = None):
        check_splitter(name, language)
        self.name, self.language = name, language
        self._splitters = _splitters_for(name, language)
        self._loaded: dict = {}

    def _cuts(self, splitter: str):
        if splitter not in self._loaded:
            self._loaded[splitter] = self._load(splitter, self.language)
        return self._loaded[splitter]

    @staticmethod
    def _load(splitter: str, language: str | None):
        if splitter == "blingfire":
            return _Blingfire()
        if splitter == "kiwi":
            return _KiwiGated()
        if splitter == "kiwi_full":
            kiwi = _new_kiwi()
            return lambda ps: [[s.start for s in kiwi.split_into_sents(p, return_sub_sents=False)] for p in ps]
        if splitter == "spacy":
            import spacy
            try:
                nlp = spacy.blank(language or "xx")
            except Exception as e:  # e.g. "ko" and "ja" need a tokenizer library of their own
                raise BertjaxError(f"spaCy cannot make a blank {language!r} pipeline: {str(e).splitlines()[0]}; "
                                   "pass another --language or --sentence_splitter") from None
            nlp.add_pipe("sentencizer")
            return lambda ps: [[s.start_char for s in doc.sents] for doc in nlp.pipe(ps)]
        import pysbd
        segmenter = pysbd.Segmenter(language=language or "en", clean=False)
        return lambda ps: [starts_by_count(p, segmenter.segment(p)) for p in ps]

    def split(self, paragraphs: list[str]) -> list[list[str]]:
        """Each paragraph (no newlines, whitespace normalised, NFC) -> its sentences: stripped, non-empty, in order,
        together exactly the paragraph's non-whitespace characters. auto: Korean splitter for a paragraph whose
        letters are mostly Hangul (`is_mostly_hangul`), else the default one; with a language, that language's."""
        if len(self._splitters) == 1:
            cuts_of = self._cuts(self._splitters[0])
            return [_pieces(p, c) for p, c in zip(paragraphs, cuts_of(paragraphs))]
        korean = [is_mostly_hangul(p) for p in paragraphs]
        out: list[list[str]] = [[] for _ in paragraphs]
        for splitter, want in ((KOREAN_SPLITTER, True), (DEFAULT_SPLITTER, False)):
            indices = [i for i, k in enumerate(korean) if k == want]
            if indices:
                for i, cuts in zip(indices, self._cuts(splitter)([paragraphs[i] for i in indices])):
                    out[i] = _pieces(paragraphs[i], cuts)
        return out
