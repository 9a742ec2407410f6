"""Cross-entropy over class-index targets on ``(rows, C)`` logits: ``weight``, ``ignore_index``,
``label_smoothing``, reductions ``'none'``/``'mean'``/``'sum'``.

The forward is one kernel over each block of rows (max, log-sum-exp, the log-probabilities
``logp`` the backward reads, the loss; a row's classes are read once when they fit one block,
else twice, the second read from cache), then for ``'mean'``/``'sum'`` one single-program
reduction that also writes the mean's denominator ``Σ w_t`` (kept on the device). The backward is
one kernel writing ``dL/dlogits = g (softmax · r − s ⊗ w − onehot(t) w_t (1 − ε))`` from ``logp``.
Probability targets are not covered (the reference serves them). A class index outside ``[0, C)``
that is not ``ignore_index`` makes its row's loss and gradient NaN: nothing is read out of bounds and
nothing waits on the host (torch's CUDA kernels assert on the device instead).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, kernel, op, register

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_MAX_BLOCK_C = 4096  # classes per block: a whole row up to this many, in one read
_BLOCK_ELEMS = 4096  # a block of rows holds about this many logits
_WARPS = 8  # with 4, a 2-D tile with a class weight and smoothing spills registers (ptxas, sm_90)


@triton.jit
def _row_weights(t_ptr, t_s, w_ptr, r, rm, C, ignore_index, HAS_W: tl.constexpr, ACC: tl.constexpr):
    """Per row: the target, whether it is kept, whether it is a class in [0, C), and its weight."""
    # NOTE: compared as int64: a uint8 target must never wrap ignore_index
    t = tl.load(t_ptr + r * t_s, mask=rm, other=0).to(tl.int64)
    valid = (t != ignore_index) & rm
    inside = (t >= 0) & (t < C)
    if HAS_W:  # never read outside the weight, whatever the target
        w_t = tl.load(w_ptr + tl.where(valid & inside, t, 0), mask=valid & inside, other=0.0).to(ACC)
    else:
        w_t = valid.to(ACC)
    return t, valid, inside, w_t


@triton.jit
def lse_step(m, s, x):
    """Fold a ``(rows, cols)`` block ``x`` into the running row max ``m`` and ``s = Σ exp(x − m)``."""
    mx = tl.maximum(m, tl.max(x, axis=1))
    # NOTE: the state keeps the raw max (-inf while all is -inf); only the shift is 0 then, never
    # -inf − -inf. A max of 0 in the state would make later blocks far below 0 underflow.
    sh = tl.where(mx == float("-inf"), 0.0, mx)
    return mx, s * tl.exp(m - sh) + tl.sum(tl.exp(x - sh[:, None]), axis=1)


@triton.jit
def _logp_terms(logp, cols, msk, t, w_ptr, C, HAS_W: tl.constexpr, SMOOTH: tl.constexpr, ACC: tl.constexpr):
    """A block's share of ``−logp[t]`` and (smoothing) ``−Σ_c w_c logp_c``, per row."""
    nll = -tl.sum(tl.where(cols[None, :] == t[:, None], logp, 0.0), axis=1)
    sm = tl.zeros_like(nll)
    if SMOOTH:
        if HAS_W:
            w_c = tl.load(w_ptr + cols, mask=cols < C, other=0.0).to(ACC)
            sm = -tl.sum(tl.where(msk, logp * w_c[None, :], 0.0), axis=1)
        else:
            sm = -tl.sum(tl.where(msk, logp, 0.0), axis=1)
    return nll, sm


@triton.jit
def _ce_fwd(x_ptr, x_rs, t_ptr, t_s, w_ptr, logp_ptr, loss_ptr, wt_ptr, rows, C, ignore_index, eps: tl.float64,
            HAS_W: tl.constexpr, SMOOTH: tl.constexpr, ONE: tl.constexpr, ACC: tl.constexpr,
            BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    t, valid, inside, w_t = _row_weights(t_ptr, t_s, w_ptr, r, rm, C, ignore_index, HAS_W, ACC)
    nll = tl.zeros([BLOCK_R], ACC)
    sm = tl.zeros([BLOCK_R], ACC)
    if ONE:  # the whole row in one block: read once
        cols = tl.arange(0, BLOCK_C)
        msk = rm[:, None] & (cols < C)[None, :]
        x = tl.load(x_ptr + r[:, None] * x_rs + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
        mx = tl.max(x, axis=1)
        mx = tl.where(mx == float("-inf"), 0.0, mx)  # an all -inf row: lse -inf, logp NaN, as torch
        lse = mx + tl.log(tl.sum(tl.exp(x - mx[:, None]), axis=1))
        logp = x - lse[:, None]
        tl.store(logp_ptr + r[:, None] * C + cols[None, :], logp.to(logp_ptr.dtype.element_ty), mask=msk)
        nll, sm = _logp_terms(logp, cols, msk, t, w_ptr, C, HAS_W, SMOOTH, ACC)
    else:  # online max and sum over the blocks, then a second read writes logp
        m = tl.full([BLOCK_R], float("-inf"), ACC)
        s = tl.zeros([BLOCK_R], ACC)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            x = tl.load(x_ptr + r[:, None] * x_rs + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
            m, s = lse_step(m, s, x)
        lse = m + tl.log(s)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            msk = rm[:, None] & (cols < C)[None, :]
            x = tl.load(x_ptr + r[:, None] * x_rs + cols[None, :], mask=msk, other=float("-inf")).to(ACC)
            logp = x - lse[:, None]
            tl.store(logp_ptr + r[:, None] * C + cols[None, :], logp.to(logp_ptr.dtype.element_ty), mask=msk)
            nll_c, sm_c = _logp_terms(logp, cols, msk, t, w_ptr, C, HAS_W, SMOOTH, ACC)
            nll += nll_c
            sm += sm_c
    # NOTE: summing w·(−logp), not lse·Σw − Σ w·x, avoids cancelling two ~|x| numbers
    loss = w_t * nll
    if SMOOTH:
        loss = (1.0 - tl.cast(eps, ACC)) * loss + sm * (tl.cast(eps, ACC) / C)
    loss = tl.where(valid, loss, 0.0)  # ignored rows: exactly 0, as torch (even for NaN logits)
    loss = tl.where(valid & ~inside, float("nan"), loss)  # a class out of range: NaN, never a silent 0
    tl.store(loss_ptr + r, loss.to(loss_ptr.dtype.element_ty), mask=rm)
    tl.store(wt_ptr + r, w_t, mask=rm)


@triton.jit
def _ce_reduce(loss_ptr, wt_ptr, out_ptr, den_ptr, rows, MEAN: tl.constexpr, ACC: tl.constexpr,
               BLOCK: tl.constexpr):
    total = tl.zeros([BLOCK], ACC)
    den = tl.zeros([BLOCK], ACC)
    for r0 in range(0, rows, BLOCK):
        r = r0 + tl.arange(0, BLOCK)
        total += tl.load(loss_ptr + r, mask=r < rows, other=0.0)
        if MEAN:
            den += tl.load(wt_ptr + r, mask=r < rows, other=0.0)
    total_s = tl.sum(total, axis=0)
    if MEAN:
        den_s = tl.sum(den, axis=0)
        tl.store(den_ptr, den_s)
        total_s = total_s / den_s  # 0 / 0 is NaN, as torch's mean over no kept row
    tl.store(out_ptr, total_s.to(out_ptr.dtype.element_ty))


@triton.jit
def _ce_den(t_ptr, t_s, w_ptr, den_ptr, rows, C, ignore_index, HAS_W: tl.constexpr, ACC: tl.constexpr,
            BLOCK: tl.constexpr):
    den = tl.zeros([BLOCK], ACC)
    for r0 in range(0, rows, BLOCK):
        r = r0 + tl.arange(0, BLOCK)
        den += _row_weights(t_ptr, t_s, w_ptr, r, r < rows, C, ignore_index, HAS_W, ACC)[3]
    tl.store(den_ptr, tl.sum(den, axis=0))


@triton.jit
def _ce_bwd(lp_ptr, t_ptr, t_s, w_ptr, wsum_ptr, g_ptr, g_s, den_ptr, gx_ptr, rows, C, ignore_index, eps: tl.float64,
            HAS_W: tl.constexpr, SMOOTH: tl.constexpr, RED: tl.constexpr, ACC: tl.constexpr,
            BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    t, valid, inside, w_t = _row_weights(t_ptr, t_s, w_ptr, r, rm, C, ignore_index, HAS_W, ACC)
    if RED == 0:
        g = tl.load(g_ptr + r * g_s, mask=rm, other=0.0).to(ACC)
    else:
        g = tl.zeros([BLOCK_R], ACC) + tl.load(g_ptr).to(ACC)
        if RED == 1:
            g = g / tl.load(den_ptr).to(ACC)
    g = tl.where(valid, g, 0.0)  # NOTE: ignored rows get exactly 0, even where g is inf/NaN
    g = tl.where(valid & ~inside, float("nan"), g)  # a class out of range: a NaN row
    onehot = g * w_t
    row_sum = onehot
    if SMOOTH:
        onehot = onehot * (1.0 - tl.cast(eps, ACC))
        smooth = g * (tl.cast(eps, ACC) / C)
        if HAS_W:  # Σ_c w_c, summed once for all programs
            row_sum = onehot + smooth * tl.load(wsum_ptr).to(ACC)
        else:
            row_sum = onehot + smooth * C
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        msk = rm[:, None] & (cols < C)[None, :]
        lp = tl.load(lp_ptr + r[:, None] * C + cols[None, :], mask=msk, other=0.0).to(ACC)
        grad = tl.exp(lp) * row_sum[:, None] - tl.where(cols[None, :] == t[:, None], onehot[:, None], 0.0)
        if SMOOTH:
            if HAS_W:
                w_c = tl.load(w_ptr + cols, mask=cols < C, other=0.0).to(ACC)
                grad -= smooth[:, None] * w_c[None, :]
            else:
                grad -= smooth[:, None]
        tl.store(gx_ptr + r[:, None] * C + cols[None, :], grad.to(gx_ptr.dtype.element_ty), mask=msk)


def _blocks(rows, C):
    block_c = min(triton.next_power_of_2(max(C, 1)), _MAX_BLOCK_C)
    block_r = max(1, min(_BLOCK_ELEMS // block_c, triton.next_power_of_2(max(rows, 1))))
    return block_r, block_c


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _forward(x, target, weight, ignore_index, reduction, label_smoothing, traced=False):
    rows, C = x.shape
    if x.stride(1) != 1:
        x = x.contiguous()
    red = _REDUCTIONS[reduction]
    acc = _acc_dtype(x.dtype)
    logp = torch.empty((rows, C), dtype=x.dtype, device=x.device)
    loss = torch.empty(rows, dtype=x.dtype if red == 0 else acc, device=x.device)
    w_t = torch.empty(rows, dtype=acc, device=x.device)
    w = weight if weight is None or weight.is_contiguous() else weight.contiguous()
    block_r, block_c = _blocks(rows, C)
    if rows:  # C == 0 too: every kept row's class is then out of range (NaN), ignored rows 0
        kernel(_ce_fwd, traced)[(triton.cdiv(rows, block_r),)](
            x, x.stride(0), target, target.stride(0), x if w is None else w, logp, loss, w_t, rows, C,
            int(ignore_index), float(label_smoothing),
            HAS_W=w is not None, SMOOTH=label_smoothing > 0, ONE=C <= block_c, ACC=acc_type(x.dtype),
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=_WARPS,
        )
    if red == 0:
        return loss, logp, None
    out = torch.empty((), dtype=x.dtype, device=x.device)
    den = torch.empty((), dtype=acc, device=x.device) if red == 1 else None
    kernel(_ce_reduce, traced)[(1,)](
        loss, w_t, out, out if den is None else den, rows, MEAN=red == 1, ACC=acc_type(x.dtype), BLOCK=1024
    )
    return out, logp, den


def _denominator(target, weight, C, ignore_index, dtype, traced=False):
    acc = _acc_dtype(dtype)
    den = torch.empty((), dtype=acc, device=target.device)
    w = weight if weight is None or weight.is_contiguous() else weight.contiguous()
    kernel(_ce_den, traced)[(1,)](
        target, target.stride(0), den if w is None else w, den, target.shape[0], C, int(ignore_index),
        HAS_W=w is not None, ACC=acc_type(dtype), BLOCK=1024,
    )
    return den


def _backward(grad_out, logp, target, weight, ignore_index, reduction, label_smoothing, denom=None, traced=False):
    rows, C = logp.shape
    logp = logp if logp.is_contiguous() else logp.contiguous()
    red = _REDUCTIONS[reduction]
    w = weight if weight is None or weight.is_contiguous() else weight.contiguous()
    if red == 1 and denom is None:
        denom = _denominator(target, w, C, ignore_index, logp.dtype, traced)
    gx = torch.empty((rows, C), dtype=logp.dtype, device=logp.device)
    block_r, block_c = _blocks(rows, C)
    if rows and C:
        g = grad_out.reshape(-1) if red == 0 else grad_out
        # with smoothing, every row needs Σ_c w_c: one reduction here, not one per program
        w_sum = w.sum(dtype=_acc_dtype(logp.dtype)) if w is not None and label_smoothing > 0 else None
        kernel(_ce_bwd, traced)[(triton.cdiv(rows, block_r),)](
            logp, target, target.stride(0), logp if w is None else w, logp if w_sum is None else w_sum, g,
            g.stride(0) if red == 0 else 0, logp if denom is None else denom, gx, rows, C, int(ignore_index),
            float(label_smoothing), HAS_W=w is not None, SMOOTH=label_smoothing > 0, RED=red,
            ACC=acc_type(logp.dtype), BLOCK_R=block_r, BLOCK_C=block_c, num_warps=_WARPS,
        )
    return gx


@register("cross_entropy_forward")
def _cross_entropy_forward_op(
    x: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str, label_smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    loss, logp, den = _forward(x, target, weight, ignore_index, reduction, label_smoothing, traced=True)
    return loss, logp, (x.new_empty(0) if den is None else den)


@register("cross_entropy_backward")
def _cross_entropy_backward_op(
    grad_out: Tensor, logp: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
    label_smoothing: float, denom: Optional[Tensor],
) -> Tensor:
    return _backward(grad_out, logp, target, weight, ignore_index, reduction, label_smoothing, denom, traced=True)


def forward(x: Tensor, target: Tensor, weight: Optional[Tensor] = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0):
    """``(loss, logp, denom)`` for ``(rows, C)`` logits ``x`` and ``(rows,)`` class indices (any integer dtype).

    ``loss``: ``(rows,)`` for ``'none'`` (ignored rows 0), else 0-dim, in ``x``'s dtype. ``logp``:
    ``log_softmax(x, 1)``, ``(rows, C)`` contiguous, what the reference saves and reads. ``denom``:
    for ``'mean'`` the 0-dim ``Σ w_t`` over kept rows (float32, float64 for float64), else None; pass
    it to :func:`backward` to spare it a reduction. Targets must lie in ``[0, C)`` or be ``ignore_index``
    (not checked here).
    """
    if torch.compiler.is_compiling():
        loss, logp, den = op("cross_entropy_forward")(x, target, weight, ignore_index, reduction, label_smoothing)
        return loss, logp, (den if reduction == "mean" else None)
    return _forward(x, target, weight, ignore_index, reduction, label_smoothing)


def backward(grad_out: Tensor, logp: Tensor, target: Tensor, weight: Optional[Tensor] = None, ignore_index: int = -100,
             reduction: str = "mean", label_smoothing: float = 0.0, denom: Optional[Tensor] = None) -> Tensor:
    """``dL/dx`` as a new ``(rows, C)`` tensor of ``logp``'s dtype, one pass; ``grad_out`` is ``(rows,)``
    (any stride) for ``'none'``, else 0-dim. ``denom`` as :func:`forward` gave it (for ``'mean'``), or None:
    then recomputed on the device."""
    if torch.compiler.is_compiling():
        return op("cross_entropy_backward")(grad_out, logp, target, weight, ignore_index, reduction, label_smoothing, denom)
    return _backward(grad_out, logp, target, weight, ignore_index, reduction, label_smoothing, denom)
