"""The op set: one ``torch.autograd.Function`` per layer, each forward beside its backward.

Every op follows the same pattern (PyTorch's "Extending PyTorch" notes):

* ``forward(*inputs)`` computes the output and nothing else;
* ``setup_context(ctx, inputs, out)`` writes the ledger: it saves exactly the tensors
  ``backward`` reads (through ``ctx.save_for_backward``) and the plain numbers as attributes;
* ``backward(ctx, grad_out)`` settles it, computing only the gradients that
  ``ctx.needs_input_grad`` asks for, with differentiable torch ops (so double backward works).

No op waits on a device: the only values read back to Python (cross-entropy's check for ignored
rows and its upstream gradient, on its unmasked path) are read on CPU tensors only. Validation of
arguments lives in :mod:`manual_autograd.functional`; these classes assume well-formed inputs.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import forward_ad

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

    ``torch.compile`` traces the subclass itself (dynamo does not call an overridden ``apply``)
    and refuses one that defines ``jvp``. A subclass's ``jvp`` therefore moves to its two twins
    that forward-mode AD can reach: the eager twin and the modern-path twin ``_func``.
    """

    generate_vmap_rule = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fwd, setup = cls.forward, cls.setup_context
        if "jvp" in cls.__dict__:  # see the class docstring: kept by the twins below
            cls._jvp = staticmethod(cls.jvp)
            del cls.jvp
        jvp = getattr(cls, "_jvp", None)  # its own, or a parent's

        def forward(ctx, *args):
            out = fwd(*args)
            setup(ctx, args, out)
            return out

        names = {"__qualname__": cls.__qualname__, "__module__": cls.__module__}
        attrs = {"forward": staticmethod(forward), "backward": staticmethod(cls.backward), **names}
        func = {"forward": staticmethod(fwd), "setup_context": staticmethod(setup), "generate_vmap_rule": True}
        func.update(backward=staticmethod(cls.backward), **names)
        if jvp is not None:
            attrs["jvp"] = func["jvp"] = staticmethod(jvp)
        cls._eager = type(cls.__name__, (torch.autograd.Function,), attrs)
        cls._func = type(cls.__name__, (torch.autograd.Function,), func)

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
            return cls._func.apply(*args)
        return cls._eager.apply(*args)


def _in_place(grad_out):
    """Whether a backward may compute in place on its own temporaries: when no graph of it is
    being recorded (no double backward) and no vmap batches it (``torch.func``, or
    ``is_grads_batched``), under which a temporary may hold fewer elements than ``grad_out``."""
    return not (
        torch.compiler.is_compiling()  # traced graphs stay functional (and dynamo can't trace below)
        or torch.is_grad_enabled()
        or torch._C._are_functorch_transforms_active()
        or torch._C._functorch.is_batchedtensor(grad_out)
        or torch._C._functorch.is_legacy_batchedtensor(grad_out)
    )


def _save_for_jvp(ctx, *tensors, **attrs):
    """Keep what ``jvp`` reads, only while forward-mode AD is on (the only time ``jvp`` runs).

    torch drops tensors saved for ``jvp`` as soon as ``apply`` returns, so they never add to
    what is kept for backward; outside forward AD this skips even the bookkeeping.
    """
    if forward_ad._current_level >= 0:
        ctx.save_for_forward(*tensors)
        for name, value in attrs.items():
            setattr(ctx, name, value)


def _rows(t):
    """View ``t`` as a 2-D ``(rows, features)`` tensor (features = last dim)."""
    return t.reshape(t.shape[:-1].numel(), t.shape[-1])


class LinearFunction(Function):
    """``out = x Wᵀ + b`` for ``x`` of shape ``(*, in)``; ``W`` is ``(out, in)``, ``b`` is ``(out)``."""

    @staticmethod
    def forward(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)  # torch's kernel (addmm for 2-D x): one call

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, weight, _ = inputs
        need_x, need_w, _ = ctx.needs_input_grad
        # dL/dx reads only W, dL/dW reads only x, dL/db reads nothing.
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        _save_for_jvp(ctx, x, weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if grad_out.dim() == 2:  # the common case, straight to the kernels
            if need_x:
                grad_x = grad_out.mm(weight)
            if need_w:
                grad_w = grad_out.t().mm(x)
            if need_b:
                grad_b = grad_out.sum(0)
            return grad_x, grad_w, grad_b
        if need_x:
            grad_x = grad_out.matmul(weight)
        if need_w:  # broadcast forward, sum backward: every leading dim is a batch dim
            grad_w = _rows(grad_out).t().matmul(_rows(x))
        if need_b:
            grad_b = _rows(grad_out).sum(0)
        return grad_x, grad_w, grad_b

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t):
        x, weight = ctx.saved_tensors
        # d(x Wᵀ + b) = dx Wᵀ + x dWᵀ + db
        out_t = None if x_t is None else x_t.matmul(weight.t())
        if weight_t is not None:
            t = x.matmul(weight_t.t())
            out_t = t if out_t is None else out_t + t
        if bias_t is not None:
            out_t = bias_t.expand(x.shape[:-1] + weight.shape[:1]) if out_t is None else out_t + bias_t
        return out_t


class ReLUFunction(Function):
    """``out = max(x, 0)``. Saves the output, which the next Linear keeps anyway."""

    @staticmethod
    def forward(x, inplace):
        if inplace:
            x.clamp_min_(0)
            return x  # the input object itself: torch.compile matches dirty inputs by identity
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
        ctx.save_for_backward(out)
        _save_for_jvp(ctx, out, inplace=inputs[1])

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        # NOTE: out >= 0, so sign(out) is the derivative: 1 where x > 0, else 0 (at x = 0 too, as
        # torch does). Multiplying by it is two float kernels; a bool mask and where() are slower.
        if _in_place(grad_out):
            return out.sign().mul_(grad_out), None
        return grad_out * out.sign(), None

    @staticmethod
    def jvp(ctx, x_t, _):
        (out,) = ctx.saved_tensors
        out_t = torch.where(out > 0, x_t, 0.0)
        return x_t.copy_(out_t) if ctx.inplace else out_t  # in place: the tangent too


def _pack_bits(mask):
    """Pack a bool tensor into uint8, 8 elements a byte (little-endian within the byte)."""
    flat = mask.reshape(-1)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8))
    bits = flat.reshape(-1, 8).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8, device=mask.device)).sum(1, dtype=torch.uint8)


def _unpack_bits(packed, shape):
    bits = (packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.reshape(-1)[: shape.numel()].reshape(shape).bool()


def _leaky_derivative(out, slope):
    """LeakyReLU's derivative from its output, for ``slope >= 0``: 1 where ``out > 0``, else ``slope``.

    NOTE: for ``slope >= 0`` sign(out) is sign(x), in {-1, 0, 1}; clamping it from below at
    ``slope`` (<= 1) maps it to {slope, slope, 1}, so x = 0 gets ``slope`` as in torch. Float
    kernels only: a bool mask and where() cost several times more on CPU.
    """
    d = out.sign()
    if slope <= 1:
        return d.clamp_min_(slope)
    return d.clamp_min_(0).mul_(1.0 - slope).add_(slope)


class LeakyReLUFunction(Function):
    """``out = x`` where ``x > 0``, else ``negative_slope * x`` (the value from torch's own kernel).

    For ``negative_slope >= 0`` the output's sign is the input's, so the output (kept by the next
    Linear anyway) is saved. For a negative slope it is not: the forward then also returns a
    bit-packed mask of ``x > 0`` (1/8 byte per element) as a second, non-differentiable output,
    and that mask is what is saved.
    """

    @staticmethod
    def forward(x, negative_slope, inplace):
        mask = None if negative_slope >= 0 else _pack_bits(x > 0)
        if inplace:
            torch._C._nn.leaky_relu_(x, negative_slope)
            out = x  # the input object itself: torch.compile matches dirty inputs by identity
        else:
            out = torch._C._nn.leaky_relu(x, negative_slope)
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
        _save_for_jvp(ctx, out if negative_slope >= 0 else out[1], inplace=inplace)

    @staticmethod
    def backward(ctx, grad_out, *_):
        (saved,) = ctx.saved_tensors
        slope = ctx.negative_slope
        if slope >= 0:
            d = _leaky_derivative(saved, slope)
            return d.mul_(grad_out) if _in_place(grad_out) else grad_out * d, None, None
        # NOTE: at x = 0 the derivative is taken as negative_slope, as torch does.
        positive = _unpack_bits(saved, ctx.shape)
        return torch.where(positive, grad_out, grad_out * slope), None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        (saved,) = ctx.saved_tensors
        slope = ctx.negative_slope
        positive = saved > 0 if slope >= 0 else _unpack_bits(saved, ctx.shape)
        out_t = torch.where(positive, x_t, x_t * slope)
        if ctx.inplace:  # in place: the tangent too
            out_t = x_t.copy_(out_t)
        return out_t if slope >= 0 else (out_t, None)


_HALF = (torch.float16, torch.bfloat16)


def _opmath(t):
    """``t`` in float32 if it is half precision: the smooth activations' derivatives compute in
    float32 and round once, as torch's own kernels do (chains of half-precision ops lose up to 2x
    accuracy)."""
    return t.float() if t.dtype in _HALF else t


def _cast_like(t, like):
    return t if t.dtype == like.dtype else t.to(like.dtype)


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715
_LOG2E = math.log2(math.e)


def _gelu_derivative(x, approximate):
    """GELU's ``d out / dx``, elementwise (in float32 for half-precision ``x``)."""
    x = _opmath(x)
    if approximate == "tanh":  # s (1 + (1 − s) x ∂(2u)/∂x) with s = σ(2u): see _gelu_grad_
        x2 = x * x
        s = torch.sigmoid((2.0 * _SQRT_2_PI) * x * (1.0 + _GELU_C * x2))
        return s * (1.0 + (1.0 - s) * x * (2.0 * _SQRT_2_PI) * (1.0 + 3.0 * _GELU_C * x2))
    # Φ(x) + x φ(x)
    return 0.5 * (1.0 + torch.erf(x * _SQRT1_2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI


def _gelu_grad_(x, approximate, grad_out):
    """``grad_out * d out / dx`` for float32/64 ``x`` outside double backward: in place on two
    fresh temporaries (on CPU a fresh full-size buffer can cost more than the kernel filling it),
    each call one pass over memory."""
    if approximate == "tanh":
        # NOTE: with u = √(2/π)(x + c x³), tanh(u) = 2σ(2u) − 1, so for s = σ(2u): ½(1 + tanh u) = s
        # and 1 − tanh²(u) = 4 s (1 − s); out' = s (1 + (1 − s) v) with v = x ∂(2u)/∂x = 3·2u − 2kx
        # (k = 2√(2/π)). A sigmoid costs a third of a tanh on CPU, and 1 − tanh² no longer cancels
        # where tanh → ±1.
        s = x * (2.0 * _SQRT_2_PI)  # k x
        v = x.square()
        s.addcmul_(s, v, value=_GELU_C)  # 2u = k x (1 + c x²)
        torch.add(s, x, alpha=-4.0 / 3.0 * _SQRT_2_PI, out=v)  # v / 3
        s.sigmoid_()
        return s.addcmul_(s, v.addcmul_(v, s, value=-1.0), value=3.0).mul_(grad_out)  # (s + s (1 − s) v) g
    # Φ(x) + x φ(x) = ½ (1 + erf(z) + 2 x φ(x)), z = x/√2, and 2 x φ(x) = x · (2/√(2π)) / exp(z²)
    z = x * _SQRT1_2
    # NOTE: e = exp(z²) is inf beyond |x| ≈ 13.3 in float32, where x / e is then 0, as φ underflows.
    # On CPU as exp2(log₂e z²): torch's CPU exp2 kernel takes half the time of its exp, which pays
    # for the extra pass; on a GPU, where every elementwise pass costs its memory traffic, it would not.
    e = z.square().mul_(_LOG2E).exp2_() if x.is_cpu else z.square().exp_()
    out = z.erf_().addcdiv_(x, e, value=2.0 * _INV_SQRT_2PI)
    return torch.addcmul(grad_out, grad_out, out, out=out).mul_(0.5)  # g (1 + out) / 2


class GELUFunction(Function):
    """``approximate='none'``: ``x Φ(x)``; ``'tanh'``: ``x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))``.

    The forward value is torch's own GELU kernel (one pass, float32 inside for half precision);
    the derivative is written out below.
    """

    @staticmethod
    def forward(x, approximate):
        return torch._C._nn.gelu(x, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, out):
        ctx.approximate = inputs[1]
        ctx.save_for_backward(inputs[0])
        _save_for_jvp(ctx, inputs[0])

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        if x.dtype not in _HALF and grad_out.dtype == x.dtype and _in_place(grad_out):
            return _gelu_grad_(x, ctx.approximate, grad_out), None
        return _cast_like(grad_out * _gelu_derivative(x, ctx.approximate), grad_out), None

    @staticmethod
    def jvp(ctx, x_t, _):
        (x,) = ctx.saved_tensors
        return _cast_like(x_t * _gelu_derivative(x, ctx.approximate), x_t)


def _silu_derivative(x):
    """SiLU's ``d out / dx``, elementwise (in float32 for half-precision ``x``)."""
    x = _opmath(x)
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


class SiLUFunction(Function):
    """``out = x σ(x)``; ``d out/dx = σ(x) (1 + x (1 − σ(x)))``.

    The forward value is torch's own SiLU kernel. In place, the input is overwritten, so the
    forward first keeps a copy of it and returns it as a second, non-differentiable output (what
    torch's own ``silu_`` keeps too).
    """

    @staticmethod
    def forward(x, inplace):
        if inplace:
            x0 = x.clone()
            torch._C._nn.silu_(x)
            return x, x0  # the input object itself (see ReLUFunction.forward)
        return torch._C._nn.silu(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        if inputs[1]:
            ctx.mark_dirty(inputs[0])
            ctx.mark_non_differentiable(out[1])
            ctx.save_for_backward(out[1])
        else:
            ctx.save_for_backward(inputs[0])
        _save_for_jvp(ctx, out[1] if inputs[1] else inputs[0], inplace=inputs[1])

    @staticmethod
    def backward(ctx, grad_out, *_):
        (x,) = ctx.saved_tensors
        if x.dtype not in _HALF and grad_out.dtype == x.dtype and _in_place(grad_out):
            # in place on two fresh temporaries: (σ + σ (x − x σ)) grad_out, four passes
            s = torch.sigmoid(x)
            return s.addcmul_(s, torch.addcmul(x, x, s, value=-1.0)).mul_(grad_out), None
        return _cast_like(grad_out * _silu_derivative(x), grad_out), None

    @staticmethod
    def jvp(ctx, x_t, _):
        (x,) = ctx.saved_tensors  # the input from before an in-place overwrite
        if ctx.inplace:  # in place: the tangent too
            return x_t.mul_(_silu_derivative(x)), None
        return _cast_like(x_t * _silu_derivative(x), x_t)


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


def _ce_row_coefficients(grad_out, valid, weight, w_t, reduction, eps, C, rows):
    """Per-row factors of the class-index cross-entropy gradient (shared with the fused op).

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


_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # torch's enum, for the kernel F.nll_loss calls


class CrossEntropyFunction(Function):
    """Softmax fused with cross-entropy: ``loss_i = −Σ_c q_ic log softmax(x_i)_c``.

    ``q`` is the target distribution: one-hot class indices (weighted by ``weight[t]``) or class
    probabilities (weighted by ``weight``), smoothed by ``label_smoothing``. Returns
    ``(loss, logp)``: the log-probabilities ``logp = log softmax(x)`` are a second output so that
    backward can read them (``softmax(x) = exp(logp)``, one kernel, where recomputing the softmax
    takes a reduction) and double backward still reaches ``x`` through them, as torch's own
    ``log_softmax`` does. The backward is ``softmax(x) · Σ_c q_ic − q``, scaled once by the
    reduction. Saves ``logp`` (the size of the logits, which are not kept), the target, the class
    weight, and for a class-weighted ``'mean'`` over class indices the 0-dim loss (read by the
    weight's gradient; the weighted mean's denominator is recomputed from the target).
    """

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        logp = torch.log_softmax(x, 1 if x.dim() > 1 else 0)
        if label_smoothing == 0 and not target.is_floating_point():
            # the common case: the loss value is logp picked at the target, (weighted) and reduced
            t = target if target.dtype == torch.int64 else target.long()  # NOTE: a uint8 target would wrap ignore_index
            return torch._C._nn.nll_loss_nd(logp, t, weight, _REDUCTIONS[reduction], ignore_index), logp
        lr = _class_last(logp)
        C = lr.shape[1]
        eps = label_smoothing
        # NOTE: log_softmax is max-shifted inside (never log(0) or exp overflow), and summing
        # q·log p, rather than lse·Σq − Σ q·x, avoids cancelling two ~|x| numbers (logits ~1e4).
        if target.is_floating_point():  # class probabilities
            q = _class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            if weight is not None:
                q = q * weight
            loss = -(q * lr).sum(1)
            if reduction == "none":
                return loss.reshape(x.shape[:1] + x.shape[2:] if x.dim() > 1 else ()), logp
            total = loss.sum()
            return (total / (lr.shape[0] if lr.shape[0] else float("nan")) if reduction == "mean" else total), logp

        t = target.reshape(-1).long()  # NOTE: compare as int64: a uint8 target would wrap ignore_index
        valid = t != ignore_index
        t = torch.where(valid, t, 0)
        nll = -lr.gather(1, t.unsqueeze(1)).squeeze(1)
        w_t = valid.to(x.dtype) if weight is None else torch.where(valid, weight.gather(0, t), 0.0)
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
        _save_for_jvp(ctx, logp, target, weight, loss)

    @staticmethod
    def backward(ctx, grad_out, grad_logp):
        logp, target, weight, out = ctx.saved_tensors
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
    def jvp(ctx, x_t, target_t, weight_t, *_):
        logp, target, weight, out = ctx.saved_tensors
        lr = _class_last(logp)
        rows, C = lr.shape
        eps = ctx.label_smoothing
        # NOTE: loss_i = Σ_c q_ic nlp_ic with nlp = −logp, and d nlp_ic = p_i · dx_i − dx_ic
        # (p = softmax(x) = exp(logp)); a tangent of q (target probabilities or weight) meets nlp itself.
        nlp = None if target_t is None and weight_t is None else -lr
        tr = None if x_t is None else _class_last(x_t)
        p_t = None if x_t is None else (lr.exp() * tr).sum(1)
        logp_t = None if x_t is None else _class_back(tr - p_t.unsqueeze(1), logp)
        out_t, denom_t = 0.0, None
        if target.is_floating_point():  # class probabilities
            q = _class_last(target)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            qw = q if weight is None else q * weight
            if x_t is not None:
                out_t = p_t * qw.sum(1) - (qw * tr).sum(1)
            if target_t is not None:
                q_t = _class_last(target_t) * (1.0 - eps)
                out_t = out_t + ((q_t if weight is None else q_t * weight) * nlp).sum(1)
            if weight_t is not None:
                out_t = out_t + (q * weight_t * nlp).sum(1)
            denom = rows
        else:
            t = target.reshape(-1).long()
            valid = t != ctx.ignore_index
            t = torch.where(valid, t, 0)
            w_t = valid.to(logp.dtype) if weight is None else torch.where(valid, weight.gather(0, t), 0.0)
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
    lr = _class_last(logp)
    t = target.reshape(-1, 1) if target.dtype == torch.int64 else target.reshape(-1, 1).long()
    if reduction == "none":
        grad_out = grad_out.reshape(-1, 1)
    in_place = _in_place(grad_out)
    if in_place and _none_ignored(t, ignore_index):  # every row kept: no mask
        g = grad_out.item() / t.shape[0] if reduction == "mean" else grad_out  # (a tensor multiplies faster)
    else:
        valid = t != ignore_index
        if reduction == "mean":
            grad_out = grad_out / torch.count_nonzero(valid)  # (no bool-to-int64 copy, as sum() makes)
        # NOTE: ignored rows get exactly 0, even when the mean's denominator is 0 (g is inf/nan).
        g = torch.where(valid, grad_out, 0.0)
        t = t.clamp(0, lr.shape[1] - 1)  # valid targets as they are, ignored rows anywhere (g = 0 there)
        if not in_place:  # double backward or vmap: differentiable, out-of-place ops
            return _class_back((lr.exp() * g).scatter_add(1, t, -g), logp)
    # exp(logp) is a temporary: take the one-hot off and scale, in place
    return _class_back(lr.exp().scatter_(1, t, -1.0, reduce="add").mul_(g), logp)


def _ce_backward(ctx, grad_out, logp, target, weight, out):
    """The gradients of :class:`CrossEntropyFunction`'s loss for ``logits``, ``target`` and ``weight``."""
    need_x, need_t, need_w = ctx.needs_input_grad[:3]
    eps, reduction = ctx.label_smoothing, ctx.reduction
    lr = _class_last(logp)
    rows, C = lr.shape

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
            grad_x = _class_back(g * (lr.exp() * qw.sum(1, keepdim=True) - qw), logp)
        if need_t:
            scale = (1.0 - eps) if weight is None else (1.0 - eps) * weight
            grad_t = _class_back(-g * scale * lr, target)
        if need_w:
            grad_w = -(g * q * lr).sum(0)
        return grad_x, grad_t, grad_w

    t = target.reshape(-1).long()
    valid = t != ctx.ignore_index
    t = torch.where(valid, t, 0)
    w_t = valid.to(logp.dtype) if weight is None else torch.where(valid, weight.gather(0, t), 0.0)
    g, onehot_coef, row_sum, smooth = _ce_row_coefficients(grad_out, valid, weight, w_t, reduction, eps, C, rows)
    if need_x:
        grad = lr.exp() * row_sum.unsqueeze(1)
        if smooth is not None:
            grad = grad - smooth.unsqueeze(1) * (1.0 if weight is None else weight)
        grad = grad.scatter_add(1, t.unsqueeze(1), -onehot_coef.unsqueeze(1))
        grad_x = _class_back(grad, logp)
    if need_w:
        nll = -lr.gather(1, t.unsqueeze(1)).squeeze(1)
        per_row = g * (1.0 - eps) * nll
        if reduction == "mean":  # d(S/D)/dw_c also moves the denominator D = Σ w_t
            per_row = per_row - g * out
        grad_w = torch.zeros_like(weight).index_add(0, t, torch.where(valid, per_row, 0.0))
        if eps > 0:
            grad_w = grad_w - (eps / C) * (g.unsqueeze(1) * lr).sum(0)
    return grad_x, None, grad_w
