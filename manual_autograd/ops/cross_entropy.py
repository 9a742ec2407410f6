"""Cross-entropy with the softmax fused in: ``loss_i = −Σ_c q_ic log softmax(x_i)_c``.

* ``q``: one-hot class indices weighted by ``weight[t]``, or class probabilities weighted by
  ``weight``, smoothed by ``label_smoothing`` (``q ← (1 − ε) q + ε/C``), reduced by ``reduction``;
* backward: ``dx = g (softmax(x) Σ_c q_c − q)``, ``g`` the per-row upstream gradient (``grad_out``
  over the kept rows' weight for ``'mean'``); ``softmax(x) = exp(logp)``, one kernel;
* saved: ``logp = log_softmax(x)`` (returned as a second output, so double backward reaches ``x``
  through it, as torch's own ``log_softmax`` does), the target, the class weight and, for a
  class-weighted ``'mean'`` over class indices, the 0-dim loss;
* bytes per element of the logits: their element size (the logits themselves are not kept).
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, class_back, class_grad, class_last, class_targets, in_place, save_for_jvp

__all__ = ["CrossEntropyFunction", "ce_row_coefficients"]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # torch's enum, for the kernel F.nll_loss calls


class CrossEntropyFunction(Function):
    """Returns ``(loss, logp)``; see the module docstring for the math and what is saved. The
    weighted mean's denominator is recomputed from the target, not saved."""

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        if not target.is_floating_point() and backend.kernels_for(x, weight):
            return _ce_kernel_forward(x, target, weight, ignore_index, reduction, label_smoothing)
        logp = torch.log_softmax(x, 1 if x.dim() > 1 else 0)
        if label_smoothing == 0 and not target.is_floating_point():
            # the common case: the loss value is logp picked at the target, (weighted) and reduced
            t = target if target.dtype == torch.int64 else target.long()  # NOTE: a uint8 target would wrap ignore_index
            return torch._C._nn.nll_loss_nd(logp, t, weight, _REDUCTIONS[reduction], ignore_index), logp
        lr = class_last(logp)
        C = lr.shape[1]
        eps = label_smoothing
        # NOTE: log_softmax is max-shifted inside (never log(0) or exp overflow), and summing
        # q·log p, rather than lse·Σq − Σ q·x, avoids cancelling two ~|x| numbers (logits ~1e4).
        if target.is_floating_point():  # class probabilities
            q = class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            if weight is not None:
                q = q * weight
            loss = -(q * lr).sum(1)
            if reduction == "none":
                return loss.reshape(x.shape[:1] + x.shape[2:] if x.dim() > 1 else ()), logp
            total = loss.sum()
            return (total / (lr.shape[0] if lr.shape[0] else float("nan")) if reduction == "mean" else total), logp

        valid, t, w_t = class_targets(target, ignore_index, weight, x.dtype)
        nll = -lr.gather(1, t.unsqueeze(1)).squeeze(1)
        loss = w_t * nll if eps == 0 else (1.0 - eps) * w_t * nll
        if eps > 0:  # smoothing term: (eps/C) Σ_c w_c (−log p_c), zero on ignored rows
            smooth = -(lr.sum(1) if weight is None else lr.matmul(weight))
            loss = loss + torch.where(valid, smooth, 0.0) * (eps / C)
        if reduction == "none":  # (C) input: a 0-dim loss even for a target of shape (1,)
            return loss.reshape(target.shape if x.dim() > 1 else ()), logp
        if reduction == "sum":
            return loss.sum(), logp
        return loss.sum() / w_t.sum(), logp

    @staticmethod
    def setup_context(ctx, inputs, out):
        _, target, weight, ignore_index, reduction, label_smoothing = inputs
        loss, logp = out
        ctx.set_materialize_grads(False)  # logp's gradient is None but in double backward
        ctx.ignore_index, ctx.reduction, ctx.label_smoothing = ignore_index, reduction, label_smoothing
        ctx.common = label_smoothing == 0 and weight is None and not target.is_floating_point()
        # the mean's output is read only to move a class weight's denominator (its gradient or tangent)
        keep_out = reduction == "mean" and weight is not None and not target.is_floating_point()
        ctx.save_for_backward(logp, target, weight, loss if keep_out else None)
        save_for_jvp(ctx, logp, target, weight, loss)

    @staticmethod
    def backward(ctx, grad_out, grad_logp):
        logp, target, weight, out = ctx.saved_tensors
        if grad_logp is None and grad_out is not None and not target.is_floating_point() and not any(ctx.needs_input_grad[1:3]):
            if backend.kernels_for(logp, grad_out, weight, grad=True):
                grad = backend.kernels().cross_entropy.backward(
                    grad_out.reshape(-1) if ctx.reduction == "none" else grad_out, class_last(logp), target.reshape(-1),
                    weight, ctx.ignore_index, ctx.reduction, ctx.label_smoothing,
                )
                return class_grad(grad, logp), None, None, None, None, None
        if ctx.common and grad_logp is None and grad_out is not None:  # class indices, no weight or smoothing
            return _ce_index_backward(grad_out, logp, target, ctx.ignore_index, ctx.reduction), None, None, None, None, None
        grad_x = grad_t = grad_w = None
        if grad_out is not None:
            grad_x, grad_t, grad_w = _ce_backward(ctx, grad_out, logp, target, weight, out)
        if grad_logp is not None and ctx.needs_input_grad[0]:
            # NOTE: d logp / dx = I − softmax(x) 1ᵀ along the class dim (the log_softmax backward)
            d = 1 if logp.dim() > 1 else 0
            g = grad_logp - logp.exp() * grad_logp.sum(d, keepdim=True)
            grad_x = g if grad_x is None else grad_x + g
        return grad_x, grad_t, grad_w, None, None, None

    @staticmethod
    def forward_ad(ctx, x_t, target_t, weight_t, *_):
        logp, target, weight, out = ctx.saved_tensors
        lr = class_last(logp)
        rows, C = lr.shape
        eps = ctx.label_smoothing
        # NOTE: loss_i = Σ_c q_ic nlp_ic with nlp = −logp, and d nlp_ic = p_i · dx_i − dx_ic
        # (p = softmax(x) = exp(logp)); a tangent of q (target probabilities or weight) meets nlp itself.
        nlp = None if target_t is None and weight_t is None else -lr
        tr = None if x_t is None else class_last(x_t)
        p_t = None if x_t is None else (lr.exp() * tr).sum(1)
        logp_t = None if x_t is None else class_back(tr - p_t.unsqueeze(1), logp)
        out_t, denom_t = 0.0, None
        if target.is_floating_point():  # class probabilities
            q = class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            qw = q if weight is None else q * weight
            if x_t is not None:
                out_t = p_t * qw.sum(1) - (qw * tr).sum(1)
            if target_t is not None:
                q_t = class_last(target_t) * (1.0 - eps)
                out_t = out_t + ((q_t if weight is None else q_t * weight) * nlp).sum(1)
            if weight_t is not None:
                out_t = out_t + (q * weight_t * nlp).sum(1)
            denom = rows
        else:
            valid, t, w_t = class_targets(target, ctx.ignore_index, weight, logp.dtype)
            if x_t is not None:
                out_t = (1.0 - eps) * w_t * (p_t - tr.gather(1, t.unsqueeze(1)).squeeze(1))
                if eps > 0:  # smoothing term: (eps/C) Σ_c w_c d nlp_c
                    smooth = p_t * C - tr.sum(1) if weight is None else p_t * weight.sum() - tr.matmul(weight)
                    out_t = out_t + torch.where(valid, smooth, 0.0) * (eps / C)
            if weight_t is not None:
                tw_t = torch.where(valid, weight_t.gather(0, t), 0.0)
                out_t = out_t + (1.0 - eps) * tw_t * nlp.gather(1, t.unsqueeze(1)).squeeze(1)
                if eps > 0:
                    out_t = out_t + torch.where(valid, nlp.matmul(weight_t), 0.0) * (eps / C)
                denom_t = tw_t.sum()
            denom = w_t.sum()
        if ctx.reduction == "none":
            out_t = out_t.reshape(logp.shape[:1] + logp.shape[2:] if logp.dim() > 1 else ())
        elif ctx.reduction == "sum":
            out_t = out_t.sum()
        else:  # d(S / D) = (dS − (S / D) dD) / D, for a weighted mean whose denominator D moves with weight
            out_t = (out_t.sum() if denom_t is None else out_t.sum() - out * denom_t) / denom
        return out_t, logp_t


def _ce_kernel_forward(x, target, weight, ignore_index, reduction, label_smoothing):
    """The forward on the Triton kernel, class-index targets: ``(loss, logp)`` as the reference
    returns them (logp in the logits' layout, the same ledger), one pass over each row block."""
    loss, logp, _ = backend.kernels().cross_entropy.forward(
        class_last(x), target.reshape(-1), weight, ignore_index, reduction, label_smoothing
    )
    if reduction == "none":  # (C) input: a 0-dim loss even for a target of shape (1,)
        loss = loss.reshape(target.shape if x.dim() > 1 else ())
    return loss, class_back(logp, x)


def _none_ignored(t, ignore_index):
    """Whether no target row is ``ignore_index``, asked only where it is cheap: a CPU target (one
    reduction read back, no device to wait on) and a negative ``ignore_index``, which then is the
    only value below 0 (the forward's ``nll_loss`` refused any other)."""
    return ignore_index < 0 and t.is_cpu and t.numel() > 0 and int(t.min()) >= 0


def _ce_index_backward(grad_out, logp, target, ignore_index, reduction):
    """``dL/dx = g (softmax(x) − onehot(t))`` row by row for class-index targets (no class weight,
    no smoothing), where ``g`` is the row's upstream gradient: 0 on ignored rows, ``grad_out / n``
    for ``'mean'`` over the ``n`` rows kept. Few kernels, each call here costing more than its
    arithmetic at MNIST sizes."""
    lr = class_last(logp)
    t = target.reshape(-1, 1) if target.dtype == torch.int64 else target.reshape(-1, 1).long()
    if reduction == "none":
        grad_out = grad_out.reshape(-1, 1)
    inplace = in_place(grad_out)
    if inplace and _none_ignored(t, ignore_index):  # every row kept: no mask
        g = grad_out.item() / t.shape[0] if reduction == "mean" else grad_out
    else:
        valid = t != ignore_index
        if reduction == "mean":
            grad_out = grad_out / torch.count_nonzero(valid)  # (no bool-to-int64 copy, as sum() makes)
        # NOTE: ignored rows get exactly 0, even when the mean's denominator is 0 (g is inf/nan).
        g = torch.where(valid, grad_out, 0.0)
        t = t.clamp(0, lr.shape[1] - 1)  # valid targets as they are, ignored rows anywhere (g = 0 there)
        if not inplace:  # double backward or vmap: differentiable, out-of-place ops
            return class_grad((lr.exp() * g).scatter_add(1, t, -g), logp)
    # exp(logp) is a temporary: take the one-hot off and scale, in place
    return class_grad(lr.exp().scatter_(1, t, -1.0, reduce="add").mul_(g), logp)


def _ce_backward(ctx, grad_out, logp, target, weight, out):
    """The gradients of :class:`CrossEntropyFunction`'s loss for ``logits``, ``target`` and ``weight``."""
    need_x, need_t, need_w = ctx.needs_input_grad[:3]
    eps, reduction = ctx.label_smoothing, ctx.reduction
    lr = class_last(logp)
    rows, C = lr.shape

    grad_x = grad_t = grad_w = None
    if target.is_floating_point():
        q = class_last(target)
        if eps > 0:
            q = q * (1.0 - eps) + eps / C
        qw = q if weight is None else q * weight
        # per-row upstream gradient g_i
        if reduction == "none":
            g = grad_out.reshape(rows, 1)
        else:
            g = grad_out.reshape(1, 1) / rows if reduction == "mean" else grad_out.reshape(1, 1)
        if need_x:
            grad_x = class_grad(g * (lr.exp() * qw.sum(1, keepdim=True) - qw), logp)
        if need_t:
            scale = (1.0 - eps) if weight is None else (1.0 - eps) * weight
            grad_t = class_grad(-g * scale * lr, target)
        if need_w:
            grad_w = -(g * q * lr).sum(0)
        return grad_x, grad_t, grad_w

    valid, t, w_t = class_targets(target, ctx.ignore_index, weight, logp.dtype)
    g, onehot_coef, row_sum, smooth = ce_row_coefficients(grad_out, valid, weight, w_t, reduction, eps, C, rows)
    if need_x:
        grad = lr.exp() * row_sum.unsqueeze(1)
        if smooth is not None:
            grad = grad - smooth.unsqueeze(1) * (1.0 if weight is None else weight)
        grad = grad.scatter_add(1, t.unsqueeze(1), -onehot_coef.unsqueeze(1))
        grad_x = class_grad(grad, logp)
    if need_w:
        nll = -lr.gather(1, t.unsqueeze(1)).squeeze(1)
        per_row = g * (1.0 - eps) * nll
        if reduction == "mean":  # d(S/D)/dw_c also moves the denominator D = Σ w_t
            per_row = per_row - g * out
        grad_w = torch.zeros_like(weight).index_add(0, t, torch.where(valid, per_row, 0.0))
        if eps > 0:
            grad_w = grad_w - (eps / C) * (g.unsqueeze(1) * lr).sum(0)
    return grad_x, None, grad_w


def ce_row_coefficients(grad_out, valid, weight, w_t, reduction, eps, C, rows):
    """Per-row factors of the class-index cross-entropy gradient (shared with linear_cross_entropy).

    ``dL/dlogits = softmax ⊙ row_sum − smooth ⊗ weight − onehot ⊙ e_target``, row by row; returns
    ``g`` (the upstream gradient per row), ``onehot``, ``row_sum`` and ``smooth`` (``None`` when
    ``eps == 0``).
    """
    if reduction == "none":
        g = grad_out.reshape(-1)
    elif reduction == "sum":
        g = grad_out.expand(rows)
    else:
        g = grad_out / w_t.sum()
    # NOTE: ignored rows get exactly 0, even when the mean's denominator is 0 (g is inf/nan).
    g = torch.where(valid, g, 0.0)
    onehot = g * w_t * (1.0 - eps)
    if eps == 0:
        return g, onehot, onehot, None
    w_sum = C if weight is None else weight.sum()
    smooth = g * (eps / C)
    return g, onehot, onehot + smooth * w_sum, smooth
