"""Scaled dot-product attention: ``out = softmax(s) v`` with ``s = scale · q kᵀ + mask``, over blocks of keys.

* forward: per block of keys, the block's scores ``s``, then an online log-sum-exp (running max
  ``m``, running sum ``l``) and the running ``Σ exp(s − m) v``; ``lse = m + log l`` per query row
  is a second output. The ``(L, S)`` probabilities never exist whole: the peak grows as
  ``L · block``, not ``L · S``;
* backward, per block of keys (``P`` recomputed): ``P = exp(s − lse)``, ``dV += Pᵀ dO``,
  ``dP = dO Vᵀ``, ``dS = P ∘ (dP − D)`` with ``D = rowsum(dO ∘ O)``, ``dQ += dS K · scale``,
  ``dK += dSᵀ Q · scale``, ``d mask = dS`` (a float mask); a gradient reaching ``lse`` (double
  backward) adds ``P ∘ g_lse`` to ``dS``;
* dropout: ``P ∘ keep / (1 − p)``, ``keep`` drawn per block of keys from a generator seeded with
  ``seed + block index`` (the seed an int from torch's generator), drawn again in backward;
* saved: ``q``, ``k``, ``v``, the mask (inputs), ``out`` and ``lse`` (float32 for half inputs);
* bytes per element of the ``(L, S)`` scores: none (``lse``: one value per query row).

Masks: ``attn_mask`` bool (True takes part) or float (added); ``is_causal``: query ``i`` sees key
``j ≤ i`` (torch's top-left ``tril`` of an ``(L, S)`` ones matrix, also when ``L ≠ S``). A row
that sees no key gives ``out = 0`` and gradient 0, as torch's ``scaled_dot_product_attention``
(its math backend and its fused CPU kernel alike; the softmax a user writes gives NaN); its
``lse`` is ``−inf``. Batch dims broadcast as in ``matmul``, so grouped-query attention is a
view (``q`` as ``(…, Hkv, G, L, E)`` against ``k`` as ``(…, Hkv, 1, S, E)``), never a copy.
"""

from __future__ import annotations

import math

import torch

from .. import backend
from .base import Function, cast_like, in_dim_order, in_place, opmath, save_for_jvp

__all__ = ["AttentionFunction", "KEY_BLOCK", "attention_forward", "attention_backward"]

KEY_BLOCK = 256  # keys per block: the scores of one block, (…, L, KEY_BLOCK), are the largest temporary

_NEG_INF = -math.inf


class AttentionFunction(Function):
    """``(q, k, v, mask, dropout_p, is_causal, scale, seed, block)`` → ``(out, lse)``; see the
    module docstring for the math and what is saved."""

    @staticmethod
    def forward(q, k, v, mask, dropout_p, is_causal, scale, seed, block):
        if mask is None and dropout_p == 0 and _same_batch(q, k, v) and backend.kernels_for(q, k, v):
            out, lse = _kernel_forward(q, k, v, is_causal, scale)
        else:
            out, lse = attention_forward(q, k, v, mask, dropout_p, is_causal, scale, seed, block)
        # the output in q's layout, as torch's: for heads-last q (…, L, H, E).transpose, the caller's
        # transpose-and-reshape before the output projection is then a view of the saved output
        return in_dim_order(out, q), lse

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        q, k, v, mask, dropout_p, is_causal, scale, seed, block = inputs
        out, lse = outputs
        ctx.set_materialize_grads(False)  # lse's gradient is None but in double backward
        ctx.dropout_p, ctx.is_causal, ctx.scale, ctx.seed, ctx.block = dropout_p, is_causal, scale, seed, block
        ctx.save_for_backward(q, k, v, mask, out, lse)
        save_for_jvp(ctx, q, k, v, mask, out, lse)

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, mask, out, lse = ctx.saved_tensors
        if grad_out is None and grad_lse is None:
            return (None,) * 9
        if (
            grad_lse is None and mask is None and ctx.dropout_p == 0 and _same_batch(q, k, v)
            and backend.kernels_for(q, grad_out, grad=True)
        ):
            return (*_kernel_backward(q, k, v, out, lse, grad_out, ctx.is_causal, ctx.scale), None, None, None, None, None, None)
        grads = attention_backward(
            q, k, v, mask, out, lse, grad_out, grad_lse, ctx.dropout_p, ctx.is_causal, ctx.scale, ctx.seed, ctx.block,
            ctx.needs_input_grad[:4],
        )
        return (*grads, None, None, None, None, None)

    @staticmethod
    def forward_ad(ctx, q_t, k_t, v_t, mask_t, *_):
        q, k, v, mask, out, lse = ctx.saved_tensors
        p, scale = ctx.dropout_p, ctx.scale
        qs, lse_ = opmath(q) * scale, _safe_lse(lse)
        qs_t = None if q_t is None else opmath(q_t) * scale
        lse_t = out_p = out_v = 0.0
        for i, (s0, s1) in enumerate(_blocks(k.shape[-2], ctx.block)):
            kb, vb = opmath(k[..., s0:s1, :]), opmath(v[..., s0:s1, :])
            P = torch.exp(_scores(qs, kb, mask, ctx.is_causal, s0, s1) - lse_)
            Pd = P if p == 0 else P * _keep(ctx.seed, i, P, p) * _dropout_scale(p)
            # NOTE: d s = scale (dq kᵀ + q dkᵀ) + d mask; d lse = Σ_j P d s; d out = Σ_j Pd (d s − d lse) v + Pd dv
            s_t = 0.0
            if qs_t is not None:
                s_t = s_t + torch.matmul(qs_t, kb.transpose(-1, -2))
            if k_t is not None:
                s_t = s_t + torch.matmul(qs, opmath(k_t[..., s0:s1, :]).transpose(-1, -2))
            if mask_t is not None:
                s_t = s_t + _cols(mask_t, s0, s1)
            if not isinstance(s_t, float):
                lse_t = lse_t + (P * s_t).sum(-1)
                out_p = out_p + torch.matmul(Pd * s_t, vb)
            if v_t is not None:
                out_v = out_v + torch.matmul(Pd, opmath(v_t[..., s0:s1, :]))
        out_t = out_v if isinstance(out_p, float) else out_p - lse_t.unsqueeze(-1) * opmath(out) + out_v
        out_t = _zeros_if_float(out_t, out)
        lse_t = _zeros_if_float(lse_t, lse)
        return cast_like(out_t, out), cast_like(lse_t, lse)


def attention_forward(q, k, v, mask, dropout_p, is_causal, scale, seed, block):
    """The forward in torch ops, one block of keys at a time: ``(out, lse)``."""
    L, S, Ev = q.shape[-2], k.shape[-2], v.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    qs = opmath(q) * scale
    fast = _fast()  # in place on this loop's own temporaries, outside torch.func and tracing
    m = qs.new_full((*batch, L, 1), _NEG_INF)  # running max of the scores per row
    l = qs.new_zeros((*batch, L, 1))  # running Σ exp(s − m)
    acc = qs.new_zeros((*batch, L, Ev))  # running Σ exp(s − m) keep v
    for i, (s0, s1) in enumerate(_blocks(S, block)):
        s = _scores(qs, opmath(k[..., s0:s1, :]), mask, is_causal, s0, s1, fast)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        # NOTE: a row that has seen only −inf keeps m = −inf; shift it by 0, so exp(−inf − 0) = 0, not NaN
        shift = torch.where(m_new == _NEG_INF, 0.0, m_new)
        alpha = torch.exp(m - shift)
        pr = s.sub_(shift).exp_() if fast else torch.exp(s - shift)
        l = l.mul_(alpha).add_(pr.sum(-1, keepdim=True)) if fast else l * alpha + pr.sum(-1, keepdim=True)
        if dropout_p > 0:
            pr = pr * _keep(seed, i, pr, dropout_p)
        pv = torch.matmul(pr, opmath(v[..., s0:s1, :]))
        acc = acc.mul_(alpha).add_(pv) if fast else acc * alpha + pv
        m = m_new
    shift = torch.where(m == _NEG_INF, 0.0, m)
    # a row that sees no key (l = 0, acc = 0): out = 0 and lse = −inf, as torch's CPU kernel
    out = acc / torch.where(l == 0, 1.0, l)
    f = _dropout_scale(dropout_p)
    if f != 1.0:
        out = out * f
    return cast_like(out, q), (shift + torch.log(l)).squeeze(-1)


def attention_backward(q, k, v, mask, out, lse, grad_out, grad_lse, dropout_p, is_causal, scale, seed, block, needs):
    """``(dq, dk, dv, dmask)`` in differentiable torch ops, the probabilities recomputed per block
    of keys; ``needs`` the four ``needs_input_grad`` flags."""
    need_q, need_k, need_v, need_m = needs
    S = k.shape[-2]
    qs, lse_ = opmath(q) * scale, _safe_lse(lse)
    go = None if grad_out is None else opmath(grad_out)
    D = None if go is None else (go * opmath(out)).sum(-1, keepdim=True)
    f = _dropout_scale(dropout_p)
    fast = in_place(grad_out) if grad_out is not None else False  # in place on the loop's temporaries
    dq, dks, dvs, dms = 0.0, [], [], []
    for i, (s0, s1) in enumerate(_blocks(S, block)):
        kb, vb = opmath(k[..., s0:s1, :]), opmath(v[..., s0:s1, :])
        P = _scores(qs, kb, mask, is_causal, s0, s1, fast)
        P = P.sub_(lse_).exp_() if fast else torch.exp(P - lse_)
        dS = 0.0
        if go is not None:
            keep = None if dropout_p == 0 else _keep(seed, i, P, dropout_p)
            if need_v:
                Pd = P if keep is None else P * keep * f
                dvs.append(torch.matmul(Pd.transpose(-1, -2), go).sum_to_size(*v.shape[:-2], s1 - s0, v.shape[-1]))
            if need_q or need_k or need_m:
                dP = torch.matmul(go, vb.transpose(-1, -2))
                if keep is not None:
                    dP = dP * keep * f
                dS = dP.sub_(D).mul_(P) if fast else P * (dP - D)
        if grad_lse is not None and (need_q or need_k or need_m):
            dS = dS + P * opmath(grad_lse).unsqueeze(-1)
        if isinstance(dS, float):
            continue
        if need_q:
            dSk = torch.matmul(dS, kb)
            dq = dq.add_(dSk) if fast and not isinstance(dq, float) else dq + dSk
        if need_k:
            dks.append(torch.matmul(dS.transpose(-1, -2), qs).sum_to_size(*k.shape[:-2], s1 - s0, k.shape[-1]))
        if need_m:
            dms.append(dS.sum(-1, keepdim=True) if mask.shape[-1] == 1 else dS)
    grad_q = grad_k = grad_v = grad_m = None
    if need_q:
        grad_q = cast_like((_zeros_if_float(dq, q) * scale).sum_to_size(q.shape), q)
    if need_k:
        grad_k = cast_like(torch.cat(dks, -2), k) if dks else torch.zeros_like(k)
    if need_v:
        grad_v = cast_like(torch.cat(dvs, -2), v) if dvs else torch.zeros_like(v)
    if need_m:
        if not dms:
            grad_m = torch.zeros_like(mask)
        else:
            dm = sum(dms) if mask.shape[-1] == 1 else torch.cat(dms, -1)
            grad_m = cast_like(dm.sum_to_size(mask.shape), mask)
    return grad_q, grad_k, grad_v, grad_m


def _blocks(S, block):
    return [(s0, min(s0 + block, S)) for s0 in range(0, S, block)]


def _cols(t, s0, s1):
    """Columns ``s0:s1`` of a mask (or its tangent) broadcast along keys: a size-1 last dim stays."""
    return t if t.shape[-1] == 1 else t[..., s0:s1]


def _scores(qs, kb, mask, is_causal, s0, s1, fast=False):
    """``(scale q) kbᵀ`` for keys ``s0:s1``, masked: −inf where a bool mask is False or the causal
    mask hides the key, plus a float mask (in place on the fresh product with ``fast``)."""
    s = torch.matmul(qs, kb.transpose(-1, -2))
    if mask is not None:
        m = _cols(mask, s0, s1)
        if m.dtype == torch.bool:
            return s.masked_fill_(m.logical_not(), _NEG_INF) if fast else s.masked_fill(m.logical_not(), _NEG_INF)
        return s.add_(m) if fast and m.dtype == s.dtype else s + m
    if is_causal:  # query i sees key j <= i (torch's tril of an (L, S) ones matrix)
        L = qs.shape[-2]
        hidden = torch.arange(s0, s1, device=qs.device) > torch.arange(L, device=qs.device).unsqueeze(1)
        s = s.masked_fill_(hidden, _NEG_INF) if fast else s.masked_fill(hidden, _NEG_INF)
    return s


def _fast():
    """Whether the forward may compute in place on its own temporaries: not under a torch.func
    transform (a batched value cannot be written into an unbatched buffer) nor while tracing."""
    return not (torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling())


def _safe_lse(lse):
    """``lse`` as a column, ``+inf`` where a row sees no key (``−inf``): ``exp(s − lse)`` is then 0, not NaN."""
    return torch.where(lse == _NEG_INF, math.inf, opmath(lse)).unsqueeze(-1)


def _keep(seed, i, like, p):
    """The dropout keep-mask of block ``i`` (the shape of ``like``): from a generator seeded with
    ``seed + i`` on ``like``'s device, the same draws in forward and backward."""
    g = torch.Generator(device=like.device)
    g.manual_seed(seed + i)
    return torch.rand(like.shape, generator=g, device=like.device) >= p


def _dropout_scale(p):
    """``1 / (1 − p)``; 0 for ``p = 1`` (every probability dropped: the output is 0, as torch's)."""
    return 1.0 if p == 0 else (0.0 if p >= 1 else 1.0 / (1.0 - p))


def _zeros_if_float(t, like):
    """A gradient or tangent accumulated from nothing (no key block contributed) as zeros of ``like``."""
    return torch.zeros(like.shape, dtype=opmath(like).dtype, device=like.device) if isinstance(t, float) else t


def _same_batch(q, k, v):
    """Whether q, k and v have the same batch dims (no broadcast, no grouped-query view): the kernels' case."""
    return q.shape[:-2] == k.shape[:-2] == v.shape[:-2]


def _as_4d(t):
    """``(…, L, E)`` as ``(B, H, L, E)`` for the kernels (a view where the layout allows)."""
    if t.dim() == 4:
        return t
    if t.dim() < 4:
        return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))
    return t.flatten(0, -4)


def _kernel_forward(q, k, v, is_causal, scale):
    out, lse = backend.kernels().attention.forward(_as_4d(q), _as_4d(k), _as_4d(v), is_causal, scale)
    return out.reshape(*q.shape[:-1], v.shape[-1]), lse.reshape(q.shape[:-1])


def _kernel_backward(q, k, v, out, lse, grad_out, is_causal, scale):
    dq, dk, dv = backend.kernels().attention.backward(
        _as_4d(q), _as_4d(k), _as_4d(v), _as_4d(out), lse.reshape(_as_4d(out).shape[:-1]), _as_4d(grad_out), is_causal, scale
    )
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape), None
