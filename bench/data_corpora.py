"""Corpora and vocab of bench/data_throughput.py: documents of the demo corpus, a text file or directory, NSMC's
git history or synthetic text; corpora of several sizes from them; a WordPiece vocab trained on the smallest."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]




def file_documents(path: Path) -> list[str]:
    """Documents (their lines joined, ending with a blank line) of a corpus file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [d.strip("\n") + "\n\n" for d in text.split("\n\n") if d.strip()]


def synthetic_documents(num_docs: int, seed: int = 0) -> list[str]:
    """Random-word documents, used when the demo corpus is missing."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(1, 10))) for _ in range(20000)]
    docs = []
    for _ in range(num_docs):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 35))).capitalize() + "."
                     for _ in range(rng.randint(2, 40))]
        docs.append("\n".join(sentences) + "\n\n")
    return docs


def _git_files(git_dir: Path, paths: list[str]):
    """(path, bytes) of files at HEAD of a git directory, read with one `git cat-file --batch`."""
    process = subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    try:
        for path in paths:
            process.stdin.write(f"HEAD:{path}\n".encode())
            process.stdin.flush()
            header = process.stdout.readline().split()
            if header[-1] == b"missing":
                raise FileNotFoundError(f"{path} is not in {git_dir} (a partial copy?)")
            data = process.stdout.read(int(header[2]))
            process.stdout.read(1)
            yield path, data
    finally:
        process.stdin.close()
        process.wait()


def nsmc_documents(source: Path, max_mb: float) -> tuple[list[str], str]:
    """NSMC's reviews as documents (one movie each, movie-id order, one review per line) up to ~max_mb MB, and a
    line saying where they came from (the commit)."""
    git_dir = source / ".git" if (source / ".git").is_dir() else source
    if (git_dir / "HEAD").is_file():
        commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", "HEAD", "raw/"],
                                 capture_output=True, text=True, check=True).stdout.split()
        files = _git_files(git_dir, sorted(listing, key=lambda p: int(Path(p).stem)))
        origin = f"github.com/e9t/nsmc at commit {commit}"
    else:
        paths = sorted((source / "raw").glob("*.json"), key=lambda p: int(p.stem))
        files = ((str(p), p.read_bytes()) for p in paths)
        origin = f"NSMC files in {source}"
    docs, size = [], 0
    for _, data in files:
        reviews = [" ".join(review["review"].split()) for review in json.loads(data)]
        doc = "\n".join(r for r in reviews if r) + "\n\n"
        if doc.strip():
            docs.append(doc)
            size += len(doc.encode("utf-8"))
        if size >= max_mb * 1e6:
            break
    return docs, (f"{origin}: raw/*.json, {len(docs)} movies (documents) in movie-id order, one review per line, "
                  f"{sum(d.count(chr(10)) - 1 for d in docs)} reviews, {size / 1e6:.1f} MB")


def text_documents(source: Path) -> list[str]:
    """Documents of a corpus file or of a directory of *.txt files."""
    paths = sorted(source.glob("*.txt")) if source.is_dir() else [source]
    return [doc for path in paths for doc in file_documents(path)]


def make_corpora(workdir: Path, base_mb: float, scales: list[int], docs: list[str]) -> dict[int, Path]:
    """Corpus files of ~base_mb * scale MB: whole documents, each copy of the document list shuffled anew."""
    rng = random.Random(0)
    base: list[str] = []
    size = 0
    for doc in rng.sample(docs, len(docs)) * 100:
        if size >= base_mb * 1e6:
            break
        base.append(doc)
        size += len(doc.encode("utf-8"))
    corpora = {}
    for scale in scales:
        path = workdir / f"corpus_x{scale}.txt"
        with open(path, "w", encoding="utf-8") as f:
            for copy in range(scale):
                f.writelines(random.Random(copy).sample(base, len(base)) if copy else base)
        corpora[scale] = path
    return corpora


def train_bench_vocab(corpus: Path, vocab_size: int, out: Path, lowercase: bool, strip_accents: bool) -> Path:
    """A WordPiece vocab trained on `corpus`."""
    sys.path.insert(0, str(REPO))
    from bertjax.data.vocab import train_vocab  # noqa: PLC0415  (not at the top: --child runs time their imports)

    return train_vocab(str(corpus), vocab_size, out, do_lower_case=lowercase, strip_accents=strip_accents,
                       min_frequency=1, show_progress=False)
