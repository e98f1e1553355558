"""The Korean demo: pretrain BERT-tiny on the shipped Korean corpus (LibreOffice help) with a cased vocab.

Run:
  python main.py --config=configs/demo_ko.py --workdir=workdir/demo_ko

As configs/demo.py, with data/demo_ko/corpus.txt (data/demo_ko/SOURCES.md) and a cased WordPiece vocab without
accent stripping: NFD would split every Hangul syllable into jamo, so the vocab keeps syllables whole. Fine-tune
the result on the shipped topic-classification set (data/demo_ko/topic) with configs/finetune_glue.py.
"""
import pathlib

import ml_collections

from configs import demo

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "data" / "demo_ko" / "corpus.txt"


def get_config() -> ml_collections.ConfigDict:
    """BERT-tiny, seq 64, batch 64, 1500 steps of AdamW on CPU; vocab 8000, cased, Hangul syllables whole."""
    config = demo.get_config()
    # Seq 64 as in the demo: with this vocab a help sentence is 11 WordPiece tokens (median; 95% have <= 23),
    # so a 64-token pair holds several sentences.
    config.data.build.corpus = str(CORPUS)
    config.data.build.vocab_size = 8000
    config.data.build.do_lower_case = False
    config.data.build.strip_accents = False
    config.train.num_train_steps = 1500
    config.eval.every_steps = 750
    config.checkpoint.every_steps = 750
    return config
