"""NaN and ±Inf flow as torch's do: every op's value and gradients equal torch's at those positions
(NaN where torch gives NaN, the same number where it gives one), through the functional and module API."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as TF

import manual_autograd as ma
import manual_autograd.functional as F

NAN, INF = float("nan"), float("inf")


def _x(*shape, dtype):
    """Random values with NaN, +Inf, -Inf, +0 and -0 planted in them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=dtype).reshape(-1)
    x[:5] = torch.tensor([NAN, INF, -INF, 0.0, -0.0], dtype=dtype)
    return x[torch.randperm(x.numel(), generator=g)].reshape(shape)


def _module(cls, *args, **kwargs):
    """A functional form of a module: built once per call from ``(cls, args, kwargs)``."""
    return lambda *inputs: cls(*args, **kwargs)(*inputs)


# name -> (ours, torch's): each takes the tensors (x first, float) and returns the output.
ACTS = {
    "relu": (F.relu, TF.relu),
    "relu-module": (_module(ma.nn.ReLU), TF.relu),
    "relu-inplace": (lambda x: F.relu(x.clone(), inplace=True), lambda x: TF.relu(x.clone(), inplace=True)),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu-module": (_module(ma.nn.LeakyReLU, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "leaky_relu-negative": (lambda x: F.leaky_relu(x, -0.1), lambda x: TF.leaky_relu(x, -0.1)),
    "leaky_relu-above-one": (lambda x: F.leaky_relu(x, 2.0), lambda x: TF.leaky_relu(x, 2.0)),
    "leaky_relu-inplace": (
        lambda x: F.leaky_relu(x.clone(), 0.01, True),
        lambda x: TF.leaky_relu(x.clone(), 0.01, True),
    ),
    "leaky_relu-negative-inplace": (
        lambda x: F.leaky_relu(x.clone(), -0.1, True),
        lambda x: TF.leaky_relu(x.clone(), -0.1),  # torch's in-place form has no backward for a negative slope
    ),
    "gelu": (F.gelu, TF.gelu),
    "gelu-module": (_module(ma.nn.GELU), TF.gelu),
    "gelu-tanh": (lambda x: F.gelu(x, "tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "silu": (F.silu, TF.silu),
    "silu-module": (_module(ma.nn.SiLU), TF.silu),
    "silu-inplace": (lambda x: F.silu(x.clone(), True), lambda x: TF.silu(x.clone(), True)),
}


def _compare(ours, ref, inputs, grad_out=None):
    """Values and gradients (of every input that requires grad) of ``ours`` and ``ref``, equal NaN for NaN."""
    results = []
    for fn in (ours, ref):
        xs = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        out = fn(*xs)
        g = torch.ones_like(out) if grad_out is None else grad_out
        grads = torch.autograd.grad(out, [t for t in xs if t.requires_grad], g, allow_unused=True)
        results.append((out.detach(), grads))
    (out, grads), (ref_out, ref_grads) = results
    torch.testing.assert_close(out, ref_out, equal_nan=True)
    assert sum(r is not None for r in ref_grads) > 0
    for g, r in zip(grads, ref_grads):
        if r is not None:  # torch has no gradient for a class weight
            torch.testing.assert_close(g, r, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_matches_torch_at_nan_and_inf(name, dtype):
    ours, ref = ACTS[name]
    x = _x(6, 7, dtype=dtype).requires_grad_()
    grad_out = torch.randn(6, 7, dtype=dtype)
    _compare(ours, ref, [x], grad_out)


def _ab_rows(dtype):
    """``(x, W, b)`` with NaN/Inf planted in ``x`` only, and with it in ``W`` only."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 7, generator=g, dtype=dtype)
    b = torch.randn(5, generator=g, dtype=dtype)
    x = torch.randn(6, 7, generator=g, dtype=dtype)
    return [(_x(6, 7, dtype=dtype), w, b), (x, _x(5, 7, dtype=dtype), b)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("api", ["functional", "module"])
def test_linear_matches_torch_at_nan_and_inf(api, where, dtype):
    x, w, b = _ab_rows(dtype)[where == "weight"]
    if api == "functional":
        ours = F.linear
    else:
        def ours(x, w, b):
            m = ma.nn.Linear(7, 5, dtype=dtype)
            del m.weight, m.bias
            m.weight, m.bias = w, b
            return m(x)
    _compare(ours, TF.linear, [t.requires_grad_() for t in (x, w, b)], torch.randn(6, 5, dtype=dtype))


CE_CASES = {
    "mean": {},
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "smoothing": dict(label_smoothing=0.1),
    "weight": "weight",
    "ignore": dict(ignore_index=2),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(CE_CASES))
@pytest.mark.parametrize("api", ["functional", "module"])
def test_cross_entropy_matches_torch_at_nan_and_inf_logits(api, case, dtype):
    logits = torch.randn(8, 5, dtype=dtype)
    logits[0, 1], logits[1, 2], logits[2, 3] = NAN, INF, -INF
    logits[3] = -INF  # a whole row at -inf
    target = torch.tensor([1, 0, 3, 2, 4, 2, 1, 0])
    kwargs = CE_CASES[case]
    if kwargs == "weight":
        kwargs = dict(weight=torch.rand(5, dtype=dtype) + 0.5)
    ours = (lambda x: F.cross_entropy(x, target, **kwargs)) if api == "functional" else (
        lambda x: ma.nn.CrossEntropyLoss(**kwargs)(x, target)
    )
    _compare(ours, lambda x: TF.cross_entropy(x, target, **kwargs), [logits.requires_grad_()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    "activation, kwargs",
    [("relu", {}), ("leaky_relu", dict(negative_slope=0.1)), ("leaky_relu", dict(negative_slope=-0.1)),
     ("gelu", {}), ("gelu", dict(approximate="tanh")), ("silu", {})],
    ids=["relu", "leaky_relu", "leaky_relu-negative", "gelu", "gelu-tanh", "silu"],
)
@pytest.mark.parametrize("api", ["functional", "module"])
def test_activation_linear_matches_torch_at_nan_and_inf(api, activation, kwargs, dtype):
    z, w, b = _ab_rows(dtype)[0]
    act = {
        "relu": TF.relu,
        "leaky_relu": lambda t: TF.leaky_relu(t, kwargs.get("negative_slope", 0.01)),
        "gelu": lambda t: TF.gelu(t, approximate=kwargs.get("approximate", "none")),
        "silu": TF.silu,
    }[activation]
    if api == "functional":
        ours = functools.partial(F.activation_linear, activation=activation, **kwargs)
    else:
        def ours(z, w, b):
            m = ma.nn.ActivationLinear(7, 5, activation=activation, dtype=dtype, **kwargs)
            del m.weight, m.bias
            m.weight, m.bias = w, b
            return m(z)
    _compare(ours, lambda z, w, b: TF.linear(act(z), w, b), [t.requires_grad_() for t in (z, w, b)],
             torch.randn(6, 5, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", ["mean", "none", "smoothing", "weight", "weight-grad", "double-backward"])
@pytest.mark.parametrize("where", ["input", "weight"])
def test_linear_cross_entropy_matches_torch_at_nan_and_inf(where, case, dtype):
    # "weight-grad" and "double-backward" take the out-of-place backward (class weight's gradient, create_graph)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g, dtype=dtype)
    w = torch.randn(9, 4, generator=g, dtype=dtype)  # 9 classes > 4 features: the chunked path
    if where == "input":
        x[0, 1], x[1, 2], x[2, 0] = NAN, INF, -INF
    else:
        w[0, 1], w[3, 2], w[5, 0] = NAN, INF, -INF
    target = torch.tensor([1, 0, 3, 8, 4, 2])
    cw = (torch.rand(9, generator=g, dtype=dtype) + 0.5).requires_grad_(case == "weight-grad")
    kwargs = {"none": dict(reduction="none"), "smoothing": dict(label_smoothing=0.2)}.get(case, {})
    grad_out = torch.randn(6, dtype=dtype) if case == "none" else None
    graph = case == "double-backward"
    for chunk in (None, 4):  # the default (one block) and several blocks
        def ours(x, w, cw):
            out = F.linear_cross_entropy(x, w, target, weight=cw if "weight" in case else None, chunk_size=chunk, **kwargs)
            return torch.autograd.grad(out, x, create_graph=True)[0].sum() if graph else out

        def ref(x, w, cw):
            out = TF.cross_entropy(x @ w.T, target, weight=cw.detach() if "weight" in case else None, **kwargs)
            return torch.autograd.grad(out, x, create_graph=True)[0].sum() if graph else out

        _compare(ours, ref, [x.requires_grad_(), w.requires_grad_(), cw], grad_out)
