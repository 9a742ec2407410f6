"""Tanh: ``out = tanh(x)``.

* backward: ``dx = grad_out · (1 − out²)``;
* saved: the output (the next Linear keeps it anyway), as torch's own tanh;
* bytes per element: 0 beyond what the next Linear keeps.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, cast_like, in_place, opmath, save_for_jvp

__all__ = ["TanhFunction", "tanh_derivative", "tanh_grad_fast"]


class TanhFunction(Function):
    """``out = tanh(x)``; saves the output."""

    @staticmethod
    def forward(x):
        if backend.kernels_for(x):
            return backend.kernels().tanh.forward(x)
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.save_for_backward(out)
        save_for_jvp(ctx, out)

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        if backend.kernels_for(out, grad_out, grad=True):
            return backend.kernels().tanh.backward(out, grad_out)
        if grad_out.dtype == out.dtype and in_place(grad_out):
            return tanh_grad_fast(out, grad_out)
        return cast_like(opmath(grad_out) * tanh_derivative(out), grad_out)

    @staticmethod
    def forward_ad(ctx, x_t):
        (out,) = ctx.saved_tensors
        return cast_like(opmath(x_t) * tanh_derivative(out), x_t)


def tanh_derivative(out):
    """``d out / dx`` from ``out`` (in float32 for half precision): the reference."""
    out = opmath(out)
    return 1.0 - out * out


def tanh_grad_fast(out, grad_out):
    """``grad_out · tanh_derivative(out)`` in one pass: torch's own ``tanh_backward``."""
    return torch.ops.aten.tanh_backward(grad_out, out)
