"""Shared machinery of the ops: the Function base, the layout helpers, the class-index targets.

Nothing here knows a module or checks an argument: :mod:`manual_autograd.checks` does that
before any op runs, so the ops assume well-formed inputs.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

__all__ = [
    "Function",
    "in_place",
    "save_for_jvp",
    "rows",
    "class_last",
    "class_back",
    "opmath",
    "cast_like",
    "HALF",
    "pack_bits",
    "unpack_bits",
    "class_targets",
    "lead_sum",
    "is_dense",
    "strides_unless_contiguous",
    "with_strides",
    "class_grad",
    "same_layout",
    "in_dim_order",
]


class Function(torch.autograd.Function):
    """Base class of every op: a modern-style Function with a fast eager path.

    A subclass defines, all as static methods taking their arguments positionally:

    * ``forward(*inputs)`` — no ``ctx``: computes the output(s) and nothing else;
    * ``setup_context(ctx, inputs, out)`` — saves exactly what ``backward`` reads
      (``ctx.save_for_backward`` for tensors, attributes for plain numbers);
    * ``backward(ctx, *grad_outs)`` — the gradients ``ctx.needs_input_grad`` asks for, with
      differentiable torch ops so that double backward works;
    * ``forward_ad(ctx, *tangents)`` (optional) — forward-mode AD, the output tangent(s). It
      plays the role of ``torch.autograd.Function.jvp`` and is named differently on purpose: see
      below.

    How :meth:`apply` dispatches, and why. ``torch.autograd.Function.apply`` binds default
    arguments with ``inspect.signature`` on every call when ``setup_context`` is defined, which
    makes the modern style several times dearer per call than the older ``forward(ctx, ...)``
    style; but only the modern style works under ``torch.func``. So for each subclass this base
    builds two plain ``torch.autograd.Function`` twins, once, at class creation:

    * ``cls._eager``: ``forward(ctx, *args)`` runs the subclass's ``forward`` then its
      ``setup_context``; taken in plain eager mode;
    * ``cls._func``: the subclass's ``forward`` and ``setup_context`` as they are; taken when a
      ``torch.func`` transform is active or ``torch.compile`` is tracing.

    Both share the subclass's ``backward``, and both get the subclass's ``forward_ad`` as their
    ``jvp``. The subclass itself never defines ``jvp``: ``torch.compile`` traces the subclass
    (dynamo does not call an overridden ``apply``) and refuses a Function that defines one.
    """

    generate_vmap_rule = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "jvp" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: define forward_ad(ctx, *tangents), not jvp (see Function's docstring)")
        fwd, setup, backward = cls.forward, cls.setup_context, cls.backward

        def forward(ctx, *args):
            out = fwd(*args)
            setup(ctx, args, out)
            return out

        common = {"backward": staticmethod(backward), "__qualname__": cls.__qualname__, "__module__": cls.__module__}
        forward_ad_ = getattr(cls, "forward_ad", None)
        if forward_ad_ is not None:
            common["jvp"] = staticmethod(forward_ad_)
        eager = {"forward": staticmethod(forward), **common}
        func = {"forward": staticmethod(fwd), "setup_context": staticmethod(setup), "generate_vmap_rule": True, **common}
        cls._eager = type(cls.__name__, (torch.autograd.Function,), eager)
        cls._func = type(cls.__name__, (torch.autograd.Function,), func)

    @staticmethod
    def writes_input(*args) -> bool:
        """Whether this call writes into its first input (an in-place op's ``inplace`` argument)."""
        return False

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
            if cls.writes_input(*args) and not torch.compiler.is_compiling() and _untracked_vmap(args):
                # vmap alone, nothing recorded: the native in-place ops batch, where autograd.Function's
                # generated vmap rule refuses an input both written and returned
                return cls.forward(*args)
            return cls._func.apply(*args)
        if not torch.is_grad_enabled() and forward_ad._current_level < 0:
            # nothing to record (no_grad, inference_mode): the forward alone, as a native op runs. Through
            # torch.autograd.Function an input modified in place would come back as a new detached alias
            # of it (where torch's relu_ returns the input itself), and an inference tensor would fail.
            return cls.forward(*args)
        return cls._eager.apply(*args)


def _untracked_vmap(args):
    """Whether only vmap transforms are active and no graph or tangent is recorded of ``args``."""
    vmap = torch._C._functorch.TransformType.Vmap
    if forward_ad._current_level >= 0 or any(i.key() != vmap for i in torch._C._functorch.get_interpreter_stack() or ()):
        return False
    return not (torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args))


def in_place(grad_out):
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


def save_for_jvp(ctx, *tensors, **attrs):
    """Keep what ``forward_ad`` reads, only while forward-mode AD is on (the only time it runs).

    torch drops tensors saved for forward AD as soon as ``apply`` returns, so they never add to
    what is kept for backward; outside forward AD this skips even the bookkeeping.
    """
    if forward_ad._current_level >= 0:
        ctx.save_for_forward(*tensors)
        for name, value in attrs.items():
            setattr(ctx, name, value)


def rows(t):
    """View ``t`` as a 2-D ``(rows, features)`` tensor (features = last dim)."""
    return t.reshape(t.shape[:-1].numel(), t.shape[-1])


def class_last(t):
    """``(C)``, ``(N, C)`` or ``(N, C, d1, ...)`` as ``(rows, C)``."""
    if t.dim() == 1:
        return t.unsqueeze(0)
    if t.dim() == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def class_back(g, like):
    """Inverse of :func:`class_last`: ``(rows, C)`` back to the layout of ``like``."""
    if like.dim() == 1:
        return g.squeeze(0)
    if like.dim() == 2:
        return g
    return g.reshape(like.shape[0], *like.shape[2:], like.shape[1]).movedim(-1, 1)


HALF = (torch.float16, torch.bfloat16)


def opmath(t):
    """``t`` in float32 if it is half precision: the smooth activations' derivatives compute in
    float32 and round once, as torch's own kernels do (chains of half-precision ops lose accuracy)."""
    return t.float() if t.dtype in HALF else t


def cast_like(t, like):
    return t if t.dtype == like.dtype else t.to(like.dtype)


def pack_bits(mask):
    """Pack a bool tensor into uint8, 8 elements a byte (little-endian within the byte)."""
    flat = mask.reshape(-1)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8))
    bits = flat.reshape(-1, 8).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8, device=mask.device)).sum(1, dtype=torch.uint8)


def unpack_bits(packed, shape):
    """Inverse of :func:`pack_bits`: the bool tensor of ``shape``."""
    shape = torch.Size(shape)
    bits = (packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.reshape(-1)[: shape.numel()].reshape(shape).bool()


def class_targets(target, ignore_index, weight=None, dtype=None):
    """Class-index targets, flat, as the cross-entropy ops read them: ``(valid, t, w_t)``.

    ``valid`` marks the rows kept (target != ``ignore_index``), ``t`` is the target with ignored
    rows sent to class 0 (a safe index), ``w_t`` the row's weight: ``weight[t]`` (or 1) where
    kept, 0 where ignored, of ``dtype`` (default: ``weight``'s).

    NOTE: compared as int64: a uint8 target against ``ignore_index=-100`` would wrap it to 156.
    """
    t = target.reshape(-1).long()
    valid = t != ignore_index
    t = torch.where(valid, t, 0)
    if weight is None:
        w_t = valid.to(dtype)
    else:
        w_t = torch.where(valid, weight.gather(0, t), 0.0)
    return valid, t, w_t


def lead_sum(t, k):
    """``t`` summed over all but its last ``k`` dims (``t`` itself when it has no others: an empty
    ``dim`` tuple would sum everything)."""
    return t.sum(tuple(range(t.dim() - k))) if t.dim() > k else t


def is_dense(t):
    """Whether ``t``'s elements fill its memory without gap or overlap in some order of its dims
    (contiguous, channels_last, channels_last_3d, transposed, ...): a kernel may index it flat, and
    ``torch.empty_like`` gives a tensor of the same strides."""
    expected = 1
    for size, stride in sorted((p for p in zip(t.shape, t.stride()) if p[0] != 1), key=lambda p: p[1]):
        if stride != expected:
            return size == 0 or t.numel() == 0
        expected *= size
    return True


def strides_unless_contiguous(t):
    """``t``'s strides when it is dense in another order than row-major (channels_last, transposed),
    else None: what an op computing row-major keeps to give its result ``t``'s layout, as torch does."""
    return None if t.is_contiguous() or not is_dense(t) else t.stride()


def with_strides(t, strides):
    """``t`` (differentiably) in the layout of ``strides`` (e.g. from :func:`strides_unless_contiguous`):
    ``t`` itself when its strides agree over the dims of size > 1, else a copy."""
    if strides is None or all(a == b for a, b, n in zip(t.stride(), strides, t.shape) if n != 1):
        return t
    # out of place (vmap batches it): the dims outermost-first in that layout, made dense, put back
    order = sorted(range(t.dim()), key=lambda d: -strides[d])
    back = sorted(range(t.dim()), key=lambda d: order[d])
    return t.permute(order).contiguous().permute(back)


def class_grad(g, like):
    """:func:`class_back` of a gradient, row-major as torch's cross-entropy gradient is whatever the
    logits' layout (for ``(N, C, d1, ...)``: one transposing pass)."""
    return class_back(g, like).contiguous()


def same_layout(x, g):
    """Whether a gradient computed in ``x``'s layout has the one torch gives ``grad_out · f'(x)``
    (``grad_out``'s): their strides agree, or ``g`` is one value expanded (``loss.sum()``)."""
    if x.stride() == g.stride() or all(s == 0 for s in g.stride()):
        return True
    return x.is_contiguous() and g.is_contiguous()


def in_dim_order(t, ref):
    """``t`` (as many dims as ``ref``) laid out densely in ``ref``'s order of dims (by stride) when
    that is not row-major, as torch's attention lays out its output after the query (heads-last
    views of a fused qkv projection, say); else ``t`` itself, and for an expanded ``ref`` too."""
    if ref.is_contiguous() or t.dim() != ref.dim() or any(st == 0 and n > 1 for st, n in zip(ref.stride(), ref.shape)):
        return t
    order = sorted(range(ref.dim()), key=lambda i: (-ref.stride(i), i))  # outermost first
    return t.permute(order).contiguous().permute([order.index(i) for i in range(ref.dim())])
