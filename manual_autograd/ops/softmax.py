"""Softmax and log-softmax along ``dim``: ``out = exp(x − lse(x))`` and ``out = x − lse(x)``,
``lse(x) = log Σ_dim exp(x)``.

* backward: softmax ``dx = out · (g − Σ_dim g·out)``; log-softmax ``dx = g − exp(out) · Σ_dim g``;
* saved: the output only (torch's own softmax keeps the output too); the backward is written in
  differentiable ops of ``out`` and ``g``, and ``out`` is this Function's output, so double
  backward flows back through this Function;
* bytes per element: the element size of ``out`` (0 beyond it when the next op keeps it anyway).

The forward values are torch's own kernels (``_softmax`` / ``_log_softmax``).
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, cast_like, in_place, opmath, save_for_jvp

__all__ = ["SoftmaxFunction", "softmax_backward", "softmax_grad_fast"]


class SoftmaxFunction(Function):
    """Softmax (``log=False``) or log-softmax (``log=True``) along ``dim``; saves the output."""

    @staticmethod
    def forward(x, dim, log):
        if backend.kernels_for(x):
            return backend.kernels().softmax.forward(x, dim, log)
        return torch._log_softmax(x, dim, False) if log else torch._softmax(x, dim, False)

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.dim, ctx.log = inputs[1], inputs[2]
        ctx.save_for_backward(out)
        save_for_jvp(ctx, out)

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        if backend.kernels_for(out, grad_out, grad=True):
            return backend.kernels().softmax.backward(out, grad_out, ctx.dim, ctx.log), None, None
        if grad_out.dtype == out.dtype and in_place(grad_out):
            return softmax_grad_fast(out, grad_out, ctx.dim, ctx.log), None, None
        return softmax_backward(out, grad_out, ctx.dim, ctx.log), None, None

    @staticmethod
    def forward_ad(ctx, x_t, *_):
        (out,) = ctx.saved_tensors  # the same map as the backward's: J is symmetric for softmax
        if ctx.log:  # d out = x_t − Σ softmax · x_t
            return cast_like(opmath(x_t) - (opmath(out).exp() * opmath(x_t)).sum(ctx.dim, keepdim=True), x_t)
        return softmax_backward(out, x_t, ctx.dim, False)


def softmax_backward(out, grad_out, dim, log):
    """``dx`` from the output: the reference (differentiable; in float32 for half precision)."""
    o, g = opmath(out), opmath(grad_out)
    if log:
        return cast_like(g - o.exp() * g.sum(dim, keepdim=True), grad_out)
    return cast_like(o * (g - (g * o).sum(dim, keepdim=True)), grad_out)


def softmax_grad_fast(out, grad_out, dim, log):
    """``softmax_backward`` in one pass: torch's own backward kernels (what ``torch.softmax``'s
    backward calls)."""
    if log:
        return torch._log_softmax_backward_data(grad_out, out, dim, out.dtype)
    return torch._softmax_backward_data(grad_out, out, dim, out.dtype)
