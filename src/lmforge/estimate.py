"""Memory pre-flight: parameters (trainable and frozen) and the memory one rank needs for weights, gradients,
optimizer states and activations, from the model's config alone (a weightless "meta" model; nothing is loaded).

The byte counts follow what training here actually keeps (train/sft.py): frozen weights in bf16 for LoRA where
the hardware has bf16 units, trained parameters in fp32 with fp32 gradients and two AdamW moments, activations
of every decoder layer kept for backward (no recomputation by default on CPU), and the output layer + fp32
cross-entropy only on trained positions. ZeRO stages divide optimizer states (1), gradients (2) and parameters (3)
across ranks. RUNTIME_MB is the resident size of Python + torch + transformers + peft + datasets before any model,
measured on this CPU machine (lmforge check --estimate prints what it assumed; docs/performance.md has the check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNTIME_MB = 700.0  # measured RSS of an idle `lmforge sft` process once its libraries are imported
MB = 1024 * 1024


@dataclass
class Estimate:
    total_params: int
    trainable_params: int
    weights_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    runtime_mb: float
    tokens: int

    @property
    def total_mb(self) -> float:
        parts = (self.weights_mb, self.gradients_mb, self.optimizer_mb, self.activations_mb, self.runtime_mb)
        return sum(parts)

    def report(self, world: int, zero: int) -> str:
        share = f", ZeRO-{zero} over {world} ranks" if zero else ""
        return "\n".join(
            [
                f"estimate (per rank{share}; {self.tokens} tokens per micro-batch):",
                f"  parameters: {self.total_params:,} ({self.trainable_params:,} trainable, "
                f"{100 * self.trainable_params / max(self.total_params, 1):.2f}%)",
                f"  weights {self.weights_mb:,.0f} MB, gradients {self.gradients_mb:,.0f} MB, "
                f"optimizer {self.optimizer_mb:,.0f} MB, activations {self.activations_mb:,.0f} MB, "
                f"runtime {self.runtime_mb:,.0f} MB",
                f"  peak memory ~{self.total_mb:,.0f} MB",
            ]
        )


def _meta_model(model_dir: Any, tuner: Any) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmforge.tasks import TASKS
    from lmforge.tuners.table import get_tuner

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    spec = get_tuner(tuner.tuner_type)
    if spec.is_peft:
        from peft import get_peft_model

        peft_config = spec.peft_config(tuner, TASKS["causal_lm"])
        if hasattr(peft_config, "init_lora_weights"):
            peft_config.init_lora_weights = True  # PiSSA/OLoRA need real weights; counts are the same
        return get_peft_model(model, peft_config)
    return spec.apply(model, tuner)


def _weight_bytes(name: str, param: Any, frozen_bytes: float, quant_bits: int | None) -> float:
    """Bytes per element of a frozen parameter: quantised linear weights, or the frozen dtype."""
    linear = name.endswith(".weight") and param.dim() == 2 and "embed" not in name and "lm_head" not in name
    if quant_bits:
        # packed weights + one fp32 scale per 64-value block; peft's k-bit preparation upcasts the rest to fp32
        return quant_bits / 8 + 4 / 64 if linear else 4
    return frozen_bytes


def _activation_bytes(config: dict, tokens: int, trained: int, segment: int, act_bytes: int, lora: bool) -> float:
    """What autograd keeps for backward, per micro-batch (no gradient checkpointing)."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    layers, heads, vocab = config["num_hidden_layers"], config["num_attention_heads"], config["vocab_size"]
    kv = config.get("num_key_value_heads", heads) * (config.get("head_dim") or h // heads)
    # per token and layer: two fp32 norm inputs, q/k/v/o and MLP inputs, rotated q and k, attention output,
    # gate/up/act outputs; LoRA adds dropout masks on the 7 linear inputs and rank-r intermediates
    per_token = act_bytes * (8 * h + 2 * kv + 4 * inter) + 8 * h
    if lora:
        per_token += act_bytes * (6 * h + inter)
    probs = heads * min(segment, 256) * 4  # softmax probabilities of the per-sequence attention (fp32)
    logits = trained * vocab * (act_bytes + 4 + 4)  # logits, fp32 copy and its log-softmax, on trained positions
    return layers * tokens * (per_token + probs) + logits


def estimate(model_dir: Any, tuner: Any, train: Any, batch: list[tuple[int, int]], bf16: bool) -> Estimate:
    """`batch`: (tokens, trained tokens) of each row of the largest micro-batch."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text())
    model = _meta_model(model_dir, tuner)
    quant = tuner.quant_bits if tuner.quant_method else None
    from lmforge.tuners.table import get_tuner

    full = get_tuner(tuner.tuner_type).trains_weights
    frozen_bytes = 2 if bf16 and not full else 4
    weights = trainable = 0.0
    total = n_trainable = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad:
            n_trainable += p.numel()
            trainable += p.numel()
        else:
            weights += p.numel() * _weight_bytes(name, p, frozen_bytes, quant)
    world, zero = _zero_stage(train)
    weights += trainable * 4 / (world if zero >= 3 else 1)  # trained parameters stay fp32
    grads = trainable * 4 / (world if zero >= 2 else 1)
    optim = trainable * 8 / (world if zero >= 1 else 1)
    tokens, trained = sum(n for n, _ in batch), sum(t for _, t in batch)
    longest = max(n for n, _ in batch)
    acts = _activation_bytes(config, tokens, trained, longest, 2 if bf16 else 4, not full)
    return Estimate(total, n_trainable, weights / MB, grads / MB, optim / MB, acts / MB, RUNTIME_MB, tokens)


def _zero_stage(train: Any) -> tuple[int, int]:
    import os

    world = int(os.environ.get("WORLD_SIZE") or os.environ.get("NPROC_PER_NODE") or 1)
    name = (train.deepspeed or "").removeprefix("default-")
    zero = int(name[4]) if name.startswith("zero") and name[4:5].isdigit() else 0
    return world, zero


def largest_batch(lengths: list[int], trained: list[int], batch_size: int) -> list[tuple[int, int]]:
    """The `batch_size` longest rows: the micro-batch that sets the peak."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
    return [(lengths[i], trained[i]) for i in order] or [(1, 1)]


def print_estimate(
    args: Any, model_dir: Any, lengths: list[int], trained: list[int], strict: bool = True
) -> Estimate | None:
    """Estimate for the training flags in `args` over encoded rows (lengths, trained tokens per row); prints it.
    Not strict (before training): a tuner the meta model cannot take skips the estimate, training reports it."""
    import torch

    from lmforge.errors import UserError
    from lmforge.precision import training_precision
    from lmforge.tuners.table import get_tuner

    precision = training_precision(args.model.torch_dtype, get_tuner(args.tuner.tuner_type).trains_weights)
    dtype, autocast = precision.dtype, precision.autocast_bf16
    rows = largest_batch(lengths, trained, args.train.per_device_train_batch_size)
    try:
        est = estimate(model_dir, args.tuner, args.train, rows, bf16=dtype == torch.bfloat16 or autocast)
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        if strict:
            raise UserError(f"--estimate: {str(e).splitlines()[0][:200]}", hint="check the tuner flags")
        return None
    world, zero = _zero_stage(args.train)
    print(est.report(world, zero))
    return est
