"""Attention for the continuous-batching loop on CPU: each row attends to its own keys only.

transformers' loop (generation/continuous_batching) packs every row of a step into one sequence: the queries of
all rows, then the keys of all rows, one after another. Without flash attention (no CPU build) it runs SDPA over
the whole pack with a block-diagonal mask, so one step costs (query tokens of all rows) x (key tokens of all rows):
with 64 decoding rows of ~70 tokens that is 64 x 4500 scores per head and layer, most of them masked out, more
work than the linears. Here the pack is split by the loop's cumulative lengths (`cu_seq_lens_q`/`cu_seq_lens_k`,
the flash-varlen convention): decoding rows (one query each) run as one padded SDPA batch, prefill rows one SDPA
each, so the cost is the sum over rows. Outside the loop (no cumulative lengths) it is transformers' SDPA itself.
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
        self.prefill = [(cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]) for i in rows if cu_q[i + 1] - cu_q[i] > 1]
        self.decode_q = torch.tensor([cu_q[i] for i in decode], dtype=torch.long)
        lengths = [cu_k[i + 1] - cu_k[i] for i in decode]
        longest = max(lengths, default=0)
        # padded key positions of each decoding row (padding points at the row's first key and is masked out)
        self.decode_k = torch.tensor(
            [[cu_k[i] + min(j, n - 1) for j in range(longest)] for i, n in zip(decode, lengths)], dtype=torch.long
        )
        self.decode_k_flat = self.decode_k.reshape(-1)
        padded = torch.arange(longest)[None, :] >= torch.tensor(lengths, dtype=torch.long)[:, None]
        # added to the fp32 scores: -inf on the padding; [rows, 1, 1, longest] against [rows, kv heads, group, keys]
        self.decode_bias = torch.zeros(padded.shape).masked_fill(padded, float("-inf"))[:, None, None, :]


_last: list[_Plan] = []  # the plan of the step being run (the loop runs one step at a time)


def _plan(cu_q: torch.Tensor, cu_k: torch.Tensor) -> _Plan:
    q, k = cu_q.tolist(), cu_k.tolist()
    if _last and _last[0].key == (tuple(q), tuple(k)):
        return _last[0]
    plan = _Plan(q, k)
    _last[:] = [plan]
    return plan


def _prefill_mask(q_len: int, k_len: int) -> torch.Tensor | None:
    """Causal mask aligned to the last key (a chunked prompt sees its earlier chunks); None when SDPA's own
    top-left causal flag is the same thing."""
    import torch

    if q_len == k_len:
        return None
    return torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)


def _decode(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: _Plan, scaling: float | None) -> Any:
    """The one-query rows as two batched matmuls with an fp32 softmax (as transformers' eager attention): CPU
    SDPA's kernels tile for long queries, and with one query per row they cost ~14x more (64 rows x 70 keys,
    bf16, one thread: 4.4 ms against 0.32 ms a layer). Returns [rows, heads, head_dim]."""
    import torch

    rows, kv_heads, dim = len(plan.decode_q), key.shape[1], query.shape[-1]
    scale = scaling if scaling is not None else dim**-0.5
    # index_select on the token-major layout the tensors have underneath (10x faster than advanced indexing on
    # the head-major view), then one contiguous copy, which the batched matmuls need to run at speed
    q = query[0].transpose(0, 1).index_select(0, plan.decode_q).view(rows, kv_heads, -1, dim)

    def rows_of(x: torch.Tensor) -> torch.Tensor:  # [rows, kv heads, longest, dim]
        picked = x[0].transpose(0, 1).index_select(0, plan.decode_k_flat)
        return picked.view(rows, -1, kv_heads, dim).transpose(1, 2).contiguous()

    k, v = rows_of(key), rows_of(value)
    # scores in fp32 from the start, as SDPA's CPU kernel keeps them (bf16 scores lose digits before the softmax)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale + plan.decode_bias
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(weights, v).reshape(rows, -1, dim)


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
    for q0, q1, k0, k1 in plan.prefill:
        mask = _prefill_mask(q1 - q0, k1 - k0)
        rows = sdpa(
            query[:, :, q0:q1],
            key[:, :, k0:k1],
            value[:, :, k0:k1],
            attn_mask=mask,
            is_causal=mask is None,
            scale=scaling,
            enable_gqa=gqa,
        )
        out[q0:q1] = rows[0].transpose(0, 1)
    return out.unsqueeze(0), None
