"""`segments`: attention for CPU training, registered through transformers' public AttentionInterface.

Why: on CPU, transformers' padding-free path builds one block-diagonal mask over the whole flattened batch, so
attention costs (sum of lengths)^2 and sdpa's CPU flash kernel with an arbitrary mask is slow (measured: 17% of a
LoRA step at 2 x 150 tokens, 2.2x slower than per-sequence attention at 2 x 512). Here each sequence of a flattened
batch (position_ids restarting at 0) attends only within itself, causally, with no mask tensor; short sequences use
plain matmul + softmax (faster than the flash kernel below ~256 tokens here), longer ones sdpa's causal kernel.
Padded batches (an attention mask) and decoding with a cache fall back to transformers' own sdpa.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "segments"
EAGER_MAX = 256  # at and below this segment length, matmul + softmax beat the flash kernel on CPU (bench/attention)


def _causal_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float) -> torch.Tensor:
    """Causal attention of one sequence; q [B, Hq, n, D], k/v [B, Hkv, n, D] -> [B, Hq, n, D].

    Grouped-query heads are folded into the rows (q as [B, Hkv, groups * n, D]) instead of repeating k and v per
    query head: the same products without the copies of k/v and the sums their backward needs."""
    b, hq, n, d = q.shape
    if n > EAGER_MAX:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)
    hkv = k.shape[1]
    groups = hq // hkv
    q = q.reshape(b * hkv, groups * n, d)
    # scale, causal mask and q k^T in one baddbmm: the mask as an additive 0/-inf bias
    bias = torch.full((n, n), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
    scores = torch.baddbmm(bias.repeat(groups, 1), q, k.reshape(b * hkv, n, d).transpose(1, 2), alpha=scaling)
    out = torch.bmm(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v.reshape(b * hkv, n, d))
    return out.view(b, hq, n, d)


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n = query.shape[2]
    if attention_mask is not None or key.shape[2] != n or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    if position_ids is not None and query.shape[0] == 1:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist()
        if not starts or starts[0] != 0:
            starts = [0, *starts]
    else:
        starts = [0]
    bounds = [*starts, n]
    outs = [
        _causal_block(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], scaling) for s, e in zip(bounds, bounds[1:])
    ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _mask(*args: Any, **kwargs: Any) -> Any:
    """No mask tensor when nothing is padded (segment_attention finds the sequences from position_ids)."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Make `attn_implementation="segments"` available; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME
