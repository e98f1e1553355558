"""Phase 2: continue a phase-1 run at sequence length 512 (the last 10% of the paper's steps).

Run:
  python main.py --config=configs/phase2.py --workdir=/path/to/phase2 \
      --config.train.init_from=/path/to/phase1_workdir \
      --config.data.dir=/path/to/dataset_seq512 --config.data.vocab_file=/path/to/vocab.txt

init_from is a phase-1 workdir (its latest checkpoint's params) or a params export (<workdir>/export).
The optimizer starts fresh, with its own warmup.
"""
import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    """Seq 512, 80 predictions, 100k steps, params loaded from phase 1."""
    config = base.get_config()
    config.data.max_seq_length = 512
    config.data.max_predictions_per_seq = 80
    config.train.num_train_steps = 100_000
    config.optimizer.warmup_steps = 1_000
    # Refuse to start without --config.train.init_from (the phase-1 workdir or params export).
    config.train.require_init_from = True
    return config
