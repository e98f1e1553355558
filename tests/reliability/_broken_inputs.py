"""The pre-existing inputs of the bad-input table, built once under one root: a tiny dataset and broken copies of
it, a corpus and vocabs (and broken ones), bad config files, a non-empty directory, fake checkpoints, and on demand
a trained tiny workdir with a corrupt copy."""
import gzip
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq

import _tiny_dataset
from _train_helpers import REPO_ROOT, load_config, tiny_config
from test_fault_checkpoints import CORRUPTIONS
from test_instances import small_vocab, write_corpus, write_small_vocab

FIXTURES = REPO_ROOT / "tests" / "fixtures"


def make_world(root: Path) -> SimpleNamespace:
    """Every pre-existing input of the table under one root: a tiny dataset (and broken copies), a corpus and
    vocabs (and broken ones), bad config files, a non-empty directory, a fake TF checkpoint."""
    w = SimpleNamespace(root=root)
    w.dataset = _tiny_dataset.write_dataset(str(root / "dataset"), {"train": [64], "eval": [16]})
    w.no_shard = _tiny_dataset.write_dataset(str(root / "no_shard"), {"train": [32, 32], "eval": [16]})
    w.deleted_shard = sorted(p for p in Path(w.no_shard).iterdir() if "train.array_record-00001" in p.name)[0]
    w.deleted_shard.unlink()
    w.no_manifest = root / "no_manifest"
    shutil.copytree(w.dataset, w.no_manifest)
    for p in w.no_manifest.rglob("dataset_info.json"):
        p.unlink()
    w.bad_info = root / "bad_info"
    shutil.copytree(w.dataset, w.bad_info)
    (w.bad_info / "dataset_info.json").write_text('{"name": "bert_pretraining", "splits": [')  # truncated
    w.truncated_shard = root / "truncated_shard"
    shutil.copytree(w.dataset, w.truncated_shard)
    for p in w.truncated_shard.glob("*train.array_record*"):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    w.seq512 = _tiny_dataset.write_dataset(str(root / "seq512"), {"train": [8], "eval": [8]}, max_seq_length=512,
                                           max_predictions_per_seq=80)

    w.corpus = write_corpus(root / "corpus.txt", 40, seed=3)
    w.empty_corpus = root / "empty.txt"
    w.empty_corpus.write_text("")
    w.binary = root / "model.bin"
    w.binary.write_bytes(bytes(range(256)) * 400)
    w.corpus_dir = root / "corpus_dir"
    w.corpus_dir.mkdir()
    (w.corpus_dir / "a.txt").write_text("hello world .\n")
    _add_broken_corpora(w, root)
    w.vocab_dir = write_small_vocab(root / "vocab")
    w.empty_vocab = root / "empty_vocab" / "vocab.txt"
    w.empty_vocab.parent.mkdir()
    w.empty_vocab.write_text("")
    w.no_specials = root / "no_specials" / "vocab.txt"
    w.no_specials.parent.mkdir()
    w.no_specials.write_text("".join(t + "\n" for t in small_vocab() if t not in ("[CLS]", "[SEP]", "[MASK]")))

    w.full = root / "full"
    w.full.mkdir()
    (w.full / "keep.txt").write_text("precious")
    w.not_tf = root / "not_tf"
    w.not_tf.mkdir()
    (w.not_tf / "bert_model.ckpt.index").write_bytes(b"this is not an SSTable index" * 10)
    for name in ("bert_config.json", "vocab.txt"):
        shutil.copy(FIXTURES / "tf_bert" / name, w.not_tf / name)
    w.bad_hf = root / "bad_hf"
    shutil.copytree(FIXTURES / "hf_bert", w.bad_hf)
    (w.bad_hf / "config.json").write_text('{"hidden_size": 32,')  # truncated
    w.text_config = root / "notes.py"
    w.text_config.write_text("These are my notes\nabout the run, not Python.\n")
    w.raising_config = root / "raising.py"
    w.raising_config.write_text("def get_config():\n    raise ValueError('no config for you')\n")
    w.a_file = root / "a_file"
    w.a_file.write_text("not a directory")
    return w


def _add_broken_corpora(w: SimpleNamespace, root: Path) -> None:
    """Corpora in the other input formats, each broken in one way (and one good one-review-per-line file)."""
    good = "".join(json.dumps({"text": f"Review {i} is fine. It has two sentences."}) + "\n" for i in range(3))
    w.not_json = root / "not_json.jsonl"
    w.not_json.write_text(good + '{"text": "unterminated\n' + good)
    w.no_field = root / "no_field.jsonl"
    w.no_field.write_text(good + json.dumps({"body": "text under another name", "id": 7}) + "\n")
    w.parquet_no_column = root / "reviews.parquet"
    pq.write_table(pa.table({"id": [1, 2], "body": ["One. Two.", "Three. Four."]}), w.parquet_no_column)
    w.mixed = root / "mixed"
    w.mixed.mkdir()
    (w.mixed / "a.jsonl").write_text(good)
    (w.mixed / "b.txt").write_text("A sentence.\nAnother.\n")
    w.truncated_gz = root / "reviews.jsonl.gz"
    whole = gzip.compress((good * 200).encode())
    w.truncated_gz.write_bytes(whole[: len(whole) // 2])
    w.reviews = root / "reviews.txt"
    w.reviews.write_text("정말 재밌었다. 또 보고 싶어요.\n배우들 연기가 좋았다. 추천합니다.\n")


def add_trained_runs(world: SimpleNamespace) -> SimpleNamespace:
    """`world` plus a trained tiny workdir (2 steps on the tiny dataset, checkpoint step 2, max_position_embeddings
    64) and a copy of it whose checkpoint has truncated array data. Built only for the cases that need it."""
    from bertjax.train import train_and_evaluate  # noqa: PLC0415

    config = tiny_config(num_train_steps=2)
    config.data.dir = world.dataset
    config.model.max_position_embeddings = 64
    config.checkpoint.every_steps = 2
    config.eval.num_batches = 1
    world.run = world.root / "run"
    train_and_evaluate(config, str(world.run))
    world.corrupt_run = world.root / "corrupt_run"
    shutil.copytree(world.run, world.corrupt_run)
    CORRUPTIONS["truncated_array_data"](world.corrupt_run / "checkpoints" / "2")
    world.finetuned = world.root / "finetuned"
    train_and_evaluate(classification_config(world, world.run), str(world.finetuned))
    return world


# A 2-class TSV task on configs/finetune_glue.py: these fields, in the trained run and on main.py's command line.
CLASSIFICATION_FIELDS = {"task": "classification", "data.text_columns": "sentence", "data.label_column": "label",
                         "data.max_seq_length": 16, "train.batch_size": 8, "eval.batch_size": 8}
CLASSIFICATION_ARGS = tuple(f"--config.{name}={value}" for name, value in CLASSIFICATION_FIELDS.items())


def classification_config(world: SimpleNamespace, init_from: Path):
    """The CLASSIFICATION_FIELDS run on a task of 16 train rows (two steps of 8) and 8 dev rows, from `init_from`."""
    world.cls_task = world.root / "cls_task"
    world.cls_task.mkdir(exist_ok=True)
    for split, rows in (("train", 16), ("dev", 8)):
        lines = [f"the corpus {'good' if i % 2 else 'bad'} line {i}\t{i % 2}" for i in range(rows)]
        (world.cls_task / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(lines) + "\n")
    config = load_config("finetune_glue")
    for name, value in CLASSIFICATION_FIELDS.items():
        *section, field = name.split(".")
        (config[section[0]] if section else config)[field] = value
    config.data.dir = str(world.cls_task)
    config.train.init_from = str(init_from)
    config.train.num_epochs = 1
    config.log.tensorboard = False
    return config
