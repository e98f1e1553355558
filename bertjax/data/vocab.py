"""Train a WordPiece vocab with `tokenizers`: vocab.txt plus tokenizer_config.json (the casing) in one directory.

    python -m bertjax.data.vocab --input 'corpus/*.txt' --vocab_size 30522 --output vocab_dir [--no-lowercase]

Special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. Text is read line by line with invalid
UTF-8 replaced; it is normalised and pre-tokenised exactly as `bertjax.data.tokenizer.BertTokenizer` will.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Iterator, Sequence

from etils.epath import Path
from tokenizers import Tokenizer, pre_tokenizers, trainers
from tokenizers.models import WordPiece

from bertjax import paths
from bertjax.data import text, tokenizer, vocab_files
from bertjax.errors import VERBOSE_HELP, BertjaxError, OneLineArgumentParser, exit_on_bad_input

TRAIN_BATCH_LINES = 1000


def _line_batches(files: Sequence[Path]) -> Iterator[list[str]]:
    stats = text.TextStats()
    batch: list[str] = []
    for path in files:
        for line in text.iter_lines(path, stats):
            if line.strip():
                batch.append(line)
                if len(batch) >= TRAIN_BATCH_LINES:
                    yield batch
                    batch = []
    if batch:
        yield batch


def train_vocab(input_files: str | Sequence[str], vocab_size: int, output_dir: str | os.PathLike, *,
                do_lower_case: bool = True, strip_accents: bool | None = None, min_frequency: int = 2,
                show_progress: bool = True) -> Path:
    """Train WordPiece on the text files named by `input_files` (globs); returns the path of vocab.txt.

    strip_accents defaults to do_lower_case (the original); the casing is stored in tokenizer_config.json.
    The directory is written atomically (a temporary sibling renamed at the end).
    """
    files = text.expand_input_files(input_files)
    if paths.path(output_dir).is_file():
        raise BertjaxError(f"--output {output_dir} is a file; pass a directory for vocab.txt and tokenizer_config.json")
    if vocab_size < len(vocab_files.SPECIAL_TOKENS) + 1:
        raise BertjaxError(f"vocab_size={vocab_size} is too small; it must exceed the {len(vocab_files.SPECIAL_TOKENS)} "
                           "special tokens (BERT uses 30522)")
    strip = do_lower_case if strip_accents is None else strip_accents
    backend = Tokenizer(WordPiece(unk_token=vocab_files.UNK, continuing_subword_prefix=tokenizer.CONTINUATION_PREFIX,
                                  max_input_chars_per_word=vocab_files.MAX_INPUT_CHARS_PER_WORD))
    backend.normalizer = tokenizer.build_normalizer(do_lower_case, strip)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(vocab_files.SPECIAL_TOKENS), show_progress=show_progress,
                                        continuing_subword_prefix=tokenizer.CONTINUATION_PREFIX)
    backend.train_from_iterator(_line_batches(files), trainer=trainer)
    vocab = sorted(backend.get_vocab().items(), key=lambda kv: kv[1])
    if len(vocab) <= len(vocab_files.SPECIAL_TOKENS):
        raise BertjaxError(f"input {input_files!r} holds no text to learn a vocab from; pass non-empty text files")

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


def _write_vocab_files(directory: Path, vocab: list[tuple[str, int]], do_lower_case: bool, strip: bool) -> None:
    (directory / vocab_files.VOCAB_FILE).write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    vocab_files.write_tokenizer_config(directory, do_lower_case, strip)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags of the vocab trainer."""
    parser = OneLineArgumentParser(prog="python -m bertjax.data.vocab", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="text file(s): a glob or a comma-separated list of globs")
    parser.add_argument("--vocab_size", type=int, required=True, help="number of vocab entries, specials included")
    parser.add_argument("--output", required=True, help="directory for vocab.txt and tokenizer_config.json")
    parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                        help="lower-case text (uncased vocab); --no-lowercase for a cased vocab")
    parser.add_argument("--strip_accents", action=argparse.BooleanOptionalAction, default=None,
                        help="strip accents (NFD; decomposes Hangul); default: same as --lowercase")
    parser.add_argument("--min_frequency", type=int, default=2, help="minimum count of a merged piece")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: Sequence[str] | None = None) -> None:
    """Train a vocab from the command line."""
    args = parse_args(argv)
    path = train_vocab(args.input, args.vocab_size, args.output, do_lower_case=args.lowercase,
                       strip_accents=args.strip_accents, min_frequency=args.min_frequency)
    size = len(path.read_text(encoding="utf-8").splitlines())
    print(f"wrote {path} ({size} tokens) and {path.parent / vocab_files.CONFIG_FILE}")


if __name__ == "__main__":
    main()
