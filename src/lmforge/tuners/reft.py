"""`--tuner_type reft`: representation fine-tuning (LoReFT, Wu et al. 2024) on decoder-block outputs, with ms-swift's
flags (`--reft_layers`, `--reft_rank`, `--reft_intervention_type`). pyreft, the reference package, pins
transformers 4.45, so the two interventions are written here (about forty lines).

LoReFT edits a hidden state h inside an r-dimensional subspace: h + R^T (W h + b - R h), R with orthonormal rows
(a free matrix orthonormalised by QR in each forward). NoReFT drops the orthogonality. Every position of the
chosen layers is edited.
Like the bottleneck adapters (tuners/adapter.py), a forward hook applies it and checkpoints hold only its weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.errors import UserError

CHILD = "lmforge_reft"
KINDS = ("LoreftIntervention", "NoreftIntervention")


class Intervention(nn.Module):
    def __init__(self, hidden: int, rank: int, orthogonal: bool):
        super().__init__()
        self.orthogonal = orthogonal
        # R is stored free and orthonormalised by QR in each forward (for LoReFT): plain tensors in checkpoints,
        # exact orthonormal rows at any step
        self.rotate = nn.Parameter(torch.linalg.qr(torch.randn(hidden, rank)).Q.T.contiguous())
        self.learned = nn.Linear(hidden, rank)

    @property
    def weight(self) -> torch.Tensor:
        """R, [rank, hidden]."""
        return torch.linalg.qr(self.rotate.T).Q.T if self.orthogonal else self.rotate

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.learned.weight.dtype)
        r = self.weight
        return h + ((self.learned(x) - x @ r.T) @ r).to(h.dtype)


def _edit_output(module: nn.Module, args: tuple, output: Any) -> Any:
    edit = getattr(module, CHILD)
    if isinstance(output, tuple):  # some decoder layers return (hidden_states, ...)
        return (edit(output[0]), *output[1:])
    return edit(output)


def add_reft(model: nn.Module, layers: list[int] | None, rank: int, kind: str) -> int:
    """Attach an intervention to the output of the chosen decoder blocks (all when `layers` is empty)."""
    if kind not in KINDS:
        raise UserError(f"--reft_intervention_type {kind}: not supported", hint=f"use one of {', '.join(KINDS)}")
    blocks = _decoder_blocks(model)
    chosen = list(range(len(blocks))) if not layers else layers
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise UserError(f"--reft_layers {bad}: the model has {len(blocks)} layers", hint=f"use 0..{len(blocks) - 1}")
    model.requires_grad_(False)
    ref = next(model.parameters())
    for i in chosen:
        edit = Intervention(model.config.hidden_size, rank, kind == "LoreftIntervention")
        blocks[i].add_module(CHILD, edit.to(ref.device, torch.float32))
        blocks[i].register_forward_hook(_edit_output)
    model.lmforge_adapter_config = {
        "lmforge_tuner": "reft",
        "reft_layers": chosen,
        "reft_rank": rank,
        "reft_intervention_type": kind,
    }
    return len(chosen)


def _decoder_blocks(model: nn.Module) -> nn.ModuleList:
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, nn.ModuleList) and len(module):
            return module
    raise UserError("--tuner_type reft: no decoder layers found in this model", hint="use --tuner_type lora")
