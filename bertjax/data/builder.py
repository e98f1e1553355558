"""The registered TFDS builder `bert_pretraining`: local text files or a TFDS text dataset -> BERT examples.

    import bertjax.data.builder as builder_lib        # registers "bert_pretraining" with TFDS
    config = builder_lib.BertPretrainingConfig(
        name="wiki128", vocab_file="vocab/vocab.txt",
        input_files="corpus/*.txt",                   # or text_dataset="wikipedia/20230601.en"
        max_seq_length=128, max_predictions_per_seq=20, dupe_factor=10)
    builder = tfds.builder("bert_pretraining", config=config, data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()                    # ArrayRecord (the default here); no TensorFlow needed
    builder.as_data_source()["train"]                 # or pipeline.create_iterator(builder.data_dir, "train", ...)

`build_dataset(data_dir, **config_fields)` does the same and returns the dataset directory.

This is a thin single-process adapter around `bertjax.data.create_pretraining_data` (the same algorithm, flags and
manifest): the examples are first written by create_pretraining_data into the TFDS download directory
(`<data_dir>/downloads/bertjax_<config name>/examples`, reused when the settings and inputs are unchanged), then
re-emitted through TFDS. For large corpora run the create_pretraining_data CLI directly: it writes the final
dataset in parallel without the second pass.

A TFDS text dataset is read with `tfds.data_source` (it must be available in ArrayRecord format, which needs no
TensorFlow) and dumped to text in the create_pretraining_data input format: one document per example; each
paragraph (line) of `text_feature` is split into sentences at ". ", "! ", "? " before an upper-case letter or a
digit (a simple rule: abbreviations such as "Mr. Smith" split too), one sentence per line.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from bertjax.data import catalog, features
from bertjax.data.create_pretraining_data import create_pretraining_data
from bertjax.data.pipeline import split_filepaths
from bertjax.errors import BertjaxError

TEXT_DUMP_SHARD_BYTES = 64 << 20
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")


@dataclasses.dataclass
class BertPretrainingConfig(tfds.core.BuilderConfig):
    """Where the text comes from (exactly one of input_files / text_dataset) and the create_pretraining_data flags."""

    input_files: str = ""            # local text: comma-separated globs, one sentence per line, blank line = new doc
    text_dataset: str = ""           # or a TFDS text dataset, e.g. "wikipedia/20230601.en"
    text_split: str = "train"        # its split
    text_feature: str = "text"       # its text feature (one document per example)
    text_data_dir: str | None = None  # its TFDS data_dir (None: the TFDS default)
    vocab_file: str = ""
    do_lower_case: bool | None = None
    whole_word_masking: str = "none"
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    masking: str = "static"
    eval_fraction: float = 0.0
    num_workers: int = 1


def _checked(config: BertPretrainingConfig | None) -> BertPretrainingConfig:
    if not isinstance(config, BertPretrainingConfig):
        raise BertjaxError("the bert_pretraining builder needs config=BertPretrainingConfig(name=..., vocab_file=..., "
                           "input_files=... or text_dataset=...)")
    if bool(config.input_files) == bool(config.text_dataset):
        raise BertjaxError(f"BertPretrainingConfig {config.name!r}: give exactly one of input_files (local text globs) "
                           "or text_dataset (a TFDS text dataset name)")
    if not config.vocab_file:
        raise BertjaxError(f"BertPretrainingConfig {config.name!r}: vocab_file is required (a BERT vocab.txt)")
    return config


class BertPretraining(tfds.core.GeneratorBasedBuilder):
    """BERT pretraining examples (masked LM + next sentence prediction), in the bertjax feature format."""

    VERSION = tfds.core.Version(catalog.VERSION)
    RELEASE_NOTES = {catalog.VERSION: "Original create_pretraining_data algorithm, bertjax manifest in metadata."}
    # TFDS derives this from the package with `importlib_resources`, which is not installed (nor needed) here.
    code_path = epath.Path(__file__)

    def __init__(self, *, file_format: str | None = None, **kwargs: Any):
        super().__init__(file_format=file_format or catalog.FILE_FORMAT, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = _checked(self.builder_config)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n")[0],
            features=features.feature_spec(config.max_seq_length, config.max_predictions_per_seq),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,                  # create_pretraining_data already shuffled the instances
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator[tuple[str, dict]]]:
        config = _checked(self.builder_config)
        work = Path(dl_manager.download_dir) / f"bertjax_{config.name}"
        inputs = config.input_files or dump_text_dataset(config, work / "text")
        examples_dir = work / "examples"
        create_pretraining_data(
            inputs, examples_dir, config.vocab_file, do_lower_case=config.do_lower_case,
            whole_word_masking=config.whole_word_masking, max_seq_length=config.max_seq_length,
            max_predictions_per_seq=config.max_predictions_per_seq, masked_lm_prob=config.masked_lm_prob,
            short_seq_prob=config.short_seq_prob, dupe_factor=config.dupe_factor, random_seed=config.random_seed,
            masking=config.masking, eval_fraction=config.eval_fraction, num_workers=config.num_workers,
            show_progress=False)
        manifest = catalog.read_manifest(examples_dir)
        self.info.metadata.update(catalog.manifest_metadata(manifest))
        catalog.copy_vocab(catalog.dataset_vocab_path(examples_dir), self.data_dir, manifest)
        return {split: self._generate_examples(str(examples_dir), split) for split in manifest["num_examples"]}

    def _generate_examples(self, examples_dir: str, split: str) -> Iterator[tuple[str, dict]]:
        for path in split_filepaths(examples_dir, split):
            for i, record in enumerate(features.iter_records(path)):
                yield f"{os.path.basename(path)}-{i}", features.parse_example(record)


def article_lines(text: str) -> list[str]:
    """One document's text -> sentence lines (see module doc for the splitting rule)."""
    lines = []
    for paragraph in text.splitlines():
        lines.extend(s.strip() for s in _SENTENCE_BREAK.split(paragraph.strip()) if s.strip())
    return lines


def dump_text_dataset(config: BertPretrainingConfig, out_dir: Path) -> str:
    """Write a TFDS text dataset as create_pretraining_data input files; returns their glob. Reused once complete."""
    done = out_dir / ".complete"
    if not done.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            source = tfds.data_source(config.text_dataset, split=config.text_split, data_dir=config.text_data_dir)
        except Exception as e:  # TFDS raises many types here (not found, not prepared, no array_record, ...)
            raise BertjaxError(f"cannot read TFDS text dataset {config.text_dataset!r} split {config.text_split!r} "
                               f"without TensorFlow ({type(e).__name__}: {e}); it must be prepared in array_record "
                               "format (download_and_prepare(file_format='array_record'))") from e
        _write_documents(source, config.text_feature, out_dir)
        done.touch()
    return str(out_dir / "part-*.txt")


def _write_documents(source, text_feature: str, out_dir: Path) -> None:
    part, written, out = 0, 0, None
    try:
        for index in range(len(source)):
            example = source[index]
            if text_feature not in example:
                raise BertjaxError(f"TFDS text dataset examples have no feature {text_feature!r} (they have "
                                   f"{sorted(example)}); set text_feature")
            text = example[text_feature]
            lines = article_lines(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text))
            if not lines:
                continue
            if out is None or written >= TEXT_DUMP_SHARD_BYTES:
                if out is not None:
                    out.close()
                out = open(out_dir / f"part-{part:05d}.txt", "w", encoding="utf-8")
                part, written = part + 1, 0
            chunk = "\n".join(lines) + "\n\n"
            out.write(chunk)
            written += len(chunk)
    finally:
        if out is not None:
            out.close()


def build_dataset(data_dir: str | os.PathLike, **config_fields: Any) -> str:
    """Build (or reuse) a bert_pretraining dataset under `data_dir`; returns its directory for the pipeline.

    `config_fields` are BertPretrainingConfig fields; `name` defaults to "default".
    """
    config = BertPretrainingConfig(**{"name": "default", **config_fields})
    builder = BertPretraining(config=config, data_dir=os.fspath(data_dir))
    builder.download_and_prepare()
    return str(builder.data_dir)
