"""Mean squared error: ``ℓ = w (x − t)²`` elementwise (``w = 1`` without a weight), reduced by
``'none'``, ``'sum'`` or ``'mean'`` (``Σ ℓ / N``, or ``Σ ℓ / Σ w`` with a weight, as torch);
``x`` and ``t`` broadcast against each other.

* backward, with ``d = x − t`` recomputed and ``s = g`` (``'none'``, ``'sum'``) or ``g / N``
  (``g / Σ w``) for ``'mean'``: ``dx = 2 s w d`` (summed to ``x``'s shape), ``dt = −dx`` (to
  ``t``'s shape), ``dw = s d²`` (summed to ``w``'s shape), minus ``s ℓ_mean`` for a weighted ``'mean'``;
* saved: references to the inputs ``x``, ``t`` (and ``w``), which the caller holds anyway (a
  prediction and its target), as torch's own ``mse_loss`` keeps them; not the difference ``d``,
  which would be a fresh tensor of the broadcast size: the backward recomputes it (one pass);
* bytes per element: 0 beyond the inputs.
"""

from __future__ import annotations

import torch

from .base import Function, in_place, save_for_jvp

__all__ = ["MSELossFunction", "mse_loss_backward", "REDUCTIONS"]

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # torch's enum (torch.nn._reduction.get_enum)


class MSELossFunction(Function):
    """``reduction(w (x − t)²)``; ``weight`` may be None. Saves the inputs only."""

    @staticmethod
    def forward(x, t, weight, reduction):
        if weight is None:
            xe, te = torch.broadcast_tensors(x, t)
            return torch._C._nn.mse_loss(xe, te, REDUCTIONS[reduction])
        sq = (x - t).square() * weight  # out of place: vmap may batch weight and not x − t
        if reduction == "none":
            return sq
        return sq.sum() if reduction == "sum" else sq.sum() / weight.sum()

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, t, weight, reduction = inputs
        ctx.reduction = reduction
        ctx.save_for_backward(x, t, weight)
        save_for_jvp(ctx, x, t, weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, t, w = ctx.saved_tensors
        need_x, need_t, need_w = ctx.needs_input_grad[:3]
        if w is None and not need_w and in_place(grad_out):
            xe, te = torch.broadcast_tensors(x, t)  # torch's one-pass kernel, views: no copy
            gx = torch.ops.aten.mse_loss_backward(grad_out, xe, te, REDUCTIONS[ctx.reduction])
            return _grads(gx, x, t, need_x, need_t) + (None, None)
        gx, gw = mse_loss_backward(x, t, w, grad_out, ctx.reduction, need_w)
        return _grads(gx, x, t, need_x, need_t) + (gw, None)

    @staticmethod
    def forward_ad(ctx, x_t, t_t, w_t, _):
        x, t, w = ctx.saved_tensors
        d = x - t
        dd = (torch.zeros_like(d) if x_t is None else x_t) - (0.0 if t_t is None else t_t)
        lin = 2.0 * d * dd  # d(d²)
        sq = d * d
        if w is not None:
            lin = lin * w + (0.0 if w_t is None else w_t * sq)
        if ctx.reduction == "none":
            return lin
        if ctx.reduction == "sum":
            return lin.sum()
        if w is None:
            return lin.sum() / d.numel()
        wsum = w.sum()  # d(S / W) = dS / W − S dW / W²
        out_t = lin.sum() / wsum
        return out_t if w_t is None else out_t - (w * sq).sum() * w_t.sum() / (wsum * wsum)


def _grads(gx, x, t, need_x, need_t):
    """``(dx, dt)`` from ``dx`` of the broadcast shape, each summed to its input's shape."""
    return (gx.sum_to_size(x.shape) if need_x else None, gx.neg().sum_to_size(t.shape) if need_t else None)


def mse_loss_backward(x, t, w, grad_out, reduction, need_w=False):
    """``(dx of the broadcast shape, dw or None)``: the reference (differentiable)."""
    d = x - t
    s = grad_out
    if reduction == "mean":
        s = s / (d.numel() if w is None else w.sum())
    gx = 2.0 * s * d if w is None else 2.0 * s * w * d
    gw = None
    if need_w:
        sq = d * d
        gw = (s * sq).sum_to_size(w.shape)
        if reduction == "mean":  # Σ w d² / Σ w: d/dw_i = (Σ_broadcast d_i² − mean) / Σ w
            gw = gw - s * ((w * sq).sum() / w.sum())
    return gx, gw
