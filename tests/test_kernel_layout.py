"""Memory layout on the kernel path (interpreted Triton kernels on CPU): for a dense input in any
dim order (channels_last, channels_last_3d, transposed) the outputs and gradients have the strides
torch's own ops give for the same input and the same incoming gradient."""

import functools

import pytest
import torch
import torch.nn.functional as TF

from kernel_cases import K
from manual_autograd import backend
from manual_autograd import functional as F
from manual_autograd import nn as mnn

pytestmark = [
    pytest.mark.skipif(not K.INTERPRETED, reason="kernels not interpreted (CPU tests need TRITON_INTERPRET=1)"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

LAYOUTS = {
    "channels_last": ((2, 3, 4, 5), lambda x: x.to(memory_format=torch.channels_last)),
    "channels_last_3d": ((2, 3, 2, 3, 4), lambda x: x.to(memory_format=torch.channels_last_3d)),
    "transposed": ((6, 5), lambda x: x.t().contiguous().t()),
}
# how the incoming gradient is laid out: as the output, row-major, one value expanded (``.sum()``)
GRADS = {
    "like": torch.ones_like,
    "contiguous": lambda out: torch.ones(out.shape, dtype=out.dtype),
    "expanded": lambda out: torch.ones((), dtype=out.dtype).expand(out.shape),
}
# name -> (kernel module, ours, torch's); the in-place ones on a non-leaf copy
ELEMENTWISE = {
    "relu": ("relu", F.relu, TF.relu),
    "ReLU_inplace": ("relu", lambda x: mnn.ReLU(inplace=True)(x * 1), lambda x: TF.relu(x * 1)),
    "leaky_relu": ("leaky_relu", F.leaky_relu, TF.leaky_relu),
    "LeakyReLU-neg": ("leaky_relu", mnn.LeakyReLU(-0.2), torch.nn.LeakyReLU(-0.2)),
    "leaky_relu_-neg": ("leaky_relu", lambda x: F.leaky_relu_(x * 1, -0.2), lambda x: TF.leaky_relu(x * 1, -0.2)),
    "gelu": ("gelu", F.gelu, TF.gelu),
    "GELU-tanh": ("gelu", mnn.GELU("tanh"), torch.nn.GELU("tanh")),
    "silu": ("silu", F.silu, TF.silu),
    "SiLU": ("silu", mnn.SiLU(), torch.nn.SiLU()),
}

def _both(ours, ref, x, grad, mode="triton"):
    """``(out, grad_x)`` of torch's op and of ours on the kernels (or with ``mode='torch'`` the reference)."""
    res = []
    for fn, mode in ((ref, "torch"), (ours, mode)):
        with backend.use(mode):
            xx = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
            out = fn(xx)
            (gx,) = torch.autograd.grad(out, xx, grad(out))
            res.append((out, gx))
    return res


def _same(ref, ours):
    for r, o in zip(ref, ours):
        assert o.stride() == r.stride(), f"strides {o.stride()}, torch's {r.stride()}"
        torch.testing.assert_close(o, r)


@pytest.mark.parametrize("mode", ["triton", "torch"])
@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_keep_torchs_layout(name, layout, grad, mode, monkeypatch):
    shape, to = LAYOUTS[layout]
    x = to(torch.randn(shape, dtype=torch.float64))
    calls = []
    kernel, ours, ref = ELEMENTWISE[name]
    mod = getattr(K, kernel)
    monkeypatch.setattr(mod, "forward", functools.partial(lambda f, *a, **k: calls.append(1) or f(*a, **k), mod.forward))
    ref, ours = _both(ours, ref, x, GRADS[grad], mode)
    assert bool(calls) == (mode == "triton"), "the kernel was not called"
    _same(ref, ours)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_inplace_kernel_writes_into_a_dense_input(layout):
    shape, to = LAYOUTS[layout]
    x = to(torch.randn(shape, dtype=torch.float64))
    ref = TF.relu(x)
    with backend.use("triton"), torch.no_grad():
        ptr, strides = x.data_ptr(), x.stride()
        assert F.relu_(x) is x and x.data_ptr() == ptr and x.stride() == strides
    torch.testing.assert_close(x, ref)


def _ce_case(shape, to):
    x = to(torch.randn(shape, dtype=torch.float64))
    t = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]))
    t.view(-1)[::5] = -100
    return x, t


CE_LAYOUTS = {
    "contiguous-4d": ((2, 3, 4, 5), lambda x: x),
    "channels_last": LAYOUTS["channels_last"],
    "channels_last_3d": LAYOUTS["channels_last_3d"],
    "NCL-transposed": ((2, 3, 4), lambda x: x.transpose(1, 2).contiguous().transpose(1, 2)),
    "transposed": LAYOUTS["transposed"],
}


@pytest.mark.parametrize("mode", ["triton", "torch"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("layout", CE_LAYOUTS)
def test_cross_entropy_gradient_is_row_major_as_torchs(layout, reduction, mode):
    x, t = _ce_case(*CE_LAYOUTS[layout])
    ref, ours = _both(
        lambda x: F.cross_entropy(x, t, reduction=reduction), lambda x: TF.cross_entropy(x, t, reduction=reduction),
        x, GRADS["like"], mode,
    )
    _same(ref, ours)

ACT = {"relu": TF.relu, "leaky_relu": TF.leaky_relu, "gelu": TF.gelu, "silu": TF.silu}


@pytest.mark.parametrize("mode", ["triton", "torch"])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("activation", ACT)
def test_activation_linear_gradient_as_the_unfused_pair(activation, shape, mode):
    w, b = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    z = torch.randn(shape, dtype=torch.float64).transpose(0, -1).contiguous().transpose(0, -1)
    res = []
    for fn, be in ((lambda z: TF.linear(ACT[activation](z), w, b), "torch"), (lambda z: F.activation_linear(z, w, b, activation), mode)):
        with backend.use(be):
            zz = z.clone(memory_format=torch.preserve_format).requires_grad_()
            out = fn(zz)
            res.append((out, torch.autograd.grad(out, zz, torch.ones_like(out))[0]))
    _same(*res)


def test_linear_cross_entropy_gradient_as_the_unfused_pair():
    w, b = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    x, t = torch.randn(5, 6, dtype=torch.float64).t(), torch.randint(0, 7, (6,))
    ref, ours = _both(
        lambda x: F.linear_cross_entropy(x, w, t, linear_bias=b), lambda x: TF.cross_entropy(TF.linear(x, w, b), t),
        x, GRADS["like"],
    )
    _same(ref, ours)


@pytest.mark.parametrize("name", ["leaky_relu-neg", "activation_linear"])
def test_layout_restore_under_vmap(name):
    """The layout restore is out of place, so torch.func batches it (per-example gradients)."""
    w = torch.randn(2, 5, dtype=torch.float64)
    x = torch.randn(3, 5, 4, dtype=torch.float64).transpose(1, 2)  # each example (4, 5) column-major
    if name == "activation_linear":
        ours, ref = (lambda z: F.activation_linear(z, w, None, "gelu").sum()), (lambda z: TF.linear(TF.gelu(z), w).sum())
    else:
        ours, ref = (lambda z: F.leaky_relu(z, -0.2).sum()), (lambda z: TF.leaky_relu(z, -0.2).sum())
    got, want = (torch.func.vmap(torch.func.grad(f))(x) for f in (ours, ref))
    torch.testing.assert_close(got, want)
