"""Find a pretraining run's dataset; for configs with `data.build` (the demo), build vocab and dataset on first use
into <workdir>/data (`workdir_layout.BUILT_DATA_DIR`)."""
import os

import jax
import ml_collections
from jax.experimental import multihost_utils

from bertjax import paths, workdir_layout
from bertjax.data import create_pretraining_data, vocab, vocab_files
from bertjax.errors import BertjaxError


def dataset_dir(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str | None]:
    """(dataset directory, vocab file or None) of `config`: config.data.dir, or the demo's cached build."""
    if config.data.dir is not None:
        if paths.path(config.data.dir).is_file():
            raise BertjaxError(f"--config.data.dir={config.data.dir} is a file; point it at the dataset directory "
                               "(the --output_dir of create_pretraining_data).")
        if not paths.path(config.data.dir).is_dir():
            raise BertjaxError(
                f"--config.data.dir={config.data.dir} does not exist; create the dataset with "
                "`python -m bertjax.data.create_pretraining_data --output_dir=...` or fix the path.")
        return config.data.dir, config.data.vocab_file
    if "build" in config.data:
        return build_demo_dataset(config, workdir)
    raise BertjaxError("--config.data.dir is not set; point it at a dataset made by "
                       "`python -m bertjax.data.create_pretraining_data`.")


def build_demo_dataset(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
    """Train the vocab and write the dataset from config.data.build.corpus, unless already there; reused later.

    The vocab's casing comes from config.data.build.do_lower_case (default True) and .strip_accents (default: the
    same as do_lower_case, off for a mostly Hangul corpus); .input_format, .text_field and .dedup_documents read the
    corpus as create_pretraining_data's flags do (docs/corpora.md).
    Only process 0 builds; the others wait (multi-host runs should use a prepared --config.data.dir instead).
    """
    build = config.data.build
    if not paths.glob(build.corpus):
        raise BertjaxError(f"--config.data.build.corpus={build.corpus} does not exist; fix the path.")
    cache_dir = build.cache_dir or os.path.join(workdir, workdir_layout.BUILT_DATA_DIR)
    vocab_file = os.path.join(cache_dir, "vocab", vocab_files.VOCAB_FILE)
    data_dir = os.path.join(cache_dir, "dataset")
    # Casing (optional fields; the demo's defaults: lower-cased, accents stripped). A cached vocab made with other
    # settings is refused by create_pretraining_data.
    do_lower_case = build.get("do_lower_case", True)
    strip_accents = build.get("strip_accents", None)
    reading = dict(input_format=build.input_format, text_field=build.text_field,
                   dedup_documents=build.dedup_documents)
    if jax.process_index() == 0:
        if not paths.path(os.path.join(data_dir, "dataset_info.json")).is_file():
            print(f"building the vocab and dataset from {build.corpus} into {cache_dir} (first use; reused later)",
                  flush=True)
        if not paths.path(vocab_file).is_file():
            vocab.train_vocab(build.corpus, build.vocab_size, os.path.dirname(vocab_file), do_lower_case=do_lower_case,
                              strip_accents=strip_accents, show_progress=False, **reading)
        create_pretraining_data.create_pretraining_data(
            build.corpus, data_dir, vocab_file, do_lower_case=do_lower_case, strip_accents=strip_accents,
            max_seq_length=config.data.max_seq_length,
            max_predictions_per_seq=config.data.max_predictions_per_seq, dupe_factor=build.dupe_factor,
            eval_fraction=build.eval_fraction, masking=build.masking, random_seed=config.data.seed,
            show_progress=False, **reading)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("bertjax_build_dataset")
    return data_dir, vocab_file
