"""time_to_quality's tables: corpora, sizes, recipes, the budget recipe's config fields, ablations, fine-tuning and
transformers' settings. Field names live here only."""
from __future__ import annotations

import os
import re

from pathlib import Path

import machine_info  # noqa: E402  (bench/)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"


CORPORA = {
    "en": {"corpus": str(REPO / "data" / "demo" / "corpus.txt"), "vocab_size": 4096, "lowercase": True,
           "source": "data/demo/corpus.txt: the demo corpus (public-domain English books and State of the Union "
                     "addresses; data/demo/SOURCES.md)"},
    "ko": {"corpus": "{nsmc_dir}/pretrain/corpus.txt", "vocab_size": 8000, "lowercase": False,
           "source": "{nsmc_dir}/pretrain/corpus.txt: Naver movie reviews from e9t/nsmc's crawl (CC0), made by "
                     "bench/nsmc_data.py ({nsmc_dir}/SOURCES.md)"},
}
# Sequence length, predictions per sequence (the dataset's, at 15%), calibration steps (about 30-60 s here).
SIZES = {
    "tiny": {"seq": 64, "max_predictions": 10, "calib_steps": 200},
    "mini": {"seq": 128, "max_predictions": 20, "calib_steps": 20},
}
BATCH_SIZE = 64           # configs/demo.py's
EVAL_BATCH_SIZE = 128     # configs/demo.py's
DATASET = {"dupe_factor": 5, "eval_fraction": 0.05, "masking": "dynamic", "random_seed": 0}  # demo's, but dynamic
WARMUP_FRACTION = 0.05    # configs/demo.py: 50 warmup steps of 1000
ORIGINAL_CONFIG = "configs/demo.py"
BUDGET_CONFIG = "configs/budget.py"
# The budget recipe's config fields (configs/base.py).
TIME_BUDGET = "train.time_budget_hours"
NUM_STEPS = "train.num_train_steps"
WARMUP_STEPS = "optimizer.warmup_steps"
# Ablations: the budget recipe with one trick undone (None = unset the field: a generated config file does that,
# since --config flags cannot say None). "time_budget" is filled in at run time: the budget run's own final step
# count as num_train_steps, budget.py's warmup fraction of it, and no time budget.
ABLATIONS = {
    "masking": ("masking 30% -> 15%", {"data.train_masked_lm_prob": 0.15}),
    "dropout": ("dropout back on (0.1)", {"model.hidden_dropout_prob": 0.1,
                                          "model.attention_probs_dropout_prob": 0.1}),
    "schedule": ("schedule wsd -> warmup_linear (the same warmup)", {"optimizer.schedule": "warmup_linear"}),
    "ramp": ("no batch-size ramp", {"train.batch_size_ramp_start": None}),
    "nsp": ("NSP back on (weight 1)", {"train.nsp_weight": 1.0}),
    "time_budget": ("time budget off (step schedule, steps = the budget run's)", {TIME_BUDGET: None}),
}
# Fine-tuning on NSMC (configs/finetune_glue.py's generic classification): per size, the same for every init.
FINETUNE = {"epochs": 3, "batch_size": 32, "lr": {"tiny": 3e-4, "mini": 1e-4}}
HF_SETTINGS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "clip_norm": 1.0,
               "threads": machine_info.usable_cores(),
               "warmup_fraction": WARMUP_FRACTION, "seed": 42}
NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")
EVAL_LINE = re.compile(r"^eval step (\d+): (.*)$", re.M)
DONE_LINE = re.compile(r"^done: step (\d+)", re.M)
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
