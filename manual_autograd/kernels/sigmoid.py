"""Sigmoid: ``out = σ(x)``; ``d out/dx = out (1 − out)``; backward reads ``out`` and ``grad_out`` (what the reference saves)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, acc_type, backward_operands, dense, kernel, op, register


@triton.jit
def _sigmoid_fwd(x_ptr, out_ptr, n, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m).to(ACC)
    tl.store(out_ptr + offs, (1.0 / (1.0 + tl.exp(-x))).to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _sigmoid_bwd(out_ptr, g_ptr, gx_ptr, n, G_STRIDE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    out = tl.load(out_ptr + offs, mask=m).to(ACC)
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    tl.store(gx_ptr + offs, (g.to(ACC) * (out * (1.0 - out))).to(g.dtype), mask=m)


def _forward(x, traced=False):
    src = dense(x)
    out = torch.empty_like(src)
    n = src.numel()
    if n:
        kernel(_sigmoid_fwd, traced)[(triton.cdiv(n, BLOCK),)](src, out, n, ACC=acc_type(x.dtype), BLOCK=BLOCK)
    return out


def _backward(out, grad_out, traced=False):
    out, g, gs, gx, n = backward_operands(out, grad_out)
    if n:
        kernel(_sigmoid_bwd, traced)[(triton.cdiv(n, BLOCK),)](out, g, gx, n, G_STRIDE=gs, ACC=acc_type(out.dtype), BLOCK=BLOCK)
    return gx


@register("sigmoid_forward")
def _sigmoid_forward_op(x: Tensor) -> Tensor:
    return _forward(x, traced=True)


@register("sigmoid_backward")
def _sigmoid_backward_op(out: Tensor, grad_out: Tensor) -> Tensor:
    return _backward(out, grad_out, traced=True)


def forward(x: Tensor) -> Tensor:
    """``sigmoid(x)``, one pass; a new contiguous tensor (the output the backward reads)."""
    if torch.compiler.is_compiling():
        return op("sigmoid_forward")(x)
    return _forward(x)


def backward(out: Tensor, grad_out: Tensor) -> Tensor:
    """``grad_out · sigmoid'`` from the output, one pass; a new contiguous tensor of ``grad_out``'s dtype."""
    if torch.compiler.is_compiling():
        return op("sigmoid_backward")(out, grad_out)
    return _backward(out, grad_out)
