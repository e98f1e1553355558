"""time_to_quality's transformers runs: BertForPreTraining on PyTorch, in this process, on bertjax's batches."""
from __future__ import annotations

import itertools
import math
import statistics
import time

from ttq.tables import BATCH_SIZE, EVAL_BATCH_SIZE, HF_SETTINGS, NO_DECAY_NAME_PARTS, SIZES
from ttq.records import load_average, run_key, save_record
from ttq.bertjax_runs import reusable



class HFRunner:
    """BertForPreTraining on bertjax's batches: training, timing and the shared evaluation."""

    def __init__(self, data: dict, size: str, eval_batches: int, head: str):
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from bertjax.data import pipeline  # noqa: PLC0415
        from bertjax.model import BertConfig  # noqa: PLC0415

        torch.set_num_threads(HF_SETTINGS["threads"])
        self.np, self.torch, self.pipeline = np, torch, pipeline
        self.data_dir = data["datasets"][SIZES[size]["seq"]]["dir"]
        self.size, self.head = size, head
        self.model_config = BertConfig.named(size, vocab_size=data["vocab_size"]).to_dict()
        batches = itertools.islice(pipeline.create_iterator(
            self.data_dir, "eval", EVAL_BATCH_SIZE, seed=0, shuffle=False, num_epochs=1, process_index=0,
            process_count=1), eval_batches)
        self.eval_batches = [self.tensors(b) for b in batches]

    def tensors(self, batch: dict) -> dict:
        t = self.torch
        out = {k: t.from_numpy(self.np.asarray(v).astype(self.np.int64)) for k, v in batch.items()
               if k != "masked_lm_weights"}
        out["masked_lm_weights"] = t.from_numpy(self.np.asarray(batch["masked_lm_weights"], self.np.float32))
        return out

    def new_model(self):
        from transformers import BertConfig, BertForPreTraining  # noqa: PLC0415

        self.torch.manual_seed(HF_SETTINGS["seed"])
        return BertForPreTraining(BertConfig(**self.model_config))

    def train_iterator(self):
        return self.pipeline.create_iterator(self.data_dir, "train", BATCH_SIZE, seed=0, shuffle=True,
                                             num_epochs=None, process_index=0, process_count=1)

    def loss(self, model, b: dict):
        """The training loss: HF's own (labels -100 except at masked positions; prediction logits at every
        position), or with head=masked the MLM head on the masked positions only (as bertjax and the original)."""
        t = self.torch
        if self.head == "full":
            labels = t.full_like(b["input_ids"], -100)
            rows = t.arange(labels.shape[0])[:, None].expand_as(b["masked_lm_positions"])
            real = b["masked_lm_weights"] > 0
            labels[rows[real], b["masked_lm_positions"][real]] = b["masked_lm_ids"][real]
            return model(input_ids=b["input_ids"], attention_mask=b["input_mask"], token_type_ids=b["segment_ids"],
                         labels=labels, next_sentence_label=b["next_sentence_labels"]).loss
        mlm_logits, nsp_logits = self.masked_logits(model, b)
        weights = b["masked_lm_weights"]
        nll = t.nn.functional.cross_entropy(mlm_logits.flatten(0, 1), b["masked_lm_ids"].flatten(), reduction="none")
        mlm = (nll * weights.flatten()).sum() / weights.sum().clamp_min(1e-5)
        return mlm + t.nn.functional.cross_entropy(nsp_logits, b["next_sentence_labels"])

    def masked_logits(self, model, b: dict):
        sequence, pooled = model.bert(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                                      token_type_ids=b["segment_ids"], return_dict=False)[:2]
        index = b["masked_lm_positions"][:, :, None].expand(-1, -1, sequence.shape[-1])
        return model.cls(self.torch.gather(sequence, 1, index), pooled)

    def evaluate(self, model) -> dict:
        t = self.torch
        model.eval()
        sums = dict.fromkeys(("correct", "loss", "weight", "nsp_correct", "nsp_count"), 0.0)
        with t.no_grad():
            for b in self.eval_batches:
                mlm_logits, nsp_logits = self.masked_logits(model, b)
                w = b["masked_lm_weights"]
                nll = t.nn.functional.cross_entropy(mlm_logits.transpose(1, 2), b["masked_lm_ids"], reduction="none")
                sums["correct"] += float(((mlm_logits.argmax(-1) == b["masked_lm_ids"]).float() * w).sum())
                sums["loss"] += float((nll * w).sum())
                sums["weight"] += float(w.sum())
                sums["nsp_correct"] += float((nsp_logits.argmax(-1) == b["next_sentence_labels"]).float().sum())
                sums["nsp_count"] += len(nsp_logits)
        model.train()
        return {"masked_lm_accuracy": sums["correct"] / sums["weight"],
                "masked_lm_loss": sums["loss"] / sums["weight"],
                "next_sentence_accuracy": sums["nsp_correct"] / sums["nsp_count"]}

    def optimizer(self, model, lr: float):
        named = list(model.named_parameters())
        decay = [p for n, p in named if not any(part in n for part in NO_DECAY_NAME_PARTS)]
        no_decay = [p for n, p in named if any(part in n for part in NO_DECAY_NAME_PARTS)]
        return self.torch.optim.AdamW([{"params": decay, "weight_decay": HF_SETTINGS["weight_decay"]},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                                      betas=HF_SETTINGS["betas"], eps=HF_SETTINGS["eps"])

    def time_steps(self, warmup: int = 5, timed: int = 20) -> float:
        """Steps/s of training (a throwaway model and optimizer), after `warmup` untimed steps (enough for the input
        pipeline's prefetch to fill, which on one core otherwise competes with the first timed steps)."""
        model = self.new_model()
        model.train()
        optimizer = self.optimizer(model, 1e-4)
        iterator = self.train_iterator()
        for i in range(warmup + timed):
            if i == warmup:
                start = time.perf_counter()
            self.step(model, optimizer, None, next(iterator))
        return timed / (time.perf_counter() - start)

    def step(self, model, optimizer, scheduler, batch) -> float:
        loss = self.loss(model, self.tensors(batch))
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(model.parameters(), HF_SETTINGS["clip_norm"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def train(self, lr: float, num_steps: int, evals: int) -> dict:
        from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

        model = self.new_model()
        model.train()
        optimizer = self.optimizer(model, lr)
        warmup = max(1, round(HF_SETTINGS["warmup_fraction"] * num_steps))
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, num_steps)
        iterator = self.train_iterator()
        every = max(1, math.ceil(num_steps / evals))
        curve, clock, losses = [], 0.0, []
        for step in range(1, num_steps + 1):
            start = time.perf_counter()
            losses.append(self.step(model, optimizer, scheduler, next(iterator)))
            clock += time.perf_counter() - start
            if step % every == 0 or step == num_steps:
                curve.append({**self.evaluate(model), "step": step, "train_seconds": clock,
                              "train_loss": statistics.mean(losses)})
                losses = []
        return {"curve": curve, "final": curve[-1], "final_step": num_steps, "warmup_steps": warmup}


def cross_check(runner: HFRunner, original: dict) -> dict:
    """transformers' evaluation of the original run's export against bertjax's own final evaluation of it: the same
    batches, masks and metric, so the two must agree (up to float summation order)."""
    from transformers import BertForPreTraining  # noqa: PLC0415

    ours = runner.evaluate(BertForPreTraining.from_pretrained(original["export"]))
    theirs = original["final"]["masked_lm_accuracy"]
    check = {"bertjax_eval": theirs, "transformers_eval_of_export": ours["masked_lm_accuracy"],
             "agree": abs(ours["masked_lm_accuracy"] - theirs) < 1e-3}
    print(f"[{original['name']}] eval cross-check: bertjax {theirs:.4f}, transformers on its export "
          f"{ours['masked_lm_accuracy']:.4f}" + ("" if check["agree"] else "  <-- DIFFERENT"), flush=True)
    return check


def run_hf(name: str, runner: HFRunner, lr: float, minutes: float, get_rate, args, meta: dict) -> dict:
    """Train transformers for `minutes` (steps = steps/s x minutes, steps/s from `get_rate()`, timed when first
    needed), or reuse a finished run of the same settings."""
    settings = {"lr": lr, "minutes": minutes, "evals": args.evals, "eval_batches": len(runner.eval_batches),
                "data_dir": runner.data_dir, "model": runner.model_config, "head": runner.head, **HF_SETTINGS}
    key = run_key(settings)
    record = reusable(name, key, args)
    if record is not None:
        return record
    rate = get_rate()
    num_steps = max(2, round(rate * minutes * 60))
    print(f"[{name}] transformers BertForPreTraining, lr {lr}, {num_steps} steps ({rate:.2f} steps/s x "
          f"{minutes:g} min)", flush=True)
    load_before = load_average()
    start = time.perf_counter()
    result = runner.train(lr, num_steps, args.evals)
    record = {"key": key, "name": name, "framework": "transformers", **meta, "settings": settings,
              "steps_per_second_timed": rate, "num_train_steps": num_steps, **result,
              "wall_seconds": round(time.perf_counter() - start, 1), "load_before": load_before,
              "load_after": load_average(), "torch_threads": runner.torch.get_num_threads()}
    print(f"[{name}] {result['final']['train_seconds']:.0f} s training, mlm accuracy "
          f"{result['final']['masked_lm_accuracy']:.4f}", flush=True)
    return save_record(args.workdir / "records" / f"{name}.json", record)
