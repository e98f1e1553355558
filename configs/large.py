"""BERT-large pretraining, phase 1 (paper recipe, seq 128); typically on a TPU pod with fsdp.

Run:
  python main.py --config=configs/large.py --workdir=gs://bucket/bert-large \
      --config.data.dir=/path/to/dataset --config.data.vocab_file=/path/to/vocab.txt --config.mesh.fsdp=8
"""
import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    """BERT-large: the base recipe with the large model, scanned + rematerialised layers."""
    config = base.get_config()
    config.model.size = "large"
    config.model.scan_layers = True
    config.model.remat = True
    return config
