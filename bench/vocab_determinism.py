"""The deterministic vocab against `tokenizers`' own trainer: same quality, one result (issue 23).

    python bench/vocab_determinism.py                              # the English and Korean demo corpora
    python bench/vocab_determinism.py --corpus nsmc=/work/data/nsmc/pretrain/corpus.txt:16000:cased

Per corpus, every 10th document is held out. The rest trains a vocab --runs times each way, in this process:
- "tokenizers as is": one pass of `tokenizers`' WordPiece trainer, the specials first (bertjax before issue 23);
- "seeded": `bertjax.data.vocab.train_vocab` (a first pass finds the characters and ## characters, the second
  trains with them seeded in code-point order).
On the held-out text, with bertjax's tokenizer: the [UNK] rate (of all pieces) and pieces per word (words = what
of bertjax's tokenizer: pieces that do not start with ##; an [UNK] is one piece). Also the distinct vocabs among the runs, the training
time, and how many entries two vocabs of the same corpus share.

Writes bench/results/vocab_determinism.md and .json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import machine_info  # noqa: E402  (bench/)
from bertjax.data import corpus, corpus_formats, text, vocab, vocab_files  # noqa: E402
from bertjax.data.tokenizer import BertTokenizer  # noqa: E402

DEFAULT_CORPORA = (f"en={REPO / 'data/demo/corpus.txt'}:4096:uncased",
                   f"ko={REPO / 'data/demo_ko/corpus.txt'}:4096:cased")
HELD_OUT_EVERY = 10


def split_documents(path: Path, workdir: Path) -> tuple[Path, Path]:
    """(train, held-out) files: every HELD_OUT_EVERY-th document (blank-line separated) is held out."""
    documents = [d for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    train = workdir / f"{path.parent.name}-train.txt"
    held = workdir / f"{path.parent.name}-heldout.txt"
    train.write_text("\n\n".join(d for i, d in enumerate(documents) if i % HELD_OUT_EVERY) + "\n", encoding="utf-8")
    held.write_text("\n\n".join(d for i, d in enumerate(documents) if not i % HELD_OUT_EVERY) + "\n",
                    encoding="utf-8")
    return train, held


def unseeded_vocab(train: Path, vocab_size: int, lowercase: bool, output: Path) -> Path:
    """`tokenizers`' trainer in one pass, as bertjax.data.vocab ran it before its seeding."""
    files = text.expand_input_files(str(train))
    spec = corpus.corpus_spec(files, corpus_formats.AUTO, corpus.DEFAULT_TEXT_FIELD, None)
    tokens = vocab._train_wordpiece(files, spec, lowercase, lowercase, vocab_size, 2, vocab_files.SPECIAL_TOKENS,
                                    show_progress=False)
    output.mkdir(parents=True, exist_ok=True)
    vocab._write_vocab_files(output, tokens, lowercase, lowercase)
    return output / vocab_files.VOCAB_FILE


def held_out_quality(vocab_path: Path, held: Path) -> dict:
    """[UNK] rate and pieces per word of the held-out text."""
    tok = BertTokenizer.from_vocab(vocab_path)
    pieces = words = unknown = 0
    for line in held.read_text(encoding="utf-8").splitlines():
        line_pieces = tok.tokenize(line)
        pieces += len(line_pieces)
        words += sum(not piece.startswith("##") for piece in line_pieces)   # each word's first piece (or [UNK])
        unknown += line_pieces.count(vocab_files.UNK)
    return {"unk_rate": unknown / pieces, "pieces_per_word": pieces / words, "words": words}


def run_corpus(name: str, path: Path, vocab_size: int, lowercase: bool, runs: int, workdir: Path) -> dict:
    train, held = split_documents(path, workdir)
    out = {"corpus": name, "source": str(path), "vocab_size": vocab_size, "lowercase": lowercase, "ways": {}}
    for way in ("tokenizers as is", "seeded"):
        rows = []
        for run in range(runs):
            directory = workdir / f"{name}-{'seeded' if way == 'seeded' else 'asis'}-{run}"
            start = time.perf_counter()
            if way == "seeded":
                vocab_path = vocab.train_vocab(str(train), vocab_size, directory, do_lower_case=lowercase,
                                               strip_accents=lowercase, show_progress=False)
            else:
                vocab_path = unseeded_vocab(train, vocab_size, lowercase, directory)
            seconds = time.perf_counter() - start
            rows.append({"sha256": hashlib.sha256(Path(vocab_path).read_bytes()).hexdigest(), "seconds": seconds,
                         "tokens": Path(vocab_path).read_text(encoding="utf-8").splitlines(),
                         **held_out_quality(Path(vocab_path), held)})
            print(f"{name} {way} run {run}: {rows[-1]['sha256'][:12]} unk {rows[-1]['unk_rate']:.4%} "
                  f"pieces/word {rows[-1]['pieces_per_word']:.4f} {seconds:.1f} s", flush=True)
        shared = [len(set(a["tokens"]) & set(b["tokens"])) for a, b in zip(rows, rows[1:])]
        out["ways"][way] = {
            "distinct_vocabs": len({r["sha256"] for r in rows}),
            "unk_rate": [r["unk_rate"] for r in rows], "pieces_per_word": [r["pieces_per_word"] for r in rows],
            "seconds": [round(r["seconds"], 2) for r in rows], "held_out_words": rows[0]["words"],
            "min_shared_entries_between_runs": min(shared) if shared else vocab_size,
            "first_vocab": rows[0]["tokens"]}
    seeded, as_is = (set(out["ways"][w]["first_vocab"]) for w in ("seeded", "tokenizers as is"))
    out["shared_with_as_is"] = len(seeded & as_is)
    for way in out["ways"].values():
        way.pop("first_vocab")
    return out


def _spread(values: list[float], scale: float, digits: int) -> str:
    mean = statistics.fmean(values) * scale
    spread = (max(values) - min(values)) * scale
    return f"{mean:.{digits}f}" + (f" (range {spread:.{digits}f})" if spread else "")


def write_report(results: list[dict], args, output: Path) -> None:
    import tokenizers

    m = machine_info.describe(("tokenizers",))
    lines = ["# Deterministic vocab: quality and cost against `tokenizers` as is", "",
             f"{m['cpu']}, {m['cores']} cores ({m['cores_used']} used), Python {m['python']}, tokenizers "
             f"{tokenizers.__version__}. Made by `python bench/vocab_determinism.py {' '.join(sys.argv[1:])}`.", "",
             f"Every {HELD_OUT_EVERY}th document held out; the rest trains the vocab {args.runs} times each way in one "
             "process. 'tokenizers as is' = one pass of its WordPiece trainer (bertjax before this change); "
             "'seeded' = `bertjax.data.vocab.train_vocab` (a first pass finds the characters and ## characters, "
             "the second trains with them seeded in code-point order). [UNK] rate = [UNK] pieces / all pieces of "
             "the held-out text; pieces per word = pieces / pieces not starting with ##. A range is max - min over the "
             "runs.", "",
             "| corpus | vocab | way | distinct vocabs in runs | fewest entries two runs share | [UNK] rate % | "
             "pieces per word | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for way, w in r["ways"].items():
            lines.append(f"| {r['corpus']} | {r['vocab_size']} {'uncased' if r['lowercase'] else 'cased'} | {way} | "
                         f"{w['distinct_vocabs']} of {len(w['seconds'])} | {w['min_shared_entries_between_runs']} | "
                         f"{_spread(w['unk_rate'], 100, 5)} | {_spread(w['pieces_per_word'], 1, 5)} | "
                         f"{statistics.fmean(w['seconds']):.1f} |")
    lines += ["", "Entries the seeded vocab shares with the first vocab of 'as is': " + ", ".join(
        f"{r['corpus']} {r['shared_with_as_is']} of {r['vocab_size']}" for r in results) + ".", ""]
    if any(r["corpus"] == "nsmc" for r in results):
        lines += ["nsmc: the 10 MB of Naver movie reviews that `bench/nsmc_data.py` makes from e9t/nsmc's raw "
                  "files (CC0; where and how: bench/results/time_to_quality_nsmc.md), kept outside the repository.",
                  ""]
    output.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps({"machine": m, "results": results}, indent=1),
                                           encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", action="append", help="name=path:vocab_size:cased|uncased (repeat)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "vocab_determinism")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bertjax-vocab-bench-") as tmp:
        for spec in args.corpus or DEFAULT_CORPORA:
            name, rest = spec.split("=", 1)
            path, size, casing = rest.rsplit(":", 2)
            results.append(run_corpus(name, Path(path), int(size), casing == "uncased", args.runs, Path(tmp)))
            write_report(results, args, args.output)


if __name__ == "__main__":
    main()
