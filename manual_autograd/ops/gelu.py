"""GELU: ``out = x Φ(x)`` (``approximate='none'``) or ``x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))``.

* backward: ``dx = grad_out · gelu'(x)``, with ``gelu'(x) = Φ(x) + x φ(x)``, or for ``'tanh'``
  with ``u = √(2/π)(x + c x³)`` and ``s = σ(2u) = ½(1 + tanh u)``:
  ``gelu'(x) = s (1 + (1 − s) x ∂(2u)/∂x)``;
* saved: the input ``x``;
* bytes per element: the element size of ``x``.

The forward value is torch's own GELU kernel (one pass, float32 inside for half precision).
"""

from __future__ import annotations

import math

import torch

from .. import backend
from .base import HALF, Function, cast_like, in_place, opmath, same_layout, save_for_jvp

__all__ = ["GELUFunction", "gelu_derivative", "gelu_grad_fast_"]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715
_LOG2E = math.log2(math.e)


class GELUFunction(Function):
    """GELU, exact or tanh-approximated; saves the input."""

    @staticmethod
    def forward(x, approximate):
        if backend.kernels_for(x):
            return backend.kernels().gelu.forward(x, approximate)
        return torch._C._nn.gelu(x, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.approximate = inputs[1]
        ctx.save_for_backward(inputs[0])
        save_for_jvp(ctx, inputs[0])

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        if backend.kernels_for(x, grad_out, grad=True):
            return backend.kernels().gelu.backward(x, grad_out, ctx.approximate), None
        if x.dtype not in HALF and grad_out.dtype == x.dtype and in_place(grad_out) and same_layout(x, grad_out):
            return gelu_grad_fast_(x, ctx.approximate, grad_out), None
        return cast_like(grad_out * gelu_derivative(x, ctx.approximate), grad_out), None

    @staticmethod
    def forward_ad(ctx, x_t, _):
        (x,) = ctx.saved_tensors
        return cast_like(x_t * gelu_derivative(x, ctx.approximate), x_t)


def gelu_derivative(x, approximate):
    """GELU's ``d out / dx``, elementwise (in float32 for half-precision ``x``): the reference."""
    x = opmath(x)
    if approximate == "tanh":  # s (1 + (1 − s) x ∂(2u)/∂x), s = σ(2u)
        x2 = x * x
        s = torch.sigmoid((2.0 * _SQRT_2_PI) * x * (1.0 + _GELU_C * x2))
        return s * (1.0 + (1.0 - s) * x * (2.0 * _SQRT_2_PI) * (1.0 + 3.0 * _GELU_C * x2))
    return 0.5 * (1.0 + torch.erf(x * _SQRT1_2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI  # Φ + x φ


def gelu_grad_fast_(x, approximate, grad_out):
    """``grad_out · gelu_derivative(x, approximate)`` for float32/64 ``x`` outside double backward:
    in place on two fresh temporaries (on CPU a fresh full-size buffer can cost more than the
    kernel filling it), one pass over memory per call."""
    if approximate == "tanh":
        # NOTE: with s = σ(2u), out' = s (1 + (1 − s) v), v = x ∂(2u)/∂x = 3·2u − 2kx (k = 2√(2/π)).
        # A sigmoid is cheaper than a tanh, and 1 − tanh² no longer cancels where tanh → ±1.
        s = x * (2.0 * _SQRT_2_PI)  # k x
        v = x.square()
        s.addcmul_(s, v, value=_GELU_C)  # 2u = k x (1 + c x²)
        torch.add(s, x, alpha=-4.0 / 3.0 * _SQRT_2_PI, out=v)  # v / 3
        s.sigmoid_()
        return s.addcmul_(s, v.addcmul_(v, s, value=-1.0), value=3.0).mul_(grad_out)  # (s + s (1 − s) v) g
    # Φ(x) + x φ(x) = ½ (1 + erf(z) + 2 x φ(x)), z = x/√2, and 2 x φ(x) = x · (2/√(2π)) / exp(z²)
    z = x * _SQRT1_2
    # NOTE: e = exp(z²) is inf beyond |x| ≈ 13.3 in float32, where x / e is then 0, as φ underflows.
    # On CPU as exp2(log₂e z²), whose CPU kernel is cheaper than exp's; on a GPU the extra pass is not.
    e = z.square().mul_(_LOG2E).exp2_() if x.is_cpu else z.square().exp_()
    out = z.erf_().addcdiv_(x, e, value=2.0 * _INV_SQRT_2PI)
    return torch.addcmul(grad_out, grad_out, out, out=out).mul_(0.5)  # g (1 + out) / 2
