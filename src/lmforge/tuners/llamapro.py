"""LLaMA-Pro block expansion: insert copies of decoder layers whose output projections start at zero (so the
model computes exactly what it did), freeze everything else, train only the new blocks.

The new blocks are spread evenly: new block k (0-based) follows original layer floor((k + 1) * n / num_new) - 1.
When the count divides the n layers this is the paper's layout (one block after every n/num_new layers); otherwise
(the embedded SmolLM2 has 30 layers and the default adds 4: after layers 6, 14, 21, 29) the gaps differ by at most
one layer, and the last block still follows the last layer.
"""

from __future__ import annotations

import copy
from typing import Any

from lmforge.errors import UserError


def new_block_positions(num_layers: int, num_new: int) -> list[int]:
    """Indices of the original layers each followed by a new block: floor((k + 1) * n / num_new) - 1."""
    if not 1 <= num_new <= num_layers:
        raise UserError(
            f"--llamapro_num_new_blocks {num_new}: must be between 1 and the model's {num_layers} layers",
            hint=f"use at most {num_layers} (one new block after each layer)",
        )
    return [(k + 1) * num_layers // num_new - 1 for k in range(num_new)]


def _zero_block(layer: Any) -> Any:
    """A copy of `layer` whose residual branches add nothing (output projections zeroed): identity at start."""
    import torch

    block = copy.deepcopy(layer)
    for name, module in block.named_modules():
        if name.endswith(("o_proj", "down_proj")) and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    block.requires_grad_(True)
    return block


def expand_blocks(model: Any, num_new: int) -> Any:
    import torch

    layers = model.model.layers
    n = len(layers)
    after = set(new_block_positions(n, num_new))
    model.requires_grad_(False)
    cfg = model.config
    old_types = getattr(cfg, "layer_types", None)
    new_layers, new_types = [], []
    for i, layer in enumerate(layers):
        new_layers.append(layer)
        new_types.append(old_types[i] if old_types else None)
        if i in after:
            new_layers.append(_zero_block(layer))
            new_types.append(new_types[-1])  # a copy attends as its source layer does (sliding or full)
    for idx, layer in enumerate(new_layers):  # the KV cache is indexed by layer
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = idx
    model.model.layers = torch.nn.ModuleList(new_layers)
    if old_types:
        cfg.layer_types = new_types
    cfg.num_hidden_layers = len(new_layers)
    return model
