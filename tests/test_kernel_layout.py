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

pytestmark = [pytest.mark.skipif(not K.INTERPRETED, reason="kernels not interpreted (CPU tests need TRITON_INTERPRET=1)")]

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

def _both(ours, ref, x, grad):
    """``(out, grad_x)`` of torch's op and of ours on the kernels (which must be called)."""
    res = []
    for fn, mode in ((ref, "torch"), (ours, "triton")):
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


@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_keep_torchs_layout(name, layout, grad, monkeypatch):
    shape, to = LAYOUTS[layout]
    x = to(torch.randn(shape, dtype=torch.float64))
    calls = []
    kernel, ours, ref = ELEMENTWISE[name]
    mod = getattr(K, kernel)
    monkeypatch.setattr(mod, "forward", functools.partial(lambda f, *a, **k: calls.append(1) or f(*a, **k), mod.forward))
    ref, ours = _both(ours, ref, x, GRADS[grad])
    assert calls, "the kernel was not called"
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
