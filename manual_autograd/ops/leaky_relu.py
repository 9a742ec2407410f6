"""LeakyReLU: ``out = x`` where ``x > 0``, else ``negative_slope · x``.

* backward: ``dx = grad_out · d`` with ``d = 1`` where ``x > 0``, else ``negative_slope`` (at
  ``x = 0`` and NaN too, as torch does);
* saved: for ``negative_slope >= 0`` the output (its sign is the input's; the next Linear keeps
  it anyway); for a negative slope a bit-packed mask of ``x > 0``, returned by the forward as a
  second, non-differentiable output;
* bytes per element: 0 beyond the next Linear's for ``negative_slope >= 0``, else 1/8.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, in_place, pack_bits, save_for_jvp, strides_unless_contiguous, unpack_bits, with_strides

__all__ = ["LeakyReLUFunction", "leaky_relu_derivative", "leaky_relu_derivative_fast"]


class LeakyReLUFunction(Function):
    """LeakyReLU, in place when ``inplace``; returns ``(out, mask)`` for a negative slope."""

    @staticmethod
    def writes_input(*args):
        return args[2]

    @staticmethod
    def forward(x, negative_slope, inplace):
        if backend.kernels_for(x):
            out, mask = backend.kernels().leaky_relu.forward(x, negative_slope, inplace)
            return out if mask is None else (out, mask)
        mask = None if negative_slope >= 0 else pack_bits(x > 0)
        if inplace:
            torch._C._nn.leaky_relu_(x, negative_slope)
            out = x  # the input object itself: torch.compile matches dirty inputs by identity
        else:
            out = torch._C._nn.leaky_relu(x, negative_slope)
        return out if mask is None else (out, mask)

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, negative_slope, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        ctx.negative_slope = negative_slope
        if negative_slope >= 0:
            ctx.save_for_backward(out)
        else:
            ctx.mark_non_differentiable(out[1])
            ctx.save_for_backward(out[1])
            ctx.shape = x.shape
            ctx.strides = strides_unless_contiguous(x)  # the mask is row-major; the gradient takes x's layout
        save_for_jvp(ctx, out if negative_slope >= 0 else out[1], inplace=inplace)

    @staticmethod
    def backward(ctx, grad_out, *_):
        (saved,) = ctx.saved_tensors
        slope = ctx.negative_slope
        if backend.kernels_for(saved, grad_out, grad=True):
            grad = backend.kernels().leaky_relu.backward(saved, grad_out, slope)
            return (grad if slope >= 0 else with_strides(grad, ctx.strides)), None, None
        if slope >= 0:
            d = leaky_relu_derivative_fast(saved, slope)
            return d.mul_(grad_out) if in_place(grad_out) else grad_out * d, None, None
        positive = unpack_bits(saved, ctx.shape)
        return with_strides(torch.where(positive, grad_out, grad_out * slope), ctx.strides), None, None

    @staticmethod
    def forward_ad(ctx, x_t, *_):
        (saved,) = ctx.saved_tensors
        slope = ctx.negative_slope
        positive = saved > 0 if slope >= 0 else unpack_bits(saved, ctx.shape)
        out_t = torch.where(positive, x_t, x_t * slope)
        if ctx.inplace:  # in place: the tangent too
            out_t = x_t.copy_(out_t)
        return out_t if slope >= 0 else (out_t, None)


def leaky_relu_derivative(x, negative_slope):
    """``d out / dx`` from ``x`` (or, for ``negative_slope >= 0``, from ``out``): the reference."""
    return torch.where(x > 0, x.new_ones(()), x.new_full((), negative_slope))  # in x's dtype, not the default


def leaky_relu_derivative_fast(out, negative_slope):
    """:func:`leaky_relu_derivative` for ``negative_slope >= 0`` in float kernels only (a bool
    mask and ``where`` cost several times more on CPU); a fresh tensor, free to overwrite.

    NOTE: sign(out) is sign(x), in {-1, 0, 1} (0 at NaN); clamped from below at the slope (<= 1)
    it is {slope, slope, 1}, so x = 0 and NaN get the slope, as in torch.
    """
    d = out.sign()
    if negative_slope <= 1:
        return d.clamp_min_(negative_slope)
    return d.clamp_min_(0).mul_(1.0 - negative_slope).add_(negative_slope)
