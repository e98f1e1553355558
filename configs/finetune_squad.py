"""Fine-tune a pretrained BERT for span question answering (SQuAD v1.1 / v2.0): sequence_output.

Run:
  python main.py --config=configs/finetune_squad.py --workdir=runs/squad \
      --config.data.dir=/path/to/squad --config.train.init_from=/path/to/bert

--config.data.dir holds train-v1.1.json and dev-v1.1.json (with --config.data.version_2=True: the v2.0 files);
other names with --config.data.train_file / dev_file / test_file. Contexts are cut into windows of max_seq_length
with doc_stride; answers are found by n-best start/end search (run_squad.py); dev is scored with exact match and F1
(the official normalisation); predictions land in <workdir>/predictions_dev.json.

KLUE-MRC: --config.task=klue_mrc reads klue-mrc-v1.1_train.json and klue-mrc-v1.1_dev.json (KLUE v1.1, unanswerable
questions included whatever data.version_2 says) and scores dev with KLUE's exact match and ROUGE-W (best/ by
klue_mrc_rouge_w):
  python main.py --config=configs/finetune_squad.py --workdir=runs/klue_mrc --config.task=klue_mrc \
      --config.data.dir=/path/to/klue-mrc-v1.1 --config.train.init_from=/path/to/korean-bert
"""
import ml_collections

from configs.finetune_glue import finetune_config


def get_config() -> ml_collections.ConfigDict:
    """Span question answering on sequence_output (run_squad.py's defaults: seq 384, stride 128, 2 epochs)."""
    config = finetune_config("squad")
    config.data.max_seq_length = 384
    config.data.doc_stride = 128
    config.data.max_query_length = 64
    # SQuAD 2.0: unanswerable questions, predicted when the null score beats the best span by the threshold.
    config.data.version_2 = False
    config.train.num_epochs = 2
    config.train.batch_size = 32
    config.optimizer.learning_rate = 3e-5
    config.eval.n_best_size = 20
    config.eval.max_answer_length = 30
    config.eval.null_score_diff_threshold = 0.0
    return config
