"""The op set: one ``torch.autograd.Function`` per layer, each forward beside its backward.

Every op follows the same pattern (PyTorch's "Extending PyTorch" notes):

* ``forward(*inputs)`` computes the output and nothing else;
* ``setup_context(ctx, inputs, out)`` writes the ledger: it saves exactly the tensors
  ``backward`` reads (through ``ctx.save_for_backward``) and the plain numbers as attributes;
* ``backward(ctx, grad_out)`` settles it, computing only the gradients that
  ``ctx.needs_input_grad`` asks for, with differentiable torch ops (so double backward works).

No op calls ``.item()`` or otherwise waits on the device. Validation of arguments lives in
:mod:`manual_autograd.functional`; these classes assume well-formed inputs.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "Function",
    "LinearFunction",
    "ReLUFunction",
    "LeakyReLUFunction",
    "GELUFunction",
    "SiLUFunction",
    "CrossEntropyFunction",
]


class Function(torch.autograd.Function):
    """Base class: a modern-style Function (``forward`` + ``setup_context``) with a fast eager path.

    ``torch.autograd.Function.apply`` binds default arguments with ``inspect.signature`` on
    every call when ``setup_context`` is defined, which costs ~30 µs a call; the older
    ``forward(ctx, ...)`` style costs ~4 µs but is not supported by ``torch.func``. Each
    subclass therefore gets an eager twin, built once here, whose ``forward(ctx, *args)`` runs
    the subclass's own ``forward`` and ``setup_context`` and shares its ``backward`` (and
    ``jvp``). ``apply`` takes the twin in plain eager mode and the modern path whenever a
    ``torch.func`` transform is active or ``torch.compile`` is tracing. Callers pass every
    argument positionally.
    """

    generate_vmap_rule = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fwd, setup = cls.forward, cls.setup_context

        def forward(ctx, *args):
            out = fwd(*args)
            setup(ctx, args, out)
            return out

        attrs = {"forward": staticmethod(forward), "backward": staticmethod(cls.backward)}
        if cls.jvp is not torch.autograd.Function.jvp:
            attrs["jvp"] = staticmethod(cls.jvp)
        attrs["__qualname__"] = cls.__qualname__
        attrs["__module__"] = cls.__module__
        cls._eager = type(cls.__name__, (torch.autograd.Function,), attrs)

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
            return super().apply(*args)
        return cls._eager.apply(*args)


def _rows(t):
    """View ``t`` as a 2-D ``(rows, features)`` tensor (features = last dim)."""
    return t.reshape(t.shape[:-1].numel(), t.shape[-1])


class LinearFunction(Function):
    """``out = x Wᵀ + b`` for ``x`` of shape ``(*, in)``; ``W`` is ``(out, in)``, ``b`` is ``(out)``."""

    @staticmethod
    def forward(x, weight, bias):
        if bias is not None and x.dim() == 2:
            return torch.addmm(bias, x, weight.t())
        out = x.matmul(weight.t())
        return out if bias is None else out + bias

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, weight, _ = inputs
        need_x, need_w, _ = ctx.needs_input_grad
        # dL/dx reads only W, dL/dW reads only x, dL/db reads nothing.
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = grad_out.matmul(weight)
        if need_w:  # broadcast forward, sum backward: every leading dim is a batch dim
            grad_w = _rows(grad_out).t().matmul(_rows(x))
        if need_b:
            grad_b = _rows(grad_out).sum(0)
        return grad_x, grad_w, grad_b


class ReLUFunction(Function):
    """``out = max(x, 0)``. Saves the output, which the next Linear keeps anyway."""

    @staticmethod
    def forward(x, inplace):
        return x.clamp_min_(0) if inplace else x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
        ctx.save_for_backward(out)

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        # NOTE: at x = 0 the derivative is taken as 0, as torch does (out > 0 is False there).
        return torch.where(out > 0, grad_out, 0.0), None


def _pack_bits(mask):
    """Pack a bool tensor into uint8, 8 elements a byte (little-endian within the byte)."""
    flat = mask.reshape(-1)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8))
    bits = flat.reshape(-1, 8).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8, device=mask.device)).sum(1, dtype=torch.uint8)


def _unpack_bits(packed, shape):
    bits = (packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.reshape(-1)[: shape.numel()].reshape(shape).bool()


class LeakyReLUFunction(Function):
    """``out = x`` where ``x > 0``, else ``negative_slope * x``.

    For ``negative_slope >= 0`` the output's sign is the input's, so the output (kept by the next
    Linear anyway) is saved. For a negative slope it is not: the forward then also returns a
    bit-packed mask of ``x > 0`` (1/8 byte per element) as a second, non-differentiable output,
    and that mask is what is saved.
    """

    @staticmethod
    def forward(x, negative_slope, inplace):
        mask = None if negative_slope >= 0 else _pack_bits(x > 0)
        if inplace:
            out = torch.where(x > 0, x, x * negative_slope, out=x)
        else:
            out = torch.where(x > 0, x, x * negative_slope)
        return out if mask is None else (out, mask)

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, negative_slope, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        ctx.negative_slope = negative_slope
        if negative_slope >= 0:
            ctx.save_for_backward(out)
        else:
            ctx.mark_non_differentiable(out[1])
            ctx.save_for_backward(out[1])
            ctx.shape = x.shape

    @staticmethod
    def backward(ctx, grad_out, *_):
        (saved,) = ctx.saved_tensors
        slope = ctx.negative_slope
        # NOTE: at x = 0 the derivative is taken as negative_slope, as torch does.
        positive = saved > 0 if slope >= 0 else _unpack_bits(saved, ctx.shape)
        return torch.where(positive, grad_out, grad_out * slope), None, None


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class GELUFunction(Function):
    """``approximate='none'``: ``x Φ(x)``; ``'tanh'``: ``x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))``."""

    @staticmethod
    def forward(x, approximate):
        if approximate == "tanh":
            return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_PI * (x + _GELU_C * x * x * x)))
        return 0.5 * x * (1.0 + torch.erf(x * _SQRT1_2))

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.approximate = inputs[1]
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        if ctx.approximate == "tanh":
            x2 = x * x
            t = torch.tanh(_SQRT_2_PI * x * (1.0 + _GELU_C * x2))
            d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_PI * (1.0 + 3.0 * _GELU_C * x2)
        else:  # Φ(x) + x φ(x)
            d = 0.5 * (1.0 + torch.erf(x * _SQRT1_2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return grad_out * d, None


class SiLUFunction(Function):
    """``out = x σ(x)``; ``d out/dx = σ(x) (1 + x (1 − σ(x)))``.

    In place, the input is overwritten, so the forward first keeps a copy of it and returns it
    as a second, non-differentiable output (what torch's own ``silu_`` keeps too).
    """

    @staticmethod
    def forward(x, inplace):
        if inplace:
            x0 = x.clone()
            return x.mul_(torch.sigmoid(x0)), x0
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
            ctx.mark_non_differentiable(out[1])
            ctx.save_for_backward(out[1])
        else:
            ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_out, *_):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_out * (s * (1.0 + x * (1.0 - s))), None


def _class_last(t):
    """``(C)``, ``(N, C)`` or ``(N, C, d1, ...)`` as ``(rows, C)``."""
    if t.dim() == 1:
        return t.unsqueeze(0)
    if t.dim() == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def _class_back(g, like):
    """Inverse of :func:`_class_last`: ``(rows, C)`` back to the layout of ``like``."""
    if like.dim() == 1:
        return g.squeeze(0)
    if like.dim() == 2:
        return g
    return g.reshape(like.shape[0], *like.shape[2:], like.shape[1]).movedim(-1, 1)


class CrossEntropyFunction(Function):
    """Softmax fused with cross-entropy: ``loss_i = −Σ_c q_ic log softmax(x_i)_c``.

    ``q`` is the target distribution: one-hot class indices (weighted by ``weight[t]``) or class
    probabilities (weighted by ``weight``), smoothed by ``label_smoothing``. The backward is
    ``softmax(x) · Σ_c q_ic − q``, scaled once by the reduction. Saves the logits, the target,
    the class weight, and for ``'mean'`` the 0-dim output (the weighted mean's denominator is
    recomputed from the target).
    """

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        xr = _class_last(x)
        C = xr.shape[1]
        eps = label_smoothing
        lse = torch.logsumexp(xr, 1)  # NOTE: max-shifted inside, so never log(0) or exp overflow
        if target.is_floating_point():  # class probabilities
            q = _class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            if weight is not None:
                q = q * weight
            loss = lse * q.sum(1) - (q * xr).sum(1)
            if reduction == "none":
                return loss.reshape(x.shape[:1] + x.shape[2:] if x.dim() > 1 else ())
            total = loss.sum()
            return total / (xr.shape[0] if xr.shape[0] else float("nan")) if reduction == "mean" else total

        t = target.reshape(-1)
        valid = t != ignore_index
        t = torch.where(valid, t, 0).long()
        nll = lse - xr.gather(1, t.unsqueeze(1)).squeeze(1)
        w_t = valid.to(x.dtype) if weight is None else torch.where(valid, weight.gather(0, t), 0.0)
        loss = w_t * nll if eps == 0 else (1.0 - eps) * w_t * nll
        if eps > 0:  # smoothing term: (eps/C) Σ_c w_c (lse − x_c), zero on ignored rows
            smooth = lse * C - xr.sum(1) if weight is None else lse * weight.sum() - xr.matmul(weight)
            loss = loss + torch.where(valid, smooth, 0.0) * (eps / C)
        if reduction == "none":
            return loss.reshape(target.shape)
        if reduction == "sum":
            return loss.sum()
        return loss.sum() / w_t.sum()

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, target, weight, ignore_index, reduction, label_smoothing = inputs
        ctx.ignore_index, ctx.reduction, ctx.label_smoothing = ignore_index, reduction, label_smoothing
        ctx.save_for_backward(x, target, weight, out if reduction == "mean" else None)

    @staticmethod
    def backward(ctx, grad_out):
        x, target, weight, out = ctx.saved_tensors
        need_x, need_t, need_w = ctx.needs_input_grad[:3]
        eps, reduction = ctx.label_smoothing, ctx.reduction
        xr = _class_last(x)
        rows, C = xr.shape
        grad_x = grad_t = grad_w = None

        if target.is_floating_point():
            q = _class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            qw = q if weight is None else q * weight
            # per-row upstream gradient g_i
            if reduction == "none":
                g = grad_out.reshape(rows, 1)
            else:
                g = grad_out.reshape(1, 1) / rows if reduction == "mean" else grad_out.reshape(1, 1)
            if need_x:
                grad_x = _class_back(g * (torch.softmax(xr, 1) * qw.sum(1, keepdim=True) - qw), x)
            if need_t or need_w:
                neg_logp = -torch.log_softmax(xr, 1)
                if need_t:
                    scale = (1.0 - eps) if weight is None else (1.0 - eps) * weight
                    grad_t = _class_back(g * scale * neg_logp, target)
                if need_w:
                    grad_w = (g * q * neg_logp).sum(0)
            return grad_x, grad_t, grad_w, None, None, None

        t = target.reshape(-1)
        valid = t != ctx.ignore_index
        t = torch.where(valid, t, 0).long()
        w_t = valid.to(x.dtype) if weight is None else torch.where(valid, weight.gather(0, t), 0.0)
        if reduction == "none":
            g = grad_out.reshape(-1)
        elif reduction == "sum":
            g = grad_out.expand(rows)
        else:
            g = grad_out / w_t.sum()
        # NOTE: ignored rows get exactly 0, even when the mean's denominator is 0 (g is inf/nan).
        g = torch.where(valid, g, 0.0)
        onehot_coef = g * w_t * (1.0 - eps)  # weight of the one-hot part of q per row
        if need_x:
            if eps == 0:
                row_sum = onehot_coef
            else:
                w_sum = C if weight is None else weight.sum()
                row_sum = onehot_coef + g * (eps / C) * w_sum
            grad = torch.softmax(xr, 1) * row_sum.unsqueeze(1)
            if eps > 0:
                w_row = 1.0 if weight is None else weight
                grad = grad - (g * (eps / C)).unsqueeze(1) * w_row
            grad = grad.scatter_add(1, t.unsqueeze(1), -onehot_coef.unsqueeze(1))
            grad_x = _class_back(grad, x)
        if need_w:
            neg_logp = -torch.log_softmax(xr, 1)
            nll = neg_logp.gather(1, t.unsqueeze(1)).squeeze(1)
            per_row = g * (1.0 - eps) * nll
            if reduction == "mean":  # d(S/D)/dw_c also moves the denominator D = Σ w_t
                per_row = per_row - g * out
            grad_w = torch.zeros_like(weight).index_add(0, t, torch.where(valid, per_row, 0.0))
            if eps > 0:
                grad_w = grad_w + (eps / C) * (g.unsqueeze(1) * neg_logp).sum(0)
        return grad_x, None, grad_w, None, None, None
