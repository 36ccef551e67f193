"""The tuners of the tuner table that are not peft configs: full fine-tuning (with parameter freezing), LLaMA-Pro
block expansion, and the two hooked tuners written here (bottleneck adapters, ReFT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.tuners.table import register_tuner

if TYPE_CHECKING:
    from lmforge.args.groups import TunerArgs


@register_tuner("full", trains_weights=True, default_lr=1e-5)
def full(model: Any, flags: TunerArgs) -> Any:
    model.requires_grad_(True)
    freeze(model, flags.freeze_parameters_ratio, flags.trainable_parameters)
    return model


@register_tuner("llamapro", trains_weights=True)
def llamapro(model: Any, flags: TunerArgs) -> Any:
    from lmforge.tuners.llamapro import expand_blocks

    return expand_blocks(model, flags.llamapro_num_new_blocks)


@register_tuner("adapter")
def adapter(model: Any, flags: TunerArgs) -> Any:
    from lmforge.tuners.adapter import add_adapters

    add_adapters(model, flags.adapter_length, flags.adapter_act)
    return model


@register_tuner("reft")
def reft(model: Any, flags: TunerArgs) -> Any:
    from lmforge.tuners.reft import add_reft

    add_reft(model, flags.reft_layers, flags.reft_rank, flags.reft_intervention_type)
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
