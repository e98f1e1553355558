"""Train a WordPiece vocab with `tokenizers`: vocab.txt plus tokenizer_config.json (the casing) in one directory.

    python -m bertjax.data.vocab --input 'corpus/*.txt' --vocab_size 30522 --output vocab_dir [--no-lowercase]
    python -m bertjax.data.vocab --input 'reviews/*.jsonl.gz' --text_field review --dedup_documents ...

Special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. Text is read line by line with invalid
UTF-8 replaced; it is normalised and pre-tokenised exactly as `bertjax.data.tokenizer.BertTokenizer` will.
The input formats are create_pretraining_data's (`bertjax.data.corpus_formats`): every format but the original is
cleaned as there (NFC, whitespace; `bertjax.data.corpus`) and read paragraph by paragraph, unsplit: sentence
boundaries do not change WordPiece's word counts, since words never cross whitespace. --dedup_documents counts each
distinct document once, as create_pretraining_data keeps it once.

Deterministic: the same corpus, flags and `tokenizers` version give the same bytes, whatever the thread count (the
trainer runs twice; see `_seed_pieces`). tokenizer_config.json records the `tokenizers` version, since another
release may merge differently.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
from typing import Iterator, Sequence

import tokenizers
from etils.epath import Path
from tokenizers import Tokenizer, pre_tokenizers, trainers
from tokenizers.models import WordPiece

from bertjax import paths
from bertjax.data import corpus, corpus_formats, sentences, text, tokenizer, vocab_files
from bertjax.errors import VERBOSE_HELP, BertjaxError, OneLineArgumentParser, exit_on_bad_input

TRAIN_BATCH_LINES = 1000


READ_SHARD_BYTES = 1 << 20  # text read at a time from formats other than the original


def _line_batches(files: Sequence[Path], spec: corpus.CorpusSpec) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in _lines(files, spec):
        batch.append(line)
        if len(batch) >= TRAIN_BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def _lines(files: Sequence[Path], spec: corpus.CorpusSpec) -> Iterator[str]:
    """The non-blank lines (original format) or cleaned paragraphs of the corpus, once per distinct document with
    --dedup_documents."""
    if spec.input_format == corpus_formats.SENTENCES and not spec.dedup_documents:
        stats = text.TextStats()
        for path in files:
            yield from (line for line in text.iter_lines(path, stats) if line.strip())
        return
    seen: set[int] = set()
    for shard in corpus_formats.plan_shards(files, spec.input_format, READ_SHARD_BYTES, spec.text_field):
        for document in corpus.shard_documents(shard, spec, text.TextStats(), dict.fromkeys(corpus.COUNT_KEYS, 0)):
            if spec.dedup_documents:
                digest = corpus.document_hash(document)
                if digest in seen:
                    continue
                seen.add(digest)
            yield from document


HANGUL_SAMPLE_LINES = 200  # lines (paragraphs) looked at to decide whether a corpus is mostly Korean


def _mostly_hangul(files: Sequence[Path], spec: corpus.CorpusSpec) -> bool:
    """Whether most of the corpus's first HANGUL_SAMPLE_LINES lines are mostly Hangul."""
    votes = [sentences.is_mostly_hangul(line) for line in itertools.islice(_lines(files, spec), HANGUL_SAMPLE_LINES)]
    return 2 * sum(votes) > len(votes)


def train_vocab(input_files: str | Sequence[str], vocab_size: int, output_dir: str | os.PathLike, *,
                do_lower_case: bool = True, strip_accents: bool | None = None, min_frequency: int = 2,
                show_progress: bool = True, input_format: str = corpus_formats.AUTO,
                text_field: str = corpus.DEFAULT_TEXT_FIELD, dedup_documents: bool = False,
                skip_bad_records: bool = False) -> Path:
    """Train WordPiece on the files named by `input_files` (globs); returns the path of vocab.txt.

    strip_accents defaults to do_lower_case (the original), except for a mostly Hangul corpus (then False: NFD would
    split syllables into jamo); the casing is stored in tokenizer_config.json. input_format, text_field,
    dedup_documents and skip_bad_records read the corpus as create_pretraining_data does.
    The directory is written atomically (a temporary sibling renamed at the end).
    """
    files = text.expand_input_files(input_files)
    spec = corpus.corpus_spec(files, input_format, text_field, None, dedup_documents=dedup_documents,
                              skip_bad_records=skip_bad_records)
    if paths.path(output_dir).is_file():
        raise BertjaxError(f"--output {output_dir} is a file; pass a directory for vocab.txt and tokenizer_config.json")
    if vocab_size < len(vocab_files.SPECIAL_TOKENS) + 1:
        raise BertjaxError(f"vocab_size={vocab_size} is too small; it must exceed the {len(vocab_files.SPECIAL_TOKENS)} "
                           "special tokens (BERT uses 30522)")
    strip = do_lower_case if strip_accents is None else strip_accents
    if strip_accents is None and strip and _mostly_hangul(files, spec):
        strip = False
        print("the corpus is mostly Hangul: accents are not stripped (NFD would split every syllable into jamo); "
              "pass --strip_accents to strip them anyway", file=sys.stderr)
    # Two passes make the result deterministic (huggingface/tokenizers#1794): the first finds the characters and the
    # continuing-subword pieces, the second trains with them seeded in a fixed order (see _seed_pieces).
    seeds = _seed_pieces(_train_wordpiece(files, spec, do_lower_case, strip, len(vocab_files.SPECIAL_TOKENS) + 1,
                                          min_frequency, vocab_files.SPECIAL_TOKENS, show_progress=False))
    if not seeds:
        raise BertjaxError(f"input {input_files!r} holds no text to learn a vocab from; pass non-empty text files")
    vocab = _train_wordpiece(files, spec, do_lower_case, strip, vocab_size, min_frequency,
                             (*vocab_files.SPECIAL_TOKENS, *seeds), show_progress)

    output = paths.path(output_dir)
    if paths.is_remote(output):  # objects appear whole: written locally, uploaded with vocab.txt last
        with tempfile.TemporaryDirectory(prefix="bertjax-vocab-") as local:
            _write_vocab_files(Path(local), vocab, do_lower_case, strip)
            paths.upload_tree(local, output, last=[vocab_files.VOCAB_FILE])
        return output / vocab_files.VOCAB_FILE
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        _write_vocab_files(staging, vocab, do_lower_case, strip)
        output.mkdir(exist_ok=True)
        for name in (vocab_files.VOCAB_FILE, vocab_files.CONFIG_FILE):
            os.replace(staging / name, output / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output / vocab_files.VOCAB_FILE


def _train_wordpiece(files: Sequence[Path], spec: corpus.CorpusSpec, do_lower_case: bool, strip: bool,
                     vocab_size: int, min_frequency: int, first_pieces: Sequence[str],
                     show_progress: bool) -> list[str]:
    """One run of `tokenizers`' WordPiece trainer over the corpus: its vocab in id order, `first_pieces` first."""
    backend = Tokenizer(WordPiece(unk_token=vocab_files.UNK, continuing_subword_prefix=tokenizer.CONTINUATION_PREFIX,
                                  max_input_chars_per_word=vocab_files.MAX_INPUT_CHARS_PER_WORD))
    backend.normalizer = tokenizer.build_normalizer(do_lower_case, strip)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(first_pieces), show_progress=show_progress,
                                        continuing_subword_prefix=tokenizer.CONTINUATION_PREFIX)
    backend.train_from_iterator(_line_batches(files, spec), trainer=trainer)
    return [token for token, _ in sorted(backend.get_vocab().items(), key=lambda kv: kv[1])]


def _seed_pieces(first_pass_vocab: Sequence[str]) -> list[str]:
    """The characters, then the continuing-subword characters (##c), each in code-point order, from a first pass
    that stopped before any merge.

    Why: the trainer (tokenizers' BpeTrainer, which WordPiece training runs) gives the ##c pieces their ids while
    iterating a hash map of the words, so their ids differ from run to run, and those ids break ties between merges
    of equal count (`Merge::cmp`): the same corpus gave different vocabs (huggingface/tokenizers#1794, fix proposed
    in PR #2066). Pieces passed first, as special tokens are, keep their given ids, and every character the trainer
    would add is among them, so nothing is left to hash order. The characters already come sorted from the trainer
    (`compute_alphabet`); passing them too keeps the layout of an unseeded vocab: specials, characters, ##
    characters, merges. The vocab then depends only on the corpus, the flags and the `tokenizers` version (whose
    merge rules could change between releases; tokenizer_config.json records it).
    """
    pieces = [t for t in first_pass_vocab if t not in vocab_files.SPECIAL_TOKENS]
    prefix = tokenizer.CONTINUATION_PREFIX
    continuing = sorted((t for t in pieces if t.startswith(prefix) and len(t) == len(prefix) + 1),
                        key=lambda t: ord(t[-1]))
    characters = sorted((t for t in pieces if len(t) == 1), key=ord)
    if len(characters) + len(continuing) != len(pieces):
        raise AssertionError(f"the first pass merged pieces: {sorted(set(pieces) - set(characters) - set(continuing))}")
    return characters + continuing


def _write_vocab_files(directory: Path, vocab: list[str], do_lower_case: bool, strip: bool) -> None:
    (directory / vocab_files.VOCAB_FILE).write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    vocab_files.write_tokenizer_config(directory, do_lower_case, strip,
                                       trained_with={"tokenizers": tokenizers.__version__})


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags of the vocab trainer."""
    parser = OneLineArgumentParser(prog="python -m bertjax.data.vocab", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="corpus file(s): a glob or a comma-separated list of globs")
    parser.add_argument("--input_format", choices=(corpus_formats.AUTO, *corpus_formats.FORMATS),
                        default=corpus_formats.AUTO, help="as create_pretraining_data's --input_format")
    parser.add_argument("--text_field", default=corpus.DEFAULT_TEXT_FIELD,
                        help="JSONL field / Parquet column holding a document's text")
    parser.add_argument("--dedup_documents", action="store_true", help="count each distinct document once")
    parser.add_argument("--skip_bad_records", action="store_true",
                        help="skip JSONL records that are not JSON objects with a text field, instead of stopping")
    parser.add_argument("--vocab_size", type=int, required=True, help="number of vocab entries, specials included")
    parser.add_argument("--output", required=True, help="directory for vocab.txt and tokenizer_config.json")
    parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                        help="lower-case text (uncased vocab); --no-lowercase for a cased vocab")
    parser.add_argument("--strip_accents", action=argparse.BooleanOptionalAction, default=None,
                        help="strip accents (NFD; decomposes Hangul); default: same as --lowercase, but off for a "
                             "mostly Hangul corpus")
    parser.add_argument("--min_frequency", type=int, default=2, help="minimum count of a merged piece")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: Sequence[str] | None = None) -> None:
    """Train a vocab from the command line."""
    args = parse_args(argv)
    path = train_vocab(args.input, args.vocab_size, args.output, do_lower_case=args.lowercase,
                       strip_accents=args.strip_accents, min_frequency=args.min_frequency,
                       input_format=args.input_format, text_field=args.text_field,
                       dedup_documents=args.dedup_documents, skip_bad_records=args.skip_bad_records)
    size = len(path.read_text(encoding="utf-8").splitlines())
    print(f"wrote {path} ({size} tokens) and {path.parent / vocab_files.CONFIG_FILE}")


if __name__ == "__main__":
    main()
