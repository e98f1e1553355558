"""Write the interactive attention viewer of a checkpoint as one self-contained HTML page (offline, file://).

    python -m bertjax.visualize --checkpoint runs/demo --text "The cat sat on the mat." --text_b "It was warm." \
        --output view.html
    python -m bertjax.visualize --checkpoint hf/bert-base-uncased --text "One." --text "Two." --pack --output v.html

The checkpoint is anything `convert.sources.load_pretrained` reads: a bertjax workdir or export, a Hugging Face
directory, an original TF checkpoint. --text and --text_b repeat for a batch (the page gets a selector); --pack puts
all pairs in one packed row. docs/attention_viewer.md describes the views.
"""
from __future__ import annotations

import sys
import time

from bertjax import paths
from bertjax.attention_viewer import attention_view
from bertjax.attention_viewer.data import TOP_K
from bertjax.errors import VERBOSE_HELP, BertjaxError, OneLineArgumentParser, exit_on_bad_input

HTML_SUFFIXES = (".html", ".htm")


def build_parser() -> OneLineArgumentParser:
    """The command line."""
    parser = OneLineArgumentParser(prog="python -m bertjax.visualize", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a bertjax workdir or export, a Hugging Face or an "
                        "original TF checkpoint directory (local or gs://)")
    parser.add_argument("--text", action="append", required=True, help="the text (segment A); repeat for a batch")
    parser.add_argument("--text_b", action="append", help="the second text (segment B); one per --text if given")
    parser.add_argument("--output", required=True, help="the page to write (.html)")
    parser.add_argument("--pack", action="store_true", help="all pairs in one packed row, each its own block")
    parser.add_argument("--max_seq_length", type=int, help="trim each pair to this many tokens (default: the "
                        "model's position embeddings)")
    parser.add_argument("--top_k", type=int, default=TOP_K, help="masked-LM guesses per token")
    parser.add_argument("--mlm_positions", default="all", help="tokens whose guesses are precomputed: all, none, "
                        "or comma-separated token indices")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


@exit_on_bad_input
def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if not args.output.lower().endswith(HTML_SUFFIXES):
        raise BertjaxError(f"--output {args.output} is not an .html file; name the page e.g. view.html")
    output = paths.path(args.output)
    if output.exists() and output.is_dir():
        raise BertjaxError(f"--output {args.output} is a directory; give a file name such as {output}/view.html")
    paths.check_writable(output.parent, "--output's directory")
    if args.text_b is not None and len(args.text_b) != len(args.text):
        raise BertjaxError(f"{len(args.text)} --text but {len(args.text_b)} --text_b; give one --text_b per --text")
    if args.top_k < 1:
        raise BertjaxError(f"--top_k={args.top_k}; give at least 1")
    start = time.perf_counter()
    view = attention_view(args.checkpoint, args.text, args.text_b, packed=args.pack,
                          max_seq_length=args.max_seq_length, top_k=args.top_k,
                          mlm_positions=_positions(args.mlm_positions),
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    view.save(output)
    model = view.data["model"]
    rows = ", ".join(f"{len(e['tokens'])} tokens" for e in view.data["examples"])
    print(f"wrote {output} ({output.stat().length / 1e6:.2f} MB; {model['num_layers']} layers x "
          f"{model['num_heads']} heads; {rows}) in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def _positions(value: str):
    if value in ("all", "none"):
        return value
    try:
        return [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise BertjaxError(f"--mlm_positions={value}; use all, none, or token indices such as 1,2,5") from None


if __name__ == "__main__":
    main()
