"""Make the original-TF-checkpoint fixture in tests/fixtures/tf_bert/.

A tiny BERT is written in the layout of google-research/bert's `run_pretraining.py` (Estimator + `tf.train.Saver`,
TF1 variables): every model variable under its original `modeling.py` / `run_pretraining.py` name, the
`<name>/adam_m` and `<name>/adam_v` slots that `optimization.py: AdamWeightDecayOptimizer` creates for each, and the
int64 `global_step`. bertjax reads it WITHOUT TensorFlow (bertjax/convert/tf_checkpoint.py,
tests/test_tf_checkpoint.py).

Two steps, in two environments, because TensorFlow must never enter the bertjax environment:

    # 1. TensorFlow, in a throw-away virtualenv (the fixture in the repository was written by tensorflow-cpu 2.21.0,
    #    numpy 2.4.6, Python 3.11.7; CPU only):
    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0
    /tmp/tfenv/bin/python scripts/make_tf_fixture.py tf       # checkpoint, weights.npz, inputs.npz, config, vocab

    # 2. PyTorch + transformers (the bertjax environment has them: torch 2.13.0+cpu, transformers 5.23.0; or a
    #    virtualenv made from requirements-fixtures.txt):
    python scripts/make_tf_fixture.py hf                      # expected.npz, from weights.npz + inputs.npz

    # options for both: --out DIR (default tests/fixtures/tf_bert), --seed N (default 2024; step 1 only)

Files (about 0.4 MB in all):
  bert_model.ckpt.index, bert_model.ckpt.data-00000-of-00001, checkpoint
                  `tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True)` (the Saver tf.estimator.Estimator
                  makes, so one merged shard on one device), `.save(sess, ..., write_meta_graph=False)`: the .meta
                  graph is not written (only needed to rebuild the TF graph; here it would be 485 KB, more than the rest).
  dtypes.ckpt.index, dtypes.ckpt.data-0000{0,1}-of-00002
                  a second bundle saved with `Saver(sharded=True)` from two CPU devices (so two data shards, merged
                  by TF's MergeBundles), holding one small tensor of each dtype a BERT checkpoint may use: float32,
                  float16, bfloat16, int32, int64 (and a float32 scalar).
  dtypes.npz      the values of dtypes.ckpt by dtype name (bfloat16 as its uint16 bit patterns).
  bert_config.json  google-research/bert's format (2 layers, hidden 32, 4 heads, intermediate 48,
                  max_position_embeddings 40, type_vocab_size 2, vocab_size = len(vocab.txt)).
  vocab.txt       a small uncased WordPiece vocab in BERT's order ([PAD], [unused*], [UNK], [CLS], [SEP], [MASK],
                  punctuation, letters, words, ## pieces).
  weights.npz     the model variables only, under their TF names, float32, exactly as saved.
  inputs.npz      a padded batch, int32: input_ids, input_mask, segment_ids [2, 12], masked_lm_positions,
                  masked_lm_ids [2, 3] (0-padded), float32 masked_lm_weights [2, 3], next_sentence_labels [2].
  expected.npz    transformers `BertForPreTraining` (PyTorch, float32, eval mode, eager attention) with weights.npz
                  loaded: sequence_output [2,12,32], pooled_output [2,32], mlm_logits [2,3,V] (prediction logits
                  gathered at masked_lm_positions), nsp_logits [2,2].
  metadata.json   versions, seed, variable names and shapes, how the values were drawn.

Values: matrices and embedding tables ~ N(0, 0.1^2) (larger than BERT's 0.02 so attention is far from uniform),
LayerNorm gammas 1 + N(0, 0.2^2), betas and all biases N(0, 0.2^2), so a swapped, untransposed or defaulted
variable changes the outputs. The optimizer slots hold their own random values (adam_v non-negative);
global_step = 4321.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "tf_bert")
CKPT_NAME = "bert_model.ckpt"
DTYPES_NAME = "dtypes.ckpt"
GLOBAL_STEP = 4321

BERT_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 48,
    "max_position_embeddings": 40,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": None,  # len(vocab.txt)
}

WORDS = ("the a an and of to in on at is was it he she they we you i his her cat dog mat sat ran jump run walk "
         "happy sad big small red blue house tree water day night good bad one two three purr play book read").split()
PIECES = "##s ##ed ##ing ##ly ##er ##est ##y ##a ##e ##o ##n ##t ##r ##able ##ful".split()


def make_vocab() -> list[str]:
    """BERT's vocab order, shrunk: specials and [unused*] first, then punctuation, letters, words, ## pieces."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(10)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list("!\"'(),-.:;?")
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += [w for w in WORDS if len(w) > 1] + PIECES
    assert len(vocab) == len(set(vocab)), "duplicate vocab entry"
    return vocab


def tf_variable_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every model variable of run_pretraining.py's graph, by its original name, in creation order."""
    h, inner, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {
        "bert/embeddings/word_embeddings": (v, h),
        "bert/embeddings/token_type_embeddings": (cfg["type_vocab_size"], h),
        "bert/embeddings/position_embeddings": (cfg["max_position_embeddings"], h),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/embeddings/LayerNorm/gamma": (h,),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert/encoder/layer_{i}/"
        for proj in ("query", "key", "value"):
            shapes[p + f"attention/self/{proj}/kernel"] = (h, h)
            shapes[p + f"attention/self/{proj}/bias"] = (h,)
        shapes[p + "attention/output/dense/kernel"] = (h, h)
        shapes[p + "attention/output/dense/bias"] = (h,)
        shapes[p + "attention/output/LayerNorm/beta"] = (h,)
        shapes[p + "attention/output/LayerNorm/gamma"] = (h,)
        shapes[p + "intermediate/dense/kernel"] = (h, inner)
        shapes[p + "intermediate/dense/bias"] = (inner,)
        shapes[p + "output/dense/kernel"] = (inner, h)
        shapes[p + "output/dense/bias"] = (h,)
        shapes[p + "output/LayerNorm/beta"] = (h,)
        shapes[p + "output/LayerNorm/gamma"] = (h,)
    shapes.update({
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    })
    return shapes


def random_value(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith("/gamma"):
        value = 1.0 + 0.2 * rng.standard_normal(shape)
    elif len(shape) == 1:
        value = 0.2 * rng.standard_normal(shape)
    else:
        value = 0.1 * rng.standard_normal(shape)
    return value.astype(np.float32)


def make_inputs(vocab: list[str]) -> dict[str, np.ndarray]:
    """Two [CLS] A [SEP] B [SEP] rows of length 12 and 9 (0-padded), three masked slots each (the last of row 1
    padded with position 0, as create_pretraining_data does)."""
    ids = {t: i for i, t in enumerate(vocab)}
    rows = [("[CLS] the cat sat on the mat [SEP]", "it purr ##ed [SEP]", [2, 5, 10], 0),
            ("[CLS] a dog ran [SEP]", "he jump ##s [SEP]", [3, 6], 1)]
    batch, seq_len, num_pred = len(rows), 12, 3
    out = {"input_ids": np.zeros((batch, seq_len), np.int32), "input_mask": np.zeros((batch, seq_len), np.int32),
           "segment_ids": np.zeros((batch, seq_len), np.int32),
           "masked_lm_positions": np.zeros((batch, num_pred), np.int32),
           "masked_lm_ids": np.zeros((batch, num_pred), np.int32),
           "masked_lm_weights": np.zeros((batch, num_pred), np.float32),
           "next_sentence_labels": np.zeros((batch,), np.int32)}
    for b, (seg_a, seg_b, positions, label) in enumerate(rows):
        a, bb = seg_a.split(), seg_b.split()
        tokens = [ids[t] for t in a + bb]
        out["input_ids"][b, :len(tokens)] = tokens
        out["input_mask"][b, :len(tokens)] = 1
        out["segment_ids"][b, len(a):len(tokens)] = 1
        out["masked_lm_positions"][b, :len(positions)] = positions
        out["masked_lm_ids"][b, :len(positions)] = [tokens[p] for p in positions]
        out["masked_lm_weights"][b, :len(positions)] = 1.0
        out["input_ids"][b, positions[:-1]] = ids["[MASK]"]  # the last masked slot keeps its original token
        out["next_sentence_labels"][b] = label
    return out


def dtype_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One small array per dtype for the sharded dtypes bundle (float arrays drawn in float32, then cast)."""
    return {
        "float32": rng.standard_normal((3, 5)).astype(np.float32),
        "float16": rng.standard_normal((4, 3)).astype(np.float16),
        "bfloat16": rng.standard_normal((2, 7)).astype(np.float32),  # cast to bfloat16 by TF
        "int32": rng.integers(-2**31, 2**31 - 1, size=(6,), dtype=np.int64).astype(np.int32),
        "int64": rng.integers(-2**62, 2**62, size=(2, 2), dtype=np.int64),
        "scalar": np.float32(rng.standard_normal()),
    }


def write_tf_part(out: str, seed: int) -> None:
    """Step 1 (needs TensorFlow): the checkpoints, config, vocab, weights.npz, inputs.npz, dtypes.npz."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_v2_behavior()  # graph mode and reference variables, as TF 1.x (which BERT was trained with) had
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)

    vocab = make_vocab()
    cfg = {**BERT_CONFIG, "vocab_size": len(vocab)}
    shapes = tf_variable_shapes(cfg)
    weights = {name: random_value(name, shape, rng) for name, shape in shapes.items()}
    slots = {}
    for name, value in weights.items():
        slots[name + "/adam_m"] = (0.01 * rng.standard_normal(value.shape)).astype(np.float32)
        slots[name + "/adam_v"] = (1e-4 * rng.random(value.shape)).astype(np.float32)

    for f in os.listdir(out) if os.path.isdir(out) else []:
        if f.startswith((CKPT_NAME, DTYPES_NAME)) or f == "checkpoint":
            os.remove(os.path.join(out, f))

    graph = tf1.Graph()
    with graph.as_default():
        # Full names, as AdamWeightDecayOptimizer passes them to tf.get_variable; modeling.py's nested
        # variable_scopes (bert/encoder/layer_0/...) produce exactly the same variable names.
        for name, value in {**weights, **slots}.items():
            tf1.get_variable(name, initializer=tf.constant(value), trainable="/adam_" not in name)
        global_step = tf1.train.get_or_create_global_step()
        assign_step = global_step.assign(GLOBAL_STEP)
        # What tf.estimator.Estimator (run_pretraining.py's trainer) builds when the model_fn gives no Saver.
        saver = tf1.train.Saver(sharded=True, save_relative_paths=True)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(assign_step)
            saver.save(sess, os.path.join(out, CKPT_NAME), write_meta_graph=False)

    dtypes = dtype_values(rng)
    graph = tf1.Graph()
    with graph.as_default():
        tf_dtype = {"bfloat16": tf.bfloat16}
        for i, (name, value) in enumerate(dtypes.items()):
            with tf1.device(f"/cpu:{i % 2}"):
                tensor = tf.constant(value)
                if name in tf_dtype:
                    tensor = tf.cast(tensor, tf_dtype[name])
                tf1.get_variable(f"dtypes/{name}", initializer=tensor)
        saver = tf1.train.Saver(sharded=True)
        with tf1.Session(graph=graph, config=tf1.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(out, DTYPES_NAME), write_meta_graph=False, write_state=False)
            saved_bf16 = sess.run(graph.get_tensor_by_name("dtypes/bfloat16:0"))
    dtypes["bfloat16"] = np.asarray(saved_bf16).view(np.uint16)  # the exact bit patterns TF stored

    # Read everything back through TensorFlow's own reader.
    reader = tf.train.load_checkpoint(os.path.join(out, CKPT_NAME))
    stored = reader.get_variable_to_shape_map()
    assert set(stored) == set(weights) | set(slots) | {"global_step"}, sorted(set(stored) ^ set(weights))
    for name, value in {**weights, **slots}.items():
        assert np.array_equal(reader.get_tensor(name), value), name
    assert reader.get_tensor("global_step") == GLOBAL_STEP
    assert reader.get_variable_to_dtype_map()["global_step"] == tf.int64
    reader = tf.train.load_checkpoint(os.path.join(out, DTYPES_NAME))
    for name, value in dtypes.items():
        got = reader.get_tensor(f"dtypes/{name}")
        if name == "bfloat16":
            got = np.asarray(got).view(np.uint16)
        assert np.array_equal(got, value), name

    with open(os.path.join(out, "bert_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    np.savez(os.path.join(out, "weights.npz"), **weights)
    np.savez(os.path.join(out, "dtypes.npz"), **dtypes)
    np.savez(os.path.join(out, "inputs.npz"), **make_inputs(vocab))

    metadata = {
        "made_by": "scripts/make_tf_fixture.py",
        "seed": seed,
        "versions": {"tensorflow": tf.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "checkpoint": {"prefix": CKPT_NAME,
                       "saver": "tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True) (V2 format, as "
                                "tf.estimator.Estimator's default), save(..., write_meta_graph=False)",
                       "model_variables": {n: list(s) for n, s in shapes.items()},
                       "optimizer_slots": "<name>/adam_m and <name>/adam_v (float32) for every model variable",
                       "global_step": f"int64 scalar = {GLOBAL_STEP}"},
        "dtypes_checkpoint": {"prefix": DTYPES_NAME, "saver": "tf.compat.v1.train.Saver(sharded=True), 2 CPU devices",
                              "variables": {f"dtypes/{n}": str(v.dtype) if n != "bfloat16" else "bfloat16 (bits)"
                                            for n, v in dtypes.items()}},
        "values": "matrices/tables 0.1*N(0,1); LayerNorm gamma 1+0.2*N(0,1); betas and biases 0.2*N(0,1); "
                  "adam_m 0.01*N(0,1); adam_v 1e-4*U(0,1)",
    }
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    report(out)


def hf_state_dict(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TF variable names -> transformers BertForPreTraining state-dict keys (written out independently of bertjax's
    own mapping, so the fixture checks it)."""
    state = {}
    for name, value in weights.items():
        parts = name.split("/")
        parts = ["layer." + p[len("layer_"):] if p.startswith("layer_") else p for p in parts]
        key = ".".join(parts)
        if name.endswith("_embeddings"):
            key += ".weight"
        elif name.endswith("/gamma"):
            key = key[: -len("gamma")] + "weight"
        elif name.endswith("/beta"):
            key = key[: -len("beta")] + "bias"
        elif name.endswith("/kernel"):
            key, value = key[: -len("kernel")] + "weight", value.T  # Linear weights are [out, in]
        elif name == "cls/predictions/output_bias":
            key = "cls.predictions.bias"
        elif name == "cls/seq_relationship/output_weights":
            key = "cls.seq_relationship.weight"  # already [2, H] = [out, in]
        elif name == "cls/seq_relationship/output_bias":
            key = "cls.seq_relationship.bias"
        state[key] = np.ascontiguousarray(value)
    return state


def write_hf_part(out: str) -> None:
    """Step 2 (needs torch + transformers): expected.npz from weights.npz and inputs.npz."""
    import torch
    import transformers

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    with open(os.path.join(out, "bert_config.json")) as f:
        cfg = json.load(f)
    config = transformers.BertConfig(**cfg, layer_norm_eps=1e-12, pad_token_id=0)
    config._attn_implementation = "eager"
    model = transformers.BertForPreTraining(config).eval()
    state = {k: torch.from_numpy(v) for k, v in hf_state_dict(dict(np.load(os.path.join(out, "weights.npz")))).items()}
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                                        "bert.embeddings.position_ids"}, result.missing_keys
    assert torch.equal(model.cls.predictions.decoder.weight, state["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(model.cls.predictions.decoder.bias, state["cls.predictions.bias"])

    inputs = np.load(os.path.join(out, "inputs.npz"))
    with torch.no_grad():
        res = model(input_ids=torch.from_numpy(inputs["input_ids"]).long(),
                    attention_mask=torch.from_numpy(inputs["input_mask"]).long(),
                    token_type_ids=torch.from_numpy(inputs["segment_ids"]).long(),
                    output_hidden_states=True)
        sequence_output = res.hidden_states[-1]
        pooled_output = model.bert.pooler(sequence_output)
    positions = torch.from_numpy(inputs["masked_lm_positions"]).long()
    mlm = torch.gather(res.prediction_logits, 1, positions[..., None].expand(-1, -1, res.prediction_logits.shape[-1]))
    expected = {"sequence_output": sequence_output.numpy(), "pooled_output": pooled_output.numpy(),
                "mlm_logits": mlm.numpy(), "nsp_logits": res.seq_relationship_logits.numpy()}
    np.savez(os.path.join(out, "expected.npz"), **{k: v.astype(np.float32) for k, v in expected.items()})

    path = os.path.join(out, "metadata.json")
    with open(path) as f:
        metadata = json.load(f)
    metadata["expected"] = {
        "made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": "transformers.BertForPreTraining, eval mode, eager attention, layer_norm_eps=1e-12, erf GELU; "
                 "weights.npz mapped to HF keys (kernels transposed, cls.seq_relationship.weight = output_weights "
                 "as is, decoder tied to the word embeddings)",
        "mlm_logits": "prediction_logits gathered at masked_lm_positions",
    }
    with open(path, "w") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    report(out)


def report(out: str) -> None:
    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out))}
    for f, size in sizes.items():
        print(f"{size:>9,d}  {f}")
    print(f"{sum(sizes.values()):>9,d}  total in {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["tf", "hf"], help="tf: write the checkpoint (needs TensorFlow); "
                                                           "hf: write expected.npz (needs torch + transformers)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    if args.step == "tf":
        write_tf_part(args.out, args.seed)
    else:
        write_hf_part(args.out)


if __name__ == "__main__":
    sys.exit(main())
