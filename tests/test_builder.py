"""builder.py: the registered bert_pretraining TFDS builder, from local text and from a TFDS text dataset by name."""
import os
import random
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax.data import builder, catalog, features, pipeline
from bertjax.errors import BertjaxError

WORDS = [f"word{i}" for i in range(60)]
SETTINGS = dict(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=2)


def _documents(num_docs=12, sentences=6, seed=0):
    rng = random.Random(seed)
    return [[" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
             for _ in range(sentences)] for _ in range(num_docs)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(corpus.txt path, vocab.txt path, documents): 12 documents of 6 sentences, a word-level vocab covering them."""
    root = tmp_path_factory.mktemp("text")
    docs = _documents()
    (root / "corpus.txt").write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n")
    (root / "vocab").mkdir()
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + WORDS
    (root / "vocab" / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return str(root / "corpus.txt"), str(root / "vocab" / "vocab.txt"), docs


class BertjaxTinyText(tfds.core.GeneratorBasedBuilder):
    """A registered TFDS text dataset (like wikipedia: one article per example, paragraphs on lines)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "title": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, doc in enumerate(_documents(seed=1)):
            yield i, {"text": " ".join(doc[:3]) + "\n" + " ".join(doc[3:]), "title": f"doc {i}"}


def test_builder_is_registered_with_tfds():
    assert tfds.builder_cls("bert_pretraining") is builder.BertPretraining


def test_build_from_local_text(corpus, tmp_path):
    text, vocab, _ = corpus
    out = builder.build_dataset(str(tmp_path / "tfds"), input_files=text, vocab_file=vocab, eval_fraction=0.2,
                                **SETTINGS)
    assert out == str(tmp_path / "tfds" / "bert_pretraining" / "default" / "1.0.0")
    manifest = catalog.read_manifest(out)
    assert (manifest["max_seq_length"], manifest["max_predictions_per_seq"], manifest["dupe_factor"]) == (32, 5, 2)
    assert manifest["masking"] == "static" and set(manifest["num_examples"]) == {"train", "eval"}
    sources = tfds.builder_from_directory(out).as_data_source()
    assert {split: len(sources[split]) for split in sources} == manifest["num_examples"]
    assert os.path.isfile(os.path.join(out, "vocab.txt"))

    # The examples are exactly those create_pretraining_data made (kept in the TFDS download dir), in order.
    staged = tfds.builder_from_directory(str(tmp_path / "tfds" / "downloads" / "bertjax_default" / "examples"))
    staged_train = staged.as_data_source()["train"]
    assert len(staged_train) == len(sources["train"])
    for i in range(len(staged_train)):
        for name in features.FEATURE_NAMES:
            np.testing.assert_array_equal(sources["train"][i][name], staged_train[i][name])
    example = sources["train"][0]
    assert example["input_ids"][0] == 2 and example["masked_lm_weights"].sum() >= 1      # [CLS] first, masked

    batch = next(pipeline.create_iterator(str(tmp_path / "tfds"), "train", 4, process_index=0, process_count=1))
    assert batch["input_ids"].shape == (4, 32)                                             # found under data_dir
    assert "tensorflow" not in sys.modules                      # building and reading never imported TensorFlow


def test_second_build_reuses_the_dataset(corpus, tmp_path):
    text, vocab, _ = corpus
    first = builder.build_dataset(str(tmp_path), input_files=text, vocab_file=vocab, **SETTINGS)
    stamp = os.path.getmtime(os.path.join(first, "dataset_info.json"))
    assert builder.build_dataset(str(tmp_path), input_files=text, vocab_file=vocab, **SETTINGS) == first
    assert os.path.getmtime(os.path.join(first, "dataset_info.json")) == stamp


def test_build_with_dynamic_masking_feeds_the_pipeline(corpus, tmp_path):
    text, vocab, _ = corpus
    out = builder.build_dataset(str(tmp_path), name="dyn", input_files=text, vocab_file=vocab, masking="dynamic",
                                **SETTINGS)
    assert catalog.read_manifest(out)["masking"] == "dynamic"
    assert tfds.builder_from_directory(out).as_data_source()["train"][0]["masked_lm_weights"].sum() == 0
    epochs = list(pipeline.create_iterator(out, "train", 4, shuffle=False, num_epochs=2, process_index=0,
                                           process_count=1))
    half = len(epochs) // 2
    assert all(b["masked_lm_weights"].sum(axis=1).min() >= 1 for b in epochs)
    assert any(not np.array_equal(a["masked_lm_positions"], b["masked_lm_positions"])
               for a, b in zip(epochs[:half], epochs[half:]))


def test_build_from_a_tfds_text_dataset_by_name(corpus, tmp_path):
    _, vocab, _ = corpus
    BertjaxTinyText(data_dir=str(tmp_path / "text_tfds"), file_format="array_record").download_and_prepare()
    out = builder.build_dataset(str(tmp_path / "tfds"), name="bytext", text_dataset="bertjax_tiny_text",
                                text_data_dir=str(tmp_path / "text_tfds"), vocab_file=vocab, **SETTINGS)
    dumped = (tmp_path / "tfds" / "downloads" / "bertjax_bytext" / "text" / "part-00000.txt").read_text()
    documents = dumped.rstrip("\n").split("\n\n")
    assert sorted(documents) == sorted("\n".join(doc) for doc in _documents(seed=1))   # one sentence per line
    assert catalog.read_manifest(out)["num_examples"]["train"] == len(tfds.builder_from_directory(out)
                                                                      .as_data_source()["train"]) > 0


def test_article_lines_splits_paragraphs_into_sentences():
    text = 'First one. "Second," he said. Third!\nNew paragraph? Yes 2 more. lower case stays.\n\n'
    assert builder.article_lines(text) == ["First one.", '"Second," he said.', "Third!", "New paragraph?",
                                           "Yes 2 more. lower case stays."]


@pytest.mark.parametrize("fields, message", [
    (dict(input_files="a.txt"), "vocab_file is required"),
    (dict(vocab_file="v.txt"), "exactly one of input_files"),
    (dict(vocab_file="v.txt", input_files="a.txt", text_dataset="wiki"), "exactly one of input_files"),
])
def test_bad_configs_raise_one_clear_error(tmp_path, fields, message):
    with pytest.raises(BertjaxError, match=message):
        builder.build_dataset(str(tmp_path), **fields)


def test_unknown_text_dataset_is_a_clear_error(corpus, tmp_path):
    _, vocab, _ = corpus
    with pytest.raises(BertjaxError, match="cannot read TFDS text dataset 'no_such_text_dataset'"):
        builder.build_dataset(str(tmp_path), text_dataset="no_such_text_dataset", vocab_file=vocab, **SETTINGS)


def test_builder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(BertjaxError, match="needs config=BertPretrainingConfig"):
        builder.BertPretraining(data_dir=str(tmp_path)).info
