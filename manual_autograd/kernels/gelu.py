"""GELU, ``approximate='none'`` (``x Φ(x)``) and ``'tanh'``; backward reads ``x`` and ``grad_out``."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, backward_operands, acc_type, any_dense, kernel, op, register

# The constants are literals: compiled Triton cannot read Python float globals (the interpreter can).
# 1.5957691216057308 = 2√(2/π), 0.044715 = c, 0.7071067811865476 = 1/√2, 0.3989422804014327 = 1/√(2π).
@triton.jit
def gelu_value(x, TANH: tl.constexpr):
    if TANH:  # ½ x (1 + tanh u) = x σ(2u), u = √(2/π)(x + c x³)
        return x * tl.sigmoid(1.5957691216057308 * x * (1.0 + 0.044715 * x * x))
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def gelu_derivative(x, TANH: tl.constexpr):
    if TANH:  # s (1 + (1 − s) x ∂(2u)/∂x), s = σ(2u): 1 − tanh² does not cancel where tanh → ±1
        x2 = x * x
        s = tl.sigmoid(1.5957691216057308 * x * (1.0 + 0.044715 * x2))
        return s * (1.0 + (1.0 - s) * x * 1.5957691216057308 * (1.0 + 3.0 * 0.044715 * x2))
    return 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476)) + x * tl.exp(-0.5 * x * x) * 0.3989422804014327


@triton.jit
def _gelu_fwd(x_ptr, out_ptr, n, TANH: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    tl.store(out_ptr + offs, gelu_value(x.to(ACC), TANH).to(x.dtype), mask=m)


@triton.jit
def _gelu_bwd(x_ptr, g_ptr, gx_ptr, n, G_STRIDE: tl.constexpr, TANH: tl.constexpr, ACC: tl.constexpr,
              BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
    tl.store(gx_ptr + offs, (g.to(ACC) * gelu_derivative(x.to(ACC), TANH)).to(g.dtype), mask=m)


def _check(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def _forward(x, approximate="none", traced=False):
    tanh = _check(approximate)
    src = any_dense(x)  # contiguous, channels_last, transposed: the output keeps the layout
    out = torch.empty_like(src)
    n = src.numel()
    if n:
        kernel(_gelu_fwd, traced)[(triton.cdiv(n, BLOCK),)](src, out, n, TANH=tanh, ACC=acc_type(x.dtype), BLOCK=BLOCK)
    return out


def _backward(x, grad_out, approximate="none", traced=False):
    tanh = _check(approximate)
    x, g, gs, gx, n = backward_operands(x, grad_out)
    if n:
        kernel(_gelu_bwd, traced)[(triton.cdiv(n, BLOCK),)](
            x, g, gx, n, G_STRIDE=gs, TANH=tanh, ACC=acc_type(x.dtype), BLOCK=BLOCK
        )
    return gx


@register("gelu_forward")
def _gelu_forward_op(x: Tensor, approximate: str) -> Tensor:
    return _forward(x, approximate, traced=True)


@register("gelu_backward")
def _gelu_backward_op(x: Tensor, grad_out: Tensor, approximate: str) -> Tensor:
    return _backward(x, grad_out, approximate, traced=True)


def forward(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU of ``x``, one pass, computed in float32 (float64 for float64); a new tensor of ``x``'s layout when dense (else contiguous), as torch's."""
    if torch.compiler.is_compiling():
        return op("gelu_forward")(x, approximate)
    return _forward(x, approximate)


def backward(x: Tensor, grad_out: Tensor, approximate: str = "none") -> Tensor:
    """``grad_out * gelu'(x)``, one pass; a new tensor of ``grad_out``'s dtype and torch's layout (``grad_out``'s)."""
    if torch.compiler.is_compiling():
        return op("gelu_backward")(x, grad_out, approximate)
    return _backward(x, grad_out, approximate)
