"""Fine-tune a pretrained BERT on a GLUE task, or on any TSV/CSV/JSONL classification task: pooled_output.

Run:
  python main.py --config=configs/finetune_glue.py --workdir=runs/sst2 \
      --config.task=sst2 --config.data.dir=/path/to/glue/SST-2 --config.train.init_from=/path/to/bert

--config.task: cola, sst2, mrpc, qqp, stsb (regression), mnli, qnli, rte, wnli, or the Korean nsmc, klue_tc,
klue_sts (regression), klue_nli (their official files, labels and metrics are known: docs/finetuning.md), or
"classification" with --config.data.text_columns=question,sentence --config.data.label_column=label (and
train_file/dev_file names; --config.data.regression=True for scores).
init_from: a bertjax workdir or export, a Hugging Face BERT directory or an original TF checkpoint directory; the
model and its vocab come from it. Evaluates on dev at every epoch's end; the best dev params land in <workdir>/best,
the last in <workdir>/export, dev predictions in <workdir>/predictions_dev.tsv. With --config.train.eval_only=True
--config.eval.split=test the test file's predictions are written (predictions_test.tsv, the GLUE submission format).
"""
import ml_collections
from ml_collections import config_dict

from configs import base


def finetune_config(task: str) -> ml_collections.ConfigDict:
    """The BERT paper's fine-tuning recipe (appendix A.3): AdamW, lr 2e-5, 10% warmup then linear decay, 3 epochs,
    batch 32, dropout 0.1, float32."""
    config = base.get_config()
    config.task = task
    config.dtype = "float32"
    config.model.vocab_pad_multiple = 1  # fine-tuning heads have no MLM matmul and never pad their vocab
    config.data.max_seq_length = 128
    # Task files inside --config.data.dir (GLUE tasks know theirs): names relative to it.
    config.data.train_file = config_dict.placeholder(str)
    config.data.dev_file = config_dict.placeholder(str)
    config.data.test_file = config_dict.placeholder(str)
    # Subsets for quick runs (0: the whole split): a fixed sample of this many examples, kept in file order.
    config.data.max_train_examples = 0
    config.data.max_eval_examples = 0
    # Where the encoded features are cached; unset: <workdir>/features (the benchmark shares one per task).
    config.data.features_dir = config_dict.placeholder(str)
    # Casing of the vocab when the init_from checkpoint does not say; unset: the checkpoint's (or a guess).
    config.data.do_lower_case = config_dict.placeholder(bool)
    # Length-bucketed batches, exact (docs/finetuning.md; not for SQuAD): unset = every batch padded to
    # max_seq_length; "auto" = a few lengths chosen from the data; or lengths like "32,64" (max_seq_length added).
    config.data.length_buckets = config_dict.placeholder(str)
    config.train.batch_size = 32
    # Epochs over the training set; they set num_train_steps, and eval and checkpoints at every epoch's end.
    config.train.num_epochs = 3
    config.train.num_train_steps = 1  # replaced from num_epochs
    config.eval.batch_size = 64
    config.eval.num_batches = -1
    # "dev" (scored) or "test" (predictions only; use with --config.train.eval_only=True).
    config.eval.split = "dev"
    config.checkpoint.keep = 1
    config.log.every_steps = 50
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-5
    config.optimizer.schedule = "warmup_linear"
    config.optimizer.warmup_steps = 0  # replaced from warmup_fraction
    # Warmup as a fraction of all steps.
    config.optimizer.warmup_fraction = 0.1
    return config


def get_config() -> ml_collections.ConfigDict:
    """Sentence(-pair) classification or regression on pooled_output."""
    config = finetune_config("sst2")
    # Generic mode (--config.task=classification): the text column(s), comma separated, and the label column.
    config.data.text_columns = config_dict.placeholder(str)
    config.data.label_column = config_dict.placeholder(str)
    config.data.regression = False
    # Generic mode's metrics, comma separated (default: accuracy and F1 for two labels, accuracy for more, pearson
    # and spearman for regression); the first is the main one (the best/ export).
    config.data.metrics = config_dict.placeholder(str)
    return config
