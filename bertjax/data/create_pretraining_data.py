"""Text -> a TFDS ArrayRecord dataset of BERT pretraining examples (MLM + NSP), streaming and parallel.

    python -m bertjax.data.create_pretraining_data --input_file='corpus/*.txt' --output_dir=data/wiki128 \\
        --vocab_file=vocab/vocab.txt [--max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=10 ...]
    python -m bertjax.data.create_pretraining_data --input_file='wiki/*.jsonl.zst' --text_field=text ...
    python -m bertjax.data.create_pretraining_data --input_file=reviews.txt.gz --input_format=documents ...

Input: the original format (one sentence per line, a blank line between documents), or paragraph lines, one
document per line, JSONL or Parquet records, any of them .gz or .zst (`bertjax.data.corpus_formats`); every format
but the original is cleaned and split into sentences by --sentence_splitter (`bertjax.data.corpus`,
`bertjax.data.sentences`; auto: Kiwi for Korean, the multilingual one for the rest).

The flags and defaults are the original's; the algorithm is the original's (see `bertjax.data.instances`), with
these differences:
* the corpus is processed in shards of about --shard_size_mb of whole documents (default: 1/16 of the corpus,
  0.25 to 1 MB), so memory stays flat however large the corpus; the random "next sentence" document is drawn
  from the same shard (not the whole corpus), and instances are shuffled within their shard (the input pipeline
  shuffles globally); a document ends at the end of its file;
* each sentence is tokenized once for all dupe passes; truncation's per-token coin flips are drawn as one
  binomial count per side (same distribution);
* text: invalid UTF-8 is replaced and counted; lines longer than 1 MB are cut into several sentences;
  private-use/unassigned characters are dropped by the tokenizer (see `bertjax.data.tokenizer`);
* shards run in up to --num_workers processes, this one included (one per worker_pool.MIN_MB_PER_WORKER MB of
  text at most, so a small corpus runs in this process alone; see `bertjax.data.worker_pool`); every shard's
  randomness comes from numpy SeedSequence([random_seed, shard index]), so the dataset is identical for a given
  seed whatever the number of workers;
* --masking=dynamic stores unmasked pairs and the pipeline draws fresh masks every epoch;
* --whole_word_masking=per_word draws 80/10/10 once per word (google-research/bert#910);
* --eval_fraction holds out whole documents as an "eval" split;
* --pack puts several pairs in one row (up to --max_pairs_per_seq), each with its own [CLS], NSP label and masks
  (`bertjax.data.packing`): the pairs and masks are those of the unpacked dataset, with less padding.

The output directory is written as a temporary sibling and renamed at the end, so a failed run leaves nothing
that looks like a dataset. Re-running with the same settings and inputs (paths and sizes) finds the dataset
already there and does nothing; an output_dir holding a dataset made with other settings is an error unless
--overwrite is given (see `bertjax.data.staged_output`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import MISSING, asdict, fields
from typing import Any, Sequence

from bertjax import paths
from bertjax.data import catalog, corpus, corpus_formats, masking, sentences, shard_worker, staged_output, text
from bertjax.data import worker_pool
from bertjax.data.tokenizer import BertTokenizer
from bertjax.data.vocab_files import read_trained_with, vocab_sha256
from bertjax.errors import VERBOSE_HELP, BertjaxError, OneLineArgumentParser, exit_on_bad_input, flag_bool

MAX_AUTO_SHARD_MB = 1.0  # automatic shard size: corpus / 16, between these bounds
MIN_AUTO_SHARD_MB = 0.25
DEFAULT_MAX_NON_TEXT_FRACTION = 0.1  # an input file more than this invalid UTF-8 / control characters is refused
DEFAULT_MAX_PAIRS_PER_SEQ = 8  # --pack: pairs in one row at most


# ----------------------------------------------------------------------------------------------------------------
# The whole run


def _check_args(max_seq_length: int, max_predictions_per_seq: int, masked_lm_prob: float, short_seq_prob: float,
                dupe_factor: int, masking_mode: str, whole_word: str, eval_fraction: float, num_workers: int,
                shard_size_mb: float | None, max_pairs_per_seq: int = 0) -> None:
    if max_seq_length < 5:
        raise BertjaxError(f"max_seq_length={max_seq_length} is too small; [CLS] A [SEP] B [SEP] needs at least 5")
    masking.check_masking_args(masked_lm_prob=masked_lm_prob, max_predictions_per_seq=max_predictions_per_seq,
                               seq_length=max_seq_length, whole_word=whole_word)
    if not 0.0 <= short_seq_prob <= 1.0:
        raise BertjaxError(f"short_seq_prob={short_seq_prob} must be in [0, 1]; the original uses 0.1")
    if dupe_factor < 1:
        raise BertjaxError(f"dupe_factor={dupe_factor} must be >= 1")
    if masking_mode not in catalog.MASKING_MODES:
        raise BertjaxError(f"masking={masking_mode!r} must be one of {', '.join(catalog.MASKING_MODES)}")
    if max_pairs_per_seq < 0:
        raise BertjaxError(f"max_pairs_per_seq={max_pairs_per_seq} must be >= 0 (0: no packing)")
    if max_pairs_per_seq and masking_mode != "static":
        raise BertjaxError("--pack needs --masking=static (a packed row holds each pair's own masks); drop one of "
                           "the two flags")
    if not 0.0 <= eval_fraction < 1.0:
        raise BertjaxError(f"eval_fraction={eval_fraction} must be in [0, 1)")
    if num_workers < 1:
        raise BertjaxError(f"num_workers={num_workers} must be >= 1")
    if shard_size_mb is not None and shard_size_mb <= 0:
        raise BertjaxError(f"shard_size_mb={shard_size_mb} must be > 0")


def auto_shard_mb(total_bytes: int) -> float:
    """Default shard size: about 1/16 of the corpus (so small corpora still spread over workers), 0.25-1 MB."""
    return float(min(MAX_AUTO_SHARD_MB, max(MIN_AUTO_SHARD_MB, total_bytes / 16 / (1 << 20))))


def _resolve_whole_word(do_whole_word_mask: bool, whole_word_masking: str | None) -> str:
    if whole_word_masking is None:
        return "original" if do_whole_word_mask else "none"
    if do_whole_word_mask and whole_word_masking == "none":
        raise BertjaxError("do_whole_word_mask=True conflicts with whole_word_masking='none'; pass only one of them")
    return whole_word_masking


def summarize(stats: dict[str, int], num_examples: dict[str, int], seconds: float,
              max_seq_length: int) -> dict[str, Any]:
    """The run summary (printed, and stored in the manifest as `statistics`)."""
    instance_count = max(1, stats["instances"])
    return {
        **{k: int(v) for k, v in stats.items()},
        "num_examples": dict(num_examples),
        "unk_rate": stats["unk_tokens"] / max(1, stats["tokens"]),
        "random_next_fraction": stats["random_next"] / instance_count,
        "short_target_fraction": stats["short_target"] / instance_count,
        "masked_fraction": stats["masked_tokens"] / max(1, stats["instance_tokens"]),
        "mean_instance_tokens": stats["instance_tokens"] / instance_count,
        "full_length_fraction": stats["full_length"] / instance_count,
        "padding_fraction": 1.0 - stats["instance_tokens"] / max(1, stats["rows"] * max_seq_length),
        "seconds": round(seconds, 3),
        "instances_per_second": round(stats["instances"] / max(seconds, 1e-9), 1),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines."""
    return (f"documents {summary['documents']:,} ({summary['documents_with_2plus_sentences']:,} with >= 2 sentences), "
            f"sentences {summary['sentences']:,}, tokens {summary['tokens']:,}, [UNK] rate {summary['unk_rate']:.4%}\n"
            f"instances {summary['instances']:,} in {summary['rows']:,} rows {summary['num_examples']}, padding "
            f"{summary['padding_fraction']:.1%}, mean length {summary['mean_instance_tokens']:.1f}, random next {summary['random_next_fraction']:.2%}, "
            f"short target {summary['short_target_fraction']:.2%}, masked {summary['masked_fraction']:.2%}\n"
            f"invalid UTF-8 lines {summary['invalid_utf8_lines']:,}, split long lines {summary['split_long_lines']:,}, "
            f"{summary['seconds']:.1f} s, {summary['instances_per_second']:,.0f} instances/s"
            + "".join(f", {key.replace('_', ' ')} {summary[key]:,}" for key in corpus.COUNT_KEYS[:-1] if summary[key])
            + (f"\nsentence splitting {summary['segmenting_ms'] / 1000:.1f} CPU-s" if summary["segmenting_ms"] else ""))


def create_pretraining_data(
    input_file: str | Sequence[str],
    output_dir: str | os.PathLike,
    vocab_file: str | os.PathLike,
    *,
    do_lower_case: bool | None = None,
    strip_accents: bool | None = None,
    do_whole_word_mask: bool = False,
    whole_word_masking: str | None = None,
    max_seq_length: int = 128,
    max_predictions_per_seq: int = 20,
    masked_lm_prob: float = 0.15,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 10,
    random_seed: int = 12345,
    masking: str = "static",
    eval_fraction: float = 0.0,
    num_workers: int | None = None,
    shard_size_mb: float | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    max_non_text_fraction: float = DEFAULT_MAX_NON_TEXT_FRACTION,
    max_pairs_per_seq: int = 0,
    input_format: str = corpus_formats.AUTO,
    text_field: str = corpus.DEFAULT_TEXT_FIELD,
    sentence_splitter: str = sentences.AUTO,
    language: str | None = None,
    dedup_documents: bool = False,
    min_document_sentences: int = 0,
    skip_bad_records: bool = False,
) -> dict[str, Any]:
    """Build the dataset at output_dir (see module doc) and return the summary (also stored in the manifest).

    do_lower_case / strip_accents default to the settings stored beside the vocab (tokenizer_config.json).
    shard_size_mb defaults to auto_shard_mb(corpus size): it depends on the corpus only, never on num_workers.
    An input file whose first MB is more than max_non_text_fraction invalid UTF-8 or control characters (a binary
    file given by mistake) is refused. max_pairs_per_seq > 0 packs up to that many pairs a row (--pack).
    Raises BertjaxError for bad input; output_dir is then left as it was.
    """
    from tqdm import tqdm  # noqa: PLC0415  (worker processes re-import this module when it runs as the CLI)

    num_workers = num_workers or os.cpu_count() or 1
    whole_word = _resolve_whole_word(do_whole_word_mask, whole_word_masking)
    _check_args(max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob, dupe_factor, masking,
                whole_word, eval_fraction, num_workers, shard_size_mb, max_pairs_per_seq)
    files = text.expand_input_files(input_file)
    spec = corpus.corpus_spec(files, input_format, text_field, sentence_splitter, language, dedup_documents,
                              min_document_sentences, skip_bad_records)
    if spec.input_format != corpus_formats.PARQUET:
        text.check_is_text(files, max_non_text_fraction, corpus_formats.text_sample)
    sizes = [text.file_size(f) for f in files]
    total_bytes = sum(sizes)
    if total_bytes == 0:
        raise BertjaxError(f"input {input_file!r} is empty; pass text files with one sentence per line and blank "
                           "lines between documents, or another --input_format")
    if shard_size_mb is None:
        shard_size_mb = auto_shard_mb(total_bytes)
    workers = worker_pool.prepare_workers(num_workers, total_bytes, int(shard_size_mb * (1 << 20)))
    tok = BertTokenizer.from_vocab(vocab_file, do_lower_case=do_lower_case, strip_accents=strip_accents)
    settings = shard_worker.Settings(
        vocab_sha256=vocab_sha256(tok.vocab_path), vocab_size=tok.vocab_size, do_lower_case=tok.do_lower_case,
        strip_accents=tok.strip_accents, max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
        masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob, dupe_factor=dupe_factor, random_seed=random_seed,
        masking=masking, whole_word_mask=whole_word, eval_fraction=eval_fraction,
        shard_bytes=int(shard_size_mb * (1 << 20)),
        inputs=tuple((os.fspath(f), size) for f, size in zip(files, sizes)), max_pairs_per_seq=max_pairs_per_seq,
        corpus=spec)
    output = paths.path(output_dir)
    existing = staged_output.existing_dataset(output, asdict(settings), overwrite, _setting_defaults())
    if existing is not None:
        print(f"{output} already holds this dataset (same settings and inputs); nothing to do "
              "(pass --overwrite to rebuild it)", file=sys.stderr)
        return existing["statistics"]

    started = time.perf_counter()
    with staged_output.staging_dir(output) as staging:
        init_args = (str(tok.vocab_path), settings, str(staging))
        keep = (_first_copies(files, total_bytes, settings, workers, init_args, tok, show_progress)
                if dedup_documents else None)
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="create_pretraining_data",
                   disable=not show_progress, file=sys.stderr)
        made = {"instances": 0}

        def progress(num_bytes: int, result: shard_worker.ShardResult) -> None:
            made["instances"] += result.stats["instances"]
            bar.update(num_bytes)
            bar.set_postfix(instances=made["instances"], refresh=False)

        results = worker_pool.run_shards(_shards(files, settings, keep), workers, init_args, tok, progress)
        bar.close()
        stats = {k: sum(r.stats[k] for r in results) for k in shard_worker.STAT_KEYS}
        if stats["documents_with_2plus_sentences"] == 0:
            raise BertjaxError(f"input {input_file!r} has no document with at least 2 sentences; "
                               + ("put one sentence per line and separate documents with blank lines"
                                  if not spec.splits_sentences else
                                  f"read as --input_format={spec.input_format}, split by {spec.sentence_splitter}: "
                                  "check --input_format, or give longer documents"))
        split_shards = {split: [r.files[split] for r in results if split in r.files] for split in ("train", "eval")}
        split_shards = {s: files for s, files in split_shards.items() if sum(n for _, n in files) > 0}
        if "train" not in split_shards:
            raise BertjaxError(f"input {input_file!r} gave 0 training instances; give more text or lower "
                               "--eval_fraction")
        if eval_fraction > 0 and "eval" not in split_shards:
            raise BertjaxError(f"--eval_fraction={eval_fraction} held out none of the {stats['documents']} documents "
                               f"of {input_file!r} (each document is held out with that probability); raise "
                               "--eval_fraction or give more documents")
        num_examples = {s: sum(n for _, n in files) for s, files in split_shards.items()}
        summary = summarize(stats, num_examples, time.perf_counter() - started, max_seq_length)
        manifest = {
            "vocab_size": settings.vocab_size, "vocab_sha256": settings.vocab_sha256,
            "vocab_trained_with": read_trained_with(tok.vocab_path),
            "do_lower_case": settings.do_lower_case, "strip_accents": settings.strip_accents,
            "max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions_per_seq,
            "masking": masking, "masked_lm_prob": masked_lm_prob, "whole_word_mask": whole_word,
            "random_seed": random_seed, "dupe_factor": dupe_factor, "short_seq_prob": short_seq_prob,
            "eval_fraction": eval_fraction, "random_next_scope": "shard", "max_pairs_per_seq": max_pairs_per_seq,
            "settings": asdict(settings),
            "statistics": summary,
        }
        catalog.finalize_dataset(staging, split_shards, manifest, vocab_file=tok.vocab_path)
        staged_output.replace_dir(staging, output)
    return summary


def _shards(files: Sequence[Any], settings: shard_worker.Settings, keep: list | None = None):
    """The corpus's shards (`corpus_formats.plan_shards`), each told which documents to keep (--dedup_documents)."""
    for shard in corpus_formats.plan_shards(files, settings.corpus.input_format, settings.shard_bytes,
                                            settings.corpus.text_field):
        if keep is not None:
            shard.keep = keep[shard.index]
        yield shard


def _first_copies(files: Sequence[Any], total_bytes: int, settings: shard_worker.Settings, workers: int,
                  init_args: tuple, tok, show_progress: bool) -> list:
    """--dedup_documents' first pass: every document hashed, in the workers; per shard, which documents to keep."""
    from tqdm import tqdm  # noqa: PLC0415  (see create_pretraining_data)

    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="dedup: hashing documents",
              disable=not show_progress, file=sys.stderr) as bar:
        hashed = worker_pool.run_shards(_shards(files, settings), workers, init_args, tok,
                                        lambda num_bytes, _: bar.update(num_bytes), work=shard_worker.hash_shard)
    return corpus.keep_first([result.hashes for result in hashed])


def _setting_defaults() -> dict[str, Any]:
    """The settings added since the first datasets, with the values those datasets were made with."""
    defaults = {f.name: f.default for f in fields(shard_worker.Settings) if f.default is not MISSING}
    return {name: asdict(value) if hasattr(value, "__dataclass_fields__") else value
            for name, value in defaults.items()}


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The original flags (absl style `--flag=value` works) plus the bertjax ones."""
    p = OneLineArgumentParser(prog="python -m bertjax.data.create_pretraining_data", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="input files: globs and comma-separated lists")
    p.add_argument("--input_format", choices=(corpus_formats.AUTO, *corpus_formats.FORMATS),
                   default=corpus_formats.AUTO,
                   help="sentences: the original (one sentence per line, blank line between documents); paragraphs: "
                        "paragraph lines, blank line between documents; documents: one document per line; jsonl; "
                        "parquet. auto: by file name (.jsonl/.json/.ndjson, .parquet, else sentences); .gz/.zst "
                        "are decompressed")
    p.add_argument("--text_field", default=corpus.DEFAULT_TEXT_FIELD,
                   help="JSONL field / Parquet column holding a document's text")
    p.add_argument("--sentence_splitter", choices=(sentences.AUTO, *sentences.SPLITTERS), default=sentences.AUTO,
                   help="splits every format but the original into sentences; auto: by the script of the text "
                        "(Korean / other), or by --language")
    p.add_argument("--language", default=None, help="ISO code of the corpus language (e.g. en, ko, de) for the "
                                                     "sentence splitter; default: by script")
    p.add_argument("--dedup_documents", action="store_true",
                   help="drop exact-duplicate documents (after whitespace/NFC cleaning), keeping the first")
    p.add_argument("--min_document_sentences", type=int, default=0, help="drop documents with fewer sentences")
    p.add_argument("--skip_bad_records", action="store_true",
                   help="skip (and count) JSONL records that are not JSON objects with a text field, instead of "
                        "stopping")
    p.add_argument("--output_dir", required=True, help="dataset directory to create (TFDS ArrayRecord)")
    p.add_argument("--vocab_file", required=True, help="vocab.txt (or its directory) the model will be trained with")
    p.add_argument("--do_lower_case", type=flag_bool, nargs="?", const=True, default=None,
                   help="lower-case the text; default: the setting stored in tokenizer_config.json beside the vocab")
    p.add_argument("--strip_accents", type=flag_bool, nargs="?", const=True, default=None,
                   help="strip accents (NFD; decomposes Hangul); default: stored setting, else do_lower_case")
    p.add_argument("--do_whole_word_mask", type=flag_bool, nargs="?", const=True, default=False,
                   help="whole-word masking as the original (same as --whole_word_masking=original)")
    p.add_argument("--whole_word_masking", choices=masking.WHOLE_WORD_MODES, default=None,
                   help="none | original (80/10/10 per wordpiece) | per_word (one 80/10/10 draw per word)")
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--random_seed", type=int, default=12345)
    p.add_argument("--dupe_factor", type=int, default=10, help="passes over the input, each with other masks/pairs")
    p.add_argument("--masked_lm_prob", type=float, default=0.15)
    p.add_argument("--short_seq_prob", type=float, default=0.1,
                   help="probability of a shorter target length (decided per document per pass)")
    p.add_argument("--masking", choices=catalog.MASKING_MODES, default="static",
                   help="static: masks stored; dynamic: unmasked pairs stored, the pipeline masks every epoch")
    p.add_argument("--eval_fraction", type=float, default=0.0, help="fraction of documents held out as split 'eval'")
    p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1,
                   help=f"processes at most, this one included (one per {worker_pool.MIN_MB_PER_WORKER:g} MB of "
                        "text; 1: no worker processes)")
    p.add_argument("--shard_size_mb", type=float, default=None,
                   help="text per shard; the random next document is drawn within a shard "
                        f"(default: corpus/16, between {MIN_AUTO_SHARD_MB} and {MAX_AUTO_SHARD_MB} MB)")
    p.add_argument("--pack", action="store_true",
                   help="pack several pairs into each row (block-diagonal attention, one [CLS] and NSP label per pair)")
    p.add_argument("--max_pairs_per_seq", type=int, default=DEFAULT_MAX_PAIRS_PER_SEQ,
                   help="with --pack: pairs in one row at most")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset made with other settings")
    p.add_argument("--max_non_text_fraction", type=float, default=DEFAULT_MAX_NON_TEXT_FRACTION,
                   help="refuse an input file whose first MB has more invalid UTF-8 or control characters than this")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return p.parse_args(argv)


@exit_on_bad_input
def main(argv: Sequence[str] | None = None) -> None:
    """Run from the command line and print the summary."""
    args = parse_args(argv)
    if args.pack and args.max_pairs_per_seq < 1:
        raise BertjaxError(f"--max_pairs_per_seq={args.max_pairs_per_seq} must be >= 1 with --pack")
    summary = create_pretraining_data(
        args.input_file, args.output_dir, args.vocab_file, do_lower_case=args.do_lower_case,
        strip_accents=args.strip_accents, do_whole_word_mask=args.do_whole_word_mask,
        whole_word_masking=args.whole_word_masking, max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq, masked_lm_prob=args.masked_lm_prob,
        short_seq_prob=args.short_seq_prob, dupe_factor=args.dupe_factor, random_seed=args.random_seed,
        masking=args.masking, eval_fraction=args.eval_fraction, num_workers=args.num_workers,
        shard_size_mb=args.shard_size_mb, overwrite=args.overwrite, show_progress=not args.no_progress,
        max_non_text_fraction=args.max_non_text_fraction,
        max_pairs_per_seq=args.max_pairs_per_seq if args.pack else 0, input_format=args.input_format,
        text_field=args.text_field, sentence_splitter=args.sentence_splitter, language=args.language,
        dedup_documents=args.dedup_documents, min_document_sentences=args.min_document_sentences,
        skip_bad_records=args.skip_bad_records)
    print(format_summary(summary))


if __name__ == "__main__":
    main()
