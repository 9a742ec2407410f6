"""ReLU: ``out = max(x, 0)``.

* backward: ``dx = grad_out · relu'(x)`` with ``relu'(x) = 1`` where ``x > 0`` (and where ``x``
  is NaN, as torch passes the gradient through there), else 0 (at ``x = 0`` too, as torch does);
* saved: the output (``out > 0`` exactly where ``x > 0``), which the next Linear keeps anyway;
* bytes per element: 0 beyond what the next Linear keeps.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, save_for_jvp

__all__ = ["ReLUFunction", "relu_derivative", "relu_grad_fast"]


class ReLUFunction(Function):
    """``out = max(x, 0)``, in place when ``inplace``; saves the output."""

    @staticmethod
    def writes_input(*args):
        return args[1]

    @staticmethod
    def forward(x, inplace):
        if backend.kernels_for(x):
            return backend.kernels().relu.forward(x, inplace)
        if inplace:
            x.clamp_min_(0)
            return x  # the input object itself: torch.compile matches dirty inputs by identity
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
        ctx.save_for_backward(out)
        save_for_jvp(ctx, out, inplace=inputs[1])

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        if backend.kernels_for(out, grad_out, grad=True):
            return backend.kernels().relu.backward(out, grad_out), None
        return relu_grad_fast(out, grad_out), None

    @staticmethod
    def forward_ad(ctx, x_t, _):
        (out,) = ctx.saved_tensors
        out_t = relu_grad_fast(out, x_t)
        return x_t.copy_(out_t) if ctx.inplace else out_t  # in place: the tangent too


def relu_derivative(out):
    """``d out / dx`` from ``out`` (or ``x``): 1 where ``> 0`` or NaN, else 0 — the reference."""
    return ((out > 0) | out.isnan()).to(out.dtype)


def relu_grad_fast(out, grad_out):
    """``grad_out · relu_derivative(out)`` in one pass: torch's own ``threshold_backward`` (what
    ``torch.relu``'s backward calls), differentiable, so it serves double backward too."""
    return torch.ops.aten.threshold_backward(grad_out, out, 0)
