"""linear_cross_entropy's per-block passes between the matrix products, on a ``(rows, width)``
block of logits of classes ``[c0, c0 + width)`` (rows contiguous, any row stride):

* :func:`softmax_scale_` (backward): ``blk ← exp(blk − lse) · r`` row by row, in place, one pass
  (the reference's ``p.sub_(lse).exp_().mul_(r)``, three passes);
* :func:`block_update_` (forward): one read of the block folds it into the running per-row
  log-sum-exp, the target's logit and (label smoothing) the (class-weighted) logit sum, in place.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, kernel, op, register
from .cross_entropy import lse_step

_BLOCK_ELEMS = 4096


@triton.jit
def _softmax_scale(b_ptr, b_rs, lse_ptr, r_ptr, rows, width, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    msk = (r < rows)[:, None] & (c < width)[None, :]
    ptr = b_ptr + r[:, None] * b_rs + c[None, :]
    b = tl.load(ptr, mask=msk).to(ACC)
    lse = tl.load(lse_ptr + r, mask=r < rows, other=0.0).to(ACC)
    scale = tl.load(r_ptr + r, mask=r < rows, other=0.0).to(ACC)
    tl.store(ptr, (tl.exp(b - lse[:, None]) * scale[:, None]).to(b_ptr.dtype.element_ty), mask=msk)


@triton.jit
def _block_update(b_ptr, b_rs, t_ptr, t_s, lse_ptr, zt_ptr, zs_ptr, cw_ptr, rows, width, c0,
                  SUM: tl.constexpr, HAS_CW: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    t = tl.load(t_ptr + r * t_s, mask=rm, other=0).to(tl.int64) - c0
    lse = tl.load(lse_ptr + r, mask=rm, other=0.0).to(ACC)
    m = lse  # the running max, as lse_step keeps it: -inf until a finite logit is seen
    s = tl.where(lse == float("-inf"), 0.0, 1.0).to(ACC)  # Σ exp(logit − m) of the chunks before: 1 at m = lse
    z_t = tl.zeros([BLOCK_R], ACC)
    z_s = tl.zeros([BLOCK_R], ACC)
    for k0 in range(0, width, BLOCK_C):
        c = k0 + tl.arange(0, BLOCK_C)
        msk = rm[:, None] & (c < width)[None, :]
        b = tl.load(b_ptr + r[:, None] * b_rs + c[None, :], mask=msk, other=float("-inf")).to(ACC)
        m, s = lse_step(m, s, b)
        z_t += tl.sum(tl.where((c[None, :] == t[:, None]) & msk, b, 0.0), axis=1)
        if SUM:
            if HAS_CW:
                w = tl.load(cw_ptr + c0 + c, mask=c < width, other=0.0).to(ACC)
                z_s += tl.sum(tl.where(msk, b * w[None, :], 0.0), axis=1)
            else:
                z_s += tl.sum(tl.where(msk, b, 0.0), axis=1)
    tl.store(lse_ptr + r, (m + tl.log(s)).to(lse_ptr.dtype.element_ty), mask=rm)
    tl.store(zt_ptr + r, (tl.load(zt_ptr + r, mask=rm, other=0.0).to(ACC) + z_t).to(zt_ptr.dtype.element_ty), mask=rm)
    if SUM:
        zs = tl.load(zs_ptr + r, mask=rm, other=0.0).to(ACC) + z_s
        tl.store(zs_ptr + r, zs.to(zs_ptr.dtype.element_ty), mask=rm)


def _check_block(blk):
    if blk.dim() != 2 or blk.stride(1) != 1:
        raise ValueError(f"expected a 2-D block of logits with contiguous rows, got shape {tuple(blk.shape)} "
                         f"and strides {blk.stride()}")


def _softmax_scale_(blk, lse, r, traced=False):
    _check_block(blk)
    rows, width = blk.shape
    if rows and width:
        bc = min(triton.next_power_of_2(width), 1024)
        br = max(1, min(_BLOCK_ELEMS // bc, triton.next_power_of_2(rows)))
        kernel(_softmax_scale, traced)[(triton.cdiv(rows, br), triton.cdiv(width, bc))](
            blk, blk.stride(0), lse, r, rows, width, ACC=acc_type(blk.dtype), BLOCK_R=br, BLOCK_C=bc
        )
    return blk


def _block_update_(blk, t, c0, lse, z_t, z_sum=None, class_weight=None, traced=False):
    _check_block(blk)
    rows, width = blk.shape
    if rows and width:
        bc = min(triton.next_power_of_2(width), 1024)
        br = max(1, min(_BLOCK_ELEMS // bc, triton.next_power_of_2(rows)))
        cw = class_weight if class_weight is None or class_weight.is_contiguous() else class_weight.contiguous()
        kernel(_block_update, traced)[(triton.cdiv(rows, br),)](
            blk, blk.stride(0), t, t.stride(0), lse, z_t, lse if z_sum is None else z_sum, lse if cw is None else cw,
            rows, width, int(c0), SUM=z_sum is not None, HAS_CW=cw is not None, ACC=acc_type(blk.dtype),
            BLOCK_R=br, BLOCK_C=bc,
        )


@register("lce_softmax_scale")
def _softmax_scale_op(blk: Tensor, lse: Tensor, r: Tensor) -> Tensor:
    return _softmax_scale_(blk.clone(), lse, r, traced=True)


@register("lce_block_update")
def _block_update_op(
    blk: Tensor, t: Tensor, c0: int, lse: Tensor, z_t: Tensor, z_sum: Optional[Tensor], class_weight: Optional[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    lse, z_t = lse.clone(), z_t.clone()
    z_sum = None if z_sum is None else z_sum.clone()
    _block_update_(blk, t, c0, lse, z_t, z_sum, class_weight, traced=True)
    return lse, z_t, (lse.new_empty(0) if z_sum is None else z_sum)


def softmax_scale_(blk: Tensor, lse: Tensor, r: Tensor) -> Tensor:
    """``exp(blk − lse[:, None]) · r[:, None]`` into ``blk`` (eager; a new tensor under torch.compile),
    returned. ``lse`` and ``r`` are ``(rows,)`` contiguous."""
    if torch.compiler.is_compiling():
        return op("lce_softmax_scale")(blk, lse, r)
    return _softmax_scale_(blk, lse, r)


def block_update_(blk: Tensor, t: Tensor, c0: int, lse: Tensor, z_t: Tensor, z_sum: Optional[Tensor] = None,
                  class_weight: Optional[Tensor] = None):
    """Fold the block of classes ``[c0, c0 + width)`` into the running per-row values, returned as
    ``(lse, z_t, z_sum)``: ``lse ← logaddexp(lse, logsumexp(blk, 1))``; ``z_t += blk[i, t_i − c0]``
    where the target ``t_i`` lies in the block; ``z_sum += blk @ class_weight[c0:c0+width]`` (or
    ``blk.sum(1)``) when ``z_sum`` is given. In place in eager; new tensors under torch.compile.
    ``blk`` is only read."""
    if torch.compiler.is_compiling():
        lse, z_t, zs = op("lce_block_update")(blk, t, c0, lse, z_t, z_sum, class_weight)
        return lse, z_t, (zs if z_sum is not None else None)
    _block_update_(blk, t, c0, lse, z_t, z_sum, class_weight)
    return lse, z_t, z_sum
