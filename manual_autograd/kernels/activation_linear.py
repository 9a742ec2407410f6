"""ActivationLinear's backward pointwise pass: from ``z`` and ``g = grad_out @ W``, one kernel
writes ``act(z)`` (for ``dL/dW = grad_outᵀ act(z)``) and ``g ⊙ act'(z)`` (``dL/dz``, into ``g``)."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import BLOCK, acc_type, dense, kernel, op, register
from .gelu import gelu_derivative, gelu_value
from .silu import silu_derivative, silu_value

_ACTS = {"relu": 0, "leaky_relu": 1, "gelu": 2, "silu": 3}


@triton.jit
def _act_bwd(z_ptr, g_ptr, a_ptr, gz_ptr, n, slope: tl.float64, ACT: tl.constexpr, TANH: tl.constexpr,
             WRITE_ACT: tl.constexpr, WRITE_GRAD: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    z = tl.load(z_ptr + offs, mask=m)
    za = z.to(ACC)
    if WRITE_ACT:
        if ACT == 0:
            a = tl.where(za < 0, 0.0, za)
        elif ACT == 1:
            a = tl.where(za > 0, za, za * tl.cast(slope, ACC))
        elif ACT == 2:
            a = gelu_value(za, TANH)
        else:
            a = silu_value(za)
        tl.store(a_ptr + offs, a.to(z.dtype), mask=m)
    if WRITE_GRAD:
        g = tl.load(g_ptr + offs, mask=m)
        ga = g.to(ACC)
        # NOTE: at z = 0 relu's derivative is 0 and leaky_relu's the slope, as torch takes them
        if ACT == 0:
            d = tl.where(za <= 0, 0.0, ga)  # NaN z passes g, as threshold_backward
        elif ACT == 1:
            d = tl.where(za > 0, ga, ga * tl.cast(slope, ACC))
        elif ACT == 2:
            d = ga * gelu_derivative(za, TANH)
        else:
            d = ga * silu_derivative(za)
        tl.store(gz_ptr + offs, d.to(g.dtype), mask=m)


def _param(activation, param):
    if activation not in _ACTS:
        raise ValueError(f"activation_linear: argument 'activation' must be one of {tuple(_ACTS)}, got {activation!r}")
    slope = float(param) if activation == "leaky_relu" else 0.0
    tanh = activation == "gelu" and param == "tanh"
    return _ACTS[activation], slope, tanh


def _backward(z, g, activation, param, need_act, out_g=None, traced=False):
    code, slope, tanh = _param(activation, param)
    z = dense(z)
    a = torch.empty_like(z) if need_act else None
    gz = None
    if g is not None:
        src = dense(g)
        gz = out_g if out_g is not None else src  # eager: in place into g (or its contiguous copy)
    n = z.numel()
    if n and (a is not None or gz is not None):
        kernel(_act_bwd, traced)[(triton.cdiv(n, BLOCK),)](
            z, z if g is None else src, z if a is None else a, z if gz is None else gz, n, slope,
            ACT=code, TANH=tanh, WRITE_ACT=a is not None, WRITE_GRAD=gz is not None,
            ACC=acc_type(z.dtype), BLOCK=BLOCK,
        )
    if gz is not None and g is not src and out_g is None:
        gz = g.copy_(gz)
    return a, gz


@register("activation_linear_backward")
def _activation_linear_backward_op(
    z: Tensor, g: Optional[Tensor], activation: str, negative_slope: float, approximate: str, need_act: bool
) -> tuple[Tensor, Tensor]:
    param = negative_slope if activation == "leaky_relu" else approximate
    out_g = None if g is None else torch.empty(g.shape, dtype=g.dtype, device=g.device)
    a, gz = _backward(z, g, activation, param, need_act, out_g=out_g, traced=True)
    empty = z.new_empty(0)  # a custom op returns tensors, never None
    return (empty if a is None else a), (empty if gz is None else gz)


def backward(z: Tensor, g: Optional[Tensor], activation: str, param=None, need_act: bool = True):
    """``(act(z) or None, g ⊙ act'(z) or None)`` in one pass over ``z`` (and ``g``).

    Args:
        z: the activation's input, ``(*, in)``.
        g: ``grad_out @ W``, same shape as ``z``, or None when ``dL/dz`` is not needed. In eager the
            derivative is written into ``g`` (returned as the second value); under torch.compile
            into a new tensor.
        activation: ``'relu'`` | ``'leaky_relu'`` | ``'gelu'`` | ``'silu'``.
        param: the negative slope (leaky_relu) or the approximation (gelu), as ``fused._act`` takes it.
        need_act: whether to write ``act(z)`` (a new tensor), i.e. whether ``dL/dW`` is needed.
    """
    if torch.compiler.is_compiling():
        slope = float(param) if activation == "leaky_relu" else 0.0
        approx = param if activation == "gelu" else "none"
        a, gz = op("activation_linear_backward")(z, g, activation, slope, approx, need_act)
        return (a if need_act else None), (gz if g is not None else None)
    return _backward(z, g, activation, param, need_act)
