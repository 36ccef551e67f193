"""--freeze_vit / --freeze_aligner / --freeze_llm, as ms-swift: which parts of a vision-language model train.

LoRA with `all-linear` (the default) becomes the explicit list of linear layers under the parts that are not frozen
(ms-swift's rule; by default the language model only, never the output layer), because peft's all-linear would
also wrap the vision tower. Full fine-tuning freezes the parameters of the frozen parts. Each part is a list of
module-name prefixes from the family table; the aligner sits inside the vision tower and wins over it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmforge.errors import UserError


def part_of(name: str, family: Any) -> str | None:
    """'aligner', 'vit', 'llm' or None for a dotted module/parameter name (peft's prefixes stripped)."""
    for prefix in ("base_model.model.", "base_model."):
        name = name.removeprefix(prefix)

    def under(prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    if under(family.aligner):
        return "aligner"
    if under(family.vision_tower):
        return "vit"
    if under(family.language_model):
        return "llm"
    return None


def trained_parts(flags: Any) -> set[str]:
    parts = {
        p
        for p, frozen in (("vit", flags.freeze_vit), ("aligner", flags.freeze_aligner), ("llm", flags.freeze_llm))
        if not frozen
    }
    if not parts:
        raise UserError(
            "--freeze_vit, --freeze_aligner and --freeze_llm are all true: nothing would train",
            hint="leave at least one part unfrozen (default: --freeze_llm false)",
        )
    return parts


def media_tuner_flags(model: Any, flags: Any, template: Any) -> Any:
    """The tuner flags for this model: LoRA's all-linear narrowed to the unfrozen parts (a copy; the parsed flags
    are never written to). Text-only models and explicit --target_modules/--target_regex come back unchanged."""
    family = getattr(template, "family", None)
    if family is None or flags.target_regex or flags.target_modules != ["all-linear"]:
        return flags
    import torch

    parts = trained_parts(flags)
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and part_of(n, family) in parts and not n.endswith("lm_head")
    ]
    return dataclasses.replace(flags, target_modules=names)


def freeze_parts(model: Any, flags: Any, template: Any, trains_weights: bool) -> None:
    """Full fine-tuning: parameters of frozen parts get requires_grad False."""
    family = getattr(template, "family", None)
    if family is None or not trains_weights:
        return
    parts = trained_parts(flags)
    for name, p in model.named_parameters():
        if part_of(name, family) not in parts:
            p.requires_grad_(False)


def check_part_lrs(template: Any, flags: Any) -> None:
    """--vit_lr / --aligner_lr on a text-only model: one line before any weights load."""
    if (flags.vit_lr is not None or flags.aligner_lr is not None) and getattr(template, "family", None) is None:
        flag = "--vit_lr" if flags.vit_lr is not None else "--aligner_lr"
        raise UserError(f"{flag} is for vision-language models; this model is text-only", hint=f"drop {flag}")


def part_optimizer(model: Any, template: Any, lr: float, flags: Any, weight_decay: float) -> Any:
    """AdamW with the trainable parameters grouped by part: the vision tower at --vit_lr, the aligner at
    --aligner_lr, everything else at --learning_rate (ms-swift's flags)."""
    import torch

    rates = {"vit": flags.vit_lr or lr, "aligner": flags.aligner_lr or lr}
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(rates.get(part_of(name, template.family) or "", lr), []).append(p)
    shown = ", ".join(f"{part} {rates[part]:g}" for part in ("vit", "aligner"))
    print(f"[lmforge] learning rates: {lr:g} ({shown})")
    return torch.optim.AdamW(
        [{"params": ps, "lr": rate, "initial_lr": rate} for rate, ps in groups.items()],
        lr=lr,
        weight_decay=weight_decay,
    )
