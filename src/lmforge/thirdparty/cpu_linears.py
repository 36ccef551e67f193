"""CPU inference linears on private torch ops (part of lmforge.thirdparty: every private third-party name lmforge
calls lives in this package, with the version checked in CHECKED and a contract test in tests/test_thirdparty.py).

`--cpu_linear` picks one from CPU_LINEARS; each swaps a loaded model's nn.Linear layers for an inference-only form.
"""

from __future__ import annotations

from typing import Any


def mkldnn_bf16_supported() -> bool:
    """torch 2.13: whether oneDNN has fast bf16 matmuls on this CPU (AMX / AVX512-BF16 / Arm bf16); the public
    API only answers for CUDA. False when the private op is gone."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def packed_cpu_linears(model: Any) -> int:
    """torch 2.13: every bf16 `nn.Linear` of an inference-only CPU model runs on a oneDNN weight prepacked once
    (`torch.ops.mkldnn._reorder_linear_weight` + `_linear_pointwise`, the private ops inductor's freezing pass
    uses): batch-1 decode is gemv-bound, and the plain bf16 `F.linear` re-reads the weight in its stored layout
    at ~13 GB/s against ~20+ GB/s packed (embedded model: 30.7 -> 46 tokens/s, greedy tokens equal). The packed
    copy replaces the weight (the layer has no `.weight` any more: not for training, peft or export). Returns how
    many layers were packed (0 when the ops are missing)."""
    import torch

    ops = torch.ops.mkldnn
    if not (hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")):
        return 0

    class PackedLinear(torch.nn.Module):
        def __init__(self, lin: Any) -> None:
            super().__init__()
            self.in_features, self.out_features = lin.in_features, lin.out_features
            self.register_buffer("packed", ops._reorder_linear_weight(lin.weight.detach(), 1), persistent=False)
            self.bias = lin.bias

        def forward(self, x: Any) -> Any:
            flat = x.reshape(-1, x.shape[-1]).contiguous()
            y = ops._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
            return y.reshape(*x.shape[:-1], self.out_features)

    return _replace_cpu_linears(model, (torch.bfloat16,), PackedLinear)


def _replace_cpu_linears(model: Any, dtypes: tuple, make: Any) -> int:
    """Replace every plain CPU `nn.Linear` of one of `dtypes` with `make(linear)` (None keeps it); how many were
    replaced."""
    import torch

    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            plain = type(child) is torch.nn.Linear and child.weight.device.type == "cpu"
            replacement = make(child) if plain and child.weight.dtype in dtypes else None
            if replacement is not None:
                setattr(module, name, replacement)
                swapped += 1
    return swapped


# _weight_int8pack_mm is a gemv kernel, linear in the rows (1 thread-pair, 576x1536: 0.03 ms at 1 row, 0.6 ms at
# 64, 7.4 ms at 768, where casting the int8 weight and a bf16 gemm takes 0.3 / 3.7 ms): from this many rows on the
# layer casts instead
INT8_GEMV_ROWS = 24


def int8_cpu_linears(model: Any) -> int:
    """torch 2.13: every bf16/fp32 CPU `nn.Linear` of an inference-only model keeps its weight as int8 with one
    scale per output channel (symmetric, max-abs / 127) and runs on `torch.ops.aten._weight_int8pack_mm` (the
    private weight-only int8 kernel torchao's CPU path uses): batch-1 decode is gemv-bound and reads a quarter of
    the fp32 bytes (matvec set of the embedded model, 1 thread: bf16 20 ms, bf16 packed 12 ms, int8 10 ms). Greedy
    tokens are close to, not always equal to, the unquantised model's: opt-in (`--cpu_linear int8`). The layer has
    no `.weight` any more (not for training, peft or export). Returns how many layers were swapped (0 when the op
    is missing)."""
    import torch

    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return 0

    class Int8Linear(torch.nn.Module):
        def __init__(self, lin: Any) -> None:
            super().__init__()
            w = lin.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
            self.in_features, self.out_features = lin.in_features, lin.out_features
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            self.register_buffer("qweight", q, persistent=False)
            self.register_buffer("scales", scale.to(lin.weight.dtype), persistent=False)
            self.bias = lin.bias

        def forward(self, x: Any) -> Any:
            flat = x.reshape(-1, x.shape[-1]).contiguous()
            scales = self.scales.to(flat.dtype)
            if flat.shape[0] < INT8_GEMV_ROWS:
                y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, scales)
            else:  # the kernel's cost grows with the rows: prefill and wide batches cast the weight and use a gemm
                y = torch.nn.functional.linear(flat, self.qweight.to(flat.dtype)) * scales
            if self.bias is not None:
                y = y + self.bias
            return y.reshape(*x.shape[:-1], self.out_features)

    return _replace_cpu_linears(model, (torch.bfloat16, torch.float32), Int8Linear)


INT4_GROUP = 32  # weights per (scale, min) pair: the block of GGUF's Q4_0/Q4_1, so a Q4_1 model keeps its grid


def int4_cpu_linears(model: Any) -> int:
    """torch 2.13: every bf16 CPU `nn.Linear` of the decoder layers keeps its weight as 4-bit codes with a scale and
    a minimum per 32 weights (asymmetric, min-max: w = q * scale + min) and runs on
    `torch.ops.aten._weight_int4pack_mm_for_cpu` (the weight-only int4 kernel torchao's CPU path uses, which
    takes the minimum as `min + 8 * scale`). Half the bytes of int8 per decode step (embedded model, one thread:
    ~1.4x int8's tokens/s). The embedded model's layers are Q4_1 already (at most 16 values in each 32-block),
    so they come back to the grid they had, up to the bf16 scales. The output head (the token embedding, stored
    finer in the GGUF) and layers whose sizes do not tile (in % 32, out % 16) go to int8. Prefill runs on the same
    kernel, ~2.5x a bf16 gemm at 768 rows. Opt-in (`--cpu_linear int4`); the layers have no `.weight` (not for
    training, peft or export). Returns how many layers were swapped (0 when the op is missing)."""
    import torch

    ops = torch.ops.aten
    if not (hasattr(ops, "_weight_int4pack_mm_for_cpu") and hasattr(ops, "_convert_weight_to_int4pack_for_cpu")):
        return 0

    class Int4Linear(torch.nn.Module):
        def __init__(self, lin: Any) -> None:
            super().__init__()
            w = lin.weight.detach().float()
            out, width = w.shape
            groups = w.view(out, width // INT4_GROUP, INT4_GROUP)
            low = groups.amin(dim=-1)
            scale = ((groups.amax(dim=-1) - low) / 15).clamp(min=1e-12)
            q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
            self.in_features, self.out_features = width, out
            packed = ops._convert_weight_to_int4pack_for_cpu(q.view(out, width).contiguous(), 1)
            self.register_buffer("packed", packed, persistent=False)
            # [groups, out, 2]: the kernel's layout of (scale, min + 8 * scale)
            pairs = torch.stack((scale.t(), (low + 8 * scale).t()), dim=-1).to(lin.weight.dtype).contiguous()
            self.register_buffer("scales_and_zeros", pairs, persistent=False)
            self.bias = lin.bias

        def forward(self, x: Any) -> Any:
            flat = x.reshape(-1, x.shape[-1]).contiguous()
            y = ops._weight_int4pack_mm_for_cpu(flat, self.packed, INT4_GROUP, self.scales_and_zeros)
            if self.bias is not None:
                y = y + self.bias
            return y.reshape(*x.shape[:-1], self.out_features)

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None

    def make(lin: Any) -> Any:
        fits = lin.in_features % INT4_GROUP == 0 and lin.out_features % 16 == 0  # the packing's tiles
        return Int4Linear(lin) if fits and lin is not head else None

    swapped = _replace_cpu_linears(model, (torch.bfloat16,), make)
    return swapped + int8_cpu_linears(model) if swapped else 0  # the rest (the head) on int8


# `--cpu_linear` (infer/deploy/app): how a CPU inference model's nn.Linear layers run; None keeps them as loaded
CPU_LINEARS: dict[str, Any] = {
    "default": None,
    "bf16_packed": packed_cpu_linears,
    "int8": int8_cpu_linears,
    "int4": int4_cpu_linears,
}
