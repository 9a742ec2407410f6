"""Each activation's derivative: the reference formula is torch's derivative, and every fast path
(in place, fewer passes, one-pass kernels) equals the reference: float32 and float64, contiguous,
strided and empty inputs, NaN and ±Inf included."""

from __future__ import annotations

import pytest
import torch

from manual_autograd.ops import ACTIVATIONS
from manual_autograd.ops.gelu import gelu_derivative, gelu_grad_fast_
from manual_autograd.ops.leaky_relu import leaky_relu_derivative, leaky_relu_derivative_fast
from manual_autograd.ops.relu import relu_derivative, relu_grad_fast
from manual_autograd.ops.silu import silu_derivative, silu_grad_fast_

DTYPES = [torch.float32, torch.float64]
# float32: the fast forms use other algebra (sigmoid for tanh, exp2 for exp), a few ulps apart
TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


def _layout(layout, dtype, nonfinite=False):
    """``(x, grad_out)`` of 300 values (with NaN/±Inf planted if asked), contiguous, strided or empty."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, 30, generator=g, dtype=dtype) * 4
    base[0, 0] = 0.0
    if nonfinite:
        base[1, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
    grad = torch.randn(20, 30, generator=g, dtype=dtype)
    if layout == "strided":  # every other column of the transpose
        return base.t()[:, ::2], grad.t()[:, ::2]
    if layout == "empty":
        return base[:0], grad[:0]
    return base, grad


CASES = pytest.mark.parametrize("layout", ["contiguous", "strided", "empty"])


def _torch_derivative(f, x):
    x = x.detach().clone().requires_grad_()
    (d,) = torch.autograd.grad(f(x), x, torch.ones_like(x))
    return d


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "name, reference, torch_fn",
    [
        ("relu", lambda x: relu_derivative(x.clamp_min(0)), torch.relu),
        ("leaky_relu", lambda x: leaky_relu_derivative(x, 0.1), lambda x: torch.nn.functional.leaky_relu(x, 0.1)),
        ("leaky_relu-negative", lambda x: leaky_relu_derivative(x, -0.1), lambda x: torch.nn.functional.leaky_relu(x, -0.1)),
        ("gelu", lambda x: gelu_derivative(x, "none"), torch.nn.functional.gelu),
        ("gelu-tanh", lambda x: gelu_derivative(x, "tanh"), lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
        ("silu", silu_derivative, torch.nn.functional.silu),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_reference_derivative_is_torchs(name, reference, torch_fn, dtype):
    x, _ = _layout("contiguous", dtype, nonfinite=True)
    torch.testing.assert_close(reference(x), _torch_derivative(torch_fn, x), equal_nan=True, **TOL[dtype])


def _unchanged(fn, *tensors):
    """``fn(*tensors)``, asserting that it leaves its inputs as they were."""
    tensors_in = [t for t in tensors if isinstance(t, torch.Tensor)]
    before = [t.clone() for t in tensors_in]
    out = fn(*tensors)
    for t, b in zip(tensors_in, before):
        torch.testing.assert_close(t, b, equal_nan=True, rtol=0, atol=0)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@CASES
def test_relu_fast_equals_reference(layout, dtype):
    x, g = _layout(layout, dtype, nonfinite=True)
    out = x.clamp_min(0)
    torch.testing.assert_close(_unchanged(relu_grad_fast, out, g), g * relu_derivative(out), equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@CASES
def test_leaky_relu_fast_equals_reference(layout, dtype, slope):
    x, _ = _layout(layout, dtype, nonfinite=True)
    out = torch.nn.functional.leaky_relu(x, slope)
    fast = _unchanged(leaky_relu_derivative_fast, out, slope)
    torch.testing.assert_close(fast, leaky_relu_derivative(out, slope), rtol=0, atol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@CASES
def test_gelu_fast_equals_reference(layout, dtype, approximate):
    x, g = _layout(layout, dtype, nonfinite=True)
    fast = _unchanged(lambda x, g: gelu_grad_fast_(x, approximate, g), x, g)
    torch.testing.assert_close(fast, g * gelu_derivative(x, approximate), equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@CASES
def test_silu_fast_equals_reference(layout, dtype):
    x, g = _layout(layout, dtype, nonfinite=True)
    fast = _unchanged(silu_grad_fast_, x, g)
    torch.testing.assert_close(fast, g * silu_derivative(x), equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize(
    "name, param", [("relu", None), ("leaky_relu", 0.1), ("leaky_relu", -0.1), ("gelu", "none"), ("gelu", "tanh"), ("silu", None)]
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@CASES
def test_activation_linear_fast_equals_reference(layout, dtype, name, param):
    # the fused op's one-pass kernels (no graph) against the activations' reference derivatives
    x, g = _layout(layout, dtype, nonfinite=True)
    _, fast, derivative = ACTIVATIONS[name]
    reference = g * (relu_derivative(x) if derivative is None else derivative(x, param))
    torch.testing.assert_close(_unchanged(fast, g, x, param), reference, equal_nan=True, **TOL[dtype])
