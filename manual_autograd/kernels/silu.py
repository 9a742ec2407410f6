"""SiLU: ``out = x σ(x)``; ``d out/dx = σ(x) (1 + x (1 − σ(x)))``; backward reads ``x`` and ``grad_out``."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, backward_operands, acc_type, any_dense, kernel, op, register, written


@triton.jit
def silu_value(x):
    return x / (1.0 + tl.exp(-x))  # torch's formula: silu(-inf) is NaN as there


@triton.jit
def silu_derivative(x):
    s = 1.0 / (1.0 + tl.exp(-x))
    return s * (1.0 + x * (1.0 - s))


@triton.jit
def _silu_fwd(x_ptr, out_ptr, x0_ptr, n, KEEP: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    if KEEP:  # in place: the input is overwritten, keep it for the backward in the same pass
        tl.store(x0_ptr + offs, x, mask=m)
    tl.store(out_ptr + offs, silu_value(x.to(ACC)).to(x.dtype), mask=m)


@triton.jit
def _silu_bwd(x_ptr, g_ptr, gx_ptr, n, G_STRIDE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    tl.store(gx_ptr + offs, (g.to(ACC) * silu_derivative(x.to(ACC))).to(g.dtype), mask=m)


def _forward(x, inplace=False, traced=False):
    src = any_dense(x)  # contiguous, channels_last, transposed: the output keeps the layout
    out = src if inplace else torch.empty_like(src)
    x0 = torch.empty_like(src) if inplace else None
    n = src.numel()
    if n:
        kernel(_silu_fwd, traced)[(triton.cdiv(n, BLOCK),)](
            src, out, out if x0 is None else x0, n, KEEP=inplace, ACC=acc_type(x.dtype), BLOCK=BLOCK
        )
    if inplace:
        out = x.copy_(out) if out is not x else written(x)
    return out, x0


def _backward(x, grad_out, traced=False):
    x, g, gs, gx, n = backward_operands(x, grad_out)
    if n:
        kernel(_silu_bwd, traced)[(triton.cdiv(n, BLOCK),)](x, g, gx, n, G_STRIDE=gs, ACC=acc_type(x.dtype), BLOCK=BLOCK)
    return gx


@register("silu_forward")
def _silu_forward_op(x: Tensor) -> Tensor:
    return _forward(x, traced=True)[0]


@register("silu_backward")
def _silu_backward_op(x: Tensor, grad_out: Tensor) -> Tensor:
    return _backward(x, grad_out, traced=True)


def forward(x: Tensor, inplace: bool = False) -> tuple[Tensor, Optional[Tensor]]:
    """``(out, x0)``, one pass: ``x0`` is None, or for ``inplace`` (``out`` is ``x``) a copy of the
    input from before the overwrite, written by the same pass (what the backward then reads)."""
    if torch.compiler.is_compiling():
        out = op("silu_forward")(x)
        if inplace:
            x0 = x.clone()
            return x.copy_(out), x0
        return out, None
    return _forward(x, inplace)


def backward(x: Tensor, grad_out: Tensor) -> Tensor:
    """``grad_out * silu'(x)``, one pass; a new tensor of ``grad_out``'s dtype and torch's layout (``grad_out``'s)."""
    if torch.compiler.is_compiling():
        return op("silu_backward")(x, grad_out)
    return _backward(x, grad_out)
