"""The peft tuners of the tuner table: each entry builds a peft config from the flags and the task (peft's own
API; transformers' adapter methods need a newer peft than PyPI has). LoRA variants (DoRA, rsLoRA, PiSSA/OLoRA init,
LoRA+) are LoRA flags, as in ms-swift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.tasks import TASKS
from lmforge.tuners.table import register_tuner

if TYPE_CHECKING:
    from lmforge.args.groups import TunerArgs
    from lmforge.tasks import Task


def _targets(tuner: TunerArgs, explicit_default: list[str] | None = None) -> Any:
    targets: Any = tuner.target_regex or tuner.target_modules
    if isinstance(targets, list) and targets == ["all-linear"]:
        # every nn.Linear but the output layer; some tuners need names, not the all-linear shortcut
        return explicit_default or "all-linear"
    return targets


def _init(value: str) -> Any:
    low = value.lower()
    return {"true": True, "false": False}.get(low, low)


@register_tuner("lora", peft=True, mergeable=True)
def lora_config(tuner: TunerArgs, task: Task = TASKS["causal_lm"]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=tuner.lora_dropout,
        bias=tuner.lora_bias,
        target_modules=_targets(tuner),
        modules_to_save=tuner.modules_to_save or None,
        task_type=task.peft_task_type,
        use_dora=tuner.use_dora,
        use_rslora=tuner.use_rslora,
        init_lora_weights=_init(tuner.init_weights),
    )


@register_tuner("adalora", peft=True, mergeable=True)
def _adalora(tuner: TunerArgs, task: Task) -> Any:
    from peft import AdaLoraConfig

    return AdaLoraConfig(
        target_r=tuner.adalora_target_r,
        init_r=tuner.adalora_init_r,
        lora_alpha=tuner.lora_alpha,
        target_modules=_targets(tuner),
        task_type=task.peft_task_type,
        total_step=1000,
    )


_NAMED = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@register_tuner("vera", peft=True, mergeable=True)
def _vera(tuner: TunerArgs, task: Task) -> Any:
    from peft import VeraConfig

    # VeRA shares one random projection across layers, so every target must have one shape: q and v by default
    return VeraConfig(
        r=tuner.vera_rank, target_modules=_targets(tuner, ["q_proj", "o_proj"]), task_type=task.peft_task_type
    )


@register_tuner("boft", peft=True, mergeable=True)
def _boft(tuner: TunerArgs, task: Task) -> Any:
    from peft import BOFTConfig

    return BOFTConfig(
        boft_block_size=tuner.boft_block_size, target_modules=_targets(tuner, _NAMED), task_type=task.peft_task_type
    )


@register_tuner("fourierft", peft=True, mergeable=True)
def _fourierft(tuner: TunerArgs, task: Task) -> Any:
    from peft import FourierFTConfig

    return FourierFTConfig(
        n_frequency=tuner.fourier_n_frequency,
        scaling=tuner.fourier_scaling,
        target_modules=_targets(tuner, _NAMED),
        task_type=task.peft_task_type,
    )


@register_tuner("bone", peft=True, mergeable=True)
def _bone(tuner: TunerArgs, task: Task) -> Any:
    from peft import MissConfig  # peft renamed Bone to MiSS

    return MissConfig(r=tuner.lora_rank, target_modules=_targets(tuner, _NAMED), task_type=task.peft_task_type)


def loraplus_optimizer(model: Any, lr: float, ratio: float, weight_decay: float) -> Any:
    """LoRA+: the B matrices learn `ratio` times faster than A (peft's own optimizer builder)."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model=model, optimizer_cls=torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, weight_decay=weight_decay
    )
