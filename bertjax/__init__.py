"""bertjax: BERT pretraining (masked LM + next-sentence prediction) in JAX/Flax, from a laptop CPU to a TPU pod.

Shape legend. Array names carry their shape as a suffix of these letters, e.g. `x_BxTxH`, `logits_BxPxV`:

  B  batch (examples)            T  tokens (sequence length)     H  hidden size
  N  attention heads             D  head size (H / N)            I  intermediate (feed-forward) size
  L  encoder layers              P  masked-LM predictions        V  vocabulary size
  C  classes (labels) of a classification head
  K  sentence pairs of a packed row (bertjax.data.packing)
  W  rows of the word-embedding table and MLM output bias: V padded to a multiple of config.model.vocab_pad_multiple

Every module, docstring and document of this package uses these letters and no others.
"""
