"""LayerNorm over the last ``k`` dims: ``out = x̂ w + b``, ``x̂ = (x − μ) r``, ``r = 1/√(σ² + ε)``.

``μ``, ``σ²`` are the mean and biased variance of each row (the last ``k`` dims, ``N`` elements);
``w`` and ``b`` are optional, each on its own.

* backward: with ``ĝ = g w`` (or ``g``) and ``⟨·⟩`` the row mean,
  ``dx = r (ĝ − ⟨ĝ⟩ − x̂ ⟨ĝ x̂⟩)``; ``dw = Σ g x̂``, ``db = Σ g`` over the leading dims;
* saved: the input ``x``, the per-row ``μ`` and ``r`` (returned by the forward as two more,
  non-differentiable outputs, in the dtype torch's ``native_layer_norm`` gives them), and ``w``
  when ``x`` needs a gradient; never the normalised output, never ``b``;
* bytes per element: the element size of ``x`` (the input, kept by the layer before anyway when
  that is a Linear), plus ``2 · 4`` per row.

NOTE (double backward): ``μ`` and ``r`` from the forward hang off no graph, so a backward that
records one (``create_graph``, ``torch.func.grad``) recomputes them from ``x`` with torch ops: two
row reductions, only then. This is exact (the same function of ``x``) and keeps the forward's
ledger and outputs as they are; returning them as differentiable outputs instead would add two
gradient terms to every backward for a case only double backward meets.

The forward value is torch's own ``native_layer_norm``.
"""

from __future__ import annotations

import torch

from .. import backend
from .base import HALF, Function, cast_like, in_place, lead_sum, opmath, save_for_jvp

__all__ = ["LayerNormFunction", "layer_norm_stats", "layer_norm_backward", "layer_norm_grad_fast"]


class LayerNormFunction(Function):
    """Returns ``(out, mean, rstd)``; ``mean``, ``rstd`` of shape ``x.shape[:-k] + (1,) * k``."""

    @staticmethod
    def forward(x, normalized_shape, weight, bias, eps):
        if backend.kernels_for(x, weight, bias):
            return backend.kernels().layer_norm.forward(x, normalized_shape, weight, bias, eps)
        return torch.native_layer_norm(x, normalized_shape, weight, bias, eps)

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, normalized_shape, weight, bias, eps = inputs
        _, mean, rstd = out
        ctx.mark_non_differentiable(mean, rstd)
        ctx.set_materialize_grads(False)
        ctx.k, ctx.eps = len(normalized_shape), eps
        ctx.w_dtype = None if weight is None else weight.dtype
        ctx.b_dtype = None if bias is None else bias.dtype
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        keep = need_x or need_w  # the bias's gradient reads grad_out only
        ctx.save_for_backward(x if keep else None, weight if need_x else None, mean if keep else None, rstd if keep else None)
        save_for_jvp(ctx, x, weight, mean, rstd, k=len(normalized_shape), eps=eps)

    @staticmethod
    def backward(ctx, grad_out, *_):
        x, weight, mean, rstd = ctx.saved_tensors
        need_x, _, need_w, need_b, _ = ctx.needs_input_grad
        if grad_out is None:
            return None, None, None, None, None
        k = ctx.k
        dx = dw = db = None
        if x is None:  # only the bias asks
            pass
        elif backend.kernels_for(x, grad_out, weight, grad=True):
            dx, dw, db = backend.kernels().layer_norm.backward(x, grad_out, weight, mean, rstd, k, need_x, need_w, need_b)
        elif x.dtype not in HALF and grad_out.dtype == x.dtype and ctx.w_dtype in (None, x.dtype) and in_place(grad_out):
            dx, dw = layer_norm_grad_fast(x, grad_out, weight, mean, rstd, k, need_x, need_w)
        else:
            if torch.is_grad_enabled():  # a graph is recorded: μ and r as functions of x (see the header)
                mean, rstd = layer_norm_stats(x, k, ctx.eps)
            dx, dw = layer_norm_backward(x, grad_out, weight, mean, rstd, k, need_x, need_w)
        if need_w:
            dw = dw.to(ctx.w_dtype)
        if need_b and db is None:
            db = lead_sum(opmath(grad_out), k)
        if need_b:
            db = db.to(ctx.b_dtype)
        return dx, None, dw, db, None

    @staticmethod
    def forward_ad(ctx, x_t, _, w_t, b_t, __):
        x, weight, mean, rstd = ctx.saved_tensors
        dims = tuple(range(-ctx.k, 0))
        xhat = (opmath(x) - mean) * rstd
        out_t = torch.zeros_like(xhat)
        if x_t is not None:  # NOTE: d x̂ = r (dx − ⟨dx⟩ − x̂ ⟨x̂ dx⟩)
            t = opmath(x_t)
            xhat_t = rstd * (t - t.mean(dims, keepdim=True) - xhat * (xhat * t).mean(dims, keepdim=True))
            out_t = xhat_t if weight is None else xhat_t * weight
        if w_t is not None:
            out_t = out_t + xhat * w_t
        if b_t is not None:
            out_t = out_t + b_t
        return out_t.to(x.dtype), None, None


def layer_norm_stats(x, k, eps):
    """Per-row mean and ``1/√(var + eps)`` over the last ``k`` dims, with torch ops (differentiable;
    in float32 for half-precision ``x``, as torch's kernels), keepdim: the reference statistics."""
    dims = tuple(range(-k, 0))
    xf = opmath(x)
    mean = xf.mean(dims, keepdim=True)
    return mean, torch.rsqrt((xf - mean).square().mean(dims, keepdim=True) + eps)


def layer_norm_backward(x, grad_out, weight, mean, rstd, k, need_x, need_w):
    """``(dx, dweight)`` of layer norm from the input and its row statistics: the reference
    (differentiable torch ops; half precision computes in float32 and rounds once; ``dweight``
    in the compute dtype, for the caller to cast to the weight's)."""
    dx = dw = None
    dims = tuple(range(-k, 0))
    g = opmath(grad_out)
    xhat = (opmath(x) - mean) * rstd
    if need_x:
        gw = g if weight is None else g * weight
        c1 = gw.mean(dims, keepdim=True)
        c2 = (gw * xhat).mean(dims, keepdim=True)
        dx = cast_like((gw - c1 - xhat * c2) * rstd, x)
    if need_w:
        dw = lead_sum(g * xhat, k)
    return dx, dw


def layer_norm_grad_fast(x, grad_out, weight, mean, rstd, k, need_x, need_w):
    """:func:`layer_norm_backward` outside double backward: torch's own one-pass kernel
    (``native_layer_norm_backward``, what ``F.layer_norm``'s backward calls), reading the same
    ``x``, ``μ``, ``r`` and ``w``. ``dweight`` does not depend on ``w``: where ``w`` was not saved
    (``x`` needs no gradient) any weight of its shape serves, ones."""
    if need_w and weight is None:
        weight = x.new_ones(x.shape[-k:])
    dx, dw, _ = torch.ops.aten.native_layer_norm_backward(
        grad_out, x, x.shape[-k:], mean, rstd, weight, None, [need_x, need_w, False]
    )
    return dx, dw
