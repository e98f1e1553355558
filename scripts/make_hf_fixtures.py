"""Make the Hugging Face parity fixtures in tests/fixtures/hf_bert/.

A small, randomly initialised (then perturbed) `transformers.BertForPreTraining` (PyTorch, float32, eval mode)
is run on a fixed padded batch; its weights, config, inputs and outputs are saved so that bertjax's converter
and model can be checked against it WITHOUT torch/transformers installed (they are not test dependencies).

How to rerun (torch and transformers live in a throw-away virtualenv, never in the bertjax environment):

    python3 -m venv /tmp/hfenv
    /tmp/hfenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl  # CPU-only torch
    /tmp/hfenv/bin/pip install -r requirements-fixtures.txt      # pinned versions; see comments in that file
    /tmp/hfenv/bin/python scripts/make_hf_fixtures.py            # writes tests/fixtures/hf_bert/
    # options: --out DIR (default tests/fixtures/hf_bert), --seed N (default 1234)

Output files (all small, about 1.5 MB in total):
  config.json        HF `BertConfig.to_json_file` (num_hidden_layers=3, hidden_size=96, heads=4, intermediate=200,
                     vocab_size=1000, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu" (erf),
                     layer_norm_eps=1e-12, initializer_range=0.1, dropout probs as HF defaults (eval mode: unused)).
  model.safetensors  the state dict exactly as `model.save_pretrained(dir, safe_serialization=True)` writes it.
  inputs.npz         input_ids, attention_mask (= bertjax input_mask), token_type_ids (= segment_ids),
                     masked_lm_positions [B,P] (0-padded), plus masked_lm_ids, masked_lm_weights [float32],
                     next_sentence_labels [B] for an optional loss check. Integers are int32.
  expected.npz       sequence_output [B,T,H], pooled_output [B,H], mlm_logits_at_positions [B,P,V]
                     (HF prediction_logits gathered at masked_lm_positions), nsp_logits [B,2], and the HF losses
                     masked_lm_loss, next_sentence_loss (scalars; HF = mean CE over the real predictions), all float32.
  metadata.json      versions, seed, how it was made, saved keys/shapes, tied-weight notes, and "sensitivity":
                     max |difference| of the MLM logits / sequence output caused by a few deliberate mistakes
                     (tanh GELU, LayerNorm eps 1e-6, query/key swapped, ...) to help choose test tolerances.

Batch: B=3, T=16 with real lengths 16, 11, 5 ([CLS] A [SEP] B [SEP] with segment ids 0/1, 0-padding), P=4 masked
positions per row, padded slots hold position 0 (as the original create_pretraining_data does).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import sys

import numpy as np
import safetensors
import torch
import transformers
from safetensors import safe_open
from transformers import BertConfig, BertForPreTraining

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "hf_bert")

VOCAB_SIZE = 1000
PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, 2, 3, 4  # toy special ids (only PAD_ID=0 matters to the model: padding_idx)
FIRST_NORMAL_ID = 5
BATCH, SEQ_LEN, NUM_PRED = 3, 16, 4
# (real length, length of segment A incl. [CLS] and first [SEP], number of real predictions) per row
ROWS = [(16, 7, 4), (11, 6, 3), (5, 3, 1)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def make_config() -> BertConfig:
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=200,
        hidden_act="gelu",  # exact erf GELU in HF
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=64,
        type_vocab_size=2,
        # Larger than the usual 0.02 so attention is far from uniform and every weight matters in the outputs
        # (with 0.02 the attention scores have std ~0.04, hiding e.g. a query/key mix-up).
        initializer_range=0.1,
        layer_norm_eps=1e-12,
        pad_token_id=PAD_ID,
    )
    config._attn_implementation = "eager"
    return config


def perturb_(model: BertForPreTraining, gen: torch.Generator) -> None:
    """Move every parameter away from HF's trivial init values (LN weight 1, biases 0, padding row 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters are yielded once
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim == 1:
                # LayerNorm weight (init 1) / bias (init 0), all Linear biases (init 0), cls.predictions.bias (init 0)
                p.add_(0.2 * noise)
            else:
                # Matrices are already random; add a little noise anyway. This also fills the padding row
                # word_embeddings[PAD_ID], which HF zero-initialises.
                p.add_(0.02 * noise)


def check_nontrivial(model: BertForPreTraining) -> None:
    for name, p in model.named_parameters():
        t = p.detach()
        assert t.numel() > 1 and float(t.std()) > 1e-3, f"{name} looks constant"
        if t.ndim == 2:
            rows_zero = (t.abs().sum(dim=1) == 0).any()
            assert not bool(rows_zero), f"{name} has an all-zero row"


def make_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    input_ids = np.zeros((BATCH, SEQ_LEN), np.int32)
    attention_mask = np.zeros((BATCH, SEQ_LEN), np.int32)
    token_type_ids = np.zeros((BATCH, SEQ_LEN), np.int32)
    masked_lm_positions = np.zeros((BATCH, NUM_PRED), np.int32)
    masked_lm_ids = np.zeros((BATCH, NUM_PRED), np.int32)
    masked_lm_weights = np.zeros((BATCH, NUM_PRED), np.float32)
    for b, (length, len_a, n_pred) in enumerate(ROWS):
        ids = rng.integers(FIRST_NORMAL_ID, VOCAB_SIZE, size=length).astype(np.int32)
        ids[0] = CLS_ID
        ids[len_a - 1] = SEP_ID
        ids[length - 1] = SEP_ID
        input_ids[b, :length] = ids
        attention_mask[b, :length] = 1
        token_type_ids[b, len_a:length] = 1  # segment B incl. its final [SEP]; padding stays 0
        # predictions at non-special real positions, sorted as in the original data
        candidates = [i for i in range(1, length - 1) if i != len_a - 1]
        pos = np.sort(rng.choice(candidates, size=n_pred, replace=False)).astype(np.int32)
        masked_lm_positions[b, :n_pred] = pos
        masked_lm_ids[b, :n_pred] = input_ids[b, pos]
        masked_lm_weights[b, :n_pred] = 1.0
        # mimic 80/10/10: first prediction -> [MASK], a later one keeps/randomises
        input_ids[b, pos[0]] = MASK_ID
        if n_pred > 1:
            input_ids[b, pos[1]] = rng.integers(FIRST_NORMAL_ID, VOCAB_SIZE)
    assert (input_ids[attention_mask == 0] == PAD_ID).all()
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        masked_lm_positions=masked_lm_positions,
        masked_lm_ids=masked_lm_ids,
        masked_lm_weights=masked_lm_weights,
        next_sentence_labels=np.array([0, 1, 0], np.int32),
    )


@torch.no_grad()
def run(model: BertForPreTraining, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t = lambda k: torch.from_numpy(inputs[k].astype(np.int64))
    pos = t("masked_lm_positions")
    out = model(
        input_ids=t("input_ids"),
        attention_mask=t("attention_mask"),
        token_type_ids=t("token_type_ids"),
        return_dict=True,
    )
    bert_out = model.bert(
        input_ids=t("input_ids"),
        attention_mask=t("attention_mask"),
        token_type_ids=t("token_type_ids"),
        return_dict=True,
    )
    logits = out.prediction_logits  # [B, T, V]
    gathered = torch.gather(logits, 1, pos[:, :, None].expand(-1, -1, logits.shape[-1]))  # [B, P, V]

    # HF losses: labels -100 everywhere except the real predictions.
    labels = torch.full(inputs["input_ids"].shape, -100, dtype=torch.int64)
    w = inputs["masked_lm_weights"]
    for b in range(w.shape[0]):
        for j in range(w.shape[1]):
            if w[b, j] > 0:
                labels[b, int(pos[b, j])] = int(inputs["masked_lm_ids"][b, j])
    ce = torch.nn.CrossEntropyLoss()
    mlm_loss = ce(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    nsp_loss = ce(out.seq_relationship_logits, t("next_sentence_labels"))
    return dict(
        sequence_output=bert_out.last_hidden_state.numpy().astype(np.float32),
        pooled_output=bert_out.pooler_output.numpy().astype(np.float32),
        mlm_logits_at_positions=gathered.numpy().astype(np.float32),
        nsp_logits=out.seq_relationship_logits.numpy().astype(np.float32),
        masked_lm_loss=np.float32(mlm_loss.item()),
        next_sentence_loss=np.float32(nsp_loss.item()),
    )


def sensitivity(model: BertForPreTraining, inputs, expected) -> dict[str, float]:
    """Max |diff| of outputs under a few deliberate converter/model mistakes (on a copy of the model)."""
    results = {}

    def measure(name, mutate):
        m = copy.deepcopy(model)
        mutate(m)
        got = run(m, inputs)
        results[f"sensitivity_{name}_mlm"] = float(
            np.abs(got["mlm_logits_at_positions"] - expected["mlm_logits_at_positions"]).max())
        results[f"sensitivity_{name}_seq"] = float(
            np.abs(got["sequence_output"] - expected["sequence_output"]).max())

    def tanh_gelu(m):
        act = transformers.activations.ACT2FN["gelu_new"]
        for layer in m.bert.encoder.layer:
            layer.intermediate.intermediate_act_fn = act
        m.cls.predictions.transform.transform_act_fn = act

    def ln_eps(m):
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-6

    def swap_qk(m):
        with torch.no_grad():
            for layer in m.bert.encoder.layer:
                s = layer.attention.self
                q_w, q_b = s.query.weight.clone(), s.query.bias.clone()
                s.query.weight.copy_(s.key.weight); s.query.bias.copy_(s.key.bias)
                s.key.weight.copy_(q_w); s.key.bias.copy_(q_b)

    def no_mlm_bias(m):
        with torch.no_grad():
            m.cls.predictions.bias.zero_()

    def transpose_attn_out(m):
        with torch.no_grad():
            for layer in m.bert.encoder.layer:
                wt = layer.attention.output.dense.weight
                wt.copy_(wt.t().contiguous())

    def unmasked(m):
        orig = m.bert.forward

        def fwd(*a, attention_mask=None, **k):
            return orig(*a, attention_mask=None, **k)

        m.bert.forward = fwd

    measure("tanh_gelu", tanh_gelu)
    measure("ln_eps_1e-6", ln_eps)
    measure("swap_query_key", swap_qk)
    measure("zero_mlm_output_bias", no_mlm_bias)
    measure("transpose_attention_output", transpose_attn_out)
    measure("ignore_attention_mask", unmasked)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    config = make_config()
    model = BertForPreTraining(config)
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    perturb_(model, torch.Generator().manual_seed(args.seed + 1))
    check_nontrivial(model)
    # The MLM decoder is tied to the word embeddings (and its bias to cls.predictions.bias).
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert model.cls.predictions.decoder.bias.data_ptr() == model.cls.predictions.bias.data_ptr()

    inputs = make_inputs(np.random.default_rng(args.seed))
    expected = run(model, inputs)
    sens = sensitivity(model, inputs, expected)

    os.makedirs(args.out, exist_ok=True)
    for f in ("config.json", "model.safetensors", "inputs.npz", "expected.npz", "metadata.json"):
        if os.path.exists(os.path.join(args.out, f)):
            os.remove(os.path.join(args.out, f))
    model.save_pretrained(args.out, safe_serialization=True)
    # save_pretrained already writes config.json; write it again explicitly as the documented artefact.
    model.config.to_json_file(os.path.join(args.out, "config.json"))
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(args.out, extra)):
            os.remove(os.path.join(args.out, extra))
    np.savez(os.path.join(args.out, "inputs.npz"), **inputs)
    np.savez(os.path.join(args.out, "expected.npz"), **expected)
    for f in os.listdir(args.out):
        os.chmod(os.path.join(args.out, f), 0o644)

    with safe_open(os.path.join(args.out, "model.safetensors"), framework="np") as f:
        saved = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        st_meta = f.metadata()

    metadata = {
        "description": "Parity fixture: random (perturbed) HF BertForPreTraining, float32, eval mode, eager attention.",
        "made_by": "scripts/make_hf_fixtures.py",
        "command": "python scripts/make_hf_fixtures.py --seed %d" % args.seed,
        "seed": args.seed,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
        },
        "init": "HF _init_weights with initializer_range=0.1 (normal), then every parameter perturbed: "
                "1-D params (biases, LayerNorm weight/bias, cls.predictions.bias) += 0.2*N(0,1); "
                "matrices/tables += 0.02*N(0,1) (so the padding row 0 of word_embeddings is non-zero).",
        "attention_mask_fill": "HF eager attention adds torch.finfo(float32).min at masked keys "
                               "(original BERT uses -10000; identical results in float32 here).",
        "gelu": "exact (erf)",
        "inputs": {
            "batch": BATCH, "seq_len": SEQ_LEN, "num_predictions": NUM_PRED,
            "real_lengths": [r[0] for r in ROWS],
            "segment_a_lengths_incl_cls_sep": [r[1] for r in ROWS],
            "real_predictions_per_row": [r[2] for r in ROWS],
            "padded_prediction_slots": "position 0, id 0, weight 0.0",
            "special_ids": {"pad": PAD_ID, "cls": CLS_ID, "sep": SEP_ID, "mask": MASK_ID},
            "names": {"attention_mask": "bertjax input_mask", "token_type_ids": "bertjax segment_ids"},
        },
        "expected": {
            "sequence_output": "model.bert(...).last_hidden_state [B,T,H], every position incl. padding",
            "pooled_output": "model.bert(...).pooler_output [B,H]",
            "mlm_logits_at_positions": "prediction_logits [B,T,V] gathered at masked_lm_positions -> [B,P,V]",
            "nsp_logits": "seq_relationship_logits [B,2]",
            "masked_lm_loss": "torch CrossEntropyLoss mean over real predictions (no +1e-5 in denominator)",
            "next_sentence_loss": "torch CrossEntropyLoss mean over batch",
        },
        "sensitivity_max_abs_diff": sens,
        "safetensors_keys": saved,
        "safetensors_metadata": st_meta,
        "tied_weights": {
            "cls.predictions.decoder.weight": "tied to bert.embeddings.word_embeddings.weight; "
                                              + ("present" if "cls.predictions.decoder.weight" in saved
                                                 else "NOT stored in model.safetensors"),
            "cls.predictions.decoder.bias": "tied to cls.predictions.bias; "
                                            + ("present" if "cls.predictions.decoder.bias" in saved
                                               else "NOT stored in model.safetensors"),
            "bert.embeddings.position_ids": "non-persistent buffer; "
                                            + ("present" if "bert.embeddings.position_ids" in saved
                                               else "NOT stored in model.safetensors"),
        },
    }
    with open(os.path.join(args.out, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=False)
        f.write("\n")

    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {sorted(os.listdir(args.out))} to {args.out} ({total / 1e6:.2f} MB)")
    print(json.dumps(metadata["tied_weights"], indent=2))
    print(json.dumps(sens, indent=2))


if __name__ == "__main__":
    sys.exit(main())
