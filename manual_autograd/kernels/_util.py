"""Shared launch helpers of the kernels: layout, block sizes, torch.compile registration."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..ops.base import is_dense, with_strides

try:  # torch >= 2.6: kernels a compiled graph can trace
    from torch.library import triton_op, wrap_triton
except ImportError:  # pragma: no cover - older torch: compiled graphs take the reference
    triton_op = wrap_triton = None

HAS_TRITON_OP = triton_op is not None
BLOCK = 1024  # elements per program of the elementwise kernels (a multiple of 8: whole mask bytes)
NS = "manual_autograd"


def interpreting() -> bool:
    """Whether ``@triton.jit`` returns interpreted kernels now (it reads ``TRITON_INTERPRET`` when it runs)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def dense(t):
    """``t`` itself if contiguous, else a contiguous copy: the kernels index flat, row-major memory."""
    return t if t.is_contiguous() else t.contiguous()


def written(t):
    """``t`` after a kernel wrote into it: its version counter bumped, as a native in-place op's is
    (autograd's check that a saved tensor is unchanged reads it; an inference tensor has none)."""
    if not t.is_inference():
        torch.autograd.graph.increment_version(t)
    return t


def grad_layout(g):
    """``(tensor, stride)`` for a kernel reading ``g`` flat: stride 1 when contiguous, 0 when ``g`` is
    one value expanded (``loss.sum().backward()`` hands such a ``grad_out``), else a contiguous copy."""
    if g.is_contiguous():
        return g, 1
    if all(s == 0 for s in g.stride()):
        return g, 0
    return g.contiguous(), 1


def acc_type(dtype):
    """The type a kernel computes in: float64 for float64, float32 otherwise (half rounds once)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


class _OnItsDevice:
    """An eager launch of ``k`` on the CUDA device of its first argument (every kernel's first
    argument is a tensor): Triton launches on the *current* device, which need not be the tensors'."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __getitem__(self, grid):
        run = self.k[grid]

        def launch(t, *args, **kwargs):
            if t.is_cuda and t.get_device() != torch.cuda.current_device():
                with torch.cuda.device(t.device):
                    return run(t, *args, **kwargs)
            return run(t, *args, **kwargs)

        return launch


def kernel(k, traced):
    """``k`` as launched: wrapped for tracing inside a ``triton_op`` body (the compiled graph guards
    the device), else launched on its tensors' device."""
    return wrap_triton(k) if traced else _OnItsDevice(k)


def register(name, mutates_args=()):
    """Register a ``triton_op`` body as ``torch.ops.manual_autograd.<name>`` (no-op without triton_op)."""

    def dec(fn):
        if HAS_TRITON_OP:
            return triton_op(f"{NS}::{name}", fn, mutates_args=mutates_args)
        return fn

    return dec


def op(name):
    """``torch.ops.manual_autograd.<name>``: what a compiled graph calls."""
    return getattr(getattr(torch.ops, NS), name)


def backward_operands(saved, grad_out, saved_first=False):
    """An elementwise backward's operands, all indexed flat in one memory order: ``saved``, ``grad_out``
    and its flat stride (0 for one value expanded), the new ``grad_x`` and the element count.

    ``grad_x`` takes the layout torch's own backward gives (its first operand's that is not one value
    expanded): ``grad_out``'s (``gelu_backward(grad_out, x)``), or with ``saved_first`` ``saved``'s
    (``threshold_backward`` and ``leaky_relu_backward`` read ``x`` first); the other operand is
    copied into that layout when it differs."""
    if grad_out.numel() and all(s == 0 for s in grad_out.stride()):
        g, gs = grad_out, 0
        saved = ref = any_dense(saved)
    elif saved_first:
        saved = ref = any_dense(saved)
        g, gs = in_layout(grad_out, ref), 1
    else:
        g, gs = any_dense(grad_out), 1
        saved, ref = in_layout(saved, g), g
    gx = torch.empty_like(ref, dtype=grad_out.dtype)
    return saved, g, gs, gx, gx.numel()


def any_dense(t):
    """``t`` itself if :func:`is_dense` (an elementwise kernel's output then keeps its layout, as torch's
    elementwise ops do), else a contiguous copy."""
    return t if t.is_contiguous() or is_dense(t) else t.contiguous()


def in_layout(t, like):
    """``t`` in the memory layout of ``like`` (dense, same shape): ``t`` itself when their strides agree
    (over dims of size > 1), else a copy in that layout."""
    return with_strides(t, like.stride())
