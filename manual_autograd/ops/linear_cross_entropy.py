"""Linear then cross-entropy, in blocks of classes: ``loss = cross_entropy(x Wᵀ + b, target)``
without ever holding the whole ``(N, C)`` logits.

* forward: per tile of rows and block of ``chunk`` classes, the block's logits go into one reused
  buffer, from which the running logsumexp ``lse``, the target's logit and (with smoothing) the
  weighted logit sum are gathered;
* backward: ``dlogits = softmax ⊙ r − s ⊗ w − onehot ⊙ e_t`` (``r``, ``s``, ``onehot`` per row, from
  :func:`~manual_autograd.ops.cross_entropy.ce_row_coefficients`): each block's logits are
  recomputed and turned in place into ``softmax ⊙ r``, which writes ``dW``/``db`` of those
  classes and adds to ``dx``; the one-hot and smoothing terms are added once, in closed form;
* saved: ``x``, ``W``, ``b``, the target, the class weight, ``lse`` (``N`` values) and, for a
  class-weighted ``'mean'``, the 0-dim loss;
* bytes per logit: none (only ``N`` values of ``lse`` beyond the inputs).
"""

from __future__ import annotations

import math

import torch

from .. import backend
from .base import Function, class_targets, save_for_jvp
from .cross_entropy import ce_row_coefficients

__all__ = ["LinearCrossEntropyFunction", "default_chunk_size"]


class LinearCrossEntropyFunction(Function):
    """``x`` ``(N, in)``, ``W`` ``(C, in)``, ``b`` ``(C)`` or None, ``target`` ``(N)`` class indices,
    ``class_weight`` ``(C)`` or None, ``acc`` the dtype of the cross-entropy (``x``'s, or float32
    under autocast: the logits' blocks in ``x``'s dtype, as a lowered Linear's, the softmax in
    ``acc``, the gradients summed in ``acc``). Returns the loss and the per-row logsumexp
    (non-differentiable, kept for backward); see the module docstring for the math.

    NOTE: the blocks run over classes first so each ``dW`` row is written by few tiles; chunks of
    whole rows would add into the whole ``C × in`` weight gradient once per chunk. With a graph
    of the backward (``create_graph=True``) or a class weight needing a gradient, the backward
    takes an out-of-place path that recomputes the logsumexp with differentiable ops.
    """

    @staticmethod
    def forward(x, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, chunk, acc):
        rows, C = x.shape[0], weight.shape[0]
        eps = label_smoothing
        valid, t, w_t = class_targets(target, ignore_index, class_weight, acc)
        lse, z_t, z_sum = _forward_blocks(x, weight, bias, t, class_weight, eps, chunk, acc)
        nll = lse - z_t
        loss = w_t * nll if eps == 0 else (1.0 - eps) * w_t * nll
        if eps > 0:  # smoothing term: (eps/C) Σ_c w_c (lse − z_c), zero on ignored rows
            w_sum = C if class_weight is None else class_weight.sum()
            loss = loss + torch.where(valid, lse * w_sum - z_sum, 0.0) * (eps / C)
        if reduction == "none":
            out = loss
        elif reduction == "sum":
            out = loss.sum()
        else:
            out = loss.sum() / w_t.sum()
        return out, lse

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        x, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, chunk, _ = inputs
        out, lse = outputs
        ctx.mark_non_differentiable(lse)
        ctx.ignore_index, ctx.reduction, ctx.label_smoothing, ctx.chunk = ignore_index, reduction, label_smoothing, chunk
        keep_out = reduction == "mean" and class_weight is not None  # read only by the class weight's gradient
        ctx.save_for_backward(x, weight, bias, target, class_weight, lse, out if keep_out else None)
        save_for_jvp(ctx, x, weight, bias, target, class_weight, lse, out)

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        x, weight, bias, target, class_weight, lse, out = ctx.saved_tensors
        need_x, need_w, need_b, _, need_cw = ctx.needs_input_grad[:5]
        rows, C = x.shape[0], weight.shape[0]
        eps, chunk = ctx.label_smoothing, ctx.chunk
        valid, t, w_t = class_targets(target, ctx.ignore_index, class_weight, lse.dtype)
        g, onehot, row_sum, smooth = ce_row_coefficients(grad_out, valid, class_weight, w_t, ctx.reduction, eps, C, rows)
        if torch.is_grad_enabled() or need_cw or torch._C._are_functorch_transforms_active():
            return _lce_backward_graph(
                x, weight, bias, t, valid, class_weight, out, g, onehot, row_sum, smooth, ctx,
                need_x, need_w, need_b, need_cw,
            )

        grad_x, grad_w, grad_b = _backward_blocks(
            x, weight, bias, t, class_weight, lse, onehot, row_sum, smooth, eps, chunk, need_x, need_w, need_b
        )
        return grad_x, grad_w, grad_b, None, None, None, None, None, None, None

    @staticmethod
    def forward_ad(ctx, x_t, weight_t, bias_t, _target_t, cw_t, *_):
        x, weight, bias, target, class_weight, lse, out = ctx.saved_tensors
        C, eps, chunk = weight.shape[0], ctx.label_smoothing, ctx.chunk
        valid, t, w_t = class_targets(target, ctx.ignore_index, class_weight, lse.dtype)
        # NOTE: with dz = dx Wᵀ + x dWᵀ + db the logits' tangent, d lse = Σ_c p_c dz_c; like the
        # logits, dz is built one block of classes at a time and reduced per row at once.
        d_lse = d_zt = d_zsum = zw_t = 0.0
        for c0 in range(0, C, chunk):
            c1 = min(c0 + chunk, C)
            blk = _block(x, weight, bias, c0, c1).to(lse.dtype)
            if cw_t is not None and eps > 0:
                zw_t = zw_t + blk.matmul(cw_t[c0:c1])
            blk_t = None if x_t is None else x_t.matmul(weight[c0:c1].t())
            if weight_t is not None:
                blk_t = x.matmul(weight_t[c0:c1].t()) + (0.0 if blk_t is None else blk_t)
            if bias_t is not None:
                blk_t = bias_t[c0:c1] + (0.0 if blk_t is None else blk_t)
            if blk_t is None:
                continue
            blk_t = blk_t.to(lse.dtype)
            d_lse = d_lse + (torch.exp(blk - lse.unsqueeze(1)) * blk_t).sum(1)
            d_zt = d_zt + _target_logit(blk_t, t, c0)[0]
            if eps > 0:
                d_zsum = d_zsum + (blk_t.sum(1) if class_weight is None else blk_t.matmul(class_weight[c0:c1]))
        loss_t = (1.0 - eps) * w_t * (d_lse - d_zt)
        if eps > 0:
            w_sum = C if class_weight is None else class_weight.sum()
            loss_t = loss_t + torch.where(valid, d_lse * w_sum - d_zsum, 0.0) * (eps / C)
        denom_t = None
        if cw_t is not None:  # the class weight moves q: its tangent meets the row's log-probabilities
            tw_t = torch.where(valid, cw_t.gather(0, t), 0.0)
            z_t = torch.zeros_like(lse)
            for c0 in range(0, C, chunk):
                z_t = z_t + _target_logit(_block(x, weight, bias, c0, min(c0 + chunk, C)).to(lse.dtype), t, c0)[0]
            loss_t = loss_t + (1.0 - eps) * tw_t * (lse - z_t)
            if eps > 0:
                loss_t = loss_t + torch.where(valid, lse * cw_t.sum() - zw_t, 0.0) * (eps / C)
            denom_t = tw_t.sum()
        if ctx.reduction == "none":
            return loss_t, None
        if ctx.reduction == "sum":
            return loss_t.sum(), None
        # d(S / D) = (dS − (S / D) dD) / D, for a weighted mean whose denominator D moves with the weight
        num = loss_t.sum() if denom_t is None else loss_t.sum() - out * denom_t
        return num / w_t.sum(), None


def _forward_blocks(x, weight, bias, t, class_weight, eps, chunk, acc):
    """Per row: the logsumexp over all classes, the target's logit and (with smoothing) the
    class-weighted sum of logits, one tile of rows × block of classes at a time, in ``acc``."""
    rows, C = x.shape[0], weight.shape[0]
    # in place into one reused buffer, except under torch.func transforms (vmap cannot write in place)
    fast = not torch._C._are_functorch_transforms_active()
    tile = _tile_rows(rows, x.shape[1], 2 * chunk)  # a tile of half the input's size stays in cache
    buf = _buffer(x[:tile], min(chunk, C)) if fast else None
    # the kernel reads the blocks (in acc) and the class weight; x and W meet only the matmuls
    reads = (x, weight, bias, class_weight) if acc == x.dtype else (x.new_empty(0, dtype=acc), class_weight)
    kernels = backend.kernels() if fast and backend.kernels_for(*reads) else None
    lse, z_t, z_sum = [], [], []
    for r0 in range(0, rows, tile):
        xs, ts = x[r0 : r0 + tile], t[r0 : r0 + tile]
        n = xs.shape[0]
        lse_r = torch.full((n,), -math.inf, dtype=acc, device=x.device)
        z_t_r = torch.zeros_like(lse_r)
        z_sum_r = torch.zeros_like(lse_r)
        for c0 in range(0, C, chunk):
            c1 = min(c0 + chunk, C)
            blk = _block(xs, weight, bias, c0, c1, out=_view(buf, n, c1 - c0) if fast else None).to(acc)
            if kernels is not None:  # the block's logsumexp, target logit and weighted sum in one pass
                lse_r, z_t_r, zs = kernels.linear_cross_entropy.block_update_(
                    blk, ts, c0, lse_r, z_t_r, z_sum_r if eps > 0 else None, class_weight
                )
                z_sum_r = z_sum_r if zs is None else zs
                continue
            z_t_r = z_t_r + _target_logit(blk, ts, c0)[0]
            if eps > 0:
                z_sum_r = z_sum_r + (blk.sum(1) if class_weight is None else blk.matmul(class_weight[c0:c1]))
            if fast:  # logsumexp of the block, in place (the block is not needed after this)
                m = blk.amax(1, keepdim=True).nan_to_num_(neginf=0.0)
                part = blk.sub_(m).exp_().sum(1).log_().add_(m.squeeze(1))
            else:
                part = blk.logsumexp(1)
            lse_r = torch.logaddexp(lse_r, part)
        lse.append(lse_r)
        z_t.append(z_t_r)
        z_sum.append(z_sum_r)
    if not lse:  # no rows: empty per-row values (the mean then is 0/0 = nan, as torch's)
        lse = z_t = z_sum = [x.new_empty(0, dtype=acc)]
    return _nan_at_inf(torch.cat(lse)), torch.cat(z_t), torch.cat(z_sum)


def _backward_blocks(x, weight, bias, t, class_weight, lse, onehot, row_sum, smooth, eps, chunk, need_x, need_w, need_b):
    """The in-place backward outside double backward.

    ``dL/dlogits = P ⊙ r − s ⊗ w − onehot ⊙ e_t``, with ``P`` the softmax: only ``P ⊙ r`` is
    built, one (tile of rows × block of classes) at a time in one reused buffer; the two other
    terms are added once, in closed form.
    """
    rows, C = x.shape[0], weight.shape[0]
    acc = lse.dtype
    if acc != x.dtype:  # under autocast: the blocks in x's dtype, the sums in acc's
        return _backward_blocks_mixed(
            x, weight, bias, t, class_weight, lse, onehot, row_sum, smooth, eps, chunk, need_x, need_w, need_b
        )
    grad_x = torch.zeros_like(x) if need_x else None
    # written block by block from the first tile of rows; with no rows they stay zero
    grad_w = (torch.empty_like if rows else torch.zeros_like)(weight) if need_w else None
    grad_b = (torch.empty_like if rows else torch.zeros_like)(bias) if need_b else None
    tile = _tile_rows(rows, x.shape[1], 2 * chunk)  # half the input's size: the peak holds dL/dW too
    buf = _buffer(x[:tile], min(chunk, C))
    lse_col, r_col = lse.unsqueeze(1), row_sum.unsqueeze(1)
    kernels = backend.kernels() if backend.kernels_for(x, weight, bias, class_weight, grad=True) else None
    for c0 in range(0, C, chunk):
        c1 = min(c0 + chunk, C)
        w_blk = weight[c0:c1]
        for r0 in range(0, rows, tile):
            r1 = min(r0 + tile, rows)
            p = _block(x[r0:r1], weight, bias, c0, c1, out=_view(buf, r1 - r0, c1 - c0))
            if kernels is not None:  # softmax times the row's scale, one pass
                p = kernels.linear_cross_entropy.softmax_scale_(p, lse[r0:r1], row_sum[r0:r1])
            else:
                p.sub_(lse_col[r0:r1]).exp_().mul_(r_col[r0:r1])
            if need_x:
                grad_x[r0:r1].addmm_(p, w_blk)
            if need_w:
                if r0 == 0:
                    torch.mm(p.t(), x[r0:r1], out=grad_w[c0:c1])
                else:
                    grad_w[c0:c1].addmm_(p.t(), x[r0:r1])
            if need_b:
                if r0 == 0:
                    torch.sum(p, 0, out=grad_b[c0:c1])
                else:
                    grad_b[c0:c1].add_(p.sum(0))
    buf = p = None  # the closing terms below need no block
    w_row = (lse.new_ones(C) if class_weight is None else class_weight) if eps > 0 else None
    return _subtract_targets(grad_x, grad_w, grad_b, x, weight, t, onehot, smooth, w_row, eps)


def _subtract_targets(grad_x, grad_w, grad_b, x, weight, t, onehot, smooth, w_row, eps):
    """The blocks' gradients less the target distribution's terms, in place: ``q = onehot`` at
    the target class plus, with smoothing, ``smooth ⊗ w_row``; O(N + C) rows, no block."""
    if grad_x is not None:
        grad_x.addcmul_(onehot.unsqueeze(1), weight.index_select(0, t), value=-1.0)
        if eps > 0:
            grad_x.addr_(smooth, w_row.matmul(weight), alpha=-1.0)
    if grad_w is not None:
        grad_w.index_add_(0, t, x * onehot.unsqueeze(1), alpha=-1.0)
        if eps > 0:
            grad_w.addr_(w_row, smooth.matmul(x), alpha=-1.0)
    if grad_b is not None:
        grad_b.index_add_(0, t, onehot, alpha=-1.0)
        if eps > 0:
            grad_b.sub_(smooth.sum() * w_row)
    return grad_x, grad_w, grad_b


def _backward_blocks_mixed(x, weight, bias, t, class_weight, lse, onehot, row_sum, smooth, eps, chunk, need_x, need_w, need_b):
    """:func:`_backward_blocks` for blocks in ``x``'s dtype and a cross-entropy in ``lse``'s
    (autocast): each block's softmax in ``lse``'s dtype, cast once to ``x``'s for its matrix
    products (as the unfused chain casts the logits' gradient), the sums kept in ``lse``'s."""
    rows, C = x.shape[0], weight.shape[0]
    acc = lse.dtype
    grad_x = x.new_zeros(x.shape, dtype=acc) if need_x else None
    grad_w = weight.new_zeros(weight.shape, dtype=acc) if need_w else None
    grad_b = bias.new_zeros(bias.shape, dtype=acc) if need_b else None
    tile = _tile_rows(rows, x.shape[1], 2 * chunk)
    lse_col, r_col = lse.unsqueeze(1), row_sum.unsqueeze(1)
    for c0 in range(0, C, chunk):
        c1 = min(c0 + chunk, C)
        w_blk = weight[c0:c1]
        for r0 in range(0, rows, tile):
            r1 = min(r0 + tile, rows)
            p = _block(x[r0:r1], weight, bias, c0, c1).to(acc).sub_(lse_col[r0:r1]).exp_().mul_(r_col[r0:r1])
            p = p.to(x.dtype)
            if need_x:
                grad_x[r0:r1] += p.mm(w_blk)
            if need_w:
                grad_w[c0:c1] += p.t().mm(x[r0:r1])
            if need_b:
                grad_b[c0:c1] += p.sum(0, dtype=acc)
    w_row = lse.new_ones(C) if class_weight is None else class_weight
    # the closing terms in acc
    grads = _subtract_targets(grad_x, grad_w, grad_b, x.to(acc), weight.to(acc), t, onehot, smooth, w_row, eps)
    return (None if g is None else g.to(x.dtype) for g in grads)


def default_chunk_size(num_classes: int) -> int:
    """Classes per block: 1024 (wide enough for efficient matmuls), or all of them if fewer."""
    return max(1, min(num_classes, 1024))


def _tile_rows(rows: int, in_features: int, chunk: int) -> int:
    """Rows per tile so that a ``(tile, chunk)`` block of logits holds about as many values as the
    ``(rows, in_features)`` input (at least 2**16)."""
    return max(1, min(rows, max(rows * in_features, 1 << 16) // chunk))


def _block(x, weight, bias, c0, c1, out=None):
    """Logits of classes ``[c0, c1)``: ``x W[c0:c1]ᵀ + b[c0:c1]`` (into ``out`` when given)."""
    w = weight[c0:c1].t()
    if bias is None:
        return torch.mm(x, w, out=out) if out is not None else torch.mm(x, w)
    return torch.addmm(bias[c0:c1], x, w, out=out) if out is not None else torch.addmm(bias[c0:c1], x, w)


def _buffer(x, width):
    """A reusable flat buffer for ``(rows, width)`` blocks; ``_view`` cuts a contiguous block out."""
    return torch.empty(x.shape[0] * width, dtype=x.dtype, device=x.device)


def _view(buf, rows, width):
    return buf[: rows * width].view(rows, width)


def _nan_at_inf(lse):
    """NaN where a row's logsumexp is +inf: torch's log_softmax gives a row holding a +inf logit
    NaN throughout (``inf − inf`` in its max shift), and so the loss and its gradient. ``N`` values."""
    return torch.where(lse == math.inf, math.nan, lse)


def _target_logit(blk, t, c0):
    """For each row, its target's logit if the target lies in this block's classes, else 0."""
    width = blk.shape[1]
    inside = (t >= c0) & (t < c0 + width)
    picked = blk.gather(1, (t - c0).clamp(0, width - 1).unsqueeze(1)).squeeze(1)
    return torch.where(inside, picked, 0.0), inside


def _lce_backward_graph(
    x, weight, bias, t, valid, class_weight, out, g, onehot, row_sum, smooth, ctx, need_x, need_w, need_b, need_cw
):
    """Out-of-place, differentiable backward of :class:`LinearCrossEntropyFunction`, block by block."""
    C = weight.shape[0]
    eps, chunk = ctx.label_smoothing, ctx.chunk
    bounds = [(c0, min(c0 + chunk, C)) for c0 in range(0, C, chunk)]
    # the saved logsumexp carries no graph: recompute it with differentiable ops
    acc = g.dtype
    lse = _nan_at_inf(torch.stack([_block(x, weight, bias, c0, c1).to(acc).logsumexp(1) for c0, c1 in bounds]).logsumexp(0))
    grad_x = torch.zeros_like(x) if need_x else None
    grad_w, grad_b, grad_cw_smooth = [], [], []
    z_t = torch.zeros_like(lse)
    for c0, c1 in bounds:
        blk = _block(x, weight, bias, c0, c1).to(acc)
        grad = torch.exp(blk - lse.unsqueeze(1)) * row_sum.unsqueeze(1)
        if eps > 0:
            w_row = 1.0 if class_weight is None else class_weight[c0:c1]
            grad = grad - smooth.unsqueeze(1) * w_row
        picked, inside = _target_logit(blk, t, c0)
        idx = (t - c0).clamp(0, c1 - c0 - 1).unsqueeze(1)
        grad = grad.scatter_add(1, idx, torch.where(inside, -onehot, 0.0).unsqueeze(1)).to(x.dtype)
        if need_x:
            grad_x = grad_x + grad.matmul(weight[c0:c1])
        if need_w:
            grad_w.append(grad.t().matmul(x))
        if need_b:
            grad_b.append(grad.sum(0))
        if need_cw:
            z_t = z_t + picked
            if eps > 0:
                grad_cw_smooth.append((g.unsqueeze(1) * (lse.unsqueeze(1) - blk)).sum(0))
    grad_cw = None
    if need_cw:
        per_row = g * (1.0 - eps) * (lse - z_t)
        if ctx.reduction == "mean":  # d(S/D)/dw_c also moves the denominator D = Σ w_t
            per_row = per_row - g * out
        grad_cw = torch.zeros_like(class_weight).index_add(0, t, torch.where(valid, per_row, 0.0))
        if eps > 0:
            grad_cw = grad_cw + (eps / C) * torch.cat(grad_cw_smooth)
    return (
        grad_x,
        torch.cat(grad_w) if need_w else None,
        torch.cat(grad_b) if need_b else None,
        None,
        grad_cw,
        None,
        None,
        None,
        None,
        None,
    )
