"""The tuner table: `--tuner_type NAME` -> how the model is wrapped and what that means for training.

An entry says how to apply the tuner, whether the model's own weights train (then they are kept in fp32 and the
default learning rate is lower), whether the result merges into the base weights, and, for peft tuners, the peft
config builder (the memory estimate reads it too). Built-in entries live in `peft_tuners.py` and
`weight_tuners.py`; a plug-in adds one with `register_tuner`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.args.groups import TunerArgs
    from lmforge.tasks import Task

PeftConfigBuilder = Callable[["TunerArgs", "Task"], Any]  # (flags, task) -> a peft config
Apply = Callable[[Any, "TunerArgs"], Any]  # (model, flags) -> model, for tuners that are not peft configs


@dataclass(frozen=True)
class Tuner:
    name: str
    peft_config: PeftConfigBuilder | None = None  # peft tuners: trl and our trainer wrap with this config
    apply: Apply | None = None  # other tuners: change the model (freeze, add blocks or hooks)
    trains_weights: bool = False  # the model's own weights train: fp32 master weights, --learning_rate 1e-5
    mergeable: bool = False  # `lmforge export --merge_lora` can fold it into the base weights
    default_lr: float = 1e-4

    @property
    def is_peft(self) -> bool:
        return self.peft_config is not None


TUNERS: dict[str, Tuner] = {}
_BUILTIN = ("lmforge.tuners.peft_tuners", "lmforge.tuners.weight_tuners")


def register_tuner(name: str, **options: Any) -> Callable[[Callable], Callable]:
    """Decorator: `@register_tuner("lora", peft=True, mergeable=True)` over a peft config builder, or
    `@register_tuner("full", trains_weights=True)` over an apply function (model, flags) -> model."""

    def deco(fn: Callable) -> Callable:
        peft = options.pop("peft", False)
        TUNERS[name] = Tuner(name, peft_config=fn if peft else None, apply=None if peft else fn, **options)
        return fn

    return deco


def get_tuner(name: str) -> Tuner:
    for module in _BUILTIN:  # imported on first use: their peft imports stay out of `lmforge --help`
        importlib.import_module(module)
    if name not in TUNERS:
        raise UserError(f"--tuner_type {name}: unknown tuner", hint=f"known: {', '.join(sorted(TUNERS))}")
    return TUNERS[name]


def apply_tuner(model: Any, flags: TunerArgs, task: Task, gradient_checkpointing: bool) -> Any:
    """Wrap `model` for --tuner_type (continuing --adapters for peft tuners); prints trainable/total counts."""
    tuner = get_tuner(flags.tuner_type)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if flags.adapters and not tuner.is_peft:
        raise UserError(f"--adapters with --tuner_type {tuner.name}", hint="merge first (lmforge export), or use lora")
    if tuner.is_peft:
        model = _wrap_peft(model, tuner, flags, task, gradient_checkpointing)
    else:
        model = tuner.apply(model, flags)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"[lmforge] trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    return model


def _wrap_peft(model: Any, tuner: Tuner, flags: TunerArgs, task: Task, gradient_checkpointing: bool) -> Any:
    from peft import PeftModel, get_peft_model

    if gradient_checkpointing:
        model.enable_input_require_grads()
    try:
        if flags.adapters:  # continue training an existing adapter
            return PeftModel.from_pretrained(model, flags.adapters[0], is_trainable=True)
        config = tuner.peft_config(flags, task)
        if getattr(config, "target_modules", None) == "all-linear":
            from lmforge.tuners.quant import quantized_linear_names

            config.target_modules = quantized_linear_names(model) or "all-linear"
        return get_peft_model(model, config)
    except ValueError as e:
        raise UserError(
            f"{'LoRA' if tuner.name == 'lora' else tuner.name} setup failed: {str(e).splitlines()[0][:200]}",
            hint="check --target_modules / --target_regex against the model's module names",
        )


def check_tuner_flags(flags: TunerArgs, on_gpu: bool) -> None:
    """GPU-only tuner flags fail here, in one line, before the model loads (the flag rules in args/rules.py,
    checked right after parsing, cannot ask torch whether a GPU is there)."""
    if on_gpu:
        return
    if flags.use_liger_kernel:
        raise UserError(
            "--use_liger_kernel needs a CUDA GPU (its triton kernels have no CPU driver)",
            hint="drop the flag on this machine",
        )
    if flags.tuner_backend == "unsloth":
        raise UserError("--tuner_backend unsloth needs a CUDA GPU", hint="use --tuner_backend peft")
