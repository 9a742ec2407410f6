"""Linear: ``out = x Wᵀ + b`` for ``x`` ``(*, in)``, ``W`` ``(out, in)``, ``b`` ``(out)``.

* backward: ``dx = grad_out W``, ``dW = grad_outᵀ x`` (summed over every leading dim),
  ``db = Σ grad_out``;
* saved: ``x`` only if ``W`` needs a gradient, ``W`` only if ``x`` does (``db`` reads nothing);
* bytes per element of ``x``: its element size when ``W`` trains (the previous layer's output,
  which an unfused network keeps anyway), else 0.
"""

from __future__ import annotations

import torch

from .base import Function, rows, save_for_jvp

__all__ = ["LinearFunction"]


class LinearFunction(Function):
    """``out = x Wᵀ + b``; see the module docstring for the math and what is saved."""

    @staticmethod
    def forward(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)  # torch's kernel (addmm for 2-D x): one call

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, weight, _ = inputs
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        save_for_jvp(ctx, x, weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if grad_out.dim() == 2:  # the common case, straight to the kernels
            if need_x:
                grad_x = grad_out.mm(weight)
            if need_w:
                grad_w = grad_out.t().mm(x)
            if need_b:
                grad_b = grad_out.sum(0)
            return grad_x, grad_w, grad_b
        if need_x:
            grad_x = grad_out.matmul(weight)
        if need_w:  # broadcast forward, sum backward: every leading dim is a batch dim
            grad_w = rows(grad_out).t().matmul(rows(x))
        if need_b:
            grad_b = rows(grad_out).sum(0)
        return grad_x, grad_w, grad_b

    @staticmethod
    def forward_ad(ctx, x_t, weight_t, bias_t):
        x, weight = ctx.saved_tensors
        # d(x Wᵀ + b) = dx Wᵀ + x dWᵀ + db
        out_t = None if x_t is None else x_t.matmul(weight.t())
        if weight_t is not None:
            t = x.matmul(weight_t.t())
            out_t = t if out_t is None else out_t + t
        if bias_t is not None:
            out_t = bias_t.expand(x.shape[:-1] + weight.shape[:1]) if out_t is None else out_t + bias_t
        return out_t
