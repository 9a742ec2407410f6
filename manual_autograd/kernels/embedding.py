"""Embedding: the forward gathers ``W[idx]`` row by row; the backward scatter-adds ``grad_out``'s rows
into ``dW`` with ``tl.atomic_add`` in float32 (float64 for float64), cast once to ``W``'s dtype.

The backward reads only the indices (and ``grad_out``): rows at ``padding_idx`` add nothing, and with
``scale_grad_by_freq`` each row is divided by its index's count in the batch (counted by
``torch.bincount`` on the device). The order of the atomic adds is not fixed: sums of many rows
into one index may differ from the reference in the last bits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, dense, grad_layout, kernel, op, register


@triton.jit
def _embedding_fwd(w_ptr, idx_ptr, out_ptr, D, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    m = cols < D
    i = tl.load(idx_ptr + row).to(tl.int64)
    tl.store(out_ptr + row * D + cols, tl.load(w_ptr + i * D + cols, mask=m), mask=m)


@triton.jit
def _embedding_bwd(idx_ptr, g_ptr, cnt_ptr, acc_ptr, D, padding_idx, G_STRIDE: tl.constexpr, FREQ: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    i = tl.load(idx_ptr + row).to(tl.int64)
    m = (cols < D) & (i != padding_idx)  # a padding row adds nothing (a NaN there does not flow)
    g = tl.load(g_ptr + (row * D + cols) * G_STRIDE, mask=m, other=0.0).to(ACC)
    if FREQ:
        g = g * (1.0 / tl.load(cnt_ptr + row).to(ACC))  # torch adds g · (1/count)
    tl.atomic_add(acc_ptr + i * D + cols, g, mask=m)


def _block(D):
    return min(triton.next_power_of_2(max(D, 1)), 1024)


def _forward(input, weight, traced=False):
    w, idx = dense(weight), dense(input.reshape(-1))
    D = w.shape[1]
    out = torch.empty((idx.numel(), D), dtype=w.dtype, device=w.device)
    if out.numel():
        kernel(_embedding_fwd, traced)[(idx.numel(), triton.cdiv(D, _block(D)))](w, idx, out, D, BLOCK_D=_block(D))
    return out.reshape(*input.shape, D)


def _backward(idx, grad_out, num, padding_idx, scale_grad_by_freq, traced=False):
    D = grad_out.shape[-1]
    idx = dense(idx.reshape(-1))
    g, gs = grad_layout(grad_out)
    acc_dtype = torch.float64 if grad_out.dtype == torch.float64 else torch.float32
    acc = torch.zeros((num, D), dtype=acc_dtype, device=grad_out.device)
    cnt = torch.bincount(idx, minlength=num).index_select(0, idx) if scale_grad_by_freq else idx
    if idx.numel() and D:
        kernel(_embedding_bwd, traced)[(idx.numel(), triton.cdiv(D, _block(D)))](
            idx, g, cnt, acc, D, padding_idx, G_STRIDE=gs, FREQ=scale_grad_by_freq, ACC=acc_type(grad_out.dtype),
            BLOCK_D=_block(D),
        )
    return acc if acc.dtype == grad_out.dtype else acc.to(grad_out.dtype)


@register("embedding_forward")
def _embedding_forward_op(input: Tensor, weight: Tensor) -> Tensor:
    return _forward(input, weight, traced=True)


@register("embedding_backward")
def _embedding_backward_op(idx: Tensor, grad_out: Tensor, num: int, padding_idx: int, scale_grad_by_freq: bool) -> Tensor:
    return _backward(idx, grad_out, num, padding_idx, scale_grad_by_freq, traced=True)


def forward(input: Tensor, weight: Tensor) -> Tensor:
    """``weight[input]``, shape ``(*input.shape, embedding_dim)``; indices assumed in range (checked by the caller)."""
    if torch.compiler.is_compiling():
        return op("embedding_forward")(input, weight)
    return _forward(input, weight)


def backward(idx: Tensor, grad_out: Tensor, num: int, padding_idx: int = -1, scale_grad_by_freq: bool = False) -> Tensor:
    """``dW`` of shape ``(num, embedding_dim)`` in ``grad_out``'s dtype: the rows of ``grad_out`` added at ``idx``."""
    if torch.compiler.is_compiling():
        return op("embedding_backward")(idx, grad_out, num, padding_idx, scale_grad_by_freq)
    return _backward(idx, grad_out, num, padding_idx, scale_grad_by_freq)
