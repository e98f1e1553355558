"""Fine-tune a pretrained BERT for token tagging (CoNLL-2003-style NER): sequence_output.

Run:
  python main.py --config=configs/finetune_ner.py --workdir=runs/ner \
      --config.data.dir=/path/to/conll2003 --config.train.init_from=/path/to/bert

--config.data.dir holds train.txt and dev.txt (token ... tag per line, a blank line between sentences; IOB1 or
IOB2; the tag is the last column); other names with --config.data.train_file / dev_file / test_file. Only the first
word piece of each word is labelled. Dev is scored with entity-level precision, recall and F1 (seqeval, conlleval
semantics); predictions land in <workdir>/predictions_dev.txt (word gold predicted).
--config.task=klue_ner reads KLUE-NER's klue-ner-v1.1_{train,dev}.tsv instead (one character per line, each character
a word) and scores KLUE's entity and character macro F1.
"""
import ml_collections

from configs.finetune_glue import finetune_config


def get_config() -> ml_collections.ConfigDict:
    """Token classification on sequence_output."""
    config = finetune_config("tagging")
    config.train.num_epochs = 3
    config.optimizer.learning_rate = 5e-5
    return config
