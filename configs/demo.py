"""The demo: pretrain BERT-tiny on the shipped corpus on a laptop CPU in a few minutes.

Run:
  python main.py --config=configs/demo.py --workdir=/tmp/demo

On first use it trains a WordPiece vocab and writes the dataset from data/demo/corpus.txt into
<workdir>/data (or --config.data.build.cache_dir=DIR to share it between workdirs); later runs reuse them.
It ends with an eval that logs the masked-LM accuracy next to the best constant-prediction baseline.
"""
import pathlib

import ml_collections
from ml_collections import config_dict

from bertjax.data import corpus, corpus_formats
from configs import base

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "data" / "demo" / "corpus.txt"


def get_config() -> ml_collections.ConfigDict:
    """BERT-tiny, seq 64, batch 64, 1000 steps of AdamW, float32 on CPU, on a dataset built from the demo corpus."""
    config = base.get_config()
    config.model.size = "tiny"
    config.dtype = "float32"  # bfloat16 matmuls are slow on most CPUs
    config.model.vocab_pad_multiple = 1  # no vocab padding: it serves TPU matrix units, not CPUs
    # Short sequences: 4x cheaper attention, and most demo-corpus sentence pairs fit.
    config.data.max_seq_length = 64
    config.data.max_predictions_per_seq = 10

    config.data.build = ml_collections.ConfigDict()
    # Text to build the vocab and dataset from (one sentence per line, blank line between documents), or a corpus in
    # another format (docs/corpora.md): --config.data.build.input_format, .text_field, .dedup_documents.
    config.data.build.corpus = str(CORPUS)
    config.data.build.input_format = corpus_formats.AUTO
    config.data.build.text_field = corpus.DEFAULT_TEXT_FIELD
    config.data.build.dedup_documents = False
    # Where to put vocab/ and dataset/; unset = <workdir>/data.
    config.data.build.cache_dir = config_dict.placeholder(str)
    config.data.build.vocab_size = 4096
    config.data.build.dupe_factor = 5
    # Fraction of documents held out as the eval split.
    config.data.build.eval_fraction = 0.05
    config.data.build.masking = "static"

    config.train.batch_size = 64
    config.train.num_train_steps = 1000
    # A short run needs a high learning rate and a short warmup. The original's Adam without bias correction
    # (bert_adam) takes 3-6x larger steps than that in its first few hundred steps and then stays stuck at
    # predicting the most frequent token; bias-corrected AdamW learns from context within ~150 steps.
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 50
    config.optimizer.schedule = "warmup_linear"
    config.eval.every_steps = 500
    config.eval.batch_size = 128
    config.eval.num_batches = -1
    config.checkpoint.every_steps = 500
    config.checkpoint.keep = 2
    config.log.every_steps = 50
    return config
