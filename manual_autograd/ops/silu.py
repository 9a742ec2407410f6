"""SiLU: ``out = x σ(x)``.

* backward: ``dx = grad_out · σ(x) (1 + x (1 − σ(x)))``;
* saved: the input ``x``; in place, a copy of it taken before it is overwritten (returned by the
  forward as a second, non-differentiable output, as torch's own ``silu_`` keeps it too);
* bytes per element: the element size of ``x``.

The forward value is torch's own SiLU kernel.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import HALF, Function, cast_like, in_place, opmath, same_layout, save_for_jvp

__all__ = ["SiLUFunction", "silu_derivative", "silu_grad_fast_"]


class SiLUFunction(Function):
    """SiLU; in place (``inplace``) it returns ``(out, x_before)``."""

    @staticmethod
    def writes_input(*args):
        return args[1]

    @staticmethod
    def forward(x, inplace):
        if backend.kernels_for(x):
            out, x0 = backend.kernels().silu.forward(x, inplace)
            return (out, x0) if inplace else out
        if inplace:
            x0 = x.clone()
            torch._C._nn.silu_(x)
            return x, x0  # the input object itself: torch.compile matches dirty inputs by identity
        return torch._C._nn.silu(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
            ctx.mark_non_differentiable(out[1])
            ctx.save_for_backward(out[1])
        else:
            ctx.save_for_backward(inputs[0])
        save_for_jvp(ctx, out[1] if inputs[1] else inputs[0], inplace=inputs[1])

    @staticmethod
    def backward(ctx, grad_out, *_):
        (x,) = ctx.saved_tensors
        if backend.kernels_for(x, grad_out, grad=True):
            return backend.kernels().silu.backward(x, grad_out), None
        if x.dtype not in HALF and grad_out.dtype == x.dtype and in_place(grad_out) and same_layout(x, grad_out):
            return silu_grad_fast_(x, grad_out), None
        return cast_like(grad_out * silu_derivative(x), grad_out), None

    @staticmethod
    def forward_ad(ctx, x_t, _):
        (x,) = ctx.saved_tensors  # the input from before an in-place overwrite
        if ctx.inplace:  # in place: the tangent too
            return x_t.mul_(silu_derivative(x)), None
        return cast_like(x_t * silu_derivative(x), x_t)


def silu_derivative(x):
    """SiLU's ``d out / dx``, elementwise (in float32 for half-precision ``x``): the reference."""
    x = opmath(x)
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def silu_grad_fast_(x, grad_out):
    """``grad_out · silu_derivative(x)`` for float32/64 ``x`` outside double backward, in place on
    two fresh temporaries: ``(σ + σ (x − x σ)) grad_out``, four passes."""
    s = torch.sigmoid(x)
    return s.addcmul_(s, torch.addcmul(x, x, s, value=-1.0)).mul_(grad_out)
