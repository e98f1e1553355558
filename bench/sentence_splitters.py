"""Benchmark: sentence splitters for create_pretraining_data's paragraph formats (issue 18).

    python bench/sentence_splitters.py [--nsmc GIT_DIR] [--nsmc_reviews 20000]
    python bench/sentence_splitters.py --gate_syllables   # derive bertjax.data.sentences._KiwiGated.SYLLABLES

1. True boundaries: the demo corpora (data/demo English, data/demo_ko Korean; one sentence per line), each document's
   sentence lines joined by a space into one paragraph. For each splitter: recall (share of the true boundaries it
   finds), precision (share of its boundaries that are true), sentences and M characters per CPU-second
   (time.process_time, best of 2 runs; 1 for kss and pysbd). Those slow libraries run on every k-th document.
2. NSMC movie reviews (github.com/e9t/nsmc, raw/*.json; a seeded sample, NFC): plain Kiwi is the reference; each
   Korean splitter's agreement with it (share of reviews cut at exactly the same places), recall and precision of
   Kiwi's boundaries, share of reviews cut into 2+ sentences, conjoining jamo (U+1100-U+11FF) in its output and
   speed. "kiwi, ideal gate" runs Kiwi only on windows around the boundaries plain Kiwi finds and punctuation does
   not: the least any gated use of Kiwi can cost; "punctuation rule alone" is the gate without Kiwi.

Results: bench/results/sentence_splitters.md and .json; a "## Choice" section written by hand in the .md is kept.
"""
from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import platform
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from bertjax.data import sentences  # noqa: E402

JAMO = re.compile("[\u1100-\u11ff]")
SPACE = re.compile(r"\s+")
LIBRARY = {"blingfire": "blingfire", "spacy": "spacy", "pysbd": "pysbd", "kiwi": "kiwipiepy", "kiwi_full": "kiwipiepy",
           "kss": "kss"}


def demo_paragraphs(path: Path) -> tuple[list[str], list[list[int]]]:
    """Each document's sentence lines joined by a space, and the offsets where its 2nd, 3rd, ... sentences start."""
    paragraphs, truth = [], []
    for doc in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [" ".join(line.split()) for line in doc.split("\n") if line.strip()]
        if lines:
            paragraphs.append(" ".join(lines))
            truth.append([sum(len(s) + 1 for s in lines[:i]) for i in range(1, len(lines))])
    return paragraphs, truth


def nsmc_samples(source: Path, n: int, seed: int) -> tuple[list[str], list[str], str]:
    """Two disjoint seeded samples of n reviews (NFC; the first to measure, the second to derive the gate), and where
    they came from."""
    from data_corpora import nsmc_documents
    docs, origin = nsmc_documents(source, max_mb=1e9)
    reviews = [unicodedata.normalize("NFC", r) for d in docs for r in d.split("\n") if r.strip()]
    picked = random.Random(seed).sample(range(len(reviews)), 2 * n)
    return [reviews[i] for i in picked[:n]], [reviews[i] for i in picked[n:]], origin


def cuts_of(paragraph: str, pieces: list[str]) -> list[int]:
    """Where the 2nd, 3rd, ... pieces start, counting non-whitespace characters (exact if the text is unchanged)."""
    return sentences.starts_by_count(paragraph, pieces)


def run(split, paragraphs: list[str], repeats: int) -> tuple[list[list[str]], float]:
    """split(paragraphs) -> sentences per paragraph, and the fewest CPU seconds of `repeats` runs. Kiwi's first pass
    over new text after loading is up to 3x slower (its model warming up), so Kiwi's rows need 2 runs."""
    split(paragraphs[:20])
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = split(paragraphs)
        best = min(best, time.process_time() - start)
    return out, best


def kss_split(backend: str):
    import kss
    return lambda ps: [kss.split_sentences(p, backend=backend, num_workers=1) for p in ps]


def candidates(korean: bool, nsmc: bool = False) -> list[tuple[str, object, int, int]]:
    """(name, split function, every k-th paragraph, repeats) of the splitters to measure."""
    def ours(name, language=None):
        return sentences.SentenceSplitter(name, language).split
    if not korean:
        return [("blingfire", ours("blingfire"), 1, 2), ("spacy (sentencizer, blank en)", ours("spacy", "en"), 1, 2),
                ("pysbd", ours("pysbd", "en"), 8, 1), ("auto", ours("auto"), 1, 2)]
    thin = 10 if nsmc else 8
    return [("kiwi_full (plain Kiwi)", ours("kiwi_full"), 1, 2), ("kiwi (gated Kiwi)", ours("kiwi"), 1, 2),
            ("blingfire", ours("blingfire"), 1, 2), ("spacy (sentencizer, blank xx)", ours("spacy"), 1, 2),
            ("kss punct", kss_split("punct"), thin, 1), ("kss fast", kss_split("fast"), thin, 1),
            ("kss pecab", kss_split("pecab"), 10 * thin, 1), ("auto", ours("auto"), 1, 2)]


def score(paragraphs, reference, outputs, seconds) -> dict:
    """Boundary recall and precision against `reference`, agreement, speed, and what the output did to the text."""
    found = [cuts_of(p, out) for p, out in zip(paragraphs, outputs)]
    hits = sum(len(set(f) & set(r)) for f, r in zip(found, reference))
    n_ref, n_found = sum(map(len, reference)), sum(map(len, found))
    chars = sum(map(len, paragraphs))
    text_changed = sum(SPACE.sub("", p) != SPACE.sub("", "".join(out)) for p, out in zip(paragraphs, outputs))
    return {"paragraphs": len(paragraphs), "characters": chars, "reference_boundaries": n_ref,
            "recall": hits / max(n_ref, 1), "precision": hits / max(n_found, 1),
            "agreement": sum(sorted(set(f)) == sorted(set(r)) for f, r in zip(found, reference)) / len(paragraphs),
            "multi_sentence": sum(len(out) > 1 for out in outputs) / len(paragraphs),
            "jamo_out": sum(len(JAMO.findall(s)) for out in outputs for s in out),
            "jamo_in": sum(len(JAMO.findall(p)) for p in paragraphs), "text_changed": text_changed,
            "not_nfc": sum(unicodedata.normalize("NFC", s) != s for out in outputs for s in out),
            "cpu_s": seconds, "sentences_per_s": sum(map(len, outputs)) / seconds,
            "mchars_per_s": chars / seconds / 1e6}


def ideal_gate(gated, paragraphs, reference) -> tuple[list[list[str]], float]:
    """Kiwi on windows around only the boundaries plain Kiwi finds and punctuation does not (an oracle gate)."""
    start, outputs = time.process_time(), []
    for p, ref in zip(paragraphs, reference):
        direct = [m.end() for m in gated.DIRECT.finditer(p)]
        asked = [(len(p[:c].rstrip()), c) for c in ref if c not in set(direct)]
        outputs.append(sentences._pieces(p, direct + gated.decide(p, asked)))
    return outputs, time.process_time() - start


def punctuation_rule(gated, paragraphs) -> tuple[list[list[str]], float]:
    """The gated Kiwi's punctuation rule alone, no Kiwi: what the Kiwi windows add."""
    start = time.process_time()
    outputs = [sentences._pieces(p, [m.end() for m in gated.DIRECT.finditer(p)]) for p in paragraphs]
    return outputs, time.process_time() - start


def gate_syllables(paragraphs: list[str]) -> None:
    """Print the syllables after which, before a space and a non-punctuation character, plain Kiwi ends >= 5% of
    sentences (3+ times) in `paragraphs`, and what share of such places and boundaries they cover."""
    kiwi = sentences.SentenceSplitter("kiwi_full")
    places, ends = collections.Counter(), collections.Counter()
    for p, out in zip(paragraphs, kiwi.split(paragraphs)):
        starts = set(cuts_of(p, out))
        for m in re.finditer(f"([{sentences._HANGUL}])\\s+(?=[^\\s.!?\u2026\u3002\uff0e\uff01\uff1f])", p):
            places[m.group(1)] += 1
            ends[m.group(1)] += m.end() in starts
    chosen = sorted((s for s in ends if ends[s] >= 3 and ends[s] >= 0.05 * places[s]), key=lambda s: -ends[s])
    print("".join(chosen))
    print(f"{len(chosen)} syllables: {sum(places[s] for s in chosen) / sum(places.values()):.1%} of the places, "
          f"{sum(ends[s] for s in chosen) / sum(ends.values()):.1%} of Kiwi's boundaries there")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("blingfire", "spacy", "pysbd", "kiwipiepy", "kiwipiepy_model", "kss"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, load average {[round(x, 2) for x in os.getloadavg()]}"


def table(rows: list[dict], nsmc: bool) -> list[str]:
    if nsmc:
        head = ["splitter", "library", "reviews", "agreement with Kiwi", "recall of Kiwi's boundaries", "precision",
                "reviews in 2+ sentences", "conjoining jamo out (in)", "sentences/CPU-s", "M chars/CPU-s"]
    else:
        head = ["splitter", "library", "docs", "true boundaries", "recall", "precision", "sentences/CPU-s",
                "M chars/CPU-s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["splitter"], r["library"], f"{r['paragraphs']:,}"]
        if nsmc:
            cells += [f"{r['agreement']:.1%}", f"{r['recall']:.1%}", f"{r['precision']:.1%}",
                      f"{r['multi_sentence']:.1%}", f"{r['jamo_out']} ({r['jamo_in']})"]
        else:
            cells += [f"{r['reference_boundaries']:,}", f"{r['recall']:.1%}", f"{r['precision']:.1%}"]
        cells += [f"{r['sentences_per_s']:,.0f}", f"{r['mchars_per_s']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nsmc", type=Path, default=Path("/work/.mirror/e9t+nsmc/repo/.git"))
    parser.add_argument("--nsmc_reviews", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gate_syllables", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / "bench/results/sentence_splitters")
    args = parser.parse_args()
    sample, gate_sample, origin = nsmc_samples(args.nsmc, args.nsmc_reviews, args.seed)
    if args.gate_syllables:
        return gate_syllables(gate_sample)
    results = {"machine": machine(), "versions": versions(), "nsmc_source": origin,
               "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for key, path in (("english", REPO / "data/demo/corpus.txt"), ("korean", REPO / "data/demo_ko/corpus.txt"),
                      ("nsmc", None)):
        if path:
            paragraphs, reference = demo_paragraphs(path)
        else:
            paragraphs = sample
            kiwi = sentences.SentenceSplitter("kiwi_full")
            reference = [cuts_of(p, out) for p, out in zip(paragraphs, kiwi.split(paragraphs))]
        rows = []
        for name, split, every, repeats in candidates(key != "english", nsmc=key == "nsmc"):
            ps, ref = paragraphs[::every], reference[::every]
            outputs, seconds = run(split, ps, repeats)
            library = LIBRARY.get(name.split()[0]) or LIBRARY[sentences.KOREAN_SPLITTER if key != "english" else
                                                              sentences.DEFAULT_SPLITTER]
            rows.append({"splitter": name, "library": library, **score(ps, ref, outputs, seconds)})
            print(key, rows[-1], flush=True)
        if key == "nsmc":
            gated = sentences._KiwiGated()
            (_, seconds), (outputs, again) = [ideal_gate(gated, paragraphs, reference) for _ in range(2)]
            seconds = min(seconds, again)
            rule, rule_seconds = punctuation_rule(gated, paragraphs)
            rows.insert(2, {"splitter": "kiwi's punctuation rule alone (no Kiwi)", "library": "",
                            **score(paragraphs, reference, rule, rule_seconds)})
            rows.insert(2, {"splitter": "kiwi, ideal gate (a bound)", "library": "kiwipiepy",
                            **score(paragraphs, reference, outputs, seconds)})
        results[key] = rows
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.results.with_suffix(".md"))


def write_markdown(results: dict, path: Path) -> None:
    v = results["versions"]
    kept = path.read_text().split("\n## Choice", 1) if path.exists() else []
    lines = ["# Sentence splitters", "",
             f"{results['machine']}; Python {v['python']}; "
             + ", ".join(f"{k} {x}" for k, x in v.items() if k != "python")
             + f". Made by `{results['command']}` ({results['date']}). CPU seconds (time.process_time) of one process; "
             "the machine is shared, so compare rows of one table, which ran on the same text minutes apart.", "",
             "## English: data/demo/corpus.txt, each document's sentence lines joined by a space", "",
             *table(results["english"], False), "",
             "## Korean: data/demo_ko/corpus.txt, joined the same way", "", *table(results["korean"], False), "",
             f"## Korean reviews: {results['nsmc_source']}; a seeded sample of "
             f"{results['nsmc'][0]['paragraphs']:,} reviews, NFC", "",
             "Plain Kiwi (kiwi_full) is the reference: no true boundaries are known here.", "",
             *table(results["nsmc"], True), "",
             "docs/reviews below the corpus's count: the slow libraries ran on every k-th one. Boundaries are the "
             "places a next sentence starts (the offset of its first character); every splitter's sentences give back "
             "the text's non-whitespace characters unchanged (checked: the json's text_changed and not_nfc are 0).",
             ""]
    path.write_text("\n".join(lines) + ("\n## Choice" + kept[1] if len(kept) == 2 else ""))


if __name__ == "__main__":
    main()
