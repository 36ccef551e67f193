"""Cross-entropy over output-layer logits, in row chunks, with the gradient computed in the forward pass.

Why: with a 49k vocabulary the fp32 logits of a step's trained positions (230 x 49,152 x 4 bytes = 45 MB here) do
not fit this CPU's caches, so torch's cross-entropy walks them from memory several times (cast, log-softmax,
gather, a zero-filled gradient, log-softmax backward, cast back): ~55 ms of a ~0.93 s LoRA step on the default
model. The gradient of the loss is known as soon as the loss is ((softmax - one_hot) / denom), so here each chunk
of rows is cast, normalised, read for its loss and prediction and turned into its gradient while it is still in
cache, and the backward only scales the stored gradient. Measured with the output-layer matmuls: 108 against
150 ms per step; loss and gradient equal torch's.
"""

from __future__ import annotations

import torch

IGNORE = -100
CHUNK = 32  # rows per chunk: 32 x 49,152 fp32 = 6 MB, inside the L3 cache of the machines we measured


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, denom: float):  # noqa: ANN001
        grad = torch.empty_like(logits)
        predicted = torch.empty(targets.shape, dtype=torch.long, device=targets.device)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for r0 in range(0, logits.shape[0], CHUNK):
            rows = slice(r0, r0 + CHUNK)
            logp = torch.log_softmax(logits[rows].float(), dim=-1)
            predicted[rows] = logp.argmax(-1)
            t = targets[rows]
            valid = t != IGNORE
            safe = t.masked_fill(~valid, 0)
            total -= (logp.gather(1, safe[:, None]).squeeze(1) * valid).sum()
            probs = logp.exp_()
            probs[torch.arange(len(t), device=t.device), safe] -= valid.to(probs.dtype)
            if not bool(valid.all()):
                probs[~valid] = 0
            torch.mul(probs, 1.0 / denom, out=grad[rows])  # scaled and cast to the logits' dtype in one pass
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(predicted)
        return total / denom, predicted

    @staticmethod
    def backward(ctx, grad_loss, _grad_predicted):  # noqa: ANN001
        (grad,) = ctx.saved_tensors
        if float(grad_loss) == 1.0:  # the usual case: no 22 MB copy (the matmul backward only reads it)
            return grad, None, None
        return grad * grad_loss.to(grad.dtype), None, None


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, denom: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over non-ignored targets of -log softmax(logits)[target] / denom, argmax per row); logits [n, V]."""
    return _ChunkedCrossEntropy.apply(logits, targets, float(denom))
