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
    """BERT-tiny, seq 128, batch 32, 1500 steps of AdamW on CPU; vocab 8000, cased, Hangul syllables whole."""
    config = demo.get_config()
    # Korean help sentences are ~40 WordPiece tokens (median), so a pair needs seq 128.
    config.data.max_seq_length = 128
    config.data.max_predictions_per_seq = 20
    config.data.build.corpus = str(CORPUS)
    config.data.build.vocab_size = 8000
    config.data.build.do_lower_case = False
    config.data.build.strip_accents = False
    config.train.batch_size = 32
    config.train.num_train_steps = 1500
    config.eval.every_steps = 750
    config.checkpoint.every_steps = 750
    return config
