"""In-place activations where no graph is recorded (``no_grad``, ``inference_mode``): the result is
the input object itself (a Parameter stays a Parameter), its version counter moves as torch's does,
its values are torch's — functional and module API, reference and (interpreted) kernel path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from manual_autograd import backend
from manual_autograd import functional as MF
from manual_autograd import nn as mnn

# (name, ours, torch's): each writes into its argument
INPLACE = [
    ("relu_", MF.relu_, torch.relu_),
    ("relu", lambda x: MF.relu(x, inplace=True), lambda x: F.relu(x, inplace=True)),
    ("leaky_relu_", MF.leaky_relu_, F.leaky_relu_),
    ("leaky_relu_neg", lambda x: MF.leaky_relu_(x, -0.2), lambda x: F.leaky_relu_(x, -0.2)),
    ("leaky_relu", lambda x: MF.leaky_relu(x, 0.1, inplace=True), lambda x: F.leaky_relu(x, 0.1, inplace=True)),
    ("silu", lambda x: MF.silu(x, inplace=True), lambda x: F.silu(x, inplace=True)),
    ("ReLU", mnn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
    ("LeakyReLU", mnn.LeakyReLU(0.05, inplace=True), torch.nn.LeakyReLU(0.05, inplace=True)),
    ("LeakyReLU_neg", mnn.LeakyReLU(-0.3, inplace=True), torch.nn.LeakyReLU(-0.3, inplace=True)),
    ("SiLU", mnn.SiLU(inplace=True), torch.nn.SiLU(inplace=True)),
]


def _inputs(kind, seed=0):
    """A fresh input of ``kind`` built from the same values each call."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(4, 6, generator=g)
    if kind == "parameter":
        return torch.nn.Parameter(v)
    if kind == "plain":
        return v
    base = torch.nn.Parameter(v) * 1.0  # a non-leaf that requires grad (built where grad is on)
    if kind == "nonleaf":
        return base
    if kind == "view":
        return base[1:, ::2]
    raise AssertionError(kind)


def _run(fn, kind, mode):
    x = _inputs(kind)
    v0 = x._version
    with mode():
        out = fn(x)
    return x, out, x._version - v0


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("kind", ["parameter", "plain", "nonleaf", "view"])
@pytest.mark.parametrize("name,ours,ref", INPLACE, ids=[c[0] for c in INPLACE])
def test_returns_the_input_itself(name, ours, ref, kind, mode):
    tx, tout, tbump = _run(ref, kind, mode)
    x, out, bump = _run(ours, kind, mode)
    assert tout is tx  # what torch does
    assert out is x, f"{name} on a {kind} input under {mode.__name__} returned a new tensor"
    assert type(out) is type(tx) and out.requires_grad == tx.requires_grad
    assert bump == tbump
    torch.testing.assert_close(out, tout, rtol=0, atol=0)


@pytest.mark.parametrize("name,ours,ref", INPLACE[::3], ids=[c[0] for c in INPLACE[::3]])
def test_inference_tensor(name, ours, ref):
    """An inference tensor (no version counter) written in place inside inference_mode."""
    with torch.inference_mode():
        x, tx = torch.randn(3, 5), None
        tx = x.clone()
        out, tout = ours(x), ref(tx)
    assert out is x and torch.equal(out, tout)


@pytest.mark.parametrize("name,ours,ref", INPLACE[::2], ids=[c[0] for c in INPLACE[::2]])
def test_kernel_path(name, ours, ref):
    """The interpreted Triton kernels write into the input too (contiguous and strided)."""
    with backend.use("triton"):
        for kind in ("parameter", "view"):
            tx, tout, tbump = _run(ref, kind, torch.no_grad)
            x, out, bump = _run(ours, kind, torch.no_grad)
            assert out is x and type(out) is type(tx) and bump >= 1
            torch.testing.assert_close(out, tout)


# torch's out-of-place twins (its in-place leaky_relu_ with a negative slope refuses forward AD)
OUT_OF_PLACE = [F.relu, F.relu, F.leaky_relu, lambda x: F.leaky_relu(x, -0.2), lambda x: F.leaky_relu(x, 0.1), F.silu]


@pytest.mark.parametrize("name,ours,ref", [(c[0], c[1], r) for c, r in zip(INPLACE, OUT_OF_PLACE)], ids=[c[0] for c in INPLACE[:6]])
def test_forward_ad_under_no_grad(name, ours, ref):
    """Forward AD still runs under no_grad (no_grad turns off the graph, not the tangents)."""
    from torch.autograd import forward_ad as fwAD

    results = []
    for fn in (ref, ours):
        with fwAD.dual_level(), torch.no_grad():
            x = fwAD.make_dual(_inputs("plain"), torch.linspace(-1, 1, 24).reshape(4, 6))
            out = fn(x)
            assert fn is ref or out is x
            results.append(tuple(t.clone() for t in fwAD.unpack_dual(out)))
    torch.testing.assert_close(results[1], results[0])


@pytest.mark.parametrize("grad_mode", [False, True], ids=["no_grad", "grad_enabled"])
@pytest.mark.parametrize("name,ours,ref", INPLACE, ids=[c[0] for c in INPLACE])
def test_vmap_writes_into_the_batched_input(name, ours, ref, grad_mode):
    """Under vmap alone (nothing recorded) each example is written in place, as torch's ops do."""
    x = _inputs("plain")
    want = torch.func.vmap(ref)(x.clone())

    def fn(row):
        out = ours(row)
        return out, torch.tensor(out is row)

    with torch.set_grad_enabled(grad_mode):
        got, same = torch.func.vmap(fn, out_dims=(0, None))(x)
    assert bool(same)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(x, want, rtol=0, atol=0)  # the batched input itself was written
