"""The peers bertjax is compared with: transformers' BertForPreTraining (PyTorch) and KerasHub's BertMaskedLM (JAX).

Both are optional: a runner's constructor raises ImportError when its framework is not installed.
"""
from __future__ import annotations

import numpy as np

from bertjax.model import BertConfig

from .common import PREDICTIONS, VOCAB, synthetic_batch


class HfRunner:
    """transformers BertForPreTraining on PyTorch; MLM at the masked positions (or at all, `all_positions`)."""

    framework = "hf"

    def __init__(self, size: str, seq: int, dtype: str, batch: int, all_positions: bool = False):
        import torch  # noqa: PLC0415  (optional: only for this comparison)
        import transformers  # noqa: PLC0415
        self.torch = torch
        self.label = "HF (all positions)" if all_positions else "HF"
        self.all_positions = all_positions
        bert = BertConfig.named(size, vocab_size=VOCAB)
        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=bert.hidden_size, num_hidden_layers=bert.num_hidden_layers,
            num_attention_heads=bert.num_attention_heads, intermediate_size=bert.intermediate_size,
            max_position_embeddings=512, hidden_act="gelu", hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1)
        self.model = transformers.BertForPreTraining(config).train()
        self.attention = getattr(self.model.config, "_attn_implementation", "?")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
        host = synthetic_batch(batch, seq, PREDICTIONS.get(seq, round(0.15 * seq)), VOCAB)
        self.t = {name: torch.from_numpy(value).long() if value.dtype == np.int32 else torch.from_numpy(value)
                  for name, value in host.items()}
        labels = torch.full((batch, seq), -100, dtype=torch.long)
        labels.scatter_(1, self.t["masked_lm_positions"], self.t["masked_lm_ids"])
        self.labels_all_positions = labels
        self.autocast = dtype == "bfloat16"
        self.tokens_per_step = batch * seq
        self.hidden = bert.hidden_size

    def _loss(self):
        torch, t = self.torch, self.t
        if self.all_positions:
            return self.model(input_ids=t["input_ids"], attention_mask=t["input_mask"],
                              token_type_ids=t["segment_ids"], labels=self.labels_all_positions,
                              next_sentence_label=t["next_sentence_labels"]).loss
        out = self.model.bert(input_ids=t["input_ids"], attention_mask=t["input_mask"],
                              token_type_ids=t["segment_ids"])
        sequence_output, pooled_output = out[0], out[1]
        index = t["masked_lm_positions"][..., None].expand(-1, -1, self.hidden)
        mlm_logits = self.model.cls.predictions(torch.gather(sequence_output, 1, index)).float()
        nsp_logits = self.model.cls.seq_relationship(pooled_output).float()
        nll = torch.nn.functional.cross_entropy(mlm_logits.reshape(-1, VOCAB), t["masked_lm_ids"].reshape(-1),
                                                reduction="none")
        weights = t["masked_lm_weights"].reshape(-1)
        mlm_loss = (nll * weights).sum() / (weights.sum() + 1e-5)
        return mlm_loss + torch.nn.functional.cross_entropy(nsp_logits, t["next_sentence_labels"])

    def step(self):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self._loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


class KerasHubRunner:
    """keras_hub.models.BertMaskedLM on the JAX backend: compile(AdamW, jit_compile=True) + train_on_batch."""

    framework = "kerashub"

    def __init__(self, size: str, seq: int, dtype: str, batch: int):
        import keras  # noqa: PLC0415  (optional: only for this comparison)
        import keras_hub  # noqa: PLC0415
        self.label = "KerasHub"
        keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
        keras.utils.set_random_seed(0)
        bert = BertConfig.named(size, vocab_size=VOCAB)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB, num_layers=bert.num_hidden_layers, num_heads=bert.num_attention_heads,
            hidden_dim=bert.hidden_size, intermediate_dim=bert.intermediate_size, dropout=0.1,
            max_sequence_length=512)
        self.model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        self.model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[], jit_compile=True)
        keras.config.set_dtype_policy("float32")
        host = synthetic_batch(batch, seq, PREDICTIONS.get(seq, round(0.15 * seq)), VOCAB)
        self.x = {"token_ids": host["input_ids"], "padding_mask": host["input_mask"],
                  "segment_ids": host["segment_ids"], "mask_positions": host["masked_lm_positions"]}
        self.y, self.weights = host["masked_lm_ids"], host["masked_lm_weights"]
        self.tokens_per_step = batch * seq

    def step(self):
        self.model.train_on_batch(self.x, self.y, sample_weight=self.weights)  # returns host floats: synchronous
