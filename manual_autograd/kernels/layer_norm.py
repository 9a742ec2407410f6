"""LayerNorm over ``(rows, N)``: ``out = (x − μ) r w + b``; backward from ``x``, ``μ``, ``r``.

The forward is one program per row (the row read once when it fits a block, else three times:
mean, variance, output), writing ``out`` and the row's ``μ``, ``r``: what the reference saves.
The backward is one program per block of rows: ``dx`` row by row, and the program's partial
``Σ g x̂`` / ``Σ g`` over its rows, which the launcher sums over the programs.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, dense, kernel, op, register

MAX_BLOCK = 4096  # columns per block: a whole row up to this many
MAX_PROGRAMS = 256  # programs of the backward, each with its own row of partial dweight/dbias


@triton.jit
def _ln_fwd(x_ptr, w_ptr, b_ptr, out_ptr, mean_ptr, rstd_ptr, N, eps: tl.float64,
            HAS_W: tl.constexpr, HAS_B: tl.constexpr, ONE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    base = tl.program_id(0).to(tl.int64) * N
    e = tl.cast(eps, ACC)
    if ONE:  # the whole row in one block: read once
        cols = tl.arange(0, BLOCK)
        m = cols < N
        x = tl.load(x_ptr + base + cols, mask=m, other=0.0).to(ACC)
        mean = tl.sum(x, axis=0) / N
        d = tl.where(m, x - mean, 0.0)
        rstd = tl.rsqrt(tl.sum(d * d, axis=0) / N + e)
        y = d * rstd
        if HAS_W:
            y = y * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
        if HAS_B:
            y = y + tl.load(b_ptr + cols, mask=m, other=0.0).to(ACC)
        tl.store(out_ptr + base + cols, y.to(out_ptr.dtype.element_ty), mask=m)
    else:  # NOTE: two passes for the variance (Σ (x − μ)², not Σ x² − N μ²: no cancellation)
        s = tl.zeros([BLOCK], ACC)
        for c0 in range(0, N, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            s += tl.load(x_ptr + base + cols, mask=cols < N, other=0.0).to(ACC)
        mean = tl.sum(s, axis=0) / N
        s2 = tl.zeros([BLOCK], ACC)
        for c0 in range(0, N, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            m = cols < N
            d = tl.where(m, tl.load(x_ptr + base + cols, mask=m, other=0.0).to(ACC) - mean, 0.0)
            s2 += d * d
        rstd = tl.rsqrt(tl.sum(s2, axis=0) / N + e)
        for c0 in range(0, N, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            m = cols < N
            y = (tl.load(x_ptr + base + cols, mask=m, other=0.0).to(ACC) - mean) * rstd
            if HAS_W:
                y = y * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
            if HAS_B:
                y = y + tl.load(b_ptr + cols, mask=m, other=0.0).to(ACC)
            tl.store(out_ptr + base + cols, y.to(out_ptr.dtype.element_ty), mask=m)
    row = tl.program_id(0)
    tl.store(mean_ptr + row, mean.to(mean_ptr.dtype.element_ty))
    tl.store(rstd_ptr + row, rstd.to(rstd_ptr.dtype.element_ty))


@triton.jit
def _ln_bwd(x_ptr, g_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, rows, N, rows_per_program,
            HAS_W: tl.constexpr, NEED_X: tl.constexpr, NEED_WB: tl.constexpr, ONE: tl.constexpr,
            ACC: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    part = pid * N  # this program's row of the partial sums: no other program writes it
    if ONE:
        cols = tl.arange(0, BLOCK)
        m = cols < N
        if HAS_W:
            w = tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
        else:
            w = tl.full([BLOCK], 1.0, ACC)
        dw = tl.zeros([BLOCK], ACC)
        db = tl.zeros([BLOCK], ACC)
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            rm = row < rows
            mm = m & rm
            x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
            g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
            mean = tl.load(mean_ptr + row, mask=rm, other=0.0).to(ACC)
            rstd = tl.load(rstd_ptr + row, mask=rm, other=0.0).to(ACC)
            xhat = tl.where(mm, (x - mean) * rstd, 0.0)
            if NEED_X:
                gw = g * w
                c1 = tl.sum(gw, axis=0) / N
                c2 = tl.sum(gw * xhat, axis=0) / N
                tl.store(dx_ptr + row * N + cols, ((gw - c1 - xhat * c2) * rstd).to(dx_ptr.dtype.element_ty), mask=mm)
            if NEED_WB:
                dw += g * xhat
                db += g
        if NEED_WB:
            tl.store(dw_ptr + part + cols, dw, mask=m)
            tl.store(db_ptr + part + cols, db, mask=m)
    else:  # a row over several blocks: the row sums, then dx and the partial sums block by block
        for i in range(0, rows_per_program):
            row = pid * rows_per_program + i
            rm = row < rows
            mean = tl.load(mean_ptr + row, mask=rm, other=0.0).to(ACC)
            rstd = tl.load(rstd_ptr + row, mask=rm, other=0.0).to(ACC)
            if NEED_X:
                s1 = tl.zeros([BLOCK], ACC)
                s2 = tl.zeros([BLOCK], ACC)
                for c0 in range(0, N, BLOCK):
                    cols = c0 + tl.arange(0, BLOCK)
                    mm = (cols < N) & rm
                    x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                    g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                    if HAS_W:
                        g = g * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(ACC)
                    s1 += g
                    s2 += g * tl.where(mm, (x - mean) * rstd, 0.0)
                c1 = tl.sum(s1, axis=0) / N
                c2 = tl.sum(s2, axis=0) / N
            for c0 in range(0, N, BLOCK):
                cols = c0 + tl.arange(0, BLOCK)
                m = cols < N
                mm = m & rm
                x = tl.load(x_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                g = tl.load(g_ptr + row * N + cols, mask=mm, other=0.0).to(ACC)
                xhat = tl.where(mm, (x - mean) * rstd, 0.0)
                if NEED_X:
                    gw = g
                    if HAS_W:
                        gw = g * tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
                    tl.store(dx_ptr + row * N + cols, ((gw - c1 - xhat * c2) * rstd).to(dx_ptr.dtype.element_ty), mask=mm)
                if NEED_WB:
                    tl.store(dw_ptr + part + cols, tl.load(dw_ptr + part + cols, mask=m, other=0.0) + g * xhat, mask=m)
                    tl.store(db_ptr + part + cols, tl.load(db_ptr + part + cols, mask=m, other=0.0) + g, mask=m)


def stat_dtype(dtype):
    """The dtype of the row statistics, as torch's ``native_layer_norm`` gives them on CUDA:
    float64 for float64, float32 otherwise (this path covers float32/64 only on CPU)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block(N):
    return min(triton.next_power_of_2(max(N, 1)), MAX_BLOCK)


def _forward(x, normalized_shape, weight, bias, eps, traced=False):
    k = len(normalized_shape)
    N = x.shape[x.dim() - k:].numel()
    rows = x.numel() // N if N else x.shape[: x.dim() - k].numel()
    if rows == 0 or N == 0:  # nothing to launch: torch's values (NaN statistics of empty rows)
        return torch.native_layer_norm(x, normalized_shape, weight, bias, eps)
    src = dense(x)
    out = torch.empty_like(src)
    stats_shape = x.shape[: x.dim() - k] + (1,) * k
    mean = torch.empty(stats_shape, dtype=stat_dtype(x.dtype), device=x.device)
    rstd = torch.empty(stats_shape, dtype=stat_dtype(x.dtype), device=x.device)
    w = None if weight is None else dense(weight)
    b = None if bias is None else dense(bias)
    block = _block(N)
    kernel(_ln_fwd, traced)[(rows,)](
        src, src if w is None else w, src if b is None else b, out, mean, rstd, N, float(eps),
        HAS_W=w is not None, HAS_B=b is not None, ONE=N <= block, ACC=acc_type(x.dtype), BLOCK=block,
    )
    return out, mean, rstd


def programs(rows):
    """``(programs, rows per program)`` of a backward over ``rows`` rows."""
    per = triton.cdiv(rows, min(rows, MAX_PROGRAMS))
    return triton.cdiv(rows, per), per


def _backward(x, grad_out, weight, mean, rstd, k, need_x, need_wb, traced=False):
    N = x.shape[x.dim() - k:].numel()
    rows = x.numel() // N if N else 0
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_x else None
    acc = stat_dtype(x.dtype)
    if rows == 0:
        zeros = torch.zeros(x.shape[x.dim() - k:], dtype=acc, device=x.device)
        return (None if dx is None else dx.zero_()), (zeros if need_wb else None), (zeros.clone() if need_wb else None)
    P, per = programs(rows)
    dw = torch.zeros((P, N), dtype=acc, device=x.device) if need_wb else None
    db = torch.zeros((P, N), dtype=acc, device=x.device) if need_wb else None
    xs, g = dense(x), dense(grad_out)
    w = None if weight is None else dense(weight)
    block = _block(N)
    kernel(_ln_bwd, traced)[(P,)](
        xs, g, xs if w is None else w, dense(mean), dense(rstd), xs if dx is None else dx,
        xs if dw is None else dw, xs if db is None else db, rows, N, per,
        HAS_W=w is not None, NEED_X=need_x, NEED_WB=need_wb, ONE=N <= block, ACC=acc_type(x.dtype), BLOCK=block,
    )
    shape = x.shape[x.dim() - k:]
    return dx, (None if dw is None else dw.sum(0).reshape(shape)), (None if db is None else db.sum(0).reshape(shape))


@register("layer_norm_forward")
def _layer_norm_forward_op(
    x: Tensor, normalized_shape: list[int], weight: Optional[Tensor], bias: Optional[Tensor], eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    return _forward(x, tuple(normalized_shape), weight, bias, eps, traced=True)


@register("layer_norm_backward")
def _layer_norm_backward_op(
    x: Tensor, grad_out: Tensor, weight: Optional[Tensor], mean: Tensor, rstd: Tensor, k: int, need_x: bool,
    need_wb: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = _backward(x, grad_out, weight, mean, rstd, k, need_x, need_wb, traced=True)
    empty = x.new_empty(0)
    return (empty if dx is None else dx), (empty if dw is None else dw), (empty if db is None else db)


def forward(x: Tensor, normalized_shape, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
            eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """``(out, mean, rstd)`` as ``torch.native_layer_norm`` returns them: ``out`` contiguous in
    ``x``'s dtype, the statistics of shape ``x.shape[:-k] + (1,) * k`` in :func:`stat_dtype`."""
    if torch.compiler.is_compiling():
        return op("layer_norm_forward")(x, list(normalized_shape), weight, bias, eps)
    return _forward(x, tuple(normalized_shape), weight, bias, eps)


def backward(x: Tensor, grad_out: Tensor, weight: Optional[Tensor], mean: Tensor, rstd: Tensor, k: int,
             need_x: bool = True, need_w: bool = True, need_b: bool = True):
    """``(dx, dweight, dbias)``, each None where not asked: ``dx`` in ``x``'s dtype, the parameter
    gradients in the compute dtype (float32, float64 for float64), for the caller to cast."""
    need_wb = bool(need_w or need_b)
    if torch.compiler.is_compiling():
        dx, dw, db = op("layer_norm_backward")(x, grad_out, weight, mean, rstd, k, bool(need_x), need_wb)
    else:
        dx, dw, db = _backward(x, grad_out, weight, mean, rstd, k, bool(need_x), need_wb)
    return (dx if need_x else None), (dw if need_w else None), (db if need_b else None)
