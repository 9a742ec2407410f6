"""Softmax and log-softmax along one dim, row-wise over ``(rows, C)`` with ``dim`` moved last.

The forward writes ``out`` only (what the reference saves): a row's classes are read once when
they fit one block (``C <= 4096``), else twice (an online max and sum, then the write). The
backward reads ``out`` and ``grad_out``: softmax ``dx = out (g − Σ g·out)``, log-softmax
``dx = g − exp(out) Σ g``, the row sum in a first pass when the row spans several blocks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, dense, kernel, op, register
from .cross_entropy import lse_step

_MAX_BLOCK_C = 4096
_BLOCK_ELEMS = 4096


@triton.jit
def _softmax_fwd(x_ptr, out_ptr, rows, C, LOG: tl.constexpr, ONE: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    if ONE:
        cols = tl.arange(0, BLOCK_C)
        msk = rm[:, None] & (cols < C)[None, :]
        x = tl.load(x_ptr + r[:, None] * C + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
        m = tl.max(x, axis=1)
        sh = tl.where(m == float("-inf"), 0.0, m)  # an all -inf row: 0/0 = NaN, as torch
        e = tl.exp(x - sh[:, None])
        s = tl.sum(e, axis=1)
        if LOG:  # NOTE: (x − max) − log s, not x − lse: lse rounds at the scale of |x|
            out = (x - sh[:, None]) - tl.log(s)[:, None]
        else:
            out = e / s[:, None]
        tl.store(out_ptr + r[:, None] * C + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=msk)
    else:
        m = tl.full([BLOCK_R], float("-inf"), ACC)
        s = tl.zeros([BLOCK_R], ACC)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            x = tl.load(x_ptr + r[:, None] * C + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
            m, s = lse_step(m, s, x)
        sh = tl.where(m == float("-inf"), 0.0, m)
        log_s = tl.log(s)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            x = tl.load(x_ptr + r[:, None] * C + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
            if LOG:
                out = (x - sh[:, None]) - log_s[:, None]
            else:
                out = tl.exp(x - sh[:, None]) / s[:, None]
            tl.store(out_ptr + r[:, None] * C + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=msk)


@triton.jit
def _softmax_bwd(out_ptr, g_ptr, gx_ptr, rows, C, LOG: tl.constexpr, ONE: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    if ONE:
        cols = tl.arange(0, BLOCK_C)
        msk = rm[:, None] & (cols < C)[None, :]
        o = tl.load(out_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
        g = tl.load(g_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
        if LOG:
            gx = g - tl.exp(o) * tl.sum(g, axis=1)[:, None]
        else:
            gx = o * (g - tl.sum(g * o, axis=1)[:, None])
        tl.store(gx_ptr + r[:, None] * C + cols[None, :], gx.to(gx_ptr.dtype.element_ty), mask=msk)
    else:
        s = tl.zeros([BLOCK_R], ACC)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            g = tl.load(g_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
            if LOG:
                s += tl.sum(g, axis=1)
            else:
                o = tl.load(out_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
                s += tl.sum(g * o, axis=1)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            o = tl.load(out_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
            g = tl.load(g_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
            if LOG:
                gx = g - tl.exp(o) * s[:, None]
            else:
                gx = o * (g - s[:, None])
            tl.store(gx_ptr + r[:, None] * C + cols[None, :], gx.to(gx_ptr.dtype.element_ty), mask=msk)


def _blocks(C):
    """``(BLOCK_R, BLOCK_C, ONE)``: a whole row in one block up to 4096 classes, ~4096 elements a tile."""
    bc = min(triton.next_power_of_2(max(C, 1)), _MAX_BLOCK_C)
    return max(1, _BLOCK_ELEMS // bc), bc, C <= bc


def _last(t, dim):
    """``t`` with ``dim`` moved last, contiguous: ``(view, rows, C)``."""
    if t.dim() == 0:
        return t.reshape(1), 1, 1
    t = dense(t.movedim(dim, -1))
    C = t.shape[-1]
    return t, (t.numel() // C) if C else 0, C


def _back(t, like, dim):
    """The ``dim``-last result ``t`` in ``like``'s shape (a view of ``t``)."""
    return t.reshape(()) if like.dim() == 0 else t.movedim(-1, dim)


def _forward(x, dim, log, traced=False):
    src, rows, C = _last(x, dim)
    out = torch.empty_like(src)
    if rows and C:
        br, bc, one = _blocks(C)
        kernel(_softmax_fwd, traced)[(triton.cdiv(rows, br),)](
            src, out, rows, C, LOG=log, ONE=one, ACC=acc_type(x.dtype), BLOCK_R=br, BLOCK_C=bc
        )
    return _back(out, x, dim)


def _backward(out, grad_out, dim, log, traced=False):
    o, rows, C = _last(out, dim)
    g = _last(grad_out, dim)[0]
    gx = torch.empty(o.shape, dtype=grad_out.dtype, device=grad_out.device)
    if rows and C:
        br, bc, one = _blocks(C)
        kernel(_softmax_bwd, traced)[(triton.cdiv(rows, br),)](
            o, g, gx, rows, C, LOG=log, ONE=one, ACC=acc_type(out.dtype), BLOCK_R=br, BLOCK_C=bc
        )
    return _back(gx, out, dim)


@register("softmax_forward")
def _softmax_forward_op(x: Tensor, dim: int, log: bool) -> Tensor:
    return _forward(x, dim, log, traced=True).clone()  # a triton_op may not return a view of its buffer


@register("softmax_backward")
def _softmax_backward_op(out: Tensor, grad_out: Tensor, dim: int, log: bool) -> Tensor:
    return _backward(out, grad_out, dim, log, traced=True).clone()


def forward(x: Tensor, dim: int, log: bool) -> Tensor:
    """Softmax (``log=False``) or log-softmax of ``x`` along ``dim`` (in ``[0, ndim)``), one kernel."""
    if torch.compiler.is_compiling():
        return op("softmax_forward")(x, dim, log)
    return _forward(x, dim, log)


def backward(out: Tensor, grad_out: Tensor, dim: int, log: bool) -> Tensor:
    """``dx`` from the output and ``grad_out``, one kernel; of ``grad_out``'s dtype."""
    if torch.compiler.is_compiling():
        return op("softmax_backward")(out, grad_out, dim, log)
    return _backward(out, grad_out, dim, log)
