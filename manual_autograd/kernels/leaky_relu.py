"""LeakyReLU: ``out = x`` where ``x > 0``, else ``negative_slope * x``.

For ``negative_slope >= 0`` the backward reads the output (its sign is the input's); for a
negative slope it reads a bit-packed mask of ``x > 0``: 8 elements a byte, little-endian within
the byte, in flat row-major order, zero-padded to a whole byte (the format of
``manual_autograd.function._pack_bits``), written by the same pass as the output.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import (
    BLOCK, acc_type, any_dense, backward_operands, dense, grad_layout, in_layout, is_dense, kernel, op, register, written,
)


@triton.jit
def _leaky_fwd(x_ptr, out_ptr, mask_ptr, n, slope: tl.float64, MASK: tl.constexpr, ACC: tl.constexpr,
               BLOCK: tl.constexpr):
    byte = tl.program_id(0).to(tl.int64) * (BLOCK // 8) + tl.arange(0, BLOCK // 8)
    bit = tl.arange(0, 8)
    offs = byte[:, None] * 8 + bit[None, :]
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m, other=0.0)
    xa = x.to(ACC)
    pos = xa > 0
    tl.store(out_ptr + offs, tl.where(pos, xa, xa * tl.cast(slope, ACC)).to(x.dtype), mask=m)
    if MASK:  # padding lanes loaded 0: their bits are 0
        packed = tl.sum(pos.to(tl.int32) << bit[None, :], axis=1)
        tl.store(mask_ptr + byte, packed.to(tl.uint8), mask=byte * 8 < n)


@triton.jit
def _leaky_bwd(s_ptr, g_ptr, gx_ptr, n, slope: tl.float64, MASK: tl.constexpr, G_STRIDE: tl.constexpr,
               ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    if MASK:
        bits = tl.load(s_ptr + offs // 8, mask=m, other=0).to(tl.int32)
        pos = ((bits >> (offs % 8).to(tl.int32)) & 1) != 0
    else:
        pos = tl.load(s_ptr + offs, mask=m) > 0
    ga = g.to(ACC)
    # NOTE: at x = 0 the derivative is negative_slope, as torch's leaky_relu_backward takes it
    tl.store(gx_ptr + offs, tl.where(pos, ga, ga * tl.cast(slope, ACC)).to(g.dtype), mask=m)


def _forward(x, negative_slope, inplace=False, traced=False):
    masked = negative_slope < 0
    # the mask is packed in row-major order (the reference's double backward unpacks it so): with one,
    # a non-contiguous x is read through a contiguous copy; without, any dense layout is kept
    src = dense(x) if masked else any_dense(x)
    out = src if inplace else torch.empty_like(src)
    n = src.numel()
    mask = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device) if masked else None
    if n:
        kernel(_leaky_fwd, traced)[(triton.cdiv(n, BLOCK),)](
            src, out, out if mask is None else mask, n, float(negative_slope),
            MASK=masked, ACC=acc_type(x.dtype), BLOCK=BLOCK,
        )
    if inplace:
        out = x.copy_(out) if out is not x else written(x)
    elif masked and not x.is_contiguous() and is_dense(x):
        out = in_layout(out, x)  # torch's layout, x's (one more pass)
    return out, mask


def _backward(saved, grad_out, negative_slope, traced=False):
    masked = negative_slope < 0
    if masked:  # the mask indexes row-major order: so do grad_out and grad_x (the op restores x's layout)
        g, gs = grad_layout(grad_out)
        gx, n = torch.empty(grad_out.shape, dtype=grad_out.dtype, device=grad_out.device), grad_out.numel()
    else:
        saved, g, gs, gx, n = backward_operands(saved, grad_out, saved_first=True)
    if n:
        kernel(_leaky_bwd, traced)[(triton.cdiv(n, BLOCK),)](
            saved, g, gx, n, float(negative_slope),
            MASK=masked, G_STRIDE=gs, ACC=acc_type(grad_out.dtype), BLOCK=BLOCK,
        )
    return gx


@register("leaky_relu_forward")
def _leaky_relu_forward_op(x: Tensor, negative_slope: float) -> Tensor:
    return _forward(x, negative_slope, traced=True)[0]


@register("leaky_relu_forward_masked")
def _leaky_relu_forward_masked_op(x: Tensor, negative_slope: float) -> tuple[Tensor, Tensor]:
    return _forward(x, negative_slope, traced=True)


@register("leaky_relu_backward")
def _leaky_relu_backward_op(saved: Tensor, grad_out: Tensor, negative_slope: float) -> Tensor:
    return _backward(saved, grad_out, negative_slope, traced=True)


def forward(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> tuple[Tensor, Optional[Tensor]]:
    """``(out, mask)`` in one pass: ``mask`` is the packed ``x > 0`` (``ceil(numel / 8)`` uint8) for
    ``negative_slope < 0``, else None (the backward then reads ``out``). ``inplace``: ``out`` is ``x``."""
    if torch.compiler.is_compiling():
        if negative_slope < 0:
            out, mask = op("leaky_relu_forward_masked")(x, negative_slope)
        else:
            out, mask = op("leaky_relu_forward")(x, negative_slope), None
        return (x.copy_(out) if inplace else out), mask
    return _forward(x, negative_slope, inplace)


def backward(saved: Tensor, grad_out: Tensor, negative_slope: float) -> Tensor:
    """``grad_out`` where ``x > 0``, else ``negative_slope * grad_out``; ``saved`` is the output
    (``negative_slope >= 0``) or the packed mask (``negative_slope < 0``). New tensor, one pass."""
    if torch.compiler.is_compiling():
        return op("leaky_relu_backward")(saved, grad_out, negative_slope)
    return _backward(saved, grad_out, negative_slope)
