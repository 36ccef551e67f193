"""Tuners through peft's own API (transformers' adapter methods need a newer peft than PyPI has).

`TUNERS` maps --tuner_type to a function building the peft config; `full` and `llamapro` train model weights
directly. LoRA variants (DoRA, rsLoRA, PiSSA/OLoRA init, LoRA+) are LoRA flags, as in ms-swift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmforge.errors import UserError

TUNERS: dict[str, Callable[[Any], Any]] = {}
MERGEABLE = {"lora", "adalora", "vera", "boft", "fourierft", "bone"}


def register_tuner(name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        TUNERS[name] = fn
        return fn

    return deco


def _targets(tuner: Any, explicit_default: list[str] | None = None) -> Any:
    targets: Any = tuner.target_regex or tuner.target_modules
    if isinstance(targets, list) and targets == ["all-linear"]:
        # every nn.Linear but the output layer; some tuners need names, not the all-linear shortcut
        return explicit_default or "all-linear"
    return targets


def _init(value: str) -> Any:
    low = value.lower()
    return {"true": True, "false": False}.get(low, low)


@register_tuner("lora")
def lora_config(tuner: Any) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=tuner.lora_dropout,
        bias=tuner.lora_bias,
        target_modules=_targets(tuner),
        modules_to_save=tuner.modules_to_save or None,
        task_type=TaskType.CAUSAL_LM,
        use_dora=tuner.use_dora,
        use_rslora=tuner.use_rslora,
        init_lora_weights=_init(tuner.init_weights),
    )


@register_tuner("adalora")
def _adalora(tuner: Any) -> Any:
    from peft import AdaLoraConfig, TaskType

    return AdaLoraConfig(
        target_r=tuner.adalora_target_r,
        init_r=tuner.adalora_init_r,
        lora_alpha=tuner.lora_alpha,
        target_modules=_targets(tuner),
        task_type=TaskType.CAUSAL_LM,
        total_step=1000,
    )


_NAMED = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@register_tuner("vera")
def _vera(tuner: Any) -> Any:
    from peft import TaskType, VeraConfig

    # VeRA shares one random projection across layers, so every target must have one shape: q and v by default
    return VeraConfig(
        r=tuner.vera_rank, target_modules=_targets(tuner, ["q_proj", "o_proj"]), task_type=TaskType.CAUSAL_LM
    )


@register_tuner("boft")
def _boft(tuner: Any) -> Any:
    from peft import BOFTConfig, TaskType

    return BOFTConfig(
        boft_block_size=tuner.boft_block_size, target_modules=_targets(tuner, _NAMED), task_type=TaskType.CAUSAL_LM
    )


@register_tuner("fourierft")
def _fourierft(tuner: Any) -> Any:
    from peft import FourierFTConfig, TaskType

    return FourierFTConfig(
        n_frequency=tuner.fourier_n_frequency,
        scaling=tuner.fourier_scaling,
        target_modules=_targets(tuner, _NAMED),
        task_type=TaskType.CAUSAL_LM,
    )


@register_tuner("bone")
def _bone(tuner: Any) -> Any:
    from peft import MissConfig, TaskType  # peft renamed Bone to MiSS

    return MissConfig(r=tuner.lora_rank, target_modules=_targets(tuner, _NAMED), task_type=TaskType.CAUSAL_LM)


def check_tuner(tuner: Any) -> None:
    """Tuner flags that cannot work fail here, in one line, before the model loads."""
    import torch

    if not 0 <= tuner.lora_dropout < 1:  # p = 1 would zero every LoRA input (and scale by 1/0)
        raise UserError(f"--lora_dropout must be in [0, 1), got {tuner.lora_dropout}", hint="0.05 is the default")
    if torch.cuda.is_available():
        return
    if tuner.use_liger_kernel:
        raise UserError(
            "--use_liger_kernel needs a CUDA GPU (its triton kernels have no CPU driver)",
            hint="drop the flag on this machine",
        )
    if tuner.tuner_backend == "unsloth":
        raise UserError("--tuner_backend unsloth needs a CUDA GPU", hint="use --tuner_backend peft")


def prepare_model(model: Any, tuner: Any, gradient_checkpointing: bool) -> Any:
    """Wrap the model for the chosen tuner; print trainable/total parameter counts."""
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if tuner.tuner_type in ("adapter", "reft"):
        from lmforge.tuners.adapter import add_hooked

        if tuner.adapters:
            raise UserError(f"--adapters with --tuner_type {tuner.tuner_type}", hint="train new ones on the base model")
        add_hooked(model, tuner)
    elif tuner.tuner_type in ("full", "llamapro"):
        if tuner.adapters:
            raise UserError(f"--adapters with --tuner_type {tuner.tuner_type}", hint="merge first: lmforge export")
        if tuner.tuner_type == "llamapro":
            from lmforge.tuners.llamapro import expand_blocks

            model = expand_blocks(model, tuner.llamapro_num_new_blocks)
        else:
            model.requires_grad_(True)
            freeze(model, tuner.freeze_parameters_ratio, tuner.trainable_parameters)
    else:
        from peft import PeftModel, get_peft_model

        if gradient_checkpointing:
            model.enable_input_require_grads()
        try:
            if tuner.adapters:  # continue training an existing adapter
                model = PeftModel.from_pretrained(model, tuner.adapters[0], is_trainable=True)
            else:
                model = get_peft_model(model, TUNERS[tuner.tuner_type](tuner))
        except ValueError as e:
            label = "LoRA" if tuner.tuner_type == "lora" else tuner.tuner_type
            raise UserError(
                f"{label} setup failed: {str(e).splitlines()[0][:200]}",
                hint="check --target_modules / --target_regex against the model's module names",
            )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"[lmforge] trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    return model


def freeze(model: Any, ratio: float, keep: list[str]) -> None:
    """Full training: freeze the first `ratio` of parameters (embeddings, lower layers), except `keep` prefixes."""
    if ratio <= 0 and not keep:
        return
    params = list(model.named_parameters())
    total = sum(p.numel() for _, p in params)
    seen = 0
    for name, p in params:
        frozen = seen < ratio * total
        seen += p.numel()
        p.requires_grad_(not frozen or any(name.startswith(k) for k in keep))


def loraplus_optimizer(model: Any, lr: float, ratio: float, weight_decay: float) -> Any:
    """LoRA+: the B matrices learn `ratio` times faster than A (peft's own optimizer builder)."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model=model, optimizer_cls=torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, weight_decay=weight_decay
    )
