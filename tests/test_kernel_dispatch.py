"""The ops on the kernel path: under the ``triton`` backend (interpreted kernels on CPU) every op
calls its kernels, gives the reference's values and gradients, passes gradcheck in float64, and
double backward (which takes the reference) reads what the kernel forward saved."""

import functools

import pytest
import torch

from kernel_cases import K
from manual_autograd import backend
import manual_autograd.functional as F
from helpers import TOL, check_grads

pytestmark = [
    pytest.mark.skipif(not K.INTERPRETED, reason="kernels not interpreted (CPU tests need TRITON_INTERPRET=1)"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]
SINGLE_THREAD = True


@pytest.fixture
def calls(monkeypatch):
    """Counts calls of every kernel launcher, by ``module.function`` name."""
    seen = {}
    for mod_name in (name for name in K.__all__ if name.islower()):  # every op's kernel module
        mod = getattr(K, mod_name)
        for fn in ("forward", "backward", "softmax_scale_", "block_update_"):
            if hasattr(mod, fn):
                def spy(*a, _f=getattr(mod, fn), _n=f"{mod_name}.{fn}", **kw):
                    seen[_n] = seen.get(_n, 0) + 1
                    return _f(*a, **kw)
                monkeypatch.setattr(mod, fn, spy)
    return seen


def _x(*shape, dtype=torch.float64):
    return (torch.randn(*shape, dtype=dtype) * 2).requires_grad_()


def _ce_target(n, C, ignore=True):
    t = torch.randint(0, C, (n,))
    if ignore:
        t[::4] = -100
    return t


# name -> (function of the inputs, input builder, the launchers it must call)
OPS = {
    "relu": (F.relu, lambda: (_x(5, 7),), {"relu.forward", "relu.backward"}),
    "relu_": (lambda x: F.relu(x.clone(), inplace=True), lambda: (_x(5, 7),), {"relu.forward", "relu.backward"}),
    "leaky_relu": (F.leaky_relu, lambda: (_x(5, 7),), {"leaky_relu.forward", "leaky_relu.backward"}),
    "leaky_relu-neg": (
        functools.partial(F.leaky_relu, negative_slope=-0.3), lambda: (_x(3, 11),), {"leaky_relu.forward", "leaky_relu.backward"},
    ),
    "gelu": (F.gelu, lambda: (_x(5, 7),), {"gelu.forward", "gelu.backward"}),
    "gelu-tanh": (functools.partial(F.gelu, approximate="tanh"), lambda: (_x(5, 7),), {"gelu.forward", "gelu.backward"}),
    "silu": (F.silu, lambda: (_x(5, 7),), {"silu.forward", "silu.backward"}),
    "silu_": (lambda x: F.silu(x.clone(), inplace=True), lambda: (_x(5, 7),), {"silu.forward", "silu.backward"}),
    "cross_entropy": (
        lambda x: F.cross_entropy(x, _ce_target(6, 5)), lambda: (_x(6, 5),), {"cross_entropy.forward", "cross_entropy.backward"},
    ),
    "cross_entropy-weighted-smoothed-sum": (
        lambda x: F.cross_entropy(x, _ce_target(6, 5), torch.rand(5, dtype=x.dtype), reduction="sum", label_smoothing=0.2),
        lambda: (_x(6, 5),),
        {"cross_entropy.forward", "cross_entropy.backward"},
    ),
    "cross_entropy-3d-none": (
        lambda x: F.cross_entropy(x, torch.randint(0, 4, (2, 3)), reduction="none"),
        lambda: (_x(2, 4, 3),),
        {"cross_entropy.forward", "cross_entropy.backward"},
    ),
    "activation_linear-gelu": (
        lambda z, w, b: F.activation_linear(z, w, b, "gelu"),
        lambda: (_x(4, 6), _x(3, 6), _x(3)),
        {"activation_linear.backward"},
    ),
    "activation_linear-leaky": (
        lambda z, w, b: F.activation_linear(z, w, b, "leaky_relu", negative_slope=0.25),
        lambda: (_x(4, 6), _x(3, 6), _x(3)),
        {"activation_linear.backward"},
    ),
    "swiglu": (F.swiglu, lambda: (_x(3, 5), _x(3, 5)), {"glu.forward", "glu.backward"}),
    "geglu-tanh": (lambda g, u: F.geglu(g, u, "tanh"), lambda: (_x(3, 5), _x(3, 5)), {"glu.forward", "glu.backward"}),
    "gated_linear-silu": (
        lambda g, u, w, b: F.gated_linear(g, u, w, b, "silu"), lambda: (_x(3, 4), _x(3, 4), _x(2, 4), _x(2)),
        {"glu.forward", "glu.backward"},
    ),
    "linear_cross_entropy": (
        lambda x, w: F.linear_cross_entropy(x, w, _ce_target(8, 12), chunk_size=5, label_smoothing=0.1),
        lambda: (_x(8, 4), _x(12, 4)),
        {"linear_cross_entropy.block_update_", "linear_cross_entropy.softmax_scale_"},
    ),
    "embedding": (
        lambda w: F.embedding(torch.tensor([[1, 4, 1], [0, 6, 1]]), w),
        lambda: (_x(7, 5),),
        {"embedding.forward", "embedding.backward"},
    ),
    "layer_norm": (
        lambda x, w, b: F.layer_norm(x, (2, 3), w, b), lambda: (_x(2, 2, 3), _x(2, 3), _x(2, 3)),
        {"layer_norm.forward", "layer_norm.backward"},
    ),
    "layer_norm-plain": (lambda x: F.layer_norm(x, (4,)), lambda: (_x(3, 4),), {"layer_norm.forward", "layer_norm.backward"}),
    "rms_norm": (lambda x, w: F.rms_norm(x, (4,), w), lambda: (_x(3, 4), _x(4)), {"rms_norm.forward", "rms_norm.backward"}),
    "scaled_dot_product_attention": (
        F.scaled_dot_product_attention, lambda: (_x(1, 5, 4), _x(1, 7, 4), _x(1, 7, 3)), {"attention.forward", "attention.backward"},
    ),
    "scaled_dot_product_attention-causal": (
        functools.partial(F.scaled_dot_product_attention, is_causal=True, scale=0.3),
        lambda: (_x(1, 7, 4), _x(1, 5, 4), _x(1, 5, 3)),
        {"attention.forward", "attention.backward"},
    ),
    "softmax": (lambda x: F.softmax(x, 0) * torch.arange(5.0, dtype=x.dtype)[:, None], lambda: (_x(5, 7),), {"softmax.forward", "softmax.backward"}),
    "log_softmax": (
        lambda x: F.log_softmax(x, -1) * torch.arange(7.0, dtype=x.dtype), lambda: (_x(5, 7),), {"softmax.forward", "softmax.backward"},
    ),
    "sigmoid": (F.sigmoid, lambda: (_x(5, 7),), {"sigmoid.forward", "sigmoid.backward"}),
    "tanh": (F.tanh, lambda: (_x(5, 7),), {"tanh.forward", "tanh.backward"}),
}


def _run(fn, inputs, seed):
    torch.manual_seed(seed)  # the same random targets on both backends
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out.sum() if out.dim() else out, inputs)
    return out.detach(), grads


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_path_equals_reference(name, dtype, calls):
    fn, build, launchers = OPS[name]
    inputs = [t.detach().to(dtype) for t in build()]
    with backend.use("torch"):
        ref = _run(fn, inputs, 1)
    assert not calls
    with backend.use("triton"):
        ours = _run(fn, inputs, 1)
    assert launchers <= set(calls), f"launchers not called: {launchers - set(calls)}"
    tol = TOL[dtype]  # float64: the interpreter passes a float slope as float32 (0.25 is exact there)
    torch.testing.assert_close(ours[0], ref[0], **tol)
    for a, b in zip(ours[1], ref[1]):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("name", list(OPS))
def test_kernel_path_gradcheck(name, calls):
    fn, build, launchers = OPS[name]
    inputs = build()

    def seeded(*xs):
        torch.manual_seed(2)
        return fn(*xs)

    with backend.use("triton"):
        # gradgradcheck records the backward's graph: that takes the reference, reading the
        # tensors the kernel forward saved
        check_grads(seeded, inputs, gradgrad=not name.endswith("_"), fast=name == "linear_cross_entropy" or name.startswith("scaled_dot"))
    assert launchers <= set(calls)


def test_auto_keeps_cpu_on_the_reference(calls):
    x = _x(5, 7)
    with backend.use("auto"):
        F.gelu(x).sum().backward()
        F.cross_entropy(x, _ce_target(5, 7)).backward()
    assert not calls
