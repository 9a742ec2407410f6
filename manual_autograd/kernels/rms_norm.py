"""RMSNorm over ``(rows, N)``: ``out = x r w``, ``r = 1/√(⟨x²⟩ + ε)``; backward from ``x`` and ``r``.

As :mod:`.layer_norm`: one program per row forward (``out`` and ``r``, what the reference saves),
one program per block of rows backward (``dx`` row by row, the program's partial ``Σ g x̂``
summed over the programs by the launcher).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, dense, kernel, op, register
from .layer_norm import _block, programs, stat_dtype


@triton.jit
def _rms_fwd(x_ptr, w_ptr, out_ptr, rstd_ptr, N, eps: tl.float64,
             HAS_W: tl.constexpr, ONE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    base = tl.program_id(0).to(tl.int64) * N
    e = tl.cast(eps, ACC)
    if ONE:
        cols = tl.arange(0, BLOCK)
        m = cols < N
        x = tl.load(x_ptr + base + cols, mask=m, other=0.0).to(ACC)
        rstd = tl.rsqrt(tl.sum(x * x, axis=0) / N + e)
        y = x * rstd
        if HAS_W:
            y = y * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
        tl.store(out_ptr + base + cols, y.to(out_ptr.dtype.element_ty), mask=m)
    else:
        s = tl.zeros([BLOCK], ACC)
        for c0 in range(0, N, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + base + cols, mask=cols < N, other=0.0).to(ACC)
            s += x * x
        rstd = tl.rsqrt(tl.sum(s, axis=0) / N + e)
        for c0 in range(0, N, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            m = cols < N
            y = tl.load(x_ptr + base + cols, mask=m, other=0.0).to(ACC) * rstd
            if HAS_W:
                y = y * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
            tl.store(out_ptr + base + cols, y.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(rstd_ptr + tl.program_id(0), rstd.to(rstd_ptr.dtype.element_ty))


@triton.jit
def _rms_bwd(x_ptr, g_ptr, w_ptr, rstd_ptr, dx_ptr, dw_ptr, rows, N, rows_per_program,
             HAS_W: tl.constexpr, NEED_X: tl.constexpr, NEED_W: tl.constexpr, ONE: tl.constexpr,
             ACC: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    part = pid * N
    if ONE:
        cols = tl.arange(0, BLOCK)
        m = cols < N
        if HAS_W:
            w = tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
        else:
            w = tl.full([BLOCK], 1.0, ACC)
        dw = tl.zeros([BLOCK], ACC)
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            rm = row < rows
            mm = m & rm
            x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
            g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
            rstd = tl.load(rstd_ptr + row, mask=rm, other=0.0).to(ACC)
            xhat = x * rstd
            if NEED_X:
                gw = g * w
                c = tl.sum(gw * xhat, axis=0) / N
                tl.store(dx_ptr + row * N + cols, ((gw - xhat * c) * rstd).to(dx_ptr.dtype.element_ty), mask=mm)
            if NEED_W:
                dw += g * xhat
        if NEED_W:
            tl.store(dw_ptr + part + cols, dw, mask=m)
    else:
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            rm = row < rows
            rstd = tl.load(rstd_ptr + row, mask=rm, other=0.0).to(ACC)
            if NEED_X:
                s = tl.zeros([BLOCK], ACC)
                for c0 in range(0, N, BLOCK):
                    cols = c0 + tl.arange(0, BLOCK)
                    mm = (cols < N) & rm
                    x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                    g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                    if HAS_W:
                        g = g * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(ACC)
                    s += g * x * rstd
                c = tl.sum(s, axis=0) / N
            for c0 in range(0, N, BLOCK):
                cols = c0 + tl.arange(0, BLOCK)
                m = cols < N
                mm = m & rm
                x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                xhat = x * rstd
                if NEED_X:
                    gw = g
                    if HAS_W:
                        gw = g * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
                    tl.store(dx_ptr + row * N + cols, ((gw - xhat * c) * rstd).to(dx_ptr.dtype.element_ty), mask=mm)
                if NEED_W:
                    tl.store(dw_ptr + part + cols, tl.load(dw_ptr + part + cols, mask=m, other=0.0) + g * xhat, mask=m)


def _forward(x, normalized_shape, weight, eps, traced=False):
    k = len(normalized_shape)
    N = x.shape[x.dim() - k:].numel()
    rows = x.numel() // N if N else 0
    if rows == 0:  # nothing to launch: torch's values
        return torch.ops.aten._fused_rms_norm(x, list(normalized_shape), weight, eps)
    src = dense(x)
    out = torch.empty_like(src)
    rstd = torch.empty(x.shape[: x.dim() - k] + (1,) * k, dtype=stat_dtype(x.dtype), device=x.device)
    w = None if weight is None else dense(weight)
    block = _block(N)
    kernel(_rms_fwd, traced)[(rows,)](
        src, src if w is None else w, out, rstd, N, float(eps),
        HAS_W=w is not None, ONE=N <= block, ACC=acc_type(x.dtype), BLOCK=block,
    )
    return out, rstd


def _backward(x, grad_out, weight, rstd, k, need_x, need_w, traced=False):
    N = x.shape[x.dim() - k:].numel()
    rows = x.numel() // N if N else 0
    shape = x.shape[x.dim() - k:]
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_x else None
    acc = stat_dtype(x.dtype)
    if rows == 0:
        return dx, (torch.zeros(shape, dtype=acc, device=x.device) if need_w else None)
    P, per = programs(rows)
    dw = torch.zeros((P, N), dtype=acc, device=x.device) if need_w else None
    xs, g = dense(x), dense(grad_out)
    w = None if weight is None else dense(weight)
    block = _block(N)
    kernel(_rms_bwd, traced)[(P,)](
        xs, g, xs if w is None else w, dense(rstd), xs if dx is None else dx, xs if dw is None else dw, rows, N, per,
        HAS_W=w is not None, NEED_X=need_x, NEED_W=need_w, ONE=N <= block, ACC=acc_type(x.dtype), BLOCK=block,
    )
    return dx, (None if dw is None else dw.sum(0).reshape(shape))


@register("rms_norm_forward")
def _rms_norm_forward_op(x: Tensor, normalized_shape: list[int], weight: Optional[Tensor], eps: float) -> tuple[Tensor, Tensor]:
    return _forward(x, tuple(normalized_shape), weight, eps, traced=True)


@register("rms_norm_backward")
def _rms_norm_backward_op(
    x: Tensor, grad_out: Tensor, weight: Optional[Tensor], rstd: Tensor, k: int, need_x: bool, need_w: bool
) -> tuple[Tensor, Tensor]:
    dx, dw = _backward(x, grad_out, weight, rstd, k, need_x, need_w, traced=True)
    empty = x.new_empty(0)
    return (empty if dx is None else dx), (empty if dw is None else dw)


def forward(x: Tensor, normalized_shape, weight: Optional[Tensor] = None, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``(out, rstd)`` as ``torch._fused_rms_norm`` returns them: ``out`` contiguous in ``x``'s
    dtype, ``rstd`` of shape ``x.shape[:-k] + (1,) * k`` (float32, float64 for float64)."""
    if torch.compiler.is_compiling():
        return op("rms_norm_forward")(x, list(normalized_shape), weight, eps)
    return _forward(x, tuple(normalized_shape), weight, eps)


def backward(x: Tensor, grad_out: Tensor, weight: Optional[Tensor], rstd: Tensor, k: int,
             need_x: bool = True, need_w: bool = True):
    """``(dx, dweight)``, each None where not asked: ``dx`` in ``x``'s dtype, ``dweight`` in the
    compute dtype, for the caller to cast."""
    if torch.compiler.is_compiling():
        dx, dw = op("rms_norm_backward")(x, grad_out, weight, rstd, k, bool(need_x), bool(need_w))
    else:
        dx, dw = _backward(x, grad_out, weight, rstd, k, bool(need_x), bool(need_w))
    return (dx if need_x else None), (dw if need_w else None)
