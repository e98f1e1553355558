"""BERT-base pretraining, phase 1, the paper recipe (seq 128, batch 256, lr 1e-4, 1M steps, 10k warmup).

Run:
  python main.py --config=configs/base.py --workdir=/path/to/workdir \
      --config.data.dir=/path/to/dataset --config.data.vocab_file=/path/to/vocab.txt

Every field can be overridden with --config.<a>.<b>=value, e.g. --config.train.batch_size=32.
"""
import ml_collections
from ml_collections import config_dict

from bertjax.optimizer_defaults import default_optimizer_config


def get_config() -> ml_collections.ConfigDict:
    """The paper's BERT-base phase-1 recipe."""
    config = ml_collections.ConfigDict()
    # What to train: "pretraining" (masked LM + next sentence), or a fine-tuning task (configs/finetune_*.py).
    config.task = "pretraining"

    config.model = ml_collections.ConfigDict()
    # Named size for BertConfig.named: tiny, mini, small, medium, base, large. Unset: base, or with
    # --config.train.init_from the checkpoint's model (which a set size must then match).
    config.model.size = config_dict.placeholder(str)
    # Vocabulary size; unset = take it from the dataset manifest. If set, it must equal the manifest's.
    config.model.vocab_size = config_dict.placeholder(int)
    # Optional overrides of the named size and of BertConfig's other fields (unset = the BertConfig default).
    config.model.hidden_size = config_dict.placeholder(int)
    config.model.num_hidden_layers = config_dict.placeholder(int)
    config.model.num_attention_heads = config_dict.placeholder(int)
    config.model.intermediate_size = config_dict.placeholder(int)
    config.model.hidden_act = config_dict.placeholder(str)
    config.model.max_position_embeddings = config_dict.placeholder(int)
    config.model.initializer_range = config_dict.placeholder(float)
    # Dropout on hidden states and on attention probabilities.
    config.model.hidden_dropout_prob = 0.1
    config.model.attention_probs_dropout_prob = 0.1
    # Random bits per dropout-mask element: 32 = flax's nn.Dropout (uniform floats; the stream of earlier runs),
    # 16 or 8 = integers compared with round((1 - rate) * 2^bits) (keep probability 0.899994 / 0.8984 for rate 0.1,
    # kept values scaled to keep the expectation exact): less random-number work, a different random stream.
    config.model.dropout_bits = 32
    # Self-attention: "einsum" (the original's matmuls around a float32 softmax) or "dot_product_attention"
    # (jax.nn.dot_product_attention: cuDNN's fused kernel on a GPU in bfloat16; needs attention_probs_dropout_prob=0).
    config.model.attention_impl = "einsum"
    # Stack the encoder layers with nn.scan (faster compiles for deep models) and rematerialise them.
    config.model.scan_layers = False
    config.model.remat = False
    # What a rematerialised layer keeps: "nothing_saveable" (least memory), "minimal" (the projections' outputs),
    # "dots_saveable" (every matmul output; least recomputation).
    config.model.remat_policy = "nothing_saveable"
    # Pad the vocab axis of the word embeddings and the MLM output bias to a multiple of this (128: the TPU matrix
    # unit's tile), so the MLM decoder matmul has an aligned shape; the extra logits are masked out of the loss and
    # sliced off every output, so losses, metrics and exports are those of the unpadded model. 1 = no padding.
    # Pretraining only.
    config.model.vocab_pad_multiple = 128

    # Compute dtype of the model ("bfloat16" or "float32"); params, LayerNorm, softmax and losses stay float32.
    config.dtype = "bfloat16"

    config.data = ml_collections.ConfigDict()
    # Directory of a dataset written by bertjax.data.create_pretraining_data (a TFDS ArrayRecord dataset).
    config.data.dir = config_dict.placeholder(str)
    # The vocab.txt the dataset was made with; its sha256 must match the dataset manifest.
    config.data.vocab_file = config_dict.placeholder(str)
    config.data.train_split = "train"
    config.data.eval_split = "eval"
    # Must match the dataset manifest.
    config.data.max_seq_length = 128
    config.data.max_predictions_per_seq = 20
    # Seed of the input pipeline's shuffling and dynamic masking.
    config.data.seed = 0
    # Masking rate of the training batches (a budget recipe's 0.3), for datasets made with --masking=dynamic; unset =
    # the dataset's (0.15, the original). Eval batches always keep the dataset's rate.
    config.data.train_masked_lm_prob = config_dict.placeholder(float)

    config.train = ml_collections.ConfigDict()
    # Global batch size (all devices, all processes).
    config.train.batch_size = 256
    # Gradient accumulation: the batch is split into this many micro-batches inside one step.
    config.train.micro_batches = 1
    # Batch-size ramp (bertjax.batch_ramp): start with batches of this size and double them in equal stages until
    # they reach batch_size at step batch_size_ramp_steps; unset = no ramp.
    config.train.batch_size_ramp_start = config_dict.placeholder(int)
    config.train.batch_size_ramp_steps = 0
    # Time budget in hours (bertjax.train_clock): train until the training clock reaches it, the learning-rate
    # schedule laid over the budget instead of the steps (num_train_steps then only sets its scale); unset = train
    # num_train_steps steps.
    config.train.time_budget_hours = config_dict.placeholder(float)
    # Weight of the next-sentence loss in the training loss (1: the original; 0: masked LM only, the NSP head kept,
    # trained no further and still evaluated; the data format is unchanged).
    config.train.nsp_weight = 1.0
    config.train.num_train_steps = 1_000_000
    # Seed of parameter init and dropout.
    config.train.seed = 42
    # The random-bit generator of dropout: "threefry" (JAX's default), or "rbg" / "unsafe_rbg" (much cheaper on
    # TPUs; other dropout masks, same parameter init).
    config.train.rng_impl = "threefry"
    # Only evaluate (the latest checkpoint, or init_from), no training.
    config.train.eval_only = False
    # Load params (not optimizer state) before step 0 from a bertjax workdir or export, a Hugging Face BERT
    # directory or an original TF checkpoint directory; the model size and vocab then come from it.
    config.train.init_from = config_dict.placeholder(str)
    # Refuse to start without init_from (phase 2).
    config.train.require_init_from = False

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 10_000
    config.eval.batch_size = 256
    # Eval batches per evaluation; -1 = the whole eval split.
    config.eval.num_batches = 100

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 10_000
    # Keep this many latest checkpoints.
    config.checkpoint.keep = 3
    # Save asynchronously (training continues while files are written).
    config.checkpoint.async_save = True
    # Unreadable latest checkpoint: False = one-line error; True = move it to corrupt_checkpoints/, use the previous.
    config.checkpoint.fallback = False

    config.log = ml_collections.ConfigDict()
    config.log.every_steps = 100
    # Write TensorBoard event files to <workdir>/tensorboard.
    config.log.tensorboard = True
    # Peak FLOP/s of one device for the MFU estimate; unset = known TPU/GPU tables, or n/a on CPU.
    config.log.peak_flops_per_device = config_dict.placeholder(float)

    config.mesh = ml_collections.ConfigDict()
    # Devices on the 'data' axis; -1 = all devices not used by fsdp.
    config.mesh.data = -1
    # Devices on the 'fsdp' axis (shards params and optimizer state); 1 = pure data parallelism.
    config.mesh.fsdp = 1
    # Leaves smaller than this many elements stay replicated under fsdp.
    config.mesh.min_shard_size = 2**14

    config.optimizer = default_optimizer_config()
    config.optimizer.name = "bert_adam"
    config.optimizer.learning_rate = 1e-4
    config.optimizer.warmup_steps = 10_000
    config.optimizer.weight_decay = 0.01
    config.optimizer.clip_norm = 1.0
    return config
