"""Sigmoid: ``out = σ(x) = 1 / (1 + exp(−x))``.

* backward: ``dx = grad_out · out (1 − out)``;
* saved: the output (the next Linear keeps it anyway), as torch's own sigmoid;
* bytes per element: 0 beyond what the next Linear keeps.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, cast_like, in_place, opmath, save_for_jvp

__all__ = ["SigmoidFunction", "sigmoid_derivative", "sigmoid_grad_fast"]


class SigmoidFunction(Function):
    """``out = σ(x)``; saves the output."""

    @staticmethod
    def forward(x):
        if backend.kernels_for(x):
            return backend.kernels().sigmoid.forward(x)
        return torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.save_for_backward(out)
        save_for_jvp(ctx, out)

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        if backend.kernels_for(out, grad_out, grad=True):
            return backend.kernels().sigmoid.backward(out, grad_out)
        if grad_out.dtype == out.dtype and in_place(grad_out):
            return sigmoid_grad_fast(out, grad_out)
        return cast_like(opmath(grad_out) * sigmoid_derivative(out), grad_out)

    @staticmethod
    def forward_ad(ctx, x_t):
        (out,) = ctx.saved_tensors
        return cast_like(opmath(x_t) * sigmoid_derivative(out), x_t)


def sigmoid_derivative(out):
    """``d out / dx`` from ``out`` (in float32 for half precision): the reference."""
    out = opmath(out)
    return out * (1.0 - out)


def sigmoid_grad_fast(out, grad_out):
    """``grad_out · sigmoid_derivative(out)`` in one pass: torch's own ``sigmoid_backward``."""
    return torch.ops.aten.sigmoid_backward(grad_out, out)
