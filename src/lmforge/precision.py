"""The precision policy of a training run, in one place (training, rlhf, PPO and the memory estimate read it).

Default: bf16 autocast where the hardware has bf16 matrix units. Frozen base weights are stored in bf16 (half the
memory, same speed under autocast); weights that train (full fine-tuning, LLaMA-Pro's new blocks) stay fp32 master
weights, since AdamW updates below bf16's resolution would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Precision:
    dtype: Any  # torch dtype the weights are loaded in
    autocast_bf16: bool  # the Trainer's bf16 mixed precision

    @property
    def name(self) -> str:
        return str(self.dtype).replace("torch.", "")


def training_precision(torch_dtype: str | None, trains_weights: bool) -> Precision:
    """--torch_dtype (None/auto: the policy above) for a tuner that does or does not train the model's weights."""
    import torch

    from lmforge.models.loader import bf16_supported, resolve_dtype

    if torch_dtype in (None, "auto"):
        if not bf16_supported():
            return Precision(torch.float32, False)
        return Precision(torch.float32 if trains_weights else torch.bfloat16, True)
    dtype = resolve_dtype(torch_dtype)
    return Precision(dtype, dtype == torch.bfloat16)
