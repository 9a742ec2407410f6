"""Shared test helpers: input builders, counted gradchecks, comparisons; the saved-tensor recorder
is the library's (:func:`manual_autograd.ledger.record_saved`)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from manual_autograd.ledger import ctx_tensors, record_saved  # noqa: F401  (record_saved: for the tests)

# Counts of the gradcheck / gradgradcheck calls that ran (printed by conftest's terminal summary).
COUNTS = {"gradcheck": 0, "gradgradcheck": 0}

# Parity tolerance against torch.nn.functional, per dtype (float32: a few ulps of the values compared).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-7, atol=1e-10)}


def check_grads(fn, inputs, *, grad=True, gradgrad=True, fast=False, gradgrad_fast=True):
    """Run ``gradcheck`` (and ``gradgradcheck``) on ``fn(*inputs)`` in float64, counting the calls.

    ``fast`` uses ``gradcheck``'s ``fast_mode`` (one random projection instead of the full Jacobian);
    ``gradgradcheck`` defaults to fast mode because it is the expensive one.
    """
    if grad:
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast)
        COUNTS["gradcheck"] += 1
    if gradgrad:
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=gradgrad_fast)
        COUNTS["gradgradcheck"] += 1


def away_from_zero(*shape, dtype=torch.float64, margin=0.1):
    """Random values with ``|x| >= margin`` (both signs), so gradcheck never straddles a kink at 0."""
    mag = torch.rand(shape, dtype=dtype) + margin
    sign = torch.randint(0, 2, shape).to(dtype) * 2 - 1
    return mag * sign


def layout(t, kind):
    """Return a copy of ``t`` (differentiable, never a view of ``t``) in a given memory layout.

    ``'contiguous'``; ``'transposed'`` (last two dims swapped in memory, needs ``dim >= 2``);
    ``'strided'`` (every other element of a twice-as-long last dim, needs ``dim >= 1``).
    """
    if kind == "contiguous":
        return t.clone(memory_format=torch.contiguous_format)
    if kind == "transposed":
        out = t.transpose(-1, -2).clone(memory_format=torch.contiguous_format).transpose(-1, -2)
        assert not out.is_contiguous() or t.shape[-1] <= 1 or t.shape[-2] <= 1
        return out
    if kind == "strided":
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        out = big[..., ::2]
        assert not out.is_contiguous() or t.shape[-1] <= 1 or t.numel() == 0
        return out
    raise ValueError(kind)


def layouts_for(shape):
    """The layouts that are meaningful (differ from contiguous) for ``shape``."""
    kinds = ["contiguous"]
    if len(shape) >= 1:
        kinds.append("strided")
    if len(shape) >= 2:
        kinds.append("transposed")
    return kinds


def leaf(t, kind="contiguous", requires_grad=True):
    """A fresh leaf with the values of ``t`` in memory layout ``kind`` (see :func:`layout`)."""
    out = layout(t.detach(), kind)
    return out.requires_grad_(requires_grad)


def function_nodes(grad_fn):
    """The backward nodes of custom ``autograd.Function`` s (their ctx) reachable from ``grad_fn``."""
    seen, stack, found = set(), [grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return found


def ctx_tensor_attrs(grad_fn):
    """Attributes of the Function ctx nodes under ``grad_fn`` that hold tensors hidden from autograd."""
    assert function_nodes(grad_fn), "no custom Function in the graph"
    return [f"{type(node).__name__}.{name}" for node, name, _ in ctx_tensors(grad_fn)]


def assert_close(a, b, **tol):
    """``torch.testing.assert_close`` with this suite's per-dtype tolerance (overridable), nan == nan."""
    tol = {**TOL.get(a.dtype, {}), **tol}
    torch.testing.assert_close(a, b, equal_nan=True, **tol)


def assert_parity(ours_fn, torch_fn, x, exact=False, **tol):
    """``ours_fn`` against ``torch_fn`` on two leaves with the values of ``x``: the same output
    (shape, dtype, values; bit for bit with ``exact``) and the same input gradient."""
    ours, ref = leaf(x), leaf(x)
    out, expect = ours_fn(ours), torch_fn(ref)
    assert out.shape == expect.shape and out.dtype == expect.dtype
    if exact:
        assert torch.equal(out, expect)
    else:
        assert_close(out, expect, **tol)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    assert_close(ours.grad, ref.grad, **tol)


def assert_saves_the_input_only(fn):
    """``fn(x)`` keeps ``x`` itself for backward (no copy, nothing on ``ctx``), and its backward
    leaves ``x`` as it was."""
    x = leaf(torch.randn(4, 5))
    with record_saved() as saved:
        out = fn(x)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == x.data_ptr() and s.dtype == torch.float32 and s.nbytes == 4 * 20
    assert ctx_tensor_attrs(out.grad_fn) == []
    before, version = x.detach().clone(), x._version
    out.sum().backward()
    assert x._version == version and torch.equal(x.detach(), before)


def packed_bytes(n):
    return math.ceil(n / 8)


# Activation shapes: 0-dim, 1-D, empty, (*, n); each with every layout that differs for it.
ACT_SHAPES = {"0d": (), "1d": (5,), "empty": (0,), "empty2d": (2, 0, 3), "2d": (3, 4), "3d": (2, 3, 4)}
ACT_CASES = [
    pytest.param(shape, kind, id=f"{name}-{kind}")
    for name, shape in ACT_SHAPES.items()
    for kind in layouts_for(shape)
]


def fresh(x, kind):
    """A differentiable non-leaf copy of ``x`` in layout ``kind`` (an in-place op may overwrite it)."""
    return layout(x, kind)


def with_zeros(*shape, dtype=torch.float64):
    """Random values of both signs with exact zeros (and a -0.0) sprinkled in."""
    x = torch.randn(shape, dtype=dtype)
    flat = x.view(-1)
    flat[::3] = 0.0
    if flat.numel() > 1:
        flat[1] = -0.0
    return x


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout (fails on an error)."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
