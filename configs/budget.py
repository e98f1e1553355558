"""The budget recipe: the demo's BERT-tiny, with the tricks of the budget recipes switched on, for a time budget.

Run:
  python main.py --config=configs/budget.py --workdir=/tmp/budget

The architecture stays exactly BERT (post-LN, GELU, learned positions, biases, the NSP head), so the export loads
in transformers as BertForPreTraining like any other. Every trick is a config field that is off in configs/base.py;
`apply(config)` switches them on in any config (configs/base.py's BERT-base included), and each can be switched
off again from the command line, e.g. --config.data.train_masked_lm_prob=0.15. What each is worth on this CPU:
bench/results/time_to_quality.md (docs/pretraining.md, "The budget recipe").
"""
import ml_collections

from configs import demo

# The tricks and their values (MosaicBERT, Cramming, academic-budget-bert, ModernBERT; see docs/pretraining.md).
MASKING_RATE = 0.3            # masked LM at 30% in training; eval stays at the dataset's 15%
DROPOUT = 0.0                 # no dropout in pretraining
SCHEDULE = "wsd"              # warmup-stable-decay: warmup over WARMUP_FRACTION of the budget, decay over its last
WARMUP_FRACTION = 0.05        # optimizer.decay_fraction (0.1); bench/time_to_quality.py --ablation measures the
                              # schedule against warmup_linear
RAMP_START_FRACTION = 4       # batches start at batch_size / 4 and double up to batch_size ...
RAMP_FRACTION = 0.25          # ... over the first quarter of the schedule
TIME_BUDGET_HOURS = 0.05      # the demo's budget: 3 minutes of training


def apply(config: ml_collections.ConfigDict, time_budget_hours: float = TIME_BUDGET_HOURS) -> None:
    """Switch the budget recipe's tricks on in `config` (a pretraining config; its dataset must be made with
    --masking=dynamic, which configs/demo.py's data build is set to here)."""
    if "build" in config.data:
        config.data.build.masking = "dynamic"
    config.data.train_masked_lm_prob = MASKING_RATE
    config.model.hidden_dropout_prob = DROPOUT
    config.model.attention_probs_dropout_prob = DROPOUT
    config.optimizer.schedule = SCHEDULE
    config.optimizer.warmup_steps = round(WARMUP_FRACTION * config.train.num_train_steps)
    config.train.batch_size_ramp_start = config.train.batch_size // RAMP_START_FRACTION
    config.train.batch_size_ramp_steps = round(RAMP_FRACTION * config.train.num_train_steps)
    config.train.time_budget_hours = time_budget_hours


def get_config() -> ml_collections.ConfigDict:
    """configs/demo.py with the budget recipe's tricks, for TIME_BUDGET_HOURS of training."""
    config = demo.get_config()
    apply(config)
    return config
