"""A bertjax dataset directory: TFDS metadata for its ArrayRecord shards, the manifest, and the vocab.

`finalize_dataset` turns shards written with `features.ShardWriter` into a TFDS dataset that
`tfds.builder_from_directory(output_dir).as_data_source()` reads without TensorFlow, stores the manifest in its
metadata (`metadata.json`, key "bertjax_manifest") and copies the vocab beside it (vocab.txt and a
tokenizer_config.json with the manifest's casing). `read_manifest` reads the manifest back.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bertjax import paths
from bertjax.data.features import check_lengths, count_records, example_shapes, feature_dtype
from bertjax.data.vocab_files import VOCAB_FILE, vocab_sha256, write_tokenizer_config
from bertjax.errors import BertjaxError

DATASET_NAME = "bert_pretraining"
FILE_FORMAT = "array_record"
VERSION = "1.0.0"
FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
DESCRIPTION = "BERT pretraining examples (masked LM + next sentence), written by bertjax."
MANIFEST_METADATA_KEY = "bertjax_manifest"
REQUIRED_MANIFEST_KEYS = (
    "vocab_size", "vocab_sha256", "do_lower_case", "strip_accents", "max_seq_length", "max_predictions_per_seq",
    "masking", "masked_lm_prob", "whole_word_mask", "random_seed", "dupe_factor", "num_examples",
)
MASKING_MODES = ("static", "dynamic")
WHOLE_WORD_MASK_MODES = ("none", "original", "per_word")

_SPLIT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def shard_filename(split: str, index: int, num_shards: int) -> str:
    """TFDS default file name of shard `index` of `num_shards` of a split."""
    return f"{DATASET_NAME}-{split}.{FILE_FORMAT}-{index:05d}-of-{num_shards:05d}"


def finalize_dataset(output_dir: str | os.PathLike, split_shards: Mapping[str, Sequence[tuple[str, int]]],
                     manifest: Mapping[str, Any], description: str | None = None,
                     vocab_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Turn ArrayRecord shards in `output_dir` into a TFDS dataset with the manifest in its metadata.

    `split_shards` maps split -> [(filename, num_examples), ...] in reading order (names relative to `output_dir`,
    or absolute paths inside it). Shards are renamed to TFDS names (empty ones are deleted), `manifest["num_examples"]`
    is filled from the shard counts, and the TFDS metadata of `features.feature_spec` with the manifest's lengths
    (dataset_info.json, features.json, metadata.json) is written. `vocab_file` (required for masking="dynamic", whose
    masks the pipeline draws from the vocab) is copied into the dataset as vocab.txt, with a tokenizer_config.json
    holding the manifest's casing; its sha256 must match the manifest's vocab_sha256. Returns the stored manifest.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    shards = _check_split_shards(output_dir, split_shards)
    num_examples = {split: sum(n for _, n in files) for split, files in shards.items()}
    manifest = _checked_manifest(manifest, num_examples)
    _check_vocab_file(vocab_file, manifest)
    for files in split_shards.values():          # all checks passed: now change the directory
        for filename, num in files:
            if int(num) == 0:
                os.remove(os.path.join(output_dir, os.fspath(filename)))
    splits = []
    for split, files in shards.items():
        final_names = _rename_shards(output_dir, split, files)
        splits.append({"filepathTemplate": FILEPATH_TEMPLATE, "name": split,
                       "numBytes": str(sum(os.path.getsize(os.path.join(output_dir, f)) for f in final_names)),
                       "shardLengths": [str(n) for _, n in files]})
    info = {"description": description or DESCRIPTION, "fileFormat": FILE_FORMAT, "name": DATASET_NAME,
            "splits": splits, "version": VERSION}
    _write_json(output_dir, "dataset_info.json", info)
    _write_json(output_dir, "features.json",
                features_json(manifest["max_seq_length"], manifest["max_predictions_per_seq"],
                              int(manifest.get("max_pairs_per_seq", 0))))
    _write_json(output_dir, "metadata.json", {MANIFEST_METADATA_KEY: manifest})
    if vocab_file is not None:
        copy_vocab(vocab_file, output_dir, manifest)
    return manifest


def features_json(max_seq_length: int, max_predictions_per_seq: int, max_pairs_per_seq: int = 0) -> dict[str, Any]:
    """TFDS's features.json for `features.feature_spec(T, P, K)`, made without importing TFDS (the import costs more
    than a small corpus's work); tests check it, and the dataset_info.json finalize_dataset writes, against TFDS's."""
    tfds_features = "tensorflow_datasets.core.features."
    entries = {}
    for name, shape in example_shapes(max_seq_length, max_predictions_per_seq, max_pairs_per_seq).items():
        entries[name] = {"pythonClassName": tfds_features + ("tensor_feature.Tensor" if shape else "scalar.Scalar"),
                         "tensor": {"dtype": feature_dtype(name).name, "encoding": "none",
                                    "shape": {"dimensions": [str(d) for d in shape]} if shape else {}}}
    return {"featuresDict": {"features": entries}, "pythonClassName": tfds_features + "features_dict.FeaturesDict"}


def _write_json(directory: str, name: str, content: Mapping[str, Any]) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)


def _check_vocab_file(vocab_file: str | os.PathLike | None, manifest: Mapping[str, Any]) -> None:
    if vocab_file is None:
        if manifest["masking"] == "dynamic":
            raise BertjaxError("masking='dynamic' needs the vocab in the dataset (the pipeline masks with it); "
                               "pass vocab_file to finalize_dataset")
        return
    if not paths.path(vocab_file).is_file():
        raise BertjaxError(f"vocab_file {vocab_file} does not exist; pass the vocab.txt the examples were made with")
    digest = vocab_sha256(vocab_file)
    if digest != manifest["vocab_sha256"]:
        raise BertjaxError(f"vocab_file {vocab_file} has sha256 {digest} but the manifest says "
                           f"{manifest['vocab_sha256']}; pass the vocab the examples were made with")


def copy_vocab(vocab_file: str | os.PathLike, dataset_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Copy vocab.txt into a dataset directory and write tokenizer_config.json beside it with the manifest's casing
    (do_lower_case, strip_accents) and what built the vocab, so the dataset always carries the casing its examples
    were made with."""
    (paths.path(dataset_dir) / VOCAB_FILE).write_bytes(paths.path(vocab_file).read_bytes())
    write_tokenizer_config(dataset_dir, bool(manifest["do_lower_case"]), bool(manifest["strip_accents"]),
                           trained_with=manifest.get("vocab_trained_with"))


def dataset_vocab_path(data_dir: str | os.PathLike) -> str:
    """Path of the vocab.txt stored in a dataset (BertjaxError if the dataset has none)."""
    path = os.path.join(resolve_dataset_dir(data_dir), VOCAB_FILE)
    if not paths.path(path).is_file():
        raise BertjaxError(f"dataset {data_dir} has no {VOCAB_FILE}; recreate it with a vocab_file "
                           "(create_pretraining_data always stores one)")
    return path


def manifest_metadata(manifest: Mapping[str, Any]):
    """A `tfds.core.MetadataDict` holding a manifest, for a builder's DatasetInfo(metadata=...)."""
    import tensorflow_datasets as tfds  # noqa: PLC0415  (create_pretraining_data imports this module, never TFDS)

    return tfds.core.MetadataDict({MANIFEST_METADATA_KEY: _json_ready(manifest)})


def _check_split_shards(output_dir: str, split_shards: Mapping[str, Sequence[tuple[str, int]]]
                        ) -> dict[str, list[tuple[str, int]]]:
    if not os.path.isdir(output_dir):
        raise BertjaxError(f"dataset directory {output_dir} does not exist; write the shards into it first")
    if not split_shards:
        raise BertjaxError("split_shards is empty; pass {split: [(filename, num_examples), ...]} for at least 'train'")
    shards: dict[str, list[tuple[str, int]]] = {}
    for split, files in split_shards.items():
        if not _SPLIT_NAME.match(split):
            raise BertjaxError(f"split name {split!r} is not valid; use letters, digits and '_' (e.g. 'train', 'eval')")
        kept = []
        for filename, num in files:
            path = os.path.join(output_dir, os.fspath(filename))
            if os.path.dirname(os.path.abspath(path)) != output_dir:
                raise BertjaxError(f"shard {filename} of split {split!r} is not directly inside {output_dir}; "
                                   "write shards into the dataset directory")
            if not os.path.isfile(path):
                raise BertjaxError(f"shard {path} of split {split!r} does not exist")
            actual = count_records(path)
            if actual != int(num):
                raise BertjaxError(f"shard {path} of split {split!r} holds {actual} examples, not {num}; "
                                   "pass the count ShardWriter.close() returned")
            kept.append((os.path.basename(path), int(num)))
        kept = [(name, num) for name, num in kept if num > 0]
        if not kept:
            raise BertjaxError(f"split {split!r} has no examples; leave it out of split_shards")
        shards[split] = kept
    return shards


def _rename_shards(output_dir: str, split: str, files: list[tuple[str, int]]) -> list[str]:
    """Rename the shards of one split to TFDS names, in two steps so that no name collides with another."""
    final = [shard_filename(split, i, len(files)) for i in range(len(files))]
    temporary = []
    for i, (name, _) in enumerate(files):
        tmp = f".bertjax-rename-{split}-{i:05d}"
        os.replace(os.path.join(output_dir, name), os.path.join(output_dir, tmp))
        temporary.append(tmp)
    for tmp, name in zip(temporary, final):
        os.replace(os.path.join(output_dir, tmp), os.path.join(output_dir, name))
    return final


def _checked_manifest(manifest: Mapping[str, Any], num_examples: Mapping[str, int]) -> dict[str, Any]:
    manifest = dict(_json_ready(manifest))
    if "num_examples" in manifest and dict(manifest["num_examples"]) != dict(num_examples):
        raise BertjaxError(f"manifest num_examples {manifest['num_examples']} does not match the shards "
                           f"{dict(num_examples)}; leave num_examples out and finalize_dataset fills it in")
    manifest["num_examples"] = dict(num_examples)
    validate_manifest(manifest, source="manifest")
    return manifest


def validate_manifest(manifest: Mapping[str, Any], source: str) -> None:
    """Raise BertjaxError naming `source` if the manifest lacks a required key or has an unknown mode."""
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise BertjaxError(f"{source} is missing keys {missing}; "
                           f"a bertjax manifest needs {list(REQUIRED_MANIFEST_KEYS)}")
    if manifest["masking"] not in MASKING_MODES:
        raise BertjaxError(f"{source}: masking={manifest['masking']!r}, expected one of {MASKING_MODES}")
    if manifest["whole_word_mask"] not in WHOLE_WORD_MASK_MODES:
        raise BertjaxError(f"{source}: whole_word_mask={manifest['whole_word_mask']!r}, "
                           f"expected one of {WHOLE_WORD_MASK_MODES}")
    check_lengths(manifest["max_seq_length"], manifest["max_predictions_per_seq"])
    pairs = manifest.get("max_pairs_per_seq", 0)  # packed rows (bertjax.data.packing); absent or 0: one pair a row
    if not isinstance(pairs, int) or isinstance(pairs, bool) or pairs < 0:
        raise BertjaxError(f"{source}: max_pairs_per_seq={pairs!r} must be a non-negative integer (0: not packed)")
    if pairs and manifest["masking"] != "static":
        raise BertjaxError(f"{source}: packed rows (max_pairs_per_seq={pairs}) need masking='static'")


def _json_ready(value: Any) -> Any:
    """Numpy scalars/arrays and tuples -> plain JSON types (raises BertjaxError for anything else)."""
    try:
        return json.loads(json.dumps(value, default=_to_builtin))
    except TypeError as e:
        raise BertjaxError(f"manifest is not JSON-serialisable: {e}; use str/int/float/bool/list/dict values") from e


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r}")


def resolve_dataset_dir(data_dir: str | os.PathLike) -> str:
    """The TFDS dataset directory at `data_dir`, or the single one below it (as a builder's name/config/version)."""
    directory = paths.path(data_dir)
    data_dir = os.fspath(directory)
    if not directory.is_dir():
        raise BertjaxError(f"dataset directory {data_dir} does not exist; create it with "
                           "`python -m bertjax.data.create_pretraining_data` or the bert_pretraining TFDS builder")
    if (directory / "dataset_info.json").is_file():
        return data_dir
    found = [os.fspath(f.parent) for f in paths.files_under(directory, max_depth=3, skip_dir=_skipped_dir)
             if f.name == "dataset_info.json"]
    if len(found) == 1:
        return found[0]
    if not found:
        raise BertjaxError(f"{data_dir} is not a TFDS dataset directory (no dataset_info.json); point data_dir at the "
                           "output of create_pretraining_data or the bert_pretraining builder")
    raise BertjaxError(f"{data_dir} holds several TFDS datasets {found}; point data_dir at one of them")


def _skipped_dir(name: str) -> bool:
    return name == "downloads" or name.startswith(".")   # TFDS download caches, staging directories


def check_shards(data_dir: str | os.PathLike) -> None:
    """Every shard file that the dataset's dataset_info.json lists is there and not empty; BertjaxError naming the
    first one missing otherwise (a reader would fail later, mid-run)."""
    dataset_dir = resolve_dataset_dir(data_dir)
    info = _read_json(os.path.join(dataset_dir, "dataset_info.json"), dataset_dir)
    present = {p.name: p.stat().length for p in paths.path(dataset_dir).iterdir()}
    expected = [split.get("filepathTemplate", FILEPATH_TEMPLATE).format(
                    DATASET=info.get("name", DATASET_NAME), SPLIT=split["name"],
                    FILEFORMAT=info.get("fileFormat", FILE_FORMAT), SHARD_X_OF_Y=f"{i:05d}-of-{n:05d}")
                for split in info.get("splits", []) for n in [len(split.get("shardLengths", []))] for i in range(n)]
    missing = [name for name in expected if not present.get(name)]
    if missing:
        raise BertjaxError(f"dataset {dataset_dir} lacks {len(missing)} of its {len(expected)} shard files "
                           f"({missing[0]}{', ...' if len(missing) > 1 else ''} missing or empty); restore them or "
                           "rebuild the dataset with create_pretraining_data --overwrite")


def _read_json(path: str, dataset_dir: str) -> dict[str, Any]:
    """A JSON object file of a dataset; BertjaxError naming it if it does not parse (truncated, overwritten)."""
    try:
        content = json.loads(paths.path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        content = e
    if not isinstance(content, dict):
        reason = f" ({content})" if isinstance(content, Exception) else ""
        raise BertjaxError(f"{path} of the dataset {dataset_dir} is not a readable JSON object{reason}; restore it, or "
                           "rebuild the dataset with create_pretraining_data --overwrite")
    return content


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a bertjax dataset directory, local or gs:// (see docs/design.md for its keys)."""
    dataset_dir = resolve_dataset_dir(data_dir)
    path = os.path.join(dataset_dir, "metadata.json")
    manifest = None
    if paths.path(path).is_file():
        manifest = _read_json(path, dataset_dir).get(MANIFEST_METADATA_KEY)
    if manifest is None:
        raise BertjaxError(f"{dataset_dir} is a TFDS dataset but not a bertjax one (no {MANIFEST_METADATA_KEY} in "
                           "metadata.json); create it with create_pretraining_data or the bert_pretraining builder")
    validate_manifest(manifest, source=path)
    return manifest
