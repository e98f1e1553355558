"""Configs: the recipes, overrides from the command line, and clear errors for bad configs."""
import pytest
from absl import flags
from ml_collections import config_flags

from _train_helpers import REPO_ROOT, load_config, tiny_config
from bertjax import run_config
from bertjax.errors import BertjaxError
from bertjax.objectives import Pretraining

CONFIGS = ("base", "large", "phase2", "demo")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_docstring_is_its_run_command(name):
    source = (REPO_ROOT / "configs" / f"{name}.py").read_text()
    assert f"python main.py --config=configs/{name}.py --workdir=" in source


def test_base_is_the_paper_recipe():
    config = load_config("base")
    assert (config.train.batch_size, config.train.num_train_steps) == (256, 1_000_000)
    model = run_config.bert_config(config, 30522)  # the size is unset: base, unless init_from brings a model
    assert (model.num_hidden_layers, model.hidden_size, model.num_attention_heads) == (12, 768, 12)
    assert (config.data.max_seq_length, config.data.max_predictions_per_seq) == (128, 20)
    assert (config.model.hidden_dropout_prob, config.model.attention_probs_dropout_prob) == (0.1, 0.1)
    optimizer = config.optimizer
    assert (optimizer.name, optimizer.learning_rate, optimizer.warmup_steps) == ("bert_adam", 1e-4, 10_000)
    assert (optimizer.weight_decay, optimizer.clip_norm) == (0.01, 1.0)
    assert config.dtype == "bfloat16"


def test_large_and_phase2_differ_from_base_where_they_should():
    assert load_config("large").model.size == "large"
    phase2 = load_config("phase2")
    assert (phase2.data.max_seq_length, phase2.data.max_predictions_per_seq) == (512, 80)
    with pytest.raises(BertjaxError, match=r"--config.train.init_from is required"):
        run_config.validate(phase2, num_devices=8, process_count=1)
    phase2.train.init_from = "/phase1/workdir"
    run_config.validate(phase2, num_devices=8, process_count=1)


def _parse(*overrides, name="demo"):
    argv = ["prog", f"--config={REPO_ROOT / 'configs' / name}.py", *overrides]
    values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    return holder.value


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_locked_through_the_flag(name):
    config = _parse(name=name)
    assert config.is_locked and config.train.batch_size > 0


def test_every_field_can_be_overridden_on_the_command_line():
    config = _parse("--config.train.batch_size=32", "--config.optimizer.learning_rate=5e-4",
                    "--config.data.dir=/data/x", "--config.model.vocab_size=1000", "--config.dtype=bfloat16")
    assert (config.train.batch_size, config.optimizer.learning_rate) == (32, 5e-4)
    assert (config.data.dir, config.model.vocab_size, config.dtype) == ("/data/x", 1000, "bfloat16")


def test_unknown_field_and_wrong_type_name_the_field():
    with pytest.raises(AttributeError, match='Did you mean "batch_size"'):  # main.py turns it into one line
        _parse("--config.train.batchsize=32")
    with pytest.raises(flags.IllegalFlagValueError, match="batch_size"):
        _parse("--config.train.batch_size=8.5")


def test_batch_size_not_divisible_by_devices_names_the_field_and_fix():
    config = tiny_config()
    config.train.batch_size = 12
    with pytest.raises(BertjaxError, match=r"--config.train.batch_size=12 must be divisible by the number of devices "
                                           r"\(8\).*change the batch size"):
        run_config.validate(config, num_devices=8, process_count=1)
    config.train.batch_size = 16
    config.train.micro_batches = 4
    with pytest.raises(BertjaxError, match="micro_batches"):
        run_config.validate(config, num_devices=8, process_count=1)
    config.train.micro_batches = 1
    config.dtype = "float16"
    with pytest.raises(BertjaxError, match="--config.dtype='float16'"):
        run_config.validate(config, num_devices=8, process_count=1)


def _manifest(**changes):
    manifest = {"vocab_size": 96, "vocab_sha256": "ab" * 32, "max_seq_length": 16, "max_predictions_per_seq": 4}
    return {**manifest, **changes}


def test_manifest_mismatch_names_the_field(tmp_path):
    config = tiny_config()
    assert run_config.check_manifest(config, _manifest(), "/d", None) == 96
    with pytest.raises(BertjaxError, match=r"--config.data.max_seq_length=16 does not match.*max_seq_length=128"):
        run_config.check_manifest(config, _manifest(max_seq_length=128), "/d", None)
    with pytest.raises(BertjaxError, match=r"--config.data.max_predictions_per_seq=4 does not match"):
        run_config.check_manifest(config, _manifest(max_predictions_per_seq=20), "/d", None)
    with pytest.raises(BertjaxError, match=r"--config.data.eval_split='eval' is not a split of the dataset"):
        run_config.check_manifest(config, _manifest(num_examples={"train": 10}), "/d", None)
    config.model.vocab_size = 100
    with pytest.raises(BertjaxError, match=r"--config.model.vocab_size=100 does not match.*vocab_size=96"):
        run_config.check_manifest(config, _manifest(), "/d", None)
    config.model.vocab_size = None
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    with pytest.raises(BertjaxError, match=r"--config.data.vocab_file=.*is not the vocab the dataset"):
        run_config.check_manifest(config, _manifest(), "/d", str(vocab))


def test_the_door_checks_everything_before_building_anything(tmp_path):
    config = load_config("demo")
    config.optimizer.name = "adamm"
    workdir = tmp_path / "run"
    with pytest.raises(BertjaxError, match=r"config.optimizer.name='adamm' is unknown"):
        run_config.check_run(config, str(workdir), num_devices=1, process_count=1)
    assert not workdir.exists()  # the demo's dataset was not built for a config that cannot run
    config = tiny_config()
    config.model.num_attention_heads = 5
    with pytest.raises(BertjaxError, match=r"--config.model.\*: .*not divisible by num_attention_heads=5"):
        run_config.check_run(config, str(workdir), num_devices=1, process_count=1, vocab_size=96)
    config.model.num_attention_heads = None
    spec = run_config.check_run(config, str(workdir), num_devices=1, process_count=1, vocab_size=96)
    assert (spec.vocab_size, spec.data_dir) == (96, None)


def test_unknown_remat_policy_is_a_clear_error():
    config = tiny_config()
    config.model.remat_policy = "everything"
    with pytest.raises(BertjaxError, match=r"--config.model.remat_policy='everything' is unknown; use one of "
                                           r"nothing_saveable, dots_saveable, minimal"):
        run_config.validate(config, num_devices=1, process_count=1)


def test_token_ids_must_be_below_vocab_size():
    from _batches import make_batch

    batch = make_batch(4)
    Pretraining(4).check_batch(batch, 96)
    with pytest.raises(BertjaxError, match="input_ids outside"):
        Pretraining(4).check_batch(batch, 50)


def test_missing_dataset_names_the_field(tmp_path):
    from bertjax.data import prepare

    config = tiny_config()
    config.data.dir = str(tmp_path / "nope")
    with pytest.raises(BertjaxError, match=r"--config.data.dir=.*nope does not exist"):
        prepare.dataset_dir(config, str(tmp_path))
    config.data.dir = None
    with pytest.raises(BertjaxError, match=r"--config.data.dir is not set"):
        prepare.dataset_dir(config, str(tmp_path))
