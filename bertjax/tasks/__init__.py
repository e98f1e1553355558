"""Fine-tuning task data and metrics (pure Python/numpy, no JAX): GLUE-style classification and regression
(`classification`), CoNLL token tagging (`tagging`), SQuAD span QA (`squad`) and their metrics (`metrics`).

Arrays follow the shape legend of `bertjax` (B batch, T tokens). Bad input raises `bertjax.errors.BertjaxError`
with one line naming the file and line (or question id) and the fix.
"""

IGNORE_LABEL = -100  # a token's label id that the loss and the metrics skip (non-first word pieces, specials, padding)
