"""Benchmark: corpora as people have them (issue 18), side by side with the same text in the original format.

    python bench/corpus_formats.py [--nsmc GIT_DIR] [--dupe_factor 10] [--stats_dupe_factor 40] [--memory_scale 10]

1. Same data: the demo corpora (data/demo English, data/demo_ko Korean) in the original format, and re-joined, each
   document's sentence lines joined by a space, into paragraph lines, JSONL records and Parquet rows. For each, the
   instance statistics create_pretraining_data reports: mean length, full-length fraction, NSP random-next fraction,
   predictions per token; and the difference from the original format in points.
2. Speed, on one core (--num_workers=1, CPU seconds of the run): instances per CPU-second from the re-joined JSONL
   (split into sentences on the way) against the same corpus pre-split, and the splitter's share of the CPU time;
   the demo corpora --speed_scale times over (default 30), so that one-time start-up weighs as in a real corpus.
   With --nsmc, also NSMC's reviews as one document per line (pre-split = the splitter's own sentences written in
   the original format, so both runs make the same instances).
3. Memory: peak RSS of a one-worker run on the JSONL corpus at 1x and at --memory_scale times its size.

Each run is a subprocess (`--child`) so its CPU time and peak RSS are its own. Results: bench/results/corpus_formats.md
and .json. Vocabs are trained on the original-format corpus (Korean: cased, accents kept).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
HELD_OUT_REVIEWS = 5000
STATS = ("mean_instance_tokens", "full_length_fraction", "random_next_fraction", "masked_fraction")


def child(args: argparse.Namespace) -> None:
    """One measured create_pretraining_data run; prints its summary, CPU seconds and peak RSS as JSON."""
    from bertjax.data import create_pretraining_data as cpd  # noqa: PLC0415

    kwargs = json.loads(args.child)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    summary = cpd.create_pretraining_data(**kwargs, num_workers=1, show_progress=False, overwrite=True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"summary": summary, "cpu_s": cpu, "wall_s": time.perf_counter() - started,
                      "peak_rss_mb": after.ru_maxrss / 1024}))


def measure(**kwargs) -> dict:
    """Run create_pretraining_data(**kwargs) in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(kwargs)], capture_output=True, text=True,
                         cwd=REPO)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def documents_of(path: Path) -> list[list[str]]:
    """The documents (lists of sentence lines) of an original-format corpus."""
    return [[s for s in doc.split("\n") if s.strip()] for doc in path.read_text().split("\n\n") if doc.strip()]


_TERMINAL = tuple(".!?:;\u2026\u3002")
_CLOSING = "\"')]}\u201d\u2019\u300d\u300f"


def rejoin_paragraphs(sentences: list[str]) -> list[str]:
    """A document's sentence lines as paragraphs: sentences joined by a space; a line that does not end with
    terminal punctuation (closing quotes and brackets aside) is a title or heading and stays a paragraph alone."""
    paragraphs: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        if sentence.rstrip().rstrip(_CLOSING).endswith(_TERMINAL):
            current.append(sentence)
            continue
        if current:
            paragraphs.append(" ".join(current))
            current = []
        paragraphs.append(sentence)
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def write_formats(docs: list[list[str]], directory: Path, name: str) -> dict[str, Path]:
    """The documents in the original format and re-joined (`rejoin_paragraphs`) as paragraphs, JSONL and Parquet."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    joined = ["\n".join(rejoin_paragraphs(doc)) for doc in docs]
    paths = {"sentences": directory / f"{name}.txt", "paragraphs": directory / f"{name}.paragraphs.txt",
             "jsonl": directory / f"{name}.jsonl", "parquet": directory / f"{name}.parquet"}
    paths["sentences"].write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n")
    paths["paragraphs"].write_text("\n\n".join(joined) + "\n")
    paths["jsonl"].write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in joined))
    pq.write_table(pa.table({"text": joined}), paths["parquet"])
    return paths


def train_vocab(corpus: Path, out: Path, korean: bool, vocab_size: int) -> Path:
    from bertjax.data import vocab  # noqa: PLC0415

    return vocab.train_vocab(str(corpus), vocab_size, out, do_lower_case=not korean,
                             strip_accents=False if korean else None, show_progress=False)


def run_common(corpus: Path, vocab_file: Path, out: Path, dupe_factor: int, **extra) -> dict:
    fmt = {".paragraphs": "paragraphs"}.get(Path(corpus.stem).suffix)
    kwargs = dict(input_file=str(corpus), output_dir=str(out), vocab_file=str(vocab_file), dupe_factor=dupe_factor,
                  **({"input_format": fmt} if fmt else {}), **extra)
    return measure(**kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--nsmc", type=Path, help="git dir (or clone) of github.com/e9t/nsmc")
    parser.add_argument("--nsmc_mb", type=float, default=5.0)
    parser.add_argument("--dupe_factor", type=int, default=10, help="of the speed runs")
    parser.add_argument("--stats_dupe_factor", type=int, default=40, help="of the same-data runs")
    parser.add_argument("--seeds", default="12345,1,2", help="the same-data runs' seeds (statistics averaged)")
    parser.add_argument("--speed_scale", type=int, default=30,
                        help="the speed runs' corpus: this many copies of the demo corpus (start-up costs amortised)")
    parser.add_argument("--memory_scale", type=int, default=10)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from bertjax.data import sentences  # noqa: PLC0415

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bertjax-corpus-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.machine()}, {platform.python_version()}",
                     "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "dupe_factor": args.dupe_factor, "stats_dupe_factor": args.stats_dupe_factor,
                     "seeds": args.seeds, "speed_scale": args.speed_scale,
                     "splitters": sentences.splitter_versions(sentences.AUTO), "same_data": [], "speed": [],
                     "memory": []}
    corpora = {"English (data/demo)": (REPO / "data/demo/corpus.txt", False),
               "Korean (data/demo_ko)": (REPO / "data/demo_ko/corpus.txt", True)}
    for label, (source, korean) in corpora.items():
        name = "ko" if korean else "en"
        paths = write_formats(documents_of(source), work, name)
        vocab_file = train_vocab(paths["sentences"], work / f"vocab_{name}", korean, args.vocab_size)
        seeds = [int(seed) for seed in args.seeds.split(",")]
        runs = {fmt: [run_common(path, vocab_file, work / f"ds_{name}_{fmt}", args.stats_dupe_factor,
                                 random_seed=seed)["summary"] for seed in seeds] for fmt, path in paths.items()}
        mean = {fmt: {k: sum(r[k] for r in rs) / len(rs) for k in (*STATS, "sentences", "instances")}
                for fmt, rs in runs.items()}
        for fmt, rs in runs.items():
            results["same_data"].append({"corpus": label, "format": fmt, **mean[fmt],
                                         **{f"{k}_diff_points": (mean[fmt][k] - mean["sentences"][k])
                                            * (1 if k == STATS[0] else 100) for k in STATS},
                                         **{f"{k}_seed_spread_points": (max(r[k] for r in rs) - min(r[k] for r in rs))
                                            * (1 if k == STATS[0] else 100) for k in STATS}})
        big = {fmt: _repeated(paths[fmt], args.speed_scale) for fmt in ("sentences", "jsonl")}
        speed = {fmt: run_common(path, vocab_file, work / f"ds_{name}_{fmt}_speed", args.dupe_factor)
                 for fmt, path in big.items()}
        results["speed"].append(_speed_row(f"{label} x{args.speed_scale}", speed["sentences"], speed["jsonl"],
                                           "jsonl"))
        if not results["memory"] and not korean:
            results["memory"] = _memory_rows(paths["jsonl"], vocab_file, work, args)
    if args.nsmc:
        results["speed"].append(_nsmc_speed(args, work))
    out = REPO / "bench" / "results" / "corpus_formats"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(_report(results))
    print(out.with_suffix(".md").read_text())


def _speed_row(label: str, pre_split: dict, segmented: dict, fmt: str) -> dict:
    rate = {name: run["summary"]["instances"] / run["cpu_s"] for name, run in (("pre", pre_split),
                                                                               ("seg", segmented))}
    return {"corpus": label, "format": fmt, "instances_pre_split": pre_split["summary"]["instances"],
            "instances_segmented": segmented["summary"]["instances"], "cpu_s_pre_split": pre_split["cpu_s"],
            "cpu_s_segmented": segmented["cpu_s"], "instances_per_cpu_s_pre_split": rate["pre"],
            "instances_per_cpu_s_segmented": rate["seg"], "ratio": rate["seg"] / rate["pre"],
            "splitter_share": segmented["summary"]["segmenting_ms"] / 1000 / segmented["cpu_s"]}


def _repeated(path: Path, copies: int) -> Path:
    """A file holding `copies` copies of `path` (same name, under a directory named for the count)."""
    if copies == 1:
        return path
    out = path.parent / f"x{copies}" / path.name
    out.parent.mkdir(exist_ok=True)
    data = path.read_bytes()
    with out.open("wb") as f:
        for _ in range(copies):
            f.write(data if data.endswith(b"\n\n") or path.suffix == ".jsonl" else data + b"\n")
    return out


def _memory_rows(jsonl: Path, vocab_file: Path, work: Path, args) -> list[dict]:
    big = _repeated(jsonl, args.memory_scale)
    rows = []
    for scale, path in ((1, jsonl), (args.memory_scale, big)):
        run = run_common(path, vocab_file, work / f"ds_memory_{scale}", 1)
        rows.append({"scale": scale, "corpus_mb": path.stat().st_size / 2**20, "peak_rss_mb": run["peak_rss_mb"],
                     "instances": run["summary"]["instances"], "cpu_s": run["cpu_s"]})
    return rows


def _nsmc_speed(args, work: Path) -> dict:
    """NSMC reviews, one document per line, against the splitter's own sentences pre-split; the vocab trained on
    them (documents format) and its [UNK] rate on held-out reviews (the next HELD_OUT_REVIEWS after the sample)."""
    from data_corpora import nsmc_documents  # noqa: PLC0415

    from bertjax.data import sentences, tokenizer, vocab  # noqa: PLC0415

    docs, _ = nsmc_documents(args.nsmc, args.nsmc_mb + 1)
    every = [line for doc in docs for line in doc.split("\n") if line.strip()]
    size, reviews = 0, []
    for review in every:
        size += len(review.encode()) + 1
        if size > args.nsmc_mb * 2**20:
            break
        reviews.append(review)
    held_out = every[len(reviews):len(reviews) + HELD_OUT_REVIEWS]
    documents = work / "nsmc_reviews.txt"
    documents.write_text("".join(r + "\n" for r in reviews))
    split = sentences.SentenceSplitter(sentences.AUTO).split(reviews)
    pre = work / "nsmc_presplit.txt"
    pre.write_text("".join("\n".join(s) + "\n\n" for s in split if s))
    vocab_file = vocab.train_vocab(str(documents), args.vocab_size, work / "vocab_nsmc", input_format="documents",
                                   show_progress=False)
    tok = tokenizer.BertTokenizer.from_vocab(vocab_file)
    ids, _ = tok.encode_batch(held_out)
    jamo = sum(1 for s in split for sentence in s for c in sentence if 0x1100 <= ord(c) <= 0x11FF)
    jamo_in = sum(1 for r in reviews for c in r if 0x1100 <= ord(c) <= 0x11FF)
    seg = run_common(documents, vocab_file, work / "ds_nsmc_docs", args.dupe_factor, input_format="documents")
    base = run_common(pre, vocab_file, work / "ds_nsmc_pre", args.dupe_factor)
    row = _speed_row(f"Korean reviews (NSMC, {len(reviews):,} reviews, one per line)", base, seg, "documents")
    row.update(jamo_in_sentences=jamo, jamo_in_reviews=jamo_in, held_out_reviews=len(held_out),
               held_out_unk_rate=float((ids == tok.unk_id).mean()), vocab_strip_accents=tok.strip_accents,
               sentences_per_review=seg["summary"]["sentences"] / len(reviews))
    return row


def _report(r: dict) -> str:
    lines = ["# Corpus formats: same data, speed and memory", "",
             f"{r['machine']}; {r['date']}; `{r['command']}`; splitters {r['splitters']}.", "",
             "## Same data: re-joined corpora against the original format", "",
             f"dupe_factor {r['stats_dupe_factor']}, other settings create_pretraining_data's defaults; every number "
             f"is the mean over the seeds {r['seeds']}; the seed spread is the largest minus the smallest of them "
             "(points; tokens for the length).", "",
             "| corpus | format | sentences | instances | mean length | full-length | random next | predictions/token "
             "| diff: length (tokens) | diff: full-length (pts) | diff: random next (pts) | diff: pred/token (pts) "
             "| seed spread: length / full-length / random next / pred/token |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["same_data"]:
        lines.append(f"| {row['corpus']} | {row['format']} | {row['sentences']:,.0f} | {row['instances']:,.0f} | "
                     f"{row['mean_instance_tokens']:.1f} | {row['full_length_fraction']:.2%} | "
                     f"{row['random_next_fraction']:.2%} | {row['masked_fraction']:.2%} | "
                     + " | ".join(f"{row[k + '_diff_points']:+.2f}" for k in STATS) + " | "
                     + " / ".join(f"{row[k + '_seed_spread_points']:.2f}" for k in STATS) + " |")
    lines += ["", "## Speed on one core: with sentence splitting against pre-split", "",
              f"dupe_factor {r['dupe_factor']}; --num_workers=1; CPU seconds of the whole run (imports aside), the "
              "splitter's one-time start-up included (Kiwi: loading and warming up its model, about 1 CPU-s); the "
              f"demo corpora {r['speed_scale']} times over, so that it weighs as in a corpus of real size.", "",
              "| corpus | format | instances (pre-split / split here) | CPU s (pre-split / split here) | instances per "
              "CPU-s (pre-split / split here) | ratio | splitter's share of the CPU time |",
              "|---|---|---|---|---|---|---|"]
    for row in r["speed"]:
        lines.append(f"| {row['corpus']} | {row['format']} | {row['instances_pre_split']:,} / "
                     f"{row['instances_segmented']:,} | {row['cpu_s_pre_split']:.2f} / {row['cpu_s_segmented']:.2f} | "
                     f"{row['instances_per_cpu_s_pre_split']:,.0f} / {row['instances_per_cpu_s_segmented']:,.0f} | "
                     f"{row['ratio']:.0%} | {row['splitter_share']:.0%} |")
    for row in r["speed"]:
        if "held_out_unk_rate" in row:
            lines += ["", f"NSMC reviews given one per line (`--input_format=documents`): "
                          f"{row['sentences_per_review']:.2f} sentences per review after splitting; conjoining jamo "
                          f"in the sentences {row['jamo_in_sentences']} (in the reviews {row['jamo_in_reviews']}); "
                          f"the vocab trained on them (`python -m bertjax.data.vocab --input_format=documents`, "
                          f"defaults: accents kept for Hangul: strip_accents={row['vocab_strip_accents']}) gives "
                          f"[UNK] for {row['held_out_unk_rate']:.3%} of the tokens of {row['held_out_reviews']:,} "
                          "held-out reviews (the ones after the sample)."]
    lines += ["", "## Memory: peak RSS of a one-worker run (JSONL, English)", "",
              "| corpus scale | corpus MB | instances | peak RSS MB |", "|---|---|---|---|"]
    for row in r["memory"]:
        lines.append(f"| {row['scale']}x | {row['corpus_mb']:.1f} | {row['instances']:,} | {row['peak_rss_mb']:.0f} |")
    if len(r["memory"]) == 2:
        lines.append(f"\nPeak RSS at {r['memory'][1]['scale']}x: "
                     f"{r['memory'][1]['peak_rss_mb'] / r['memory'][0]['peak_rss_mb']:.2f}x that at 1x.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
