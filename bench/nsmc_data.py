"""Korean data for bench/time_to_quality.py from NSMC's source crawl (e9t/nsmc, CC0): a pretraining corpus of movie
reviews and a labelled sentiment set whose dev movies the pretraining never sees.

    python bench/nsmc_data.py --mirror /work/.mirror/e9t+nsmc/repo --out /work/data/nsmc

Input: the `raw/*.json` files of a clone of https://github.com/e9t/nsmc (one file per movie: a list of
{review, rating, movie_id, review_id, author, date}; at most 100 recent reviews per movie, the crawler's limit), read
from the clone's git objects at --commit (default HEAD), so the working tree need not be checked out and the big
ratings_*.txt blobs need not be there. Output, in --out (keep it outside the repository):

  pretrain/corpus.txt   the google-research/bert input format: one review per line (a review may hold several
                        sentences; it stays one line), one blank line between documents; a document = one movie's
                        reviews. About --pretrain_mb MB, from the train movies and further movies, never a dev movie.
  finetune/train.tsv    header `sentence<TAB>label`, --train_size reviews (half 0, half 1) of the train movies
  finetune/dev.tsv      the same, --dev_size reviews of the dev movies (disjoint from the train and pretraining movies)
  selection.json        the movie ids of each part and the counts
  SOURCES.md            the commit, the selection rule, the counts and the files' sha256

Labels as NSMC defines them: rating 1-4 -> 0 (negative), 9-10 -> 1 (positive), 5-8 dropped. Text: every run of
whitespace (newlines, tabs, U+3000, ...) and control characters becomes one space, ends stripped; empty reviews are
dropped. The labelled sets are deduplicated by text: a text appears at most once in train and dev together (dev
first), and no pretraining line equals a dev text.

The selection rule (deterministic for a --seed: every draw comes from one numpy.random.default_rng(seed), PCG64;
SOURCES.md records the files' sha256, so a rebuild with another numpy can be checked):
  1. movies sorted by id (as integers), then permuted with numpy.random.default_rng(seed);
  2. dev: walk the permuted movies; from each, take its not yet used labelled reviews, shuffled with the same
     generator, up to --per_movie of each label still wanted, until dev holds dev_size / 2 of each label; every movie
     that gave a review is a dev movie;
  3. train: continue the walk from the next movie in the same way, up to train_size / 2 of each label;
  4. pretraining: the train movies (all their non-empty reviews, rated 1-10, labelled or not), then the movies after
     them in the walk that are not dev movies, whole documents in walk order, until the corpus holds --pretrain_mb
     MB (10^6 bytes); a movie with fewer than 2 distinct non-empty reviews is skipped (no sentence pair);
     within a document a repeated text is kept once, and lines equal to a dev text are dropped.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np

DEFAULT_MIRROR = "/work/.mirror/e9t+nsmc/repo"
UPSTREAM = "https://github.com/e9t/nsmc"
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\ufeff]+")


def label_of(rating: str) -> int | None:
    """NSMC's labels: 1-4 negative (0), 9-10 positive (1), 5-8 (and anything else) None."""
    try:
        value = int(rating)
    except (TypeError, ValueError):
        return None
    if 1 <= value <= 4:
        return 0
    if 9 <= value <= 10:
        return 1
    return None


def clean(text: str) -> str:
    """One line of text: whitespace and control characters collapsed to one space, ends stripped."""
    return _SPACE.sub(" ", text or "").strip()


def git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True,
                          check=True).stdout


def git_dir_of(mirror: Path) -> Path:
    return mirror / ".git" if (mirror / ".git").exists() else mirror


def read_movies(git_dir: Path, commit: str) -> dict[int, list[dict]]:
    """{movie id: [review records in file order]} of raw/*.json at `commit`, through one `git cat-file --batch`."""
    listing = git(git_dir, "ls-tree", commit, "raw/").decode().splitlines()
    entries = []
    for line in listing:
        meta, path = line.split("\t", 1)
        _, kind, sha = meta.split()
        if kind == "blob" and path.endswith(".json"):
            entries.append((path, sha))
    out = git(git_dir, "cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in entries).encode())
    movies, pos = {}, 0
    for path, sha in entries:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].split()
        if header[1] == b"missing":
            raise SystemExit(f"{path} ({sha}) is missing from {git_dir}")
        size = int(header[2])
        body = out[header_end + 1:header_end + 1 + size]
        pos = header_end + 1 + size + 1
        movie_id = int(Path(path).stem)
        records = json.loads(body.decode("utf-8"))
        movies[movie_id] = records
    return movies


def take_labelled(order: list[int], start: int, movies: dict, quota: int, per_movie: int, used: set,
                  rng: np.random.Generator) -> tuple[list[tuple[str, int, int]], list[int], int]:
    """Walk `order` from `start`, taking up to per_movie unused labelled texts of each still-wanted label per movie,
    until quota // 2 of each label; returns (rows (text, label, movie), movies taken from, next position)."""
    want = {0: quota // 2, 1: quota - quota // 2}
    rows, taken_from = [], []
    i = start
    while any(want.values()):
        if i >= len(order):
            raise SystemExit(f"ran out of movies with {want} labelled reviews still wanted")
        movie = order[i]
        i += 1
        by_label = collections.defaultdict(list)
        seen = set()
        for record in movies[movie]:
            text, label = clean(record.get("review")), label_of(record.get("rating"))
            if text and label is not None and text not in used and text not in seen:
                seen.add(text)
                by_label[label].append(text)
        gave = False
        for label in (0, 1):
            texts = by_label[label]
            if not texts or not want[label]:
                continue
            picked = [texts[j] for j in rng.permutation(len(texts))[:min(per_movie, want[label])]]
            for text in picked:
                rows.append((text, label, movie))
                used.add(text)
            want[label] -= len(picked)
            gave = gave or bool(picked)
        if gave:
            taken_from.append(movie)
    return rows, taken_from, i


def document(records: list[dict], banned: set) -> list[str]:
    """A movie's pretraining lines: non-empty reviews rated 1-10, each distinct text once, dev texts dropped."""
    lines, seen = [], set()
    for record in records:
        text = clean(record.get("review"))
        try:
            rating = int(record.get("rating"))
        except (TypeError, ValueError):
            continue
        if text and 1 <= rating <= 10 and text not in seen and text not in banned:
            seen.add(text)
            lines.append(text)
    return lines


def write_tsv(path: Path, rows: list[tuple[str, int, int]], rng: np.random.Generator) -> None:
    order = rng.permutation(len(rows))
    path.write_text("sentence\tlabel\n" + "".join(f"{rows[j][0]}\t{rows[j][1]}\n" for j in order),
                    encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path(DEFAULT_MIRROR), help="a clone of e9t/nsmc")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, required=True, help="output directory (outside the repository)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain_mb", type=float, default=10.0, help="pretraining corpus size, MB (10^6 bytes)")
    parser.add_argument("--train_size", type=int, default=4000)
    parser.add_argument("--dev_size", type=int, default=2000)
    parser.add_argument("--per_movie", type=int, default=10, help="labelled reviews of each label per movie, at most")
    args = parser.parse_args()

    git_dir = git_dir_of(args.mirror)
    commit = git(git_dir, "rev-parse", args.commit).decode().strip()
    commit_date = git(git_dir, "log", "-1", "--format=%cI", commit).decode().strip()
    movies = read_movies(git_dir, commit)
    print(f"{len(movies)} movies, {sum(map(len, movies.values()))} reviews at {commit}", flush=True)

    rng = np.random.default_rng(args.seed)
    order = [sorted(movies)[j] for j in rng.permutation(len(movies))]
    used: set[str] = set()
    dev_rows, dev_movies, pos = take_labelled(order, 0, movies, args.dev_size, args.per_movie, used, rng)
    dev_texts = set(used)
    train_rows, train_movies, pos = take_labelled(order, pos, movies, args.train_size, args.per_movie, used, rng)
    dev_set = set(dev_movies)

    # Pretraining documents: the train movies, then the movies after them in the walk (never a dev movie).
    target = int(args.pretrain_mb * 1e6)
    docs, pretrain_movies, size, skipped_short, dropped_dev_lines = [], [], 0, 0, 0
    train_set = set(train_movies)
    candidates = train_movies + [m for m in order[pos:] if m not in dev_set and m not in train_set]
    for movie in candidates:
        if size >= target and movie not in train_set:
            break
        lines = document(movies[movie], dev_texts)
        dropped_dev_lines += len(document(movies[movie], set())) - len(lines)
        if len(lines) < 2:
            skipped_short += 1
            continue
        text = "\n".join(lines) + "\n"
        docs.append(text)
        pretrain_movies.append(movie)
        size += len(text.encode("utf-8")) + 1
    assert not dev_set & set(pretrain_movies) and not dev_set & set(train_movies)

    out = args.out
    (out / "pretrain").mkdir(parents=True, exist_ok=True)
    (out / "finetune").mkdir(parents=True, exist_ok=True)
    corpus = out / "pretrain" / "corpus.txt"
    corpus.write_text("\n".join(docs), encoding="utf-8")
    write_tsv(out / "finetune" / "train.tsv", train_rows, rng)
    write_tsv(out / "finetune" / "dev.tsv", dev_rows, rng)

    corpus_text = corpus.read_text(encoding="utf-8")
    lines = [line for line in corpus_text.split("\n") if line]
    counts = {
        "movies_in_crawl": len(movies), "reviews_in_crawl": sum(map(len, movies.values())),
        "dev": {"reviews": len(dev_rows), "movies": len(dev_movies),
                "labels": dict(collections.Counter(str(r[1]) for r in dev_rows))},
        "train": {"reviews": len(train_rows), "movies": len(train_movies),
                  "labels": dict(collections.Counter(str(r[1]) for r in train_rows))},
        "pretrain": {"bytes": len(corpus_text.encode("utf-8")), "documents": len(docs), "lines": len(lines),
                     "hangul_syllables": sum(1 for ch in corpus_text if "\uac00" <= ch <= "\ud7a3"),
                     "movies": len(pretrain_movies), "of_which_train_movies": len(train_set & set(pretrain_movies)),
                     "movies_skipped_under_2_reviews": skipped_short,
                     "lines_dropped_equal_to_a_dev_text": dropped_dev_lines},
    }
    files = {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in (corpus, out / "finetune" / "train.tsv", out / "finetune" / "dev.tsv")}
    selection = {"source": UPSTREAM, "commit": commit, "commit_date": commit_date, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "counts": counts, "files": files,
        "dev_movies": sorted(dev_movies), "train_movies": sorted(train_movies),
        "pretrain_movies": sorted(pretrain_movies)}
    (out / "selection.json").write_text(json.dumps(selection, indent=1) + "\n")
    write_sources(out, selection)
    print(json.dumps({"counts": counts, "files": files}, indent=1, ensure_ascii=False))


def write_sources(out: Path, s: dict) -> None:
    c, a = s["counts"], s["args"]
    p = c["pretrain"]
    rule = "The selection rule" + __doc__.split("The selection rule", 1)[1].rstrip()
    lines = [
        "# NSMC-derived data for bench/time_to_quality.py", "",
        f"Made by `python bench/nsmc_data.py --mirror {a['mirror']} --out {a['out']} --seed {a['seed']} "
        f"--pretrain_mb {a['pretrain_mb']} --train_size {a['train_size']} --dev_size {a['dev_size']} "
        f"--per_movie {a['per_movie']}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}.", "",
        f"Source: the `raw/*.json` files of [e9t/nsmc]({s['source']}) (Naver Sentiment Movie Corpus v1.0 by Lucy "
        f"Park; its crawl of Naver Movies reviews, at most 100 recent reviews per movie), commit `{s['commit']}` "
        f"({s['commit_date']}): {c['movies_in_crawl']:,} movies, {c['reviews_in_crawl']:,} reviews. Licence: CC0 1.0 "
        "(public domain dedication, the repository's README).", "",
        "Labels as NSMC: rating 1-4 -> 0 (negative), 9-10 -> 1 (positive), 5-8 dropped. Whitespace and control "
        "characters collapsed to one space; empty reviews dropped; the labelled texts are unique across train and "
        "dev; no pretraining line equals a dev text.", "",
        "| file | what | size |", "|---|---|---|",
        f"| `pretrain/corpus.txt` | one review per line, blank line between documents, a document = one movie | "
        f"{p['bytes']:,} bytes; {p['documents']:,} documents ({p['movies']:,} movies, {p['of_which_train_movies']} "
        f"of the {c['train']['movies']} train movies among them); {p['lines']:,} lines; "
        f"{p['hangul_syllables']:,} Hangul syllables |",
        f"| `finetune/train.tsv` | `sentence<TAB>label`, reviews of the train movies | {c['train']['reviews']:,} "
        f"rows ({c['train']['labels']}) from {c['train']['movies']} movies |",
        f"| `finetune/dev.tsv` | the same, reviews of the dev movies (held out: in neither train nor pretraining) | "
        f"{c['dev']['reviews']:,} rows ({c['dev']['labels']}) from {c['dev']['movies']} movies |",
        "| `selection.json` | the movie ids of each part, the counts, the arguments | |", "",
        f"Pretraining: {p['movies_skipped_under_2_reviews']} movies skipped for fewer than 2 distinct reviews; "
        f"{p['lines_dropped_equal_to_a_dev_text']} lines dropped for equalling a dev text.", "",
        "## Selection rule", "", rule.replace("\n  ", "\n"), "",
        "## sha256", "",
        *[f"- `{name}` {f['sha256']} ({f['bytes']:,} bytes)" for name, f in s["files"].items()], "",
    ]
    (out / "SOURCES.md").write_text("\n".join(lines))
    # The data stays outside the repository; where it came from is recorded beside the results.
    (Path(__file__).resolve().parent / "results" / "nsmc_data.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
