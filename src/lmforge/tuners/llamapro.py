"""LLaMA-Pro block expansion: insert copies of decoder layers whose output projections start at zero (so the
model computes exactly what it did), freeze everything else, train only the new blocks."""

from __future__ import annotations

import copy
from typing import Any

from lmforge.errors import UserError


def expand_blocks(model: Any, num_new: int) -> Any:
    import torch

    layers = model.model.layers
    n = len(layers)
    if num_new <= 0 or n % num_new:
        raise UserError(f"--llamapro_num_new_blocks {num_new} must divide the {n} decoder layers")
    model.requires_grad_(False)
    group = n // num_new
    new_layers = []
    for i, layer in enumerate(layers):
        new_layers.append(layer)
        if (i + 1) % group == 0:
            block = copy.deepcopy(layer)
            for name, module in block.named_modules():
                if name.endswith(("o_proj", "down_proj")) and isinstance(module, torch.nn.Linear):
                    torch.nn.init.zeros_(module.weight)  # residual branch adds nothing: identity at start
                    if module.bias is not None:
                        torch.nn.init.zeros_(module.bias)
            block.requires_grad_(True)
            new_layers.append(block)
    for idx, layer in enumerate(new_layers):  # the KV cache is indexed by layer
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = idx
    model.model.layers = torch.nn.ModuleList(new_layers)
    cfg = model.config
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[min(i * n // len(new_layers), n - 1)] for i in range(len(new_layers))]
    cfg.num_hidden_layers = len(new_layers)
    return model
