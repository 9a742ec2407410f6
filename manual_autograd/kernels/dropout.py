"""Dropout: ``out = x · m / q`` with ``q = 1 − p``, ``m = 1[tl.rand(seed, offset) < q]``; backward reads the mask.

The forward writes the output and the bit-packed mask in one pass: each program covers whole
bytes of it, 8 elements a byte, little-endian within the byte, in flat row-major order,
zero-padded to a whole byte (the layout of :func:`manual_autograd.ops.base.pack_bits`, so the
reference backward reads it too). The seed is drawn from torch's generator on the tensors'
device (a one-element int64 tensor, no host sync), so ``torch.manual_seed`` fixes the mask.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, acc_type, dense, grad_layout, kernel, op, register


@triton.jit
def _dropout_fwd(x_ptr, seed_ptr, out_ptr, mask_ptr, n, q: tl.float64, ACC: tl.constexpr, BLOCK: tl.constexpr):
    byte = tl.program_id(0).to(tl.int64) * (BLOCK // 8) + tl.arange(0, BLOCK // 8)
    bit = tl.arange(0, 8)
    offs = byte[:, None] * 8 + bit[None, :]
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m, other=0.0)
    seed = tl.load(seed_ptr)
    keep = (tl.rand(seed, offs) < tl.cast(q, tl.float32)) & m  # probability q = 1 − p; padding lanes 0
    scale = 1.0 / tl.cast(q, ACC)  # the reference's factor: 1 / q rounded once
    # a multiply, not a select: a dropped NaN or Inf gives NaN, as torch's x · noise
    tl.store(out_ptr + offs, (x.to(ACC) * tl.where(keep, scale, 0.0)).to(x.dtype), mask=m)
    packed = tl.sum(keep.to(tl.int32) << bit[None, :], axis=1)
    tl.store(mask_ptr + byte, packed.to(tl.uint8), mask=byte * 8 < n)


@triton.jit
def _dropout_bwd(mask_ptr, g_ptr, gx_ptr, n, q: tl.float64, G_STRIDE: tl.constexpr, ACC: tl.constexpr,
                 BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    bits = tl.load(mask_ptr + offs // 8, mask=m, other=0).to(tl.int32)
    keep = ((bits >> (offs % 8).to(tl.int32)) & 1) != 0
    scale = 1.0 / tl.cast(q, ACC)
    tl.store(gx_ptr + offs, (g.to(ACC) * tl.where(keep, scale, 0.0)).to(g.dtype), mask=m)


def _seed(x):
    """A seed for ``tl.rand`` from torch's generator of ``x``'s device (what ``torch.manual_seed`` sets)."""
    return torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=x.device)


def _forward(x, seed, p, inplace=False, traced=False):
    src = dense(x)
    out = src if inplace else torch.empty_like(src)
    n = src.numel()
    mask = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device)
    if n:
        kernel(_dropout_fwd, traced)[(triton.cdiv(n, BLOCK),)](
            src, seed, out, mask, n, 1.0 - p, ACC=acc_type(x.dtype), BLOCK=BLOCK
        )
    if inplace and out is not x:
        out = x.copy_(out)
    return out, mask


def _backward(mask, grad_out, p, traced=False):
    # the packed mask is in the row-major order of the elements: grad_out is read, grad_x written, in it
    g, gs = grad_layout(grad_out)
    gx = torch.empty(grad_out.shape, dtype=grad_out.dtype, device=grad_out.device)
    n = gx.numel()
    if n:
        kernel(_dropout_bwd, traced)[(triton.cdiv(n, BLOCK),)](
            mask, g, gx, n, 1.0 - p, G_STRIDE=gs, ACC=acc_type(grad_out.dtype), BLOCK=BLOCK
        )
    return gx


@register("dropout_forward")
def _dropout_forward_op(x: Tensor, seed: Tensor, p: float) -> tuple[Tensor, Tensor]:
    return _forward(x, seed, p, traced=True)


@register("dropout_backward")
def _dropout_backward_op(mask: Tensor, grad_out: Tensor, p: float) -> Tensor:
    return _backward(mask, grad_out, p, traced=True)


def forward(x: Tensor, p: float, inplace: bool = False) -> tuple[Tensor, Tensor]:
    """``(out, mask)`` in one pass, ``0 < p < 1``: ``mask`` the packed kept elements
    (``ceil(numel / 8)`` uint8). ``inplace``: ``out`` is ``x``."""
    seed = _seed(x)
    if torch.compiler.is_compiling():
        out, mask = op("dropout_forward")(x, seed, p)
        return (x.copy_(out) if inplace else out), mask
    return _forward(x, seed, p, inplace)


def backward(mask: Tensor, grad_out: Tensor, p: float) -> Tensor:
    """``grad_out · m / (1 − p)`` from the packed mask; a new contiguous tensor, one pass."""
    if torch.compiler.is_compiling():
        return op("dropout_backward")(mask, grad_out, p)
    return _backward(mask, grad_out, p)
