"""Attention for the continuous-batching loop on CPU: each row attends to its own keys only.

transformers' loop (generation/continuous_batching) packs every row of a step into one sequence: the queries of
all rows, then the keys of all rows, one after another. Without flash attention (no CPU build) it runs SDPA over
the whole pack with a block-diagonal mask, so one step costs (query tokens of all rows) x (key tokens of all rows):
with 64 decoding rows of ~70 tokens that is 64 x 4500 scores per head and layer, most of them masked out, more
work than the linears. Here the pack is split by the loop's cumulative lengths (`cu_seq_lens_q`/`cu_seq_lens_k`,
the flash-varlen convention): the decoding rows (one query each) run as one padded SDPA batch, the other rows
one SDPA each, so the cost is the sum over rows. Outside the loop (no cumulative lengths) it is transformers' SDPA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NAME = "lmforge_varlen_sdpa"  # the attention implementation's name in transformers' registries (thirdparty)


def fits(config: Any) -> bool:
    """Whether every layer is plain causal softmax attention over all of the row's keys, what `varlen_sdpa`
    computes: no sliding window (Gemma, Mistral), no logit soft-capping (Gemma 2), no attention sinks (gpt-oss)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        windowed = any(kind != "full_attention" for kind in layer_types)
    else:
        windowed = bool(getattr(config, "sliding_window", None)) and getattr(config, "use_sliding_window", True)
    capped = getattr(config, "attn_logit_softcapping", None) is not None
    return not windowed and not capped and "gpt_oss" not in str(getattr(config, "model_type", ""))


class _Plan:
    """How one step's pack splits into rows; the same for every layer of the step, so built once."""

    def __init__(self, cu_q: list[int], cu_k: list[int]) -> None:
        import torch

        self.key = (tuple(cu_q), tuple(cu_k))
        rows = range(len(cu_q) - 1)
        decode = [i for i in rows if cu_q[i + 1] - cu_q[i] == 1]
        batched = set(decode)
        # the rows that run one SDPA each (prompts, prompt chunks): (query start, end, key start, end)
        self.single = [(cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]) for i in rows if i not in batched]
        self.decode_q = torch.tensor([cu_q[i] for i in decode], dtype=torch.long)
        starts = torch.tensor([cu_k[i] for i in decode], dtype=torch.long)
        lengths = torch.tensor([cu_k[i + 1] - cu_k[i] for i in decode], dtype=torch.long)
        positions = torch.arange(int(lengths.max()) if decode else 0)[None, :]
        # padded key positions of each decoding row, flat (the padding repeats the row's last key, masked out)
        self.decode_k_flat = (starts[:, None] + torch.minimum(positions, lengths[:, None] - 1)).reshape(-1)
        padded = positions >= lengths[:, None]
        # added to the fp32 scores: -inf on the padding, [rows, 1, 1, longest]; None when no row is padded
        bias = torch.zeros(padded.shape).masked_fill(padded, float("-inf"))[:, None, None, :]
        self.decode_bias = bias if bool(padded.any()) else None


_last: list[_Plan] = []  # the plan of the step being run (the loops' steps take turns: one step lock)


def _plan(cu_q: torch.Tensor, cu_k: torch.Tensor) -> _Plan:
    q, k = cu_q.tolist(), cu_k.tolist()
    if _last and _last[0].key == (tuple(q), tuple(k)):
        return _last[0]
    plan = _Plan(q, k)
    _last[:] = [plan]
    return plan


def _row_mask(q_len: int, k_len: int) -> tuple[torch.Tensor | None, bool]:
    """(mask, is_causal) for a row of several queries: causal aligned to the last key (a chunked prompt sees its
    earlier chunks); SDPA's own top-left causal flag where that is the same thing."""
    import torch

    if q_len == k_len:
        return None, True
    return torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len), False


def _decode(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: _Plan, scaling: float | None) -> Any:
    """The one-query rows as one padded SDPA batch in fp32. CPU SDPA in bf16 with one query is slow (one row of
    100 keys, one thread: ~110 us a layer against ~35 us with the fp32 casts included), and fp32 is what its
    kernel accumulates in anyway. Returns [rows, heads, head_dim] in the model's dtype."""
    import torch

    rows, kv_heads, dim = len(plan.decode_q), key.shape[1], query.shape[-1]
    # index_select on the token-major layout the tensors have underneath (10x faster than advanced indexing on
    # the head-major view); the fp32 cast makes the copy SDPA wants
    q = query[0].transpose(0, 1).index_select(0, plan.decode_q).unsqueeze(2).float()  # [rows, heads, 1, dim]

    def rows_of(x: torch.Tensor) -> torch.Tensor:  # [rows, kv heads, longest, dim]
        picked = x[0].transpose(0, 1).index_select(0, plan.decode_k_flat)
        return picked.view(rows, -1, kv_heads, dim).transpose(1, 2).float()

    gqa = query.shape[1] != kv_heads
    out = torch.nn.functional.scaled_dot_product_attention(
        q, rows_of(key), rows_of(value), attn_mask=plan.decode_bias, scale=scaling, enable_gqa=gqa
    )
    return out[:, :, 0].to(query.dtype)


def varlen_sdpa(
    module: Any,
    query: torch.Tensor,  # [1, heads, q tokens of all rows, head_dim]
    key: torch.Tensor,  # [1, kv heads, k tokens of all rows, head_dim]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; returns [1, q tokens, heads, head_dim]."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if not isinstance(cu_q, torch.Tensor) or not isinstance(cu_k, torch.Tensor) or query.shape[0] != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    plan = _plan(cu_q, cu_k)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = query.shape[1] != key.shape[1]
    out = query.new_empty(query.shape[2], query.shape[1], query.shape[3])  # [q tokens, heads, head_dim]
    if len(plan.decode_q):
        out.index_copy_(0, plan.decode_q, _decode(query, key, value, plan, scaling))
    for q0, q1, k0, k1 in plan.single:
        mask, causal = _row_mask(q1 - q0, k1 - k0)
        rows = sdpa(
            query[:, :, q0:q1],
            key[:, :, k0:k1],
            value[:, :, k0:k1],
            attn_mask=mask,
            is_causal=causal,
            scale=scaling,
            enable_gqa=gqa,
        )
        out[q0:q1] = rows[0].transpose(0, 1)
    return out.unsqueeze(0), None
