"""infer/varlen_attention.py: the continuous-batching loop's per-row attention equals SDPA over the loop's whole
pack with its block-diagonal mask (what transformers runs without flash attention), for decoding rows of unequal
lengths, a whole prompt and a prompt chunk that sees its earlier chunk; outside the loop it is SDPA itself."""

from __future__ import annotations

import pytest
import torch

from lmforge.infer.varlen_attention import fits, varlen_sdpa


class Attention:  # the attributes transformers' SDPA wrapper reads from the attention module
    num_key_value_groups = 3
    is_causal = True
    training = False


def _pack(q_lens: list[int], past: list[int], dtype: torch.dtype, heads: int = 9, kv_heads: int = 3, dim: int = 16):
    """Random queries/keys packed as the loop packs them, the cumulative lengths, and the block-diagonal mask."""
    k_lens = [q + p for q, p in zip(q_lens, past)]
    cu_q, cu_k = [0], [0]
    for q, k in zip(q_lens, k_lens):
        cu_q.append(cu_q[-1] + q)
        cu_k.append(cu_k[-1] + k)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, cu_q[-1], dim, generator=gen).to(dtype)
    k, v = (torch.randn(1, kv_heads, cu_k[-1], dim, generator=gen).to(dtype) for _ in range(2))
    mask = torch.full((1, 1, cu_q[-1], cu_k[-1]), float("-inf"))
    for i, (ql, kl) in enumerate(zip(q_lens, k_lens)):
        for a in range(ql):  # query a of row i sees the row's keys up to its own position
            mask[0, 0, cu_q[i] + a, cu_k[i] : cu_k[i] + kl - ql + a + 1] = 0
    kwargs = {"cu_seq_lens_q": torch.tensor(cu_q), "cu_seq_lens_k": torch.tensor(cu_k, dtype=torch.int32)}
    return q, k, v, mask.to(dtype), kwargs


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_rows_attend_as_the_block_diagonal_mask_says(dtype, tol):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # decoding rows of unequal lengths (padded in one batch), a whole prompt, a chunk after 4 cached tokens
    q, k, v, mask, kwargs = _pack([1, 1, 5, 1, 3], [4, 7, 0, 2, 4], dtype)
    want, _ = sdpa_attention_forward(Attention(), q, k, v, mask, scaling=0.25)
    got, _ = varlen_sdpa(Attention(), q, k, v, mask, scaling=0.25, **kwargs)
    assert got.shape == want.shape == (1, q.shape[2], 9, 16)
    assert (got.float() - want.float()).abs().max() < tol
    # rows of equal length and decoding rows only
    q, k, v, mask, kwargs = _pack([1, 1, 1], [6, 6, 6], dtype)
    want, _ = sdpa_attention_forward(Attention(), q, k, v, mask, scaling=0.25)
    got, _ = varlen_sdpa(Attention(), q, k, v, mask, scaling=0.25, **kwargs)
    assert (got.float() - want.float()).abs().max() < tol


def test_outside_the_loop_it_is_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v, _, _ = _pack([6], [0], torch.float32)
    want, _ = sdpa_attention_forward(Attention(), q, k, v, None, scaling=0.25)
    got, _ = varlen_sdpa(Attention(), q, k, v, None, scaling=0.25)
    assert torch.equal(got, want)


def test_only_plain_causal_attention_fits():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen3Config

    assert fits(Qwen3Config()) and fits(LlamaConfig())
    assert not fits(Gemma2Config())  # sliding-window layers and soft-capping
    assert not fits(MistralConfig())  # one sliding window for every layer
