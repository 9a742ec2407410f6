"""ReLU: ``out = max(x, 0)``; backward from the saved ``out``: ``grad_out`` where ``out > 0``, else 0."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, backward_operands, any_dense, kernel, op, register, written


@triton.jit
def _relu_fwd(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    tl.store(out_ptr + offs, tl.where(x < 0, 0.0, x).to(x.dtype), mask=m)  # NaN < 0 is false: NaN stays


@triton.jit
def _relu_bwd(out_ptr, g_ptr, gx_ptr, n, G_STRIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    out = tl.load(out_ptr + offs, mask=m)
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    tl.store(gx_ptr + offs, tl.where(out <= 0, 0.0, g).to(g.dtype), mask=m)  # NaN out passes g, as torch


def _forward(x, inplace=False, traced=False):
    src = any_dense(x)  # contiguous, channels_last, transposed: the output keeps the layout
    out = src if inplace else torch.empty_like(src)
    n = src.numel()
    if n:
        kernel(_relu_fwd, traced)[(triton.cdiv(n, BLOCK),)](src, out, n, BLOCK=BLOCK)
    if inplace:
        return x.copy_(out) if out is not x else written(x)
    return out


def _backward(out, grad_out, traced=False):
    out, g, gs, gx, n = backward_operands(out, grad_out, saved_first=True)
    if n:
        kernel(_relu_bwd, traced)[(triton.cdiv(n, BLOCK),)](out, g, gx, n, G_STRIDE=gs, BLOCK=BLOCK)
    return gx


@register("relu_forward")
def _relu_forward_op(x: Tensor) -> Tensor:
    return _forward(x, traced=True)


@register("relu_backward")
def _relu_backward_op(out: Tensor, grad_out: Tensor) -> Tensor:
    return _backward(out, grad_out, traced=True)


def forward(x: Tensor, inplace: bool = False) -> Tensor:
    """``max(x, 0)``, one pass. ``inplace``: written into ``x``, which is returned. A dense ``x`` in any
    dim order (channels_last, transposed) is read as it lies and the result has its strides, as
    torch's; any other ``x`` is read through a contiguous copy (``inplace``: copied back)."""
    if torch.compiler.is_compiling():
        out = op("relu_forward")(x)
        return x.copy_(out) if inplace else out
    return _forward(x, inplace)


def backward(out: Tensor, grad_out: Tensor) -> Tensor:
    """``grad_out`` where ``out > 0``, else 0 (at ``x = 0`` too, as torch's ``threshold_backward``);
    a new tensor of ``grad_out``'s dtype in torch's layout (``out``'s, see ``backward_operands``), one pass."""
    if torch.compiler.is_compiling():
        return op("relu_backward")(out, grad_out)
    return _backward(out, grad_out)
