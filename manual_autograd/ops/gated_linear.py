"""GatedLinear: ``out = (act(gate) · up) Wᵀ + b``, the gated unit and the Linear after it (a
Llama-style MLP's ``down_proj(act(gate_proj(x)) · up_proj(x))`` from the two projections on).

* backward: with ``h = grad_out W`` and ``p = act(gate) · up`` **recomputed** from ``gate`` and
  ``up`` (two pointwise passes, or one kernel): ``d_gate = h · up · act'(gate)``,
  ``d_up = h · act(gate)``, ``dW = grad_outᵀ p``, ``db = Σ grad_out``;
* saved: ``gate``, ``up`` (the inputs themselves) and ``W``, each only when a gradient reads it:
  ``up`` for ``d_gate`` and ``dW``, ``W`` for ``d_gate`` and ``d_up``; the unfused chain
  (linear, act, mul, linear) keeps ``gate``, ``act(gate)``, ``up`` and ``p``;
* bytes per element of ``gate``: twice its element size (unfused: four times).

Under autocast (see :func:`manual_autograd.functional.gated_linear`) ``W`` and ``b`` come in the
autocast dtype while ``gate`` and ``up`` keep theirs: ``p`` is computed in the inputs' dtype and
cast to ``W``'s for the matrix product, ``h`` cast back, as the unfused native chain does.
"""

from __future__ import annotations

from .base import Function, cast_like, rows, save_for_jvp
from .glu import glu_grads, glu_tangent, glu_value
from .linear import LinearFunction

__all__ = ["GatedLinearFunction"]


class GatedLinearFunction(Function):
    """``(act(gate) · up) Wᵀ + b``; ``approximate`` is GELU's variant."""

    @staticmethod
    def forward(gate, up, weight, bias, activation, approximate):
        p = cast_like(glu_value(gate, up, activation, approximate), weight)
        return LinearFunction.forward(p, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, out):
        gate, up, weight, _, activation, approximate = inputs
        need_gate, need_up, need_w, _ = ctx.needs_input_grad[:4]
        ctx.activation, ctx.approximate = activation, approximate
        ctx.save_for_backward(
            gate if need_gate or need_up or need_w else None,
            up if need_gate or need_w else None,
            weight if need_gate or need_up else None,
        )
        save_for_jvp(ctx, gate, up, weight)

    @staticmethod
    def backward(ctx, grad_out):
        gate, up, weight = ctx.saved_tensors
        need_gate, need_up, need_w, need_b = ctx.needs_input_grad[:4]
        h = cast_like(grad_out.matmul(weight), gate) if need_gate or need_up else None
        p, grad_gate, grad_up = glu_grads(
            h, gate, up, ctx.activation, ctx.approximate, need_gate, need_up, need_w, grad_is_temp=h is not None
        )
        grad_w = rows(grad_out).t().matmul(rows(cast_like(p, grad_out))) if need_w else None
        grad_b = rows(grad_out).sum(0) if need_b else None
        return grad_gate, grad_up, grad_w, grad_b, None, None

    @staticmethod
    def forward_ad(ctx, gate_t, up_t, weight_t, bias_t, *_):
        gate, up, weight = ctx.saved_tensors
        # d(p Wᵀ + b) = dp Wᵀ + p dWᵀ + db
        dp = glu_tangent(gate, up, gate_t, up_t, ctx.activation, ctx.approximate)
        out_t = None if dp is None else cast_like(dp, weight).matmul(weight.t())
        if weight_t is not None:
            p = cast_like(glu_value(gate, up, ctx.activation, ctx.approximate), weight)
            t = p.matmul(weight_t.t())
            out_t = t if out_t is None else out_t + t
        if bias_t is not None:
            out_t = bias_t.expand(gate.shape[:-1] + weight.shape[:1]) if out_t is None else out_t + bias_t
        return out_t
