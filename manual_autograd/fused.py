"""Fused ops that keep less than their unfused composition, and their functional forms.

* :class:`ActivationLinearFunction`: ``y = act(z) Wᵀ + b``. Keeps ``z`` (and ``W``) only and
  recomputes ``act(z)`` in backward for the weight gradient, where the unfused pair keeps both
  ``z`` (for the activation's derivative) and ``act(z)`` (for the Linear's weight gradient).
* :class:`LinearCrossEntropyFunction`: ``cross_entropy(x Wᵀ + b, target)`` computed one block
  of classes at a time, never holding the whole ``(N, C)`` logits. Keeps ``x``, ``W``, ``b``,
  the target and the per-row logsumexp; backward recomputes each block's logits.

Like :mod:`manual_autograd.function`, the Functions assume well-formed inputs; the functional
forms below check their arguments first.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as TF

from . import functional as F
from .function import Function, LinearFunction, _ce_row_coefficients, _rows

__all__ = [
    "ActivationLinearFunction",
    "LinearCrossEntropyFunction",
    "ACTIVATIONS",
    "activation_linear",
    "linear_cross_entropy",
]

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")


# --------------------------------------------------------------------------------------------
# activation -> Linear


def _act(z, activation, param):
    """``act(z)``; ``param`` is the negative slope (leaky_relu) or the approximation (gelu)."""
    if activation == "relu":
        return z.clamp_min(0)
    if activation == "leaky_relu":
        return TF.leaky_relu(z, param)
    if activation == "gelu":
        return TF.gelu(z, approximate=param)
    return TF.silu(z)


def _act_backward(grad, z, activation, param):
    """``grad * act'(z)``, differentiable in both ``grad`` and ``z``."""
    # NOTE: at z = 0, relu's derivative is taken as 0 and leaky_relu's as the slope, as torch does.
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, z, 0)
    if activation == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(grad, z, param, False)
    if activation == "gelu":
        return torch.ops.aten.gelu_backward(grad, z, approximate=param)
    if not torch.is_grad_enabled():  # one pass; torch has no derivative for it
        return torch.ops.aten.silu_backward(grad, z)
    s = torch.sigmoid(z)
    return grad * (s * (1.0 + z * (1.0 - s)))


class ActivationLinearFunction(Function):
    """``out = act(z) Wᵀ + b`` for ``z`` of shape ``(*, in)``; ``W`` is ``(out, in)``, ``b`` ``(out)``.

    ``dL/dz = (grad_out W) ⊙ act'(z)`` reads ``W`` and ``z``; ``dL/dW = grad_outᵀ act(z)`` reads
    ``act(z)``, recomputed from ``z`` (one pointwise pass); ``dL/db`` reads nothing. So only ``z``
    is kept, for every activation: for relu a sign mask would cover ``act'`` but not ``dL/dW``,
    which needs the values. The pointwise values and derivatives are torch's single-pass kernels
    (``threshold_backward``, ``leaky_relu_backward``, ``gelu``/``gelu_backward``,
    ``silu``/``silu_backward``; under ``create_graph`` the SiLU
    derivative is written out, since ``silu_backward`` has no derivative), so the recompute costs
    one memory pass; what this op decides is what is kept and what is redone.
    """

    @staticmethod
    def forward(z, weight, bias, activation, param):
        return LinearFunction.forward(_act(z, activation, param), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, out):
        z, weight, _, activation, param = inputs
        need_z, need_w, _ = ctx.needs_input_grad[:3]
        ctx.activation, ctx.param = activation, param
        ctx.save_for_backward(z if need_z or need_w else None, weight if need_z else None)

    @staticmethod
    def backward(ctx, grad_out):
        z, weight = ctx.saved_tensors
        need_z, need_w, need_b = ctx.needs_input_grad[:3]
        grad_z = grad_w = grad_b = None
        if need_w:
            grad_w = _rows(grad_out).t().matmul(_rows(_act(z, ctx.activation, ctx.param)))
        if need_b:
            grad_b = _rows(grad_out).sum(0)
        if need_z:
            grad_z = _act_backward(grad_out.matmul(weight), z, ctx.activation, ctx.param)
        return grad_z, grad_w, grad_b, None, None


# --------------------------------------------------------------------------------------------
# Linear -> cross-entropy


def default_chunk_size(rows: int, in_features: int, num_classes: int) -> int:
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


def _target_logit(blk, t, c0):
    """For each row, its target's logit if the target lies in this block's classes, else 0."""
    width = blk.shape[1]
    inside = (t >= c0) & (t < c0 + width)
    picked = blk.gather(1, (t - c0).clamp(0, width - 1).unsqueeze(1)).squeeze(1)
    return torch.where(inside, picked, 0.0), inside


class LinearCrossEntropyFunction(Function):
    """``loss = cross_entropy(x Wᵀ + b, target)`` in blocks of classes, never holding the ``(N, C)`` logits.

    ``x`` is ``(N, in)``, ``W`` ``(C, in)``, ``b`` ``(C)`` or None, ``target`` ``(N)`` class indices,
    ``weight`` ``(C)`` or None. The forward runs over blocks of ``chunk`` classes (and, for large
    inputs, tiles of rows): each tile's logits go into one reused buffer, from which the running
    logsumexp, the target's logit and (with smoothing) the weighted logit sum are gathered. It
    returns the loss and the per-row logsumexp (non-differentiable, kept for backward).

    The backward recomputes each tile's logits and turns them in place into ``softmax ⊙ r`` (``r``
    the per-row weight of the target distribution times the upstream gradient); from the tile it
    writes (or adds to) ``dL/dW`` and ``dL/db`` of those classes and adds to ``dL/dx`` of those
    rows. The rest of ``dL/dlogits`` (the one-hot and smoothing parts of ``q``) is a rank-one and
    an index term, added once in closed form. Kept for backward: ``x``, ``W``, ``b``, target,
    class weight, the logsumexp (``N`` values) and, for a class-weighted ``'mean'``, the 0-dim
    output (read only by the class weight's gradient).

    NOTE: the blocks run over classes first so each ``dL/dW`` row is written by few tiles; chunks
    of whole rows would add into the whole ``C × in`` weight gradient once per chunk.

    When a graph of the backward is asked for (``create_graph=True``) or the class weight needs a
    gradient, the backward takes an out-of-place path that recomputes the logsumexp with
    differentiable ops, so double backward is exact.
    """

    @staticmethod
    def forward(x, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, chunk):
        rows, C = x.shape[0], weight.shape[0]
        eps = label_smoothing
        valid = target != ignore_index
        t = torch.where(valid, target, 0).long()
        # in place into one reused buffer, except under torch.func transforms (vmap cannot write in place)
        fast = not torch._C._are_functorch_transforms_active()
        tile = _tile_rows(rows, x.shape[1], 2 * chunk)  # a tile of half the input's size stays in cache
        buf = _buffer(x[:tile], min(chunk, C)) if fast else None
        lse, z_t, z_sum = [], [], []
        for r0 in range(0, rows, tile):
            xs, ts = x[r0 : r0 + tile], t[r0 : r0 + tile]
            n = xs.shape[0]
            lse_r = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
            z_t_r = torch.zeros_like(lse_r)
            z_sum_r = torch.zeros_like(lse_r)
            for c0 in range(0, C, chunk):
                c1 = min(c0 + chunk, C)
                blk = _block(xs, weight, bias, c0, c1, out=_view(buf, n, c1 - c0) if fast else None)
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
        lse, z_t, z_sum = torch.cat(lse), torch.cat(z_t), torch.cat(z_sum)
        nll = lse - z_t
        w_t = valid.to(x.dtype) if class_weight is None else torch.where(valid, class_weight.gather(0, t), 0.0)
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
        x, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, chunk = inputs
        out, lse = outputs
        ctx.mark_non_differentiable(lse)
        ctx.ignore_index, ctx.reduction, ctx.label_smoothing, ctx.chunk = ignore_index, reduction, label_smoothing, chunk
        keep_out = reduction == "mean" and class_weight is not None  # read only by the class weight's gradient
        ctx.save_for_backward(x, weight, bias, target, class_weight, lse, out if keep_out else None)

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        x, weight, bias, target, class_weight, lse, out = ctx.saved_tensors
        need_x, need_w, need_b, _, need_cw = ctx.needs_input_grad[:5]
        rows, C = x.shape[0], weight.shape[0]
        eps, chunk = ctx.label_smoothing, ctx.chunk
        valid = target != ctx.ignore_index
        t = torch.where(valid, target, 0).long()
        w_t = valid.to(x.dtype) if class_weight is None else torch.where(valid, class_weight.gather(0, t), 0.0)
        g, onehot, row_sum, smooth = _ce_row_coefficients(grad_out, valid, class_weight, w_t, ctx.reduction, eps, C, rows)
        if torch.is_grad_enabled() or need_cw or torch._C._are_functorch_transforms_active():
            return _lce_backward_graph(
                x, weight, bias, t, valid, class_weight, out, g, onehot, row_sum, smooth, ctx,
                need_x, need_w, need_b, need_cw,
            )

        # Fast path. dL/dlogits = P ⊙ r − s ⊗ w − onehot ⊙ e_t, with P the softmax: only P ⊙ r is
        # built, one (tile of rows × block of classes) at a time in one reused buffer; the two
        # other terms are added once, in closed form.
        grad_x = torch.zeros_like(x) if need_x else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = torch.empty_like(bias) if need_b else None
        tile = _tile_rows(rows, x.shape[1], 2 * chunk)  # half the input's size: the peak holds dL/dW too
        buf = _buffer(x[:tile], min(chunk, C))
        lse_col, r_col = lse.unsqueeze(1), row_sum.unsqueeze(1)
        for c0 in range(0, C, chunk):
            c1 = min(c0 + chunk, C)
            w_blk = weight[c0:c1]
            for r0 in range(0, rows, tile):
                r1 = min(r0 + tile, rows)
                p = _block(x[r0:r1], weight, bias, c0, c1, out=_view(buf, r1 - r0, c1 - c0))
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
        if eps > 0:
            w_row = lse.new_ones(C) if class_weight is None else class_weight
        if need_x:
            grad_x.addcmul_(onehot.unsqueeze(1), weight.index_select(0, t), value=-1.0)
            if eps > 0:
                grad_x.addr_(smooth, w_row.matmul(weight), alpha=-1.0)
        if need_w:
            grad_w.index_add_(0, t, x * onehot.unsqueeze(1), alpha=-1.0)
            if eps > 0:
                grad_w.addr_(w_row, smooth.matmul(x), alpha=-1.0)
        if need_b:
            grad_b.index_add_(0, t, onehot, alpha=-1.0)
            if eps > 0:
                grad_b.sub_(smooth.sum() * w_row)
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


def _lce_backward_graph(
    x, weight, bias, t, valid, class_weight, out, g, onehot, row_sum, smooth, ctx, need_x, need_w, need_b, need_cw
):
    """Out-of-place, differentiable backward of :class:`LinearCrossEntropyFunction`, block by block."""
    C = weight.shape[0]
    eps, chunk = ctx.label_smoothing, ctx.chunk
    bounds = [(c0, min(c0 + chunk, C)) for c0 in range(0, C, chunk)]
    # the saved logsumexp carries no graph: recompute it with differentiable ops
    lse = torch.stack([_block(x, weight, bias, c0, c1).logsumexp(1) for c0, c1 in bounds]).logsumexp(0)
    grad_x = torch.zeros_like(x) if need_x else None
    grad_w, grad_b, grad_cw_smooth = [], [], []
    z_t = torch.zeros_like(lse)
    for c0, c1 in bounds:
        blk = _block(x, weight, bias, c0, c1)
        grad = torch.exp(blk - lse.unsqueeze(1)) * row_sum.unsqueeze(1)
        if eps > 0:
            w_row = 1.0 if class_weight is None else class_weight[c0:c1]
            grad = grad - smooth.unsqueeze(1) * w_row
        picked, inside = _target_logit(blk, t, c0)
        idx = (t - c0).clamp(0, c1 - c0 - 1).unsqueeze(1)
        grad = grad.scatter_add(1, idx, torch.where(inside, -onehot, 0.0).unsqueeze(1))
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
    )


# --------------------------------------------------------------------------------------------
# functional forms


def _check_number(fn, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}(): argument '{name}' must be a number, got {type(value).__name__}")


def activation_linear(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: str = "relu",
    negative_slope: float = 0.01,
    approximate: str = "none",
) -> Tensor:
    r"""Apply ``act(input) Wᵀ + b`` as one op that keeps only ``input`` (and ``W``) for backward.

    Equal to ``linear(act(input), weight, bias)``; see :class:`manual_autograd.nn.ActivationLinear`.

    Args:
        input: ``(*, in_features)``, the activation's input ``z``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features)``; optional.
        activation: ``'relu'`` | ``'leaky_relu'`` | ``'gelu'`` | ``'silu'``.
        negative_slope: slope for ``x < 0`` of ``'leaky_relu'``.
        approximate: ``'none'`` | ``'tanh'``, the GELU variant.

    Examples::

        >>> z = torch.randn(8, 20, requires_grad=True)
        >>> w, b = torch.randn(30, 20), torch.randn(30)
        >>> activation_linear(z, w, b, "gelu").shape
        torch.Size([8, 30])
    """
    fn = "activation_linear"
    F._check_tensor(fn, "input", input, 1)
    F._check_tensor(fn, "weight", weight, 2)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}(): argument 'activation' must be one of {ACTIVATIONS}, got {activation!r}")
    if input.dim() == 0:
        raise RuntimeError(f"{fn}(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    F._check_floating(fn, input)
    if weight.dim() != 2:
        raise RuntimeError(f"{fn}(): expected 'weight' of shape (out_features, in_features), got shape {F._shape(weight)}")
    if input.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"{fn}(): expected 'input' with last dimension in_features={weight.shape[1]} "
            f"(weight has shape {F._shape(weight)}), got input of shape {F._shape(input)}"
        )
    F._check_like(fn, "weight", weight, "input", input)
    if bias is not None:
        F._check_tensor(fn, "bias", bias, 3)
        if tuple(bias.shape) != (weight.shape[0],):
            raise RuntimeError(f"{fn}(): expected 'bias' of shape ({weight.shape[0]},), got shape {F._shape(bias)}")
        F._check_like(fn, "bias", bias, "weight", weight)
    if activation == "leaky_relu":
        _check_number(fn, "negative_slope", negative_slope)
        param = float(negative_slope)
    elif activation == "gelu":
        if approximate != "none" and approximate != "tanh":
            raise RuntimeError(f"{fn}(): argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
        param = approximate
    else:
        param = None
    return ActivationLinearFunction.apply(input, weight, bias, activation, param)


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    chunk_size: Optional[int] = None,
) -> Tensor:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target)`` without the whole logits.

    Same signature and result as :func:`torch.nn.functional.linear_cross_entropy`, with
    ``chunk_size`` in place of ``options``. Class-index targets go through
    :class:`LinearCrossEntropyFunction`, blocks of ``chunk_size`` classes at a time (default:
    :func:`default_chunk_size`, so a block of logits is about the size of ``input``), when the
    number of classes exceeds ``in_features`` or ``chunk_size`` is given. Otherwise (few classes,
    as MNIST's 10, where the logits are smaller than the input; class-probability targets;
    a K-dimensional ``linear_weight``) it is the unfused :func:`~manual_autograd.functional.linear`
    then :func:`~manual_autograd.functional.cross_entropy`, so nothing gets slower.

    Args:
        input: ``(in_features)`` or ``(N, in_features)``.
        linear_weight: ``(C, in_features)`` or ``(C, d1, ..., dK, in_features)``.
        target: class indices ``()``, ``(N)`` or ``(N, d1, ..., dK)``, or class probabilities of
            the logits' shape.
        linear_bias: ``(C)`` or ``(C, d1, ..., dK)``; optional.
        weight: ``(C)`` rescaling weight per class; optional.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        ignore_index: target value that is ignored; ``None`` means -100 for class indices.
        label_smoothing: in ``[0.0, 1.0]``.
        chunk_size: classes per block of the chunked path; ``None`` picks it (and picks the path).

    Examples::

        >>> x = torch.randn(64, 32, requires_grad=True)
        >>> w = torch.randn(1000, 32, requires_grad=True)
        >>> linear_cross_entropy(x, w, torch.randint(0, 1000, (64,))).backward()
    """
    fn = "linear_cross_entropy"
    F._check_tensor(fn, "input", input, 1)
    F._check_tensor(fn, "linear_weight", linear_weight, 2)
    F._check_tensor(fn, "target", target, 3)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")
    _check_number(fn, "label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"{fn}(): argument 'label_smoothing' must be in [0.0, 1.0], got {label_smoothing}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)):
        raise TypeError(f"{fn}(): argument 'chunk_size' must be an int or None, got {type(chunk_size).__name__}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"{fn}(): argument 'chunk_size' must be >= 1, got {chunk_size}")
    if input.dim() not in (1, 2):
        raise RuntimeError(f"{fn}(): expected 'input' of shape (in_features) or (N, in_features), got shape {F._shape(input)}")
    F._check_floating(fn, input)
    if linear_weight.dim() < 2:
        raise RuntimeError(
            f"{fn}(): expected 'linear_weight' of shape (C, in_features) or (C, d1, ..., in_features), "
            f"got shape {F._shape(linear_weight)}"
        )
    in_features, C = input.shape[-1], linear_weight.shape[0]
    out_features = tuple(linear_weight.shape[1:-1])
    if linear_weight.shape[-1] != in_features:
        raise RuntimeError(
            f"{fn}(): expected 'linear_weight' with last dimension in_features={in_features} like 'input' "
            f"(shape {F._shape(input)}), got shape {F._shape(linear_weight)}"
        )
    F._check_like(fn, "linear_weight", linear_weight, "input", input)
    if linear_bias is not None:
        F._check_tensor(fn, "linear_bias", linear_bias, 4)
        if tuple(linear_bias.shape) != (C, *out_features):
            raise RuntimeError(
                f"{fn}(): expected 'linear_bias' of shape {(C, *out_features)}, got shape {F._shape(linear_bias)}"
            )
        F._check_like(fn, "linear_bias", linear_bias, "input", input)
    if out_features and input.dim() == 1:
        raise RuntimeError(
            f"{fn}(): a K-dimensional loss (linear_weight of shape {F._shape(linear_weight)}) needs batched "
            f"input (N, {in_features}), got shape {F._shape(input)}"
        )
    logits_shape = (*input.shape[:-1], C, *out_features)
    probabilities = tuple(target.shape) == logits_shape
    if probabilities and ignore_index is not None:
        raise RuntimeError(f"{fn}(): argument 'ignore_index' cannot be given when 'target' holds class probabilities")
    ignore_index = -100 if ignore_index is None else ignore_index

    if probabilities or out_features or (chunk_size is None and C <= in_features):
        w2d = linear_weight.reshape(-1, in_features)
        b1d = None if linear_bias is None else linear_bias.reshape(-1)
        logits = F.linear(input, w2d, b1d).reshape(logits_shape)
        return F.cross_entropy(
            logits, target, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
        )

    # chunked path: class indices, (N, in) input
    if weight is not None:
        F._check_tensor(fn, "weight", weight, 5)
        if tuple(weight.shape) != (C,):
            raise RuntimeError(f"{fn}(): expected 'weight' of shape ({C},), one per class, got shape {F._shape(weight)}")
        F._check_like(fn, "weight", weight, "input", input)
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(
            f"{fn}(): expected 'target' of class indices with dtype torch.int64 (or torch.uint8), or class "
            f"probabilities of shape {logits_shape}; got dtype {target.dtype} and shape {F._shape(target)}"
        )
    expected = tuple(input.shape[:-1])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{fn}(): expected 'target' of shape {expected} to match 'input' of shape {F._shape(input)}, "
            f"got shape {F._shape(target)}"
        )
    if target.device != input.device:
        raise RuntimeError(f"{fn}(): expected 'target' on {input.device} like 'input', got {target.device}")
    x = input if input.dim() == 2 else input.unsqueeze(0)
    t = target.reshape(-1)
    # The blocks never index by the target, so an out-of-range class would pass silently: check it.
    if t.device.type == "cpu":
        F._check_target_values(t, C, ignore_index)
    else:  # no host sync: fails at the next sync point
        torch._assert_async(~(((t < 0) | (t >= C)) & (t != ignore_index)).any())
    chunk = chunk_size or default_chunk_size(x.shape[0], in_features, C)
    out = LinearCrossEntropyFunction.apply(
        x, linear_weight, linear_bias, t, weight, int(ignore_index), reduction, float(label_smoothing), int(chunk)
    )[0]
    return out.reshape(target.shape) if reduction == "none" and out.shape != target.shape else out
