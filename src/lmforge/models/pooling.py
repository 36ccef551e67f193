"""Sentence embeddings from hidden states: the last real token or the mean over real tokens, then L2-normalised
(sentence-transformers' `lasttoken`/`mean` Pooling + Normalize, which embedding training uses)."""

from __future__ import annotations

from typing import Any

POOLING_MODES = {"last": "lasttoken", "mean": "mean"}  # our --pooling -> sentence-transformers' pooling_mode


def pool(hidden: Any, mask: Any, mode: str = "last") -> Any:
    """(batch, seq, dim) hidden states and the attention mask -> (batch, dim) unit vectors; works with left or
    right padding (the last real token is the last position whose mask is 1)."""
    import torch

    m = mask.to(hidden.dtype)
    if mode == "mean":
        summed = (hidden.float() * m.unsqueeze(-1).float()).sum(1)
        vec = summed / m.float().sum(1, keepdim=True).clamp(min=1e-9)
    else:
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(1)
        vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
    return torch.nn.functional.normalize(vec, dim=-1)
