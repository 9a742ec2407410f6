"""Gated units: ``out = act(gate) · up``, SwiGLU (``act = silu``) and GEGLU (``act = gelu``, exact or tanh).

* backward: ``d_gate = grad_out · up · act'(gate)``, ``d_up = grad_out · act(gate)``, with
  ``act(gate)`` recomputed (one pointwise pass);
* saved: ``gate`` and ``up`` (the inputs themselves), never ``act(gate)`` or the product;
  ``up`` only when ``gate`` needs a gradient, ``gate`` whenever either does;
* bytes per element: twice the element size (the unfused ``act(gate) * up`` keeps ``gate``,
  ``act(gate)`` and ``up``: three times).

``act`` and ``act'`` are the activations' own (:func:`~.activation_linear.activation_value`,
:func:`~.activation_linear.activation_grad`: torch's one-pass kernels, and with a graph
:func:`~.silu.silu_derivative` / :func:`~.gelu.gelu_derivative`). ``approximate`` is GELU's
variant, ignored by SiLU.
"""

from __future__ import annotations

import torch

from .. import backend
from .activation_linear import activation_grad, activation_value
from .base import Function, cast_like, in_place, save_for_jvp

__all__ = ["GLUFunction", "GLU_ACTIVATIONS", "glu_value", "glu_grads", "glu_tangent"]

#: The activations a gated unit takes.
GLU_ACTIVATIONS = ("silu", "gelu")


class GLUFunction(Function):
    """``act(gate) · up`` for ``gate`` and ``up`` of one shape and dtype."""

    @staticmethod
    def forward(gate, up, activation, approximate):
        return glu_value(gate, up, activation, approximate)

    @staticmethod
    def setup_context(ctx, inputs, out):
        gate, up, activation, approximate = inputs
        need_gate, need_up = ctx.needs_input_grad[:2]
        ctx.activation, ctx.approximate = activation, approximate
        ctx.save_for_backward(gate if need_gate or need_up else None, up if need_gate else None)
        save_for_jvp(ctx, gate, up)

    @staticmethod
    def backward(ctx, grad_out):
        gate, up = ctx.saved_tensors
        need_gate, need_up = ctx.needs_input_grad[:2]
        _, grad_gate, grad_up = glu_grads(grad_out, gate, up, ctx.activation, ctx.approximate, need_gate, need_up)
        return grad_gate, grad_up, None, None

    @staticmethod
    def forward_ad(ctx, gate_t, up_t, *_):
        gate, up = ctx.saved_tensors
        return glu_tangent(gate, up, gate_t, up_t, ctx.activation, ctx.approximate)


def glu_value(gate, up, activation, approximate):
    """``act(gate) · up``: the activation's one-pass kernel, then the product in place on it."""
    if backend.kernels_for(gate, up):
        return backend.kernels().glu.forward(gate, up, activation, approximate)
    a = activation_value(gate, activation, approximate)
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return a * up  # traced and batched graphs stay functional (a batched up cannot go into a)
    return a.mul_(up)


def glu_grads(grad, gate, up, activation, approximate, need_gate, need_up, need_prod=False, grad_is_temp=False):
    """``(act(gate) · up, grad · up · act'(gate), grad · act(gate))``, each or None as asked.

    ``grad`` is the gradient reaching the product (of ``gate``'s shape and dtype); with kernels, the
    three in one pass. The product is what :class:`~.gated_linear.GatedLinearFunction` needs for
    its weight gradient; ``up`` may be None when neither it nor ``d_gate`` is asked for. Outside
    double backward the temporaries are reused in place (``grad`` too if ``grad_is_temp``).
    """
    if backend.kernels_for(gate, up, grad, grad=True):
        return backend.kernels().glu.backward(gate, up, grad, activation, approximate, need_gate, need_up, need_prod)
    a = activation_value(gate, activation, approximate) if need_up or need_prod else None
    prod = a * up if need_prod else None
    fast = grad is not None and in_place(grad) and grad.dtype == gate.dtype
    grad_up = None
    if need_up:  # before grad_gate, which may overwrite grad
        grad_up = a.mul_(grad) if fast else cast_like(grad * a, grad)
    grad_gate = None
    if need_gate:
        g = grad.mul_(up) if fast and grad_is_temp else grad * up
        grad_gate = activation_grad(g, gate, activation, approximate)
    return prod, grad_gate, grad_up


def glu_tangent(gate, up, gate_t, up_t, activation, approximate):
    """The product's tangent, ``act'(gate) · up · gate_t + act(gate) · up_t`` (None if both are)."""
    out_t = None
    if gate_t is not None:
        out_t = activation_grad(gate_t * up, gate, activation, approximate)
    if up_t is not None:
        t = up_t * activation_value(gate, activation, approximate)
        out_t = t if out_t is None else out_t + t
    return out_t
