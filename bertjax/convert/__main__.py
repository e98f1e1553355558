"""Convert BERT checkpoints: `python -m bertjax.convert {to-hf,from-hf,from-tf} ...`.

  to-hf    --checkpoint PATH --output DIR   a bertjax workdir (latest checkpoint), checkpoint step or export
                                            -> a Hugging Face directory
  from-hf  --input DIR --output DIR         a Hugging Face BERT directory (BertForPreTraining, BertForMaskedLM,
                                            BertModel, or a fine-tuned BertForSequenceClassification,
                                            BertForTokenClassification or BertForQuestionAnswering;
                                            model.safetensors or pytorch_model.bin) -> a bertjax export
  from-tf  --input DIR --output DIR         a google-research/bert checkpoint directory -> a bertjax export

Every output is the same kind of directory: config.json, model.safetensors, vocab.txt and tokenizer_config.json,
which transformers loads (BertForPreTraining, BertTokenizerFast) and `--config.train.init_from` accepts. A fine-tuned
checkpoint (a fine-tuning run, its export, or a Hugging Face head directory) stays one: the output is the matching
transformers class (BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering) with its
classifier and class names (id2label). An existing non-empty output directory is refused unless --overwrite; the
output appears whole or not at all.
"""
import argparse
import shutil
import tempfile
from pathlib import Path

from bertjax import paths
from bertjax.convert import hf, sources
from bertjax.errors import VERBOSE_HELP, BertjaxError, OneLineArgumentParser, exit_on_bad_input, flag_bool

# What each subcommand reads (a bertjax export is a Hugging Face directory, so to-hf takes one too).
COMMANDS = {"to-hf": (sources.BERTJAX_RUN, sources.HUGGING_FACE), "from-hf": (sources.HUGGING_FACE,),
            "from-tf": (sources.ORIGINAL_TF,)}


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per direction."""
    parser = OneLineArgumentParser(prog="python -m bertjax.convert", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{to-hf,from-hf,from-tf}",
                                     parser_class=OneLineArgumentParser)
    helps = {"to-hf": "a bertjax workdir, checkpoint step or export -> a Hugging Face directory",
             "from-hf": "a Hugging Face BERT directory -> a bertjax export",
             "from-tf": "an original google-research/bert checkpoint directory -> a bertjax export"}
    for name, text in helps.items():
        command = commands.add_parser(name, help=text, description=text)
        source_flag = "--checkpoint" if name == "to-hf" else "--input"
        command.add_argument(source_flag, dest="source", required=True, help="what to convert")
        command.add_argument("--output", required=True, help="the directory to write")
        command.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
        if name != "to-hf":
            command.add_argument("--allow_missing_heads", action="store_true",
                                 help="initialise missing heads (pooler, MLM, NSP) as in pretraining")
        command.add_argument("--do_lower_case", type=flag_bool, default=None,
                             help="the vocab's casing, when the checkpoint does not say (true/false)")
        command.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def convert(command: str, source: str, output: str, *, overwrite: bool = False, allow_missing_heads: bool = False,
            do_lower_case: bool | None = None) -> sources.Pretrained:
    """Run one subcommand; returns what was loaded."""
    kind = sources.detect(source)
    if kind not in COMMANDS[command]:
        other = next(name for name, wanted in COMMANDS.items() if wanted[0] == kind)
        raise BertjaxError(f"{source} is {_a(kind)}, not {_a(' or '.join(COMMANDS[command]))}; use `{other}` for it")
    output_dir = paths.path(output)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise BertjaxError(f"--output {output} exists and is not empty; choose a new directory or pass --overwrite")
    pretrained = sources.load_pretrained(source, allow_missing_heads=allow_missing_heads,
                                         do_lower_case=do_lower_case)
    if pretrained.vocab_file is None:
        raise BertjaxError(f"{source} has no vocab.txt; a converted checkpoint carries its vocab, so add the "
                           "vocab.txt it was trained with to that directory")
    if paths.is_remote(output_dir):  # written locally, then uploaded with config.json last (paths.upload_tree)
        with tempfile.TemporaryDirectory(prefix="bertjax-convert-") as local:
            _save(pretrained, local)
            for old_file in paths.files_under(output_dir) if output_dir.exists() else []:
                old_file.unlink()
            paths.upload_tree(local, output_dir, last=[hf.CONFIG_NAME])
        return pretrained
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        _save(pretrained, staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return pretrained


def _save(pretrained: sources.Pretrained, directory: str | Path) -> None:
    """Write `pretrained` as a Hugging Face directory (a fine-tuned checkpoint stays its head)."""
    if pretrained.head is None:
        weights = dict(params=pretrained.params)
    else:
        weights = dict(params=pretrained.head_params, head_model=pretrained.head, labels=pretrained.labels)
    hf.save_pretrained(directory, pretrained.config, **weights, vocab_file=pretrained.vocab_file,
                       do_lower_case=pretrained.do_lower_case, strip_accents=pretrained.strip_accents)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def describe(pretrained: sources.Pretrained, output: str) -> str:
    """The summary lines printed after a conversion."""
    config = pretrained.config
    lines = [f"read {pretrained.kind} {pretrained.path}: {config.num_hidden_layers} layers, hidden "
             f"{config.hidden_size}, {config.num_attention_heads} heads, vocab {config.vocab_size}",
             f"casing: do_lower_case={pretrained.do_lower_case} strip_accents={pretrained.strip_accents} "
             f"(from {pretrained.casing_from})"]
    if pretrained.head is not None:
        lines.append(f"fine-tuned head: {type(pretrained.head).__name__}, {len(pretrained.labels)} labels "
                     f"({', '.join(pretrained.labels[:8])}{', ...' if len(pretrained.labels) > 8 else ''})")
    if pretrained.initialized_heads and pretrained.head is None:
        lines.append("initialised as in pretraining (missing from the checkpoint): "
                     + ", ".join(pretrained.initialized_heads))
    lines.append(f"wrote {output}: " + ", ".join(sorted(p.name for p in paths.path(output).iterdir())))
    return "\n".join(lines)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = build_parser().parse_args(argv)
    pretrained = convert(args.command, args.source, args.output, overwrite=args.overwrite,
                         allow_missing_heads=getattr(args, "allow_missing_heads", False),
                         do_lower_case=args.do_lower_case)
    print(describe(pretrained, args.output))


if __name__ == "__main__":
    main()
