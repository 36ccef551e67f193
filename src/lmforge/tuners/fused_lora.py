"""LoRA linear layers as one autograd function, for CPU training.

Why: peft's LoRA forward is ~8 separate ops per layer (cast x to the fp32 LoRA dtype, dropout in fp32, autocast
re-casts of x, A and B to bf16, two matmuls, a scale multiply, an add), each with its own autograd node; on the
default model that is 210 layers x ~20 forward and backward kernels, and the casts and elementwise ops measured
~25% of a CPU step. Here one function does the same maths with the matmuls alone and in-place adds:

    y = x W^T + b + s/(1-p) * ((x * keep) A^T) B^T          keep ~ Bernoulli(1-p), s = lora_alpha / r

and a hand-written backward (gradients for x, A and B; W and b stay frozen; none for x where nothing below needs
it). The dropout scale 1/(1-p) is folded into s; the 0/1 mask comes from `dropout.keep_mask` in the compute dtype.
Layers the function does not cover (DoRA and other variants, several active adapters, merged or disabled
adapters, quantised bases, trainable base weights) keep peft's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.thirdparty import swap_lora_forward
from lmforge.tuners.dropout import keep_mask


class _LoraLinear(torch.autograd.Function):
    """y = linear(x, W, bias) + scale * ((x * keep) A^T) B^T, in the compute dtype `dt`."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scale: float, p: float, dt: torch.dtype):  # noqa: ANN001
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dt)
        w, a_c, b_c = weight.to(dt), a.to(dt), b.to(dt)
        y = torch.nn.functional.linear(x2, w, None if bias is None else bias.to(dt))
        keep = keep_mask(x2.shape, p, dt, x2.device) if p > 0 else None
        xd = x2 * keep if keep is not None else x2
        s = scale / (1.0 - p)
        h = xd @ a_c.t()
        y.addmm_(h, b_c.t(), alpha=s)
        ctx.save_for_backward(xd, h, w, a_c, b_c, keep)
        ctx.s, ctx.x_dtype, ctx.x_shape = s, x.dtype, shape
        ctx.a_dtype, ctx.b_dtype = a.dtype, b.dtype
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, gy):  # noqa: ANN001
        xd, h, w, a_c, b_c, keep = ctx.saved_tensors
        g = gy.reshape(-1, gy.shape[-1]).to(w.dtype)
        gh = (g @ b_c).mul_(ctx.s)  # gradient at h = (x * keep) A^T
        grad_a = gh.t() @ xd
        grad_b = (h.t() @ g).mul_(ctx.s).t()  # [r, out] then a view: measured 1.7% faster steps than g^T h
        gx = None
        if ctx.needs_input_grad[0]:  # not for the first layer's q/k/v/gate/up: frozen embeddings below them
            gx = g @ w
            if keep is None:
                gx.addmm_(gh, a_c)
            else:
                gx.add_((gh @ a_c).mul_(keep))
            gx = gx.view(ctx.x_shape).to(ctx.x_dtype)
        return gx, None, None, grad_a.to(ctx.a_dtype), grad_b.to(ctx.b_dtype), None, None, None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Bound to a peft `lora.Linear` instance in place of its forward; peft's forward covers every other case."""
    active = [n for n in self.active_adapters if n in self.lora_A]
    if args or kwargs or self.disable_adapters or self.merged or len(active) != 1 or active[0] in self.lora_variant:
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    base = self.base_layer
    drop = self.lora_dropout[name]
    p = float(getattr(drop, "p", 0.0)) if self.training and drop.training else 0.0
    if torch.is_autocast_enabled(x.device.type):
        dt = torch.get_autocast_dtype(x.device.type)
    else:
        dt = base.weight.dtype
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(
            x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name], p, dt
        )


def _fusable(module: nn.Module) -> bool:
    from peft.tuners.lora.layer import Linear

    if type(module) is not Linear or type(module.base_layer) is not nn.Linear:
        return False  # subclasses (bitsandbytes, quanto's QLinear, ...) have their own base-layer maths
    base = module.base_layer
    frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
    # peft puts nn.Identity when p = 0, a dropout module (with .p) otherwise
    drops_ok = all(isinstance(d, nn.Identity) or hasattr(d, "p") for d in module.lora_dropout.values())
    no_b_bias = all(b.bias is None for b in module.lora_B.values())  # peft's lora_bias=True
    return frozen and drops_ok and no_b_bias and not getattr(module, "fan_in_fan_out", False)


def use_fused_lora(model: nn.Module) -> int:
    """Give every plain peft LoRA linear layer of `model` the fused forward; returns how many."""
    n = 0
    for module in model.modules():
        if _fusable(module):
            swap_lora_forward(module, _fused_forward)
            n += 1
    return n
