"""transformers' Trainer with three additions, each small:

- checkpoints are written to `<run>/.staging/checkpoint-N` and renamed into place when complete, so a kill during a
  save never leaves a half checkpoint that resume would pick up (thirdparty.CheckpointHooks, also mixed into trl's);
- token accuracy and real (non-padding) tokens per second are measured on the logits the step already computed;
- each checkpoint also gets args.json (so `--adapters CKPT` alone restores model, template and system prompt).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from lmforge.errors import writing
from lmforge.thirdparty import CheckpointHooks
from lmforge.train.output import draw_plots

IGNORE = -100
# causal LMs whose forward is exactly logits = lm_head(hidden[:, keep]) (checked in their modeling files)
PLAIN_HEAD_MODELS = ("llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2", "gemma")


class LmforgeTrainer(CheckpointHooks, Trainer):
    """Our SFT/PT trainer: atomic checkpoints plus token accuracy and real tokens/s in the logs."""

    def __init__(self, *args: Any, args_json: dict | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.args_json = args_json or {}
        self._acc_correct = 0
        self._acc_total = 0
        self._tokens = 0
        self._last_log_time = time.perf_counter()
        self._start_time = time.perf_counter()
        self._accepts_keep: bool | None = None
        self._plain_head: Any = None  # (decoder, weight), False, or None until the first step
        self._flos_params: int | None = None

    # -- loss and metrics ----------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        # a plug-in's --loss_type takes the Trainer's own path (compute_loss_func), which sees the whole logits
        fast = self.compute_loss_func is None and self._keeps_logits(model)
        if model.training and "labels" in inputs and fast:
            loss, outputs = self._trained_positions_loss(model, inputs, num_items_in_batch)
        else:
            labels = inputs.get("labels")  # the Trainer pops them from `inputs` for compute_loss_func
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if model.training and labels is not None:
                self._count(outputs.logits[:, :-1].argmax(-1), labels[:, 1:], inputs)
        return (loss, outputs) if return_outputs else loss

    def _trained_positions_loss(self, model: Any, inputs: dict, num_items_in_batch: Any) -> tuple[Any, Any]:
        """Output layer and cross-entropy only where the next token is trained. Why: with a 49k vocabulary the
        output layer is ~21% of the default model's matmuls and the fp32 log-softmax over prompt positions is pure
        waste; the loss equals transformers' (sum over trained tokens / num_items_in_batch). The cross-entropy is
        train/loss.py's chunked one (gradient computed with the loss, while each chunk is in cache); with a frozen
        plain output layer it also does the output layer (`_head`)."""
        from lmforge.train.loss import cross_entropy, linear_cross_entropy

        targets = inputs["labels"][:, 1:]
        keep = (targets != IGNORE).any(0).nonzero().flatten()  # positions whose next token is trained, in any row
        kept = targets[:, keep]
        denom = num_items_in_batch if num_items_in_batch is not None else (kept != IGNORE).sum()
        denom = max(float(denom), 1.0)
        features = {k: v for k, v in inputs.items() if k != "labels"}
        head = self._head(model)
        if head is None:
            outputs = model(**features, logits_to_keep=keep)
            loss, predicted = cross_entropy(outputs.logits.flatten(0, 1), kept.flatten(), denom)
        else:
            decoder, weight = head
            with self.accelerator.autocast():  # what the wrapped forward of the whole model would have done
                outputs = decoder(**features, use_cache=False)
                hidden = outputs.last_hidden_state[:, keep]
                loss, predicted = linear_cross_entropy(hidden.flatten(0, 1), weight, kept.flatten(), denom)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as the Trainer: gradients are averaged across ranks
        self._count(predicted.view_as(kept), kept, inputs)
        return loss, outputs

    def _head(self, model: Any) -> tuple[Any, Any] | None:
        """(decoder, output weight) when the step may run the decoder and do the output layer itself, else None.

        Why: accelerate's mixed-precision wrapper converts the model's outputs to fp32 (a 45 MB copy of the logits
        and another for their gradient), and a plain frozen output layer can be fused with the cross-entropy.
        On CPU (where it was measured; GPU runs keep the model's forward, and Liger's fused loss with it), in one
        process (DDP, DeepSpeed and FSDP must see the wrapped model's forward), for causal LMs whose forward is
        exactly `lm_head(hidden)` (no soft-capping, logit scale or router loss), with a frozen bias-free output
        layer without hooks, and peft tuners that live inside the decoder (not prompt learning)."""
        if self._plain_head is None:  # decided once, at the first step
            self._plain_head = self._find_head(model) or False
        return self._plain_head or None

    def _find_head(self, model: Any) -> tuple[Any, Any] | None:
        distributed = self.args.world_size > 1 or self.is_deepspeed_enabled or self.is_fsdp_enabled
        if self.args.device.type != "cpu" or distributed:
            return None
        base = self.accelerator.unwrap_model(model)
        if hasattr(base, "get_base_model"):  # a peft model
            if any(c.is_prompt_learning for c in base.peft_config.values()):
                return None
            base = base.get_base_model()
        config = getattr(base, "config", None)
        if getattr(config, "model_type", None) not in PLAIN_HEAD_MODELS or not hasattr(base, "get_decoder"):
            return None
        head = base.get_output_embeddings()
        plain = type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad
        if not plain or head._forward_hooks or head._forward_pre_hooks:
            return None
        return base.get_decoder(), head.weight

    def _keeps_logits(self, model: Any) -> bool:
        """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do; remote code may not)."""
        if self._accepts_keep is None:
            import inspect

            base = self.accelerator.unwrap_model(model)
            base = base.get_base_model() if hasattr(base, "get_base_model") else base
            self._accepts_keep = "logits_to_keep" in inspect.signature(base.forward).parameters
        return self._accepts_keep

    @torch.no_grad()
    def _count(self, predicted: Any, targets: Any, inputs: dict) -> None:
        """Token accuracy (predicted token ids against targets) and real tokens, for the next log line."""
        mask = targets != IGNORE
        self._acc_correct += int((predicted.eq(targets) & mask).sum())
        self._acc_total += int(mask.sum())
        am = inputs.get("attention_mask")
        self._tokens += int(am.sum()) if am is not None else inputs["input_ids"].numel()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log line: add what we measured since the previous one
            now = time.perf_counter()
            if self._acc_total:
                logs["token_acc"] = round(self._acc_correct / self._acc_total, 6)
            logs["tokens_per_second"] = round(self._tokens / max(now - self._last_log_time, 1e-9), 2)
            self._acc_correct = self._acc_total = self._tokens = 0
            self._last_log_time = now
        logs["elapsed_seconds"] = round(time.perf_counter() - self._start_time, 2)
        super().log(logs, start_time)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's count (6 x input tokens x parameters without embeddings) with the parameters counted once:
        the Trainer recounts them at every step, a walk over every module (6-8 ms of each step here)."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._flos_params is None:
            self._flos_params = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._flos_params

    # -- bottleneck adapters and ReFT (tuners/adapter.py) save and resume only their own weights ----------------
    def save_hooked_adapters(self, output_dir: str) -> bool:
        from lmforge.tuners.adapter import has_adapters, save_adapters

        model = self.accelerator.unwrap_model(self.model)
        if not has_adapters(model):
            return False
        if self.args.should_save:
            save_adapters(model, output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        return True

    def load_hooked_adapters(self, path: str, model: Any) -> bool:
        from lmforge.tuners.adapter import is_adapter_dir, load_adapters

        if not is_adapter_dir(path):
            return False
        load_adapters(self.accelerator.unwrap_model(model), path)
        return True

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:  # tokens/s counts training time only
            self._last_log_time += time.perf_counter() - t0


class JsonlLogger(TrainerCallback):
    """logging.jsonl (one line per log step, global_step an integer) and the PNG curves at each save and the end."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / "logging.jsonl"

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero and logs:
            row = {"global_step": int(state.global_step), "max_steps": int(state.max_steps), **logs}
            with writing("the training log", self.path), self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        # the last save is followed by on_train_end, which draws them (half a second of matplotlib each time)
        if state.is_world_process_zero and state.global_step < state.max_steps:
            draw_plots(self.run_dir)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero:
            draw_plots(self.run_dir)


class SaveAtEnd(TrainerCallback):
    """ms-swift saves the last step too, even when it is not a multiple of --save_steps."""

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step >= state.max_steps:
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"


class Progress(ProgressCallback):
    """The default bar, plus loss and tokens/s in its postfix instead of raw dicts printed between lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero and self.training_bar is not None and logs:
            post = {k: logs[k] for k in ("loss", "eval_loss", "tokens_per_second") if k in logs}
            self.training_bar.set_postfix({k: f"{v:.4g}" for k, v in post.items()}, refresh=True)
