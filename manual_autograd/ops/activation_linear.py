"""ActivationLinear: ``out = act(z) Wᵀ + b``, one op for an activation and the Linear after it.

* backward: ``dz = (grad_out W) ⊙ act'(z)``, ``dW = grad_outᵀ act(z)`` with ``act(z)``
  recomputed from ``z`` (one pointwise pass), ``db = Σ grad_out``;
* saved: ``z`` (and ``W`` when ``z`` needs a gradient), for every activation; the unfused pair
  keeps ``z`` and ``act(z)`` (for ReLU a sign mask would cover ``act'`` but not ``dW``);
* bytes per element of ``z``: its element size (the unfused pair: twice that, or 1 + 1/8 with a
  bit mask).

``act'`` is each activation's own (see :data:`ACTIVATIONS`): outside double backward through
torch's one-pass backward kernels, with a graph through the activation's reference derivative.
"""

from __future__ import annotations

import torch
from torch.nn import functional as TF

from .. import backend
from .base import Function, cast_like, rows, save_for_jvp, strides_unless_contiguous, with_strides
from .gelu import gelu_derivative
from .leaky_relu import leaky_relu_derivative
from .linear import LinearFunction
from .relu import relu_grad_fast
from .silu import silu_derivative

__all__ = ["ActivationLinearFunction", "ACTIVATIONS"]


class ActivationLinearFunction(Function):
    """``out = act(z) Wᵀ + b``; ``param`` is leaky_relu's slope, gelu's approximation, else None.

    ``z`` may have another dtype than ``W`` (autocast: ``W`` in the autocast dtype, ``z`` in its
    own): ``act(z)`` is computed in ``z``'s dtype and cast to ``W``'s, as the unfused chain does.
    """

    @staticmethod
    def forward(z, weight, bias, activation, param):
        return LinearFunction.forward(cast_like(activation_value(z, activation, param), weight), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, out):
        z, weight, _, activation, param = inputs
        need_z, need_w, _ = ctx.needs_input_grad[:3]
        ctx.activation, ctx.param = activation, param
        ctx.save_for_backward(z if need_z or need_w else None, weight if need_z else None)
        save_for_jvp(ctx, z, weight, activation=activation, param=param)
        # the layout torch's unfused pair gives grad_z for a dense z in another order: z's for a 2-D z
        # (the matmul's backward keeps a column-major input's), and for relu / leaky_relu (whose backward
        # reads z first); else row-major, the matmul's
        strided = need_z and (z.dim() == 2 or activation in ("relu", "leaky_relu"))
        ctx.z_strides = strides_unless_contiguous(z) if strided else None

    @staticmethod
    def backward(ctx, grad_out):
        z, weight = ctx.saved_tensors
        need_z, need_w, need_b = ctx.needs_input_grad[:3]
        grad_z = grad_w = grad_b = None
        if (need_z or need_w) and backend.kernels_for(z, grad=True):
            # the recompute of act(z) and the derivative in one pass, between the matrix products
            # (the kernel reads z and g in z's dtype; grad_out, in W's, only meets the matmuls)
            g = cast_like(grad_out.matmul(weight), z) if need_z else None
            act, grad_z = backend.kernels().activation_linear.backward(z, g, ctx.activation, ctx.param, need_w)
            if need_w:
                grad_w = rows(grad_out).t().matmul(rows(cast_like(act, grad_out)))
            grad_z = with_strides(grad_z, ctx.z_strides) if need_z else None
            return grad_z, grad_w, rows(grad_out).sum(0) if need_b else None, None, None
        if need_w:
            grad_w = rows(grad_out).t().matmul(rows(cast_like(activation_value(z, ctx.activation, ctx.param), grad_out)))
        if need_b:
            grad_b = rows(grad_out).sum(0)
        if need_z:
            grad_z = activation_grad(cast_like(grad_out.matmul(weight), z), z, ctx.activation, ctx.param)
            grad_z = with_strides(grad_z, ctx.z_strides)
        return grad_z, grad_w, grad_b, None, None

    @staticmethod
    def forward_ad(ctx, z_t, weight_t, bias_t, *_):
        z, weight = ctx.saved_tensors
        # d(act(z) Wᵀ + b) = (act'(z) ⊙ dz) Wᵀ + act(z) dWᵀ + db
        out_t = None
        if z_t is not None:
            out_t = cast_like(activation_grad(z_t, z, ctx.activation, ctx.param), weight).matmul(weight.t())
        if weight_t is not None:
            t = cast_like(activation_value(z, ctx.activation, ctx.param), weight).matmul(weight_t.t())
            out_t = t if out_t is None else out_t + t
        if bias_t is not None:
            out_t = bias_t.expand(z.shape[:-1] + weight.shape[:1]) if out_t is None else out_t + bias_t
        return out_t


#: name -> (value, one-pass backward kernel, reference derivative), each ``f(z, param)`` / ``f(grad, z, param)``.
ACTIVATIONS = {
    "relu": (lambda z, _: z.clamp_min(0), lambda g, z, _: relu_grad_fast(z, g), None),
    "leaky_relu": (
        lambda z, slope: TF.leaky_relu(z, slope),
        lambda g, z, slope: torch.ops.aten.leaky_relu_backward(g, z, slope, False),
        leaky_relu_derivative,
    ),
    "gelu": (
        lambda z, approximate: TF.gelu(z, approximate=approximate),
        lambda g, z, approximate: torch.ops.aten.gelu_backward(g, z, approximate=approximate),
        gelu_derivative,
    ),
    "silu": (lambda z, _: TF.silu(z), lambda g, z, _: torch.ops.aten.silu_backward(g, z), lambda z, _: silu_derivative(z)),
}


def activation_value(z, activation, param):
    """``act(z)``, torch's one-pass kernel."""
    return ACTIVATIONS[activation][0](z, param)


def activation_grad(grad, z, activation, param):
    """``grad · act'(z)``: torch's one-pass backward kernel outside double backward (the fast
    path), the activation's reference derivative when a graph is recorded (``silu_backward``
    has no derivative). ReLU's one-pass form is differentiable and serves both."""
    _, fast, derivative = ACTIVATIONS[activation]
    if derivative is None or not torch.is_grad_enabled():
        return fast(grad, z, param)
    return cast_like(grad * derivative(z, param), grad)
