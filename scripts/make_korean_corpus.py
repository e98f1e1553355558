"""Build the Korean demo data in data/demo_ko/ from LibreOffice's Korean help (Debian `libreoffice-help-ko`, MPL-2.0).

Writes (see data/demo_ko/SOURCES.md for sizes and licence facts):
  * data/demo_ko/corpus.txt: pretraining text in the google-research/bert format (UTF-8, one sentence per line,
    one blank line between documents; one document per help page);
  * data/demo_ko/topic/train.tsv, dev.tsv: a sentence-classification set (header `sentence<TAB>label`): which
    program's help a sentence comes from (writer, calc, impress, basic, math, chart);
  * data/demo_ko/LICENSES/: the package's Debian copyright file and the MPL-2.0 and Apache-2.0 texts it names.
The dev sentences are removed from corpus.txt, so pretraining never sees them.

Run (Debian bookworm; `apt-get update` first so that apt knows the package; standard library only):

    apt-get update
    python scripts/make_korean_corpus.py --out data/demo_ko

It runs `apt-get download libreoffice-help-ko` and `dpkg-deb -x` in --work (default: a temporary directory);
pass --deb FILE to use an already downloaded .deb instead. The data in the repo was made from
libreoffice-help-ko 4:7.4.7-1+deb12u14 (bookworm); another version prints a warning and gives other data.

What it does:
  * text: every help page (usr/share/libreoffice/help/ko/text/<module>/**/*.html) becomes one document. Script,
    style and head elements and the macOS variants of key names (`<span class="MAC" hidden>`) are dropped; block
    elements (p, h1-h6, li, td, ...) end a line; the other tags are removed and entities decoded; whitespace is
    collapsed; "Title is: ..." lines (a repeat of the page heading) are dropped. A line is split into sentences
    after a Hangul syllable followed by `.`, `?` or `!` and a space.
    Only mostly-Korean sentences are kept: at least 8 Hangul syllables, and syllables are more than 40% of the
    non-space characters. A sentence is kept only at its first occurrence in the whole corpus (exact dedup);
    pages with no sentence left are dropped.
  * topic set: the sentences ending in `다.`, `요.` or `오.` (statements and instructions) of the pages of six
    programs (swriter, scalc, simpress, sbasic, smath, schart), labelled with the program. A sentence that also
    occurs in another module's pages (including shared/, sdraw/, sdatabase/) is dropped as ambiguous. Split
    85/15 into train/dev per label (stratified), seeded.
"""
from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import html
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

PACKAGE = "libreoffice-help-ko"
EXPECTED_VERSION = "4:7.4.7-1+deb12u14"
HELP_ROOT = "usr/share/libreoffice/help/ko/text"
COPYRIGHT = f"usr/share/doc/{PACKAGE}/copyright"
# Licence texts the copyright file points at (from Debian's base-files).
LICENCE_TEXTS = {"MPL-2.0.txt": "/usr/share/common-licenses/MPL-2.0",
                 "Apache-2.0.txt": "/usr/share/common-licenses/Apache-2.0"}
LABELS = {"swriter": "writer", "scalc": "calc", "simpress": "impress", "sbasic": "basic", "smath": "math",
          "schart": "chart"}

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_DROP_ELEMENTS = re.compile(r"(?is)<(script|style|head)\b[^>]*>.*?</\1>")
_MAC_SPAN = re.compile(r'(?is)<span hidden="true"[^>]*class="MAC"[^>]*>.*?</span>')
_BLOCK_TAG = re.compile(r"(?is)</?(p|h\d|li|td|th|div|br|tr|table|dd|dt|pre|title)\b[^>]*>")
_TAG = re.compile(r"(?s)<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[\uac00-\ud7a3][.?!])\s+")
_TOPIC_SENTENCE = re.compile(r"[다요오]\.$")
_TITLE_LINE = "Title is:"  # a page-title line of some pages, repeating the heading


SMALL_TRAIN = 500


def page_lines(markup: str) -> list[str]:
    """The text lines of one help page (HTML): block elements end lines, other tags dropped, whitespace collapsed."""
    markup = _MAC_SPAN.sub("", _DROP_ELEMENTS.sub(" ", markup))
    text = html.unescape(_TAG.sub(" ", _BLOCK_TAG.sub("\n", markup)))
    lines = (" ".join(raw.split()) for raw in text.split("\n"))
    return [line for line in lines if line and not line.startswith(_TITLE_LINE)]


def is_korean(sentence: str) -> bool:
    """At least 8 Hangul syllables, which make up more than 40% of the non-space characters."""
    syllables = len(_HANGUL.findall(sentence))
    return syllables >= 8 and syllables / max(1, len("".join(sentence.split()))) > 0.4


def split_sentences(line: str) -> list[str]:
    """Split a line after a Hangul syllable followed by . ? or ! and whitespace."""
    return [s for s in _SENTENCE_END.split(line) if s]


def read_pages(root: str) -> list[tuple[str, list[str]]]:
    """(path relative to the help root, Korean sentences) of every page, sorted by path; exact duplicates of
    sentences within the page are dropped."""
    pages = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            lines = page_lines(f.read())
        sentences = list(dict.fromkeys(s for line in lines for s in split_sentences(line) if is_korean(s)))
        if sentences:
            pages.append((os.path.relpath(path, root), sentences))
    return pages


def topic_rows(pages: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(sentence, label) pairs: sentences ending in 다./요./오. found in exactly one module, a labelled one."""
    modules: dict[str, set[str]] = collections.defaultdict(set)
    for path, sentences in pages:
        module = path.split(os.sep)[0]
        for sentence in sentences:
            modules[sentence].add(module)
    return sorted((s, LABELS[next(iter(m))]) for s, m in modules.items()
                  if len(m) == 1 and next(iter(m)) in LABELS and _TOPIC_SENTENCE.search(s))


def stratified_split(rows: list[tuple[str, str]], dev_fraction: float, seed: int):
    """(train, dev): per label, a seeded shuffle and the first round(n * dev_fraction) rows to dev; both shuffled."""
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    train, dev = [], []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_dev = round(len(group) * dev_fraction)
        dev += group[:n_dev]
        train += group[n_dev:]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def corpus_documents(pages, exclude: set[str]) -> list[list[str]]:
    """One document per page: its sentences minus `exclude` and minus sentences seen on an earlier page."""
    seen = set(exclude)
    docs = []
    for _, sentences in pages:
        kept = [s for s in sentences if s not in seen]
        seen.update(kept)
        if kept:
            docs.append(kept)
    return docs


def write_tsv(path: str, rows: list[tuple[str, str]]) -> None:
    """Header `sentence<TAB>label`, one row a line (sentences hold no tab or newline)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("sentence\tlabel\n")
        for sentence, label in rows:
            assert "\t" not in sentence and "\n" not in sentence
            f.write(f"{sentence}\t{label}\n")


def fetch_deb(work: str) -> str:
    """`apt-get download` the package into `work`; the .deb's path."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True)
    (deb,) = glob.glob(os.path.join(work, f"{PACKAGE}_*.deb"))
    return deb


def deb_version(deb: str) -> str:
    """The Version field of a .deb."""
    return subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", help=f"an already downloaded {PACKAGE}_*.deb (default: apt-get download it)")
    parser.add_argument("--work", help="where to download and unpack (default: a temporary directory)")
    parser.add_argument("--out", default="data/demo_ko")
    parser.add_argument("--dev-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)

    if args.work:
        os.makedirs(args.work, exist_ok=True)
        return build(args, args.work)
    with tempfile.TemporaryDirectory(prefix="make_korean_corpus_") as work:
        return build(args, work)


def build(args: argparse.Namespace, work: str) -> int:
    """Download (unless --deb) and unpack the package in `work`, then write the files in --out."""
    deb = args.deb or fetch_deb(work)
    version = deb_version(deb)
    with open(deb, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    print(f"{os.path.basename(deb)}: version {version}, sha256 {sha256}", file=sys.stderr)
    if version != EXPECTED_VERSION:
        print(f"warning: the shipped data was made from version {EXPECTED_VERSION}; this one gives other data",
              file=sys.stderr)
    unpacked = os.path.join(work, "unpacked")
    subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)

    pages = read_pages(os.path.join(unpacked, HELP_ROOT))
    train, dev = stratified_split(topic_rows(pages), args.dev_fraction, args.seed)
    docs = corpus_documents(pages, {sentence for sentence, _ in dev})

    os.makedirs(os.path.join(args.out, "topic"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "LICENSES"), exist_ok=True)
    corpus_path = os.path.join(args.out, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join("\n".join(doc) for doc in docs) + "\n")
    write_tsv(os.path.join(args.out, "topic", "train.tsv"), train)
    write_tsv(os.path.join(args.out, "topic", "dev.tsv"), dev)
    # The low-data setting, where pretraining shows: the first SMALL_TRAIN rows of the (shuffled) train set.
    write_tsv(os.path.join(args.out, "topic", f"train_{SMALL_TRAIN}.tsv"), train[:SMALL_TRAIN])
    shutil.copyfile(os.path.join(unpacked, COPYRIGHT), os.path.join(args.out, "LICENSES", f"{PACKAGE}.copyright"))
    for name, path in LICENCE_TEXTS.items():
        shutil.copyfile(path, os.path.join(args.out, "LICENSES", name))

    n_sentences = sum(len(doc) for doc in docs)
    print(f"wrote {corpus_path}: {os.path.getsize(corpus_path)} bytes, {len(docs)} documents, {n_sentences} "
          f"sentences; {len(pages)} pages read", file=sys.stderr)
    for name, rows in (("train", train), ("dev", dev)):
        counts = collections.Counter(label for _, label in rows)
        print(f"topic/{name}.tsv: {len(rows)} rows, {dict(sorted(counts.items()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
