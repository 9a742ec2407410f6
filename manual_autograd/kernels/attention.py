"""Scaled-dot-product attention, FlashAttention-2: ``q (B, H, L, E)``, ``k (B, H, S, E)``, ``v (B, H, S, Ev)``,
``s = scale · q kᵀ`` (causal: query ``i`` sees keys ``j ≤ i``, torch's top-left ``tril``), ``P = softmax(s)``.

* forward, one program per (query block, batch·head): an online softmax over key blocks (causal:
  blocks right of the diagonal skipped), accumulated in float32 (float64 for float64); writes
  ``out = P v`` and one ``lse = logsumexp_j s_ij`` per query row, never ``P``;
* backward: ``D = rowsum(dO ∘ out)``; one program per key block ``dV = Pᵀ dO``, ``dK = scale · dSᵀ q``
  over the query blocks; one program per query block ``dQ = scale · dS k`` over the key blocks (no
  atomics: deterministic); ``P = exp(s − lse)`` recomputed blockwise, ``dS = P ∘ (dO vᵀ − D)``.

Any strides (each tensor's four are passed); head dims padded to a power of two (at least 16, what
``tl.dot`` takes) by masks, sequence tails by masks. A row that sees no key (``S == 0``) gives 0 and
``lse = -inf``, as torch does. ``tl.dot`` in float32 runs in IEEE float32 (as torch's SDPA), not TF32.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import acc_type, interpreting, kernel, op, register


@triton.jit
def _online_step(m, l, s):
    """Fold a ``(rows, cols)`` block of scores into the running row max ``m`` and ``l = Σ exp(s − m)``,
    as ``cross_entropy.lse_step`` does; returns also what the ``P v`` accumulator needs and lse_step
    drops: ``alpha``, the rescale of what was summed before, and the block ``p = exp(s − m)``."""
    mx = tl.maximum(m, tl.max(s, axis=1))
    # NOTE: the state keeps the raw max (-inf while all is -inf); only the shift is 0 then, never
    # -inf − -inf (as lse_step): a row whose visible keys have not started yet stays exactly empty.
    sh = tl.where(mx == float("-inf"), 0.0, mx)
    alpha = tl.exp(m - sh)
    p = tl.exp(s - sh[:, None])
    return mx, l * alpha + tl.sum(p, axis=1), alpha, p


@triton.jit
def _block(n, BLOCK: tl.constexpr):
    """``(first row, batch·head)`` of this program: one flat grid, a head's blocks side by side (they
    share its keys in L2), with no cap on the count of heads (a 2-D grid's second axis stops at 65535)."""
    blocks = tl.cdiv(n, BLOCK)
    pid = tl.program_id(0)
    return (pid % blocks) * BLOCK, pid // blocks


@triton.jit
def _visible(i, j, L, S, CAUSAL: tl.constexpr):
    """``(len(i), len(j))``: query ``i`` sees key ``j`` (both inside, and ``j ≤ i`` when causal)."""
    ok = (i < L)[:, None] & (j < S)[None, :]
    if CAUSAL:
        ok = ok & (j[None, :] <= i[:, None])
    return ok


@triton.jit
def _attn_fwd(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
              sqb, sqh, sql, sqe, skb, skh, sks, ske, svb, svh, svs, sve, sob, soh, sol, soe,
              H, L, S, E, EV, scale: tl.float64,
              CAUSAL: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    m0, bh = _block(L, BLOCK_M)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    o_ptr += b * sob + h * soh
    i = m0 + tl.arange(0, BLOCK_M)
    e = tl.arange(0, BLOCK_E)
    ev = tl.arange(0, BLOCK_EV)
    sc = tl.full([], scale, ACC)  # not tl.cast: the interpreter would round a Python float to float32 first
    q = tl.load(q_ptr + i[:, None] * sql + e[None, :] * sqe, mask=(i < L)[:, None] & (e < E)[None, :], other=0.0)
    m = tl.full([BLOCK_M], float("-inf"), ACC)
    l = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_EV], ACC)
    hi = S
    if CAUSAL:  # key blocks right of the diagonal hold no visible key
        hi = tl.minimum(S, m0 + BLOCK_M)
    for n0 in range(0, hi, BLOCK_N):
        j = n0 + tl.arange(0, BLOCK_N)
        kt = tl.load(k_ptr + j[None, :] * sks + e[:, None] * ske, mask=(j < S)[None, :] & (e < E)[:, None], other=0.0)
        s = tl.dot(q, kt, input_precision="ieee", out_dtype=ACC) * sc
        s = tl.where(_visible(i, j, L, S, CAUSAL), s, float("-inf"))
        m, l, alpha, p = _online_step(m, l, s)
        vb = tl.load(v_ptr + j[:, None] * svs + ev[None, :] * sve, mask=(j < S)[:, None] & (ev < EV)[None, :], other=0.0)
        acc = tl.dot(p.to(vb.dtype), vb, acc * alpha[:, None], input_precision="ieee")
    out = acc / l[:, None]
    tl.store(o_ptr + i[:, None] * sol + ev[None, :] * soe, out.to(o_ptr.dtype.element_ty),
             mask=(i < L)[:, None] & (ev < EV)[None, :])
    tl.store(lse_ptr + bh.to(tl.int64) * L + i, (m + tl.log(l)).to(lse_ptr.dtype.element_ty), mask=i < L)


@triton.jit
def _attn_bwd_pre(o_ptr, g_ptr, d_ptr, sob, soh, sol, soe, sgb, sgh, sgl, sge, H, L, EV,
                  ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_EV: tl.constexpr):
    m0, bh = _block(L, BLOCK_M)
    i = m0 + tl.arange(0, BLOCK_M)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    ev = tl.arange(0, BLOCK_EV)
    msk = (i < L)[:, None] & (ev < EV)[None, :]
    o = tl.load(o_ptr + b * sob + h * soh + i[:, None] * sol + ev[None, :] * soe, mask=msk, other=0.0).to(ACC)
    g = tl.load(g_ptr + b * sgb + h * sgh + i[:, None] * sgl + ev[None, :] * sge, mask=msk, other=0.0).to(ACC)
    tl.store(d_ptr + bh.to(tl.int64) * L + i, tl.sum(o * g, axis=1), mask=i < L)


@triton.jit
def _attn_bwd_kv(q_ptr, k_ptr, v_ptr, g_ptr, lse_ptr, d_ptr, dk_ptr, dv_ptr,
                 sqb, sqh, sql, sqe, skb, skh, sks, ske, svb, svh, svs, sve, sgb, sgh, sgl, sge,
                 sdkb, sdkh, sdks, sdke, sdvb, sdvh, sdvs, sdve,
                 H, L, S, E, EV, scale: tl.float64,
                 CAUSAL: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    n0, bh = _block(S, BLOCK_N)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    q_ptr += b * sqb + h * sqh
    g_ptr += b * sgb + h * sgh
    lse_ptr += bh.to(tl.int64) * L
    d_ptr += bh.to(tl.int64) * L
    j = n0 + tl.arange(0, BLOCK_N)
    e = tl.arange(0, BLOCK_E)
    ev = tl.arange(0, BLOCK_EV)
    sc = tl.full([], scale, ACC)  # not tl.cast: the interpreter would round a Python float to float32 first
    km = (j < S)[:, None] & (e < E)[None, :]
    vm = (j < S)[:, None] & (ev < EV)[None, :]
    kb = tl.load(k_ptr + b * skb + h * skh + j[:, None] * sks + e[None, :] * ske, mask=km, other=0.0)
    vb = tl.load(v_ptr + b * svb + h * svh + j[:, None] * svs + ev[None, :] * sve, mask=vm, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_E], ACC)
    dv = tl.zeros([BLOCK_N, BLOCK_EV], ACC)
    lo = 0
    if CAUSAL:  # query blocks above the diagonal see none of these keys
        lo = (n0 // BLOCK_M) * BLOCK_M
    for m0 in range(lo, L, BLOCK_M):
        i = m0 + tl.arange(0, BLOCK_M)
        qt = tl.load(q_ptr + i[None, :] * sql + e[:, None] * sqe, mask=(i < L)[None, :] & (e < E)[:, None], other=0.0)
        gt = tl.load(g_ptr + i[None, :] * sgl + ev[:, None] * sge, mask=(i < L)[None, :] & (ev < EV)[:, None], other=0.0)
        lse = tl.load(lse_ptr + i, mask=i < L, other=0.0).to(ACC)
        dd = tl.load(d_ptr + i, mask=i < L, other=0.0).to(ACC)
        st = tl.dot(kb, qt, input_precision="ieee", out_dtype=ACC) * sc  # sᵀ: (keys, queries)
        pt = tl.where(_visible(j, i, S, L, False), tl.exp(st - lse[None, :]), 0.0)
        if CAUSAL:
            pt = tl.where(j[:, None] <= i[None, :], pt, 0.0)
        dv = tl.dot(pt.to(gt.dtype), tl.trans(gt), dv, input_precision="ieee")
        dpt = tl.dot(vb, gt, input_precision="ieee", out_dtype=ACC)
        dst = pt * (dpt - dd[None, :])
        dk = tl.dot(dst.to(qt.dtype), tl.trans(qt), dk, input_precision="ieee")
    dk = dk * sc
    tl.store(dk_ptr + b * sdkb + h * sdkh + j[:, None] * sdks + e[None, :] * sdke, dk.to(dk_ptr.dtype.element_ty), mask=km)
    tl.store(dv_ptr + b * sdvb + h * sdvh + j[:, None] * sdvs + ev[None, :] * sdve, dv.to(dv_ptr.dtype.element_ty), mask=vm)


@triton.jit
def _attn_bwd_q(q_ptr, k_ptr, v_ptr, g_ptr, lse_ptr, d_ptr, dq_ptr,
                sqb, sqh, sql, sqe, skb, skh, sks, ske, svb, svh, svs, sve, sgb, sgh, sgl, sge,
                sdqb, sdqh, sdql, sdqe,
                H, L, S, E, EV, scale: tl.float64,
                CAUSAL: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    m0, bh = _block(L, BLOCK_M)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    i = m0 + tl.arange(0, BLOCK_M)
    e = tl.arange(0, BLOCK_E)
    ev = tl.arange(0, BLOCK_EV)
    sc = tl.full([], scale, ACC)  # not tl.cast: the interpreter would round a Python float to float32 first
    qm = (i < L)[:, None] & (e < E)[None, :]
    qb = tl.load(q_ptr + b * sqb + h * sqh + i[:, None] * sql + e[None, :] * sqe, mask=qm, other=0.0)
    gb = tl.load(g_ptr + b * sgb + h * sgh + i[:, None] * sgl + ev[None, :] * sge,
                 mask=(i < L)[:, None] & (ev < EV)[None, :], other=0.0)
    lse = tl.load(lse_ptr + bh.to(tl.int64) * L + i, mask=i < L, other=0.0).to(ACC)
    dd = tl.load(d_ptr + bh.to(tl.int64) * L + i, mask=i < L, other=0.0).to(ACC)
    dq = tl.zeros([BLOCK_M, BLOCK_E], ACC)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, m0 + BLOCK_M)
    for n0 in range(0, hi, BLOCK_N):
        j = n0 + tl.arange(0, BLOCK_N)
        kt = tl.load(k_ptr + j[None, :] * sks + e[:, None] * ske, mask=(j < S)[None, :] & (e < E)[:, None], other=0.0)
        vt = tl.load(v_ptr + j[None, :] * svs + ev[:, None] * sve, mask=(j < S)[None, :] & (ev < EV)[:, None], other=0.0)
        s = tl.dot(qb, kt, input_precision="ieee", out_dtype=ACC) * sc
        p = tl.where(_visible(i, j, L, S, CAUSAL), tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(gb, vt, input_precision="ieee", out_dtype=ACC)
        ds = p * (dp - dd[:, None])
        dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision="ieee")
    tl.store(dq_ptr + b * sdqb + h * sdqh + i[:, None] * sdql + e[None, :] * sdqe, (dq * sc).to(dq_ptr.dtype.element_ty),
             mask=qm)


def _pad(d):
    return max(16, triton.next_power_of_2(d))  # tl.arange takes powers of two; tl.dot at least 16


# (BLOCK_M, BLOCK_N, num_warps) per kernel, for head dims (padded) up to 64 / up to 128 / wider: the
# largest that ptxas fits in registers without spilling on sm_90 (tests/compile_kernels.py). float32
# is IEEE, through FMAs rather than tensor cores: smaller tiles than the 16-bit types.
_TILES = {
    "half": {"fwd": ((128, 64, 4), (128, 64, 8), (64, 32, 8)), "kv": ((32, 64, 4), (16, 64, 8), (16, 32, 8)),
             "q": ((64, 32, 4), (64, 16, 8), (32, 16, 8))},
    "fp32": {"fwd": ((64, 32, 8), (32, 16, 8), (16, 16, 8)), "kv": ((32, 32, 4), (32, 32, 8), (16, 16, 8)),
             "q": ((32, 32, 4), (32, 32, 8), (16, 16, 8))},
    "fp64": dict.fromkeys(("fwd", "kv", "q"), ((32, 32, 4), (32, 32, 8), (16, 16, 8))),
}
_PRE_BLOCK = 32  # rows per program of D = rowsum(dO ∘ out)


def _tiles(which, dtype, d):
    """``(BLOCK_M, BLOCK_N, num_warps)`` of kernel ``which`` ('fwd' | 'kv' | 'q') for ``dtype`` and the
    padded head dim ``d`` (the larger of E, Ev). The interpreter runs every block through numpy: 16 × 16
    tiles keep it fast and make short test sequences cross several blocks."""
    if interpreting():
        return 16, 16, 4
    kind = {torch.float32: "fp32", torch.float64: "fp64"}.get(dtype, "half")
    return _TILES[kind][which][0 if d <= 64 else 1 if d <= 128 else 2]


def _lse_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _forward(q, k, v, is_causal, scale, traced=False):
    B, H, L, E = q.shape
    S, EV = k.shape[2], v.shape[3]
    out = q.new_empty((B, H, L, EV))
    lse = torch.empty((B, H, L), dtype=_lse_dtype(q.dtype), device=q.device)
    if S == 0:  # no key: torch's softmax over nothing gives 0 rows, its log-sum-exp -inf
        return out.zero_(), lse.fill_(float("-inf"))
    if B * H * L == 0:
        return out, lse
    be, bev = _pad(E), _pad(EV)
    bm, bn, warps = _tiles("fwd", q.dtype, max(be, bev))
    kernel(_attn_fwd, traced)[(triton.cdiv(L, bm) * B * H,)](
        q, k, v, out, lse, *q.stride(), *k.stride(), *v.stride(), *out.stride(), H, L, S, E, EV, float(scale),
        CAUSAL=bool(is_causal), ACC=acc_type(q.dtype), BLOCK_M=bm, BLOCK_N=bn, BLOCK_E=be, BLOCK_EV=bev,
        num_warps=warps,
    )
    return out, lse


def _backward(q, k, v, out, lse, grad_out, is_causal, scale, traced=False):
    B, H, L, E = q.shape
    S, EV = k.shape[2], v.shape[3]
    if B * H * L * S == 0:  # nothing seen by anyone: every gradient is 0
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    lse = lse if lse.is_contiguous() else lse.contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    be, bev = _pad(E), _pad(EV)
    acc, causal, sc = acc_type(q.dtype), bool(is_causal), float(scale)
    dd = torch.empty((B, H, L), dtype=lse.dtype, device=q.device)
    kernel(_attn_bwd_pre, traced)[(triton.cdiv(L, _PRE_BLOCK) * B * H,)](
        out, grad_out, dd, *out.stride(), *grad_out.stride(), H, L, EV, ACC=acc, BLOCK_M=_PRE_BLOCK, BLOCK_EV=bev
    )
    common = (*q.stride(), *k.stride(), *v.stride(), *grad_out.stride())
    bm, bn, warps = _tiles("kv", q.dtype, max(be, bev))
    kernel(_attn_bwd_kv, traced)[(triton.cdiv(S, bn) * B * H,)](
        q, k, v, grad_out, lse, dd, dk, dv, *common, *dk.stride(), *dv.stride(), H, L, S, E, EV, sc,
        CAUSAL=causal, ACC=acc, BLOCK_M=bm, BLOCK_N=bn, BLOCK_E=be, BLOCK_EV=bev, num_warps=warps,
    )
    bm, bn, warps = _tiles("q", q.dtype, max(be, bev))
    kernel(_attn_bwd_q, traced)[(triton.cdiv(L, bm) * B * H,)](
        q, k, v, grad_out, lse, dd, dq, *common, *dq.stride(), H, L, S, E, EV, sc,
        CAUSAL=causal, ACC=acc, BLOCK_M=bm, BLOCK_N=bn, BLOCK_E=be, BLOCK_EV=bev, num_warps=warps,
    )
    return dq, dk, dv


@register("attention_forward")
def _attention_forward_op(q: Tensor, k: Tensor, v: Tensor, is_causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    return _forward(q, k, v, is_causal, scale, traced=True)


@register("attention_backward")
def _attention_backward_op(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool,
                           scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return _backward(q, k, v, out, lse, grad_out, is_causal, scale, traced=True)


def forward(q: Tensor, k: Tensor, v: Tensor, is_causal: bool, scale: Optional[float]) -> tuple[Tensor, Tensor]:
    """``(out, lse)``: ``out = softmax(scale · q kᵀ [causal]) v`` of shape ``(B, H, L, Ev)`` and q's dtype,
    ``lse (B, H, L)`` the rows' log-sum-exp (float32 for float16/bfloat16, else q's dtype). Any strides;
    ``scale`` None means ``1/√E``. No mask, dropout or head grouping: the op takes the reference there."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if torch.compiler.is_compiling():
        return op("attention_forward")(q, k, v, is_causal, scale)
    return _forward(q, k, v, is_causal, scale)


def backward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool,
             scale: Optional[float]) -> tuple[Tensor, Tensor, Tensor]:
    """``(dq, dk, dv)`` in the dtypes (and, when dense, the layouts) of ``q, k, v``, from the forward's
    ``out`` and ``lse``: the probabilities recomputed blockwise, never stored."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if torch.compiler.is_compiling():
        return op("attention_backward")(q, k, v, out, lse, grad_out, is_causal, scale)
    return _backward(q, k, v, out, lse, grad_out, is_causal, scale)
