"""Carry a BERT to and from other tools: Hugging Face directories, original TF checkpoints, bertjax runs.

  hf.py             Hugging Face BERT state dicts <-> bertjax params; HF directories (config.json, weights,
                    vocab.txt, tokenizer_config.json) read and written
  hf_heads.py       how each fine-tuning head (`bertjax.heads`) maps to Hugging Face: class names, config fields
  tensor_bundle.py  TensorFlow V2 checkpoint files (`*.ckpt.{index,data-*}`) read without TensorFlow
  tf_checkpoint.py  google-research/bert's variable names in them -> bertjax params
  torch_bin.py      `pytorch_model.bin` state dicts read without PyTorch
  sources.py        any of these, or a bertjax workdir / checkpoint / export, as (BertConfig, params, casing)
  __main__.py       the command line: `python -m bertjax.convert {to-hf,from-hf,from-tf} ...`
"""
