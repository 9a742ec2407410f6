"""RMSNorm over the last ``k`` dims: ``out = x̂ w``, ``x̂ = x r``, ``r = 1/√(⟨x²⟩ + ε)``.

``⟨·⟩`` is the mean over each row (the last ``k`` dims); ``w`` is optional; ``ε`` defaults (in
the functional form) to the machine epsilon of the compute dtype, as torch's.

* backward: with ``ĝ = g w`` (or ``g``), ``dx = r (ĝ − x̂ ⟨ĝ x̂⟩)``; ``dw = Σ g x̂`` over the
  leading dims;
* saved: the input ``x`` and the per-row ``r`` (a second, non-differentiable output, float32 for
  half-precision ``x``, as torch's ``_fused_rms_norm``), and ``w`` when ``x`` needs a gradient;
* bytes per element: the element size of ``x``, plus 4 per row.

NOTE (double backward): as in :mod:`.layer_norm`, ``r`` from the forward hangs off no graph, so a
backward that records one recomputes it from ``x`` (one row reduction, only then).

The forward value is torch's own ``_fused_rms_norm`` (a weight of another dtype than ``x``:
torch's composite formula, in the compute dtype, rounded to ``x``'s).
"""

from __future__ import annotations

import torch

from .. import backend
from .base import HALF, Function, cast_like, in_place, lead_sum, opmath, save_for_jvp

__all__ = ["RMSNormFunction", "rms_norm_rstd", "rms_norm_backward", "rms_norm_grad_fast_"]


class RMSNormFunction(Function):
    """Returns ``(out, rstd)``; ``rstd`` of shape ``x.shape[:-k] + (1,) * k``."""

    @staticmethod
    def forward(x, normalized_shape, weight, eps):
        if backend.kernels_for(x, weight):
            return backend.kernels().rms_norm.forward(x, normalized_shape, weight, eps)
        if weight is None or weight.dtype == x.dtype:
            return torch.ops.aten._fused_rms_norm(x, normalized_shape, weight, eps)
        rstd = rms_norm_rstd(x, len(normalized_shape), eps)
        return (opmath(x) * rstd * weight).to(x.dtype), rstd

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, normalized_shape, weight, eps = inputs
        ctx.mark_non_differentiable(out[1])
        ctx.set_materialize_grads(False)
        ctx.k, ctx.eps = len(normalized_shape), eps
        ctx.w_dtype = None if weight is None else weight.dtype
        need_x = ctx.needs_input_grad[0]
        keep = need_x or ctx.needs_input_grad[2]
        ctx.save_for_backward(x if keep else None, weight if need_x else None, out[1] if keep else None)
        save_for_jvp(ctx, x, weight, out[1], k=len(normalized_shape))

    @staticmethod
    def backward(ctx, grad_out, _):
        x, weight, rstd = ctx.saved_tensors
        need_x, _, need_w, _ = ctx.needs_input_grad
        if grad_out is None or x is None:
            return None, None, None, None
        k = ctx.k
        if backend.kernels_for(x, grad_out, weight, grad=True):
            dx, dw = backend.kernels().rms_norm.backward(x, grad_out, weight, rstd, k, need_x, need_w)
        elif x.dtype not in HALF and grad_out.dtype == x.dtype and ctx.w_dtype in (None, x.dtype) and in_place(grad_out):
            dx, dw = rms_norm_grad_fast_(x, grad_out, weight, rstd, k, need_x, need_w)
        else:
            if torch.is_grad_enabled():  # a graph is recorded: r as a function of x (see the header)
                rstd = rms_norm_rstd(x, k, ctx.eps)
            dx, dw = rms_norm_backward(x, grad_out, weight, rstd, k, need_x, need_w)
        return dx, None, None if dw is None else dw.to(ctx.w_dtype), None

    @staticmethod
    def forward_ad(ctx, x_t, _, w_t, __):
        x, weight, rstd = ctx.saved_tensors
        dims = tuple(range(-ctx.k, 0))
        xhat = opmath(x) * rstd
        out_t = torch.zeros_like(xhat)
        if x_t is not None:  # NOTE: d x̂ = r (dx − x̂ ⟨x̂ dx⟩)
            t = opmath(x_t)
            xhat_t = rstd * (t - xhat * (xhat * t).mean(dims, keepdim=True))
            out_t = xhat_t if weight is None else xhat_t * weight
        if w_t is not None:
            out_t = out_t + xhat * w_t
        return out_t.to(x.dtype), None


def rms_norm_rstd(x, k, eps):
    """Per-row ``1/√(⟨x²⟩ + eps)`` over the last ``k`` dims, with torch ops (differentiable; float32
    for half-precision ``x``), keepdim: the reference statistic."""
    return torch.rsqrt(opmath(x).square().mean(tuple(range(-k, 0)), keepdim=True) + eps)


def rms_norm_backward(x, grad_out, weight, rstd, k, need_x, need_w):
    """``(dx, dweight)`` of RMS norm from the input and its ``rstd``: the reference (differentiable
    torch ops; half precision in float32, rounded once; ``dweight`` in the compute dtype)."""
    dx = dw = None
    g = opmath(grad_out)
    xhat = opmath(x) * rstd
    if need_x:
        gw = g if weight is None else g * weight
        dx = cast_like((gw - xhat * (gw * xhat).mean(tuple(range(-k, 0)), keepdim=True)) * rstd, x)
    if need_w:
        dw = lead_sum(g * xhat, k)
    return dx, dw


CHUNK = 1 << 17  # elements per block of rows in the fast backward: the block's temporaries stay in cache


def rms_norm_grad_fast_(x, grad_out, weight, rstd, k, need_x, need_w):
    """:func:`rms_norm_backward` for float32/64 outside double backward, a block of rows at a time:
    no full-size temporary but ``dx``."""
    N = x.shape[-k:].numel()
    xr, g, r = x.reshape(-1, N), grad_out.reshape(-1, N), rstd.reshape(-1, 1)
    w = None if weight is None else weight.reshape(N)
    rows, per = xr.shape[0], max(1, CHUNK // max(N, 1))
    dx = torch.empty_like(xr) if need_x else None
    dw = xr.new_zeros(N) if need_w else None
    buf = xr.new_empty(min(per, rows), N)
    xbuf = None if need_x else torch.empty_like(buf)
    for i in range(0, rows, per):
        s, n = slice(i, i + per), min(per, rows - i)
        gs, rs = g[s], r[s]
        xh = torch.mul(xr[s], rs, out=dx[s] if need_x else xbuf[:n])
        gx = torch.mul(gs, xh, out=buf[:n])
        if need_w:
            dw.add_(gx.sum(0))
        if need_x:
            c = (gx.sum(1, keepdim=True) if w is None else gx.mv(w).unsqueeze(1)).div_(-N)
            (xh.mul_(c).add_(gs) if w is None else xh.mul_(c).addcmul_(gs, w)).mul_(rs)
    return (None if dx is None else dx.reshape(x.shape)), (None if dw is None else dw.reshape(x.shape[-k:]))
