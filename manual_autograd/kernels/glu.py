"""Gated units ``act(gate) · up`` (SwiGLU, GEGLU exact and tanh): the forward, and a backward
that writes ``d_gate``, ``d_up`` and, for GatedLinear's weight gradient, the recomputed product
``act(gate) · up``, each as asked, in one pass over ``gate``, ``up`` and ``grad``."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, acc_type, dense, grad_layout, kernel, op, register
from .gelu import gelu_derivative, gelu_value
from .silu import silu_derivative, silu_value

_ACTS = {"silu": 0, "gelu": 1}


@triton.jit
def _act(x, GELU: tl.constexpr, TANH: tl.constexpr):
    if GELU:
        return gelu_value(x, TANH)
    return silu_value(x)


@triton.jit
def _act_derivative(x, GELU: tl.constexpr, TANH: tl.constexpr):
    if GELU:
        return gelu_derivative(x, TANH)
    return silu_derivative(x)


@triton.jit
def _glu_fwd(gate_ptr, up_ptr, out_ptr, n, GELU: tl.constexpr, TANH: tl.constexpr, ACC: tl.constexpr,
             BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(gate_ptr + offs, mask=m)
    u = tl.load(up_ptr + offs, mask=m)
    # NOTE: act(gate) rounds to the input dtype before the product, as the unfused act then mul
    a = _act(x.to(ACC), GELU, TANH).to(x.dtype)
    tl.store(out_ptr + offs, (a.to(ACC) * u.to(ACC)).to(x.dtype), mask=m)


@triton.jit
def _glu_bwd(gate_ptr, up_ptr, g_ptr, p_ptr, dg_ptr, du_ptr, n, G_STRIDE: tl.constexpr, GELU: tl.constexpr,
             TANH: tl.constexpr, WRITE_PROD: tl.constexpr, WRITE_DG: tl.constexpr, WRITE_DU: tl.constexpr,
             ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(gate_ptr + offs, mask=m)
    xa = x.to(ACC)
    if WRITE_PROD or WRITE_DU:
        a = _act(xa, GELU, TANH).to(x.dtype).to(ACC)
        if WRITE_PROD:
            u = tl.load(up_ptr + offs, mask=m)
            tl.store(p_ptr + offs, (a * u.to(ACC)).to(x.dtype), mask=m)
        if WRITE_DU:
            g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
            tl.store(du_ptr + offs, (g.to(ACC) * a).to(g.dtype), mask=m)
    if WRITE_DG:
        g = tl.load(g_ptr + offs * G_STRIDE, mask=m)
        u = tl.load(up_ptr + offs, mask=m)
        gu = (g.to(ACC) * u.to(ACC)).to(g.dtype)  # rounded as the unfused mul's backward rounds it
        tl.store(dg_ptr + offs, (gu.to(ACC) * _act_derivative(xa, GELU, TANH)).to(g.dtype), mask=m)


def _flags(activation, approximate):
    if activation not in _ACTS:
        raise ValueError(f"glu: argument 'activation' must be one of {tuple(_ACTS)}, got {activation!r}")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"glu: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    return activation == "gelu", activation == "gelu" and approximate == "tanh"


def _forward(gate, up, activation, approximate, traced=False):
    gelu, tanh = _flags(activation, approximate)
    gate, up = dense(gate), dense(up)
    out = torch.empty_like(gate)
    n = gate.numel()
    if n:
        kernel(_glu_fwd, traced)[(triton.cdiv(n, BLOCK),)](
            gate, up, out, n, GELU=gelu, TANH=tanh, ACC=acc_type(gate.dtype), BLOCK=BLOCK
        )
    return out


def _backward(gate, up, grad, activation, approximate, need_gate, need_up, need_prod, traced=False):
    gelu, tanh = _flags(activation, approximate)
    gate = dense(gate)
    up = None if up is None else dense(up)
    need_grad = grad is not None and (need_gate or need_up)
    g, gs = grad_layout(grad) if need_grad else (gate, 1)
    dtype = grad.dtype if need_grad else gate.dtype

    def new(want, dt):
        return torch.empty(gate.shape, dtype=dt, device=gate.device) if want else None

    p, dg, du = new(need_prod, gate.dtype), new(need_grad and need_gate, dtype), new(need_grad and need_up, dtype)
    n = gate.numel()
    if n and (p is not None or dg is not None or du is not None):
        kernel(_glu_bwd, traced)[(triton.cdiv(n, BLOCK),)](
            gate, gate if up is None else up, g, gate if p is None else p, gate if dg is None else dg,
            gate if du is None else du, n, G_STRIDE=gs, GELU=gelu, TANH=tanh, WRITE_PROD=p is not None,
            WRITE_DG=dg is not None, WRITE_DU=du is not None, ACC=acc_type(gate.dtype), BLOCK=BLOCK,
        )
    return p, dg, du


@register("glu_forward")
def _glu_forward_op(gate: Tensor, up: Tensor, activation: str, approximate: str) -> Tensor:
    return _forward(gate, up, activation, approximate, traced=True)


@register("glu_backward")
def _glu_backward_op(
    gate: Tensor, up: Optional[Tensor], grad: Optional[Tensor], activation: str, approximate: str,
    need_gate: bool, need_up: bool, need_prod: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    out = _backward(gate, up, grad, activation, approximate, need_gate, need_up, need_prod, traced=True)
    return tuple(gate.new_empty(0) if t is None else t for t in out)  # a custom op returns tensors, never None


def forward(gate: Tensor, up: Tensor, activation: str = "silu", approximate: str = "none") -> Tensor:
    """``act(gate) · up``, one pass (computed in float32, float64 for float64); a new contiguous tensor."""
    if torch.compiler.is_compiling():
        return op("glu_forward")(gate, up, activation, approximate)
    return _forward(gate, up, activation, approximate)


def backward(
    gate: Tensor, up: Optional[Tensor], grad: Optional[Tensor], activation: str = "silu", approximate: str = "none",
    need_gate: bool = True, need_up: bool = True, need_prod: bool = False,
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``(act(gate) · up, grad · up · act'(gate), grad · act(gate))`` in one pass, each a new
    contiguous tensor or None where not asked (``need_prod``, ``need_gate``, ``need_up``).

    Args:
        gate, up: the unit's inputs; ``up`` may be None when only ``d_up`` is asked for.
        grad: the gradient reaching the product (``gate``'s shape; may be expanded), or None when
            only the product is asked for.
    """
    if torch.compiler.is_compiling():
        out = op("glu_backward")(gate, up, grad, activation, approximate, need_gate, need_up, need_prod)
        asked = (need_prod, grad is not None and need_gate, grad is not None and need_up)
        return tuple(t if want else None for t, want in zip(out, asked))
    return _backward(gate, up, grad, activation, approximate, need_gate, need_up, need_prod)
