"""The default optimizer config, apart from `bertjax.train_state` so that config files load without JAX.

(Data-building worker processes re-import the main script, and with it its config file.)
"""
import ml_collections


def default_optimizer_config() -> ml_collections.ConfigDict:
    """The paper's pretraining optimizer (appendix A.2, `optimization.py`); configs embed it as `config.optimizer`."""
    config = ml_collections.ConfigDict()
    # One of "bert_adam" (the original: Adam without bias correction), "adamw" (bias-corrected) or "lamb".
    config.name = "bert_adam"
    # Peak learning rate; the README suggests 2e-5 when continuing from a released checkpoint.
    config.learning_rate = 1e-4
    # Linear warmup from 0 over this many steps.
    config.warmup_steps = 10_000
    # "bert": the original, lr = lr0*s/W then lr0*(1 - s/N) (decay counted from step 0, so it drops at s = W);
    # "warmup_linear": peaks exactly at lr0 at s = W, then decays linearly to 0 at N;
    # "wsd" (warmup-stable-decay): lr0 from s = W until the last decay_fraction of the steps, then linearly to 0;
    # "one_cycle": from lr0/25 up to lr0 at s = W along a half cosine, then down to lr0/(25*1e4) at N (PyTorch's
    # OneCycleLR; W = 0.3 N is its default).
    config.schedule = "bert"
    # The "wsd" schedule's decay: this fraction of num_train_steps at the end (other schedules ignore it).
    config.decay_fraction = 0.1
    # Decoupled weight decay, not applied to LayerNorm params and biases.
    config.weight_decay = 0.01
    # Adam / LAMB moment decay rates and the epsilon added to sqrt(v).
    config.b1 = 0.9
    config.b2 = 0.999
    config.eps = 1e-6
    # Global-norm gradient clipping threshold; 0 turns clipping off.
    config.clip_norm = 1.0
    # The training loop aborts after this many consecutive steps with a NaN/Inf gradient (each one is skipped).
    config.max_consecutive_nonfinite = 10
    return config
