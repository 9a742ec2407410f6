"""torch.autocast: the library follows the native ops' cast policy and is as accurate as they are.

Under autocast, ``linear`` runs in the autocast dtype, ``cross_entropy`` in float32 and the
activations in their input's dtype. Accuracy is measured against a float64 reference: the
library's error must stay within 2x the native ops' own error in the same precision.
"""

import pytest
import torch
import torch.nn.functional as TF

import manual_autograd.functional as F
from manual_autograd import nn as mnn

_cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
MODES = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cpu", torch.float16, id="cpu-fp16"),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=_cuda),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=_cuda),
]


def _ops(dev, dtype):
    # parameters in float32 (autocast's master weights), or float64 with float64 inputs
    w, b = torch.randn(6, 5, device=dev, dtype=dtype), torch.randn(6, device=dev, dtype=dtype)
    t = torch.randint(0, 5, (4,), device=dev)
    cw = torch.rand(5, device=dev, dtype=dtype) + 0.5
    return [
        ("linear", lambda f, x: f.linear(x, w, b)),
        ("linear-1d", lambda f, x: f.linear(x[0], w, b)),
        ("linear-3d-nobias", lambda f, x: f.linear(x.expand(2, 4, 5), w)),
        ("relu", lambda f, x: f.relu(x)),
        ("leaky_relu", lambda f, x: f.leaky_relu(x, -0.1)),
        ("gelu", lambda f, x: f.gelu(x, approximate="tanh")),
        ("silu", lambda f, x: f.silu(x)),
        ("cross_entropy", lambda f, x: f.cross_entropy(x, t)),
        ("cross_entropy-smooth", lambda f, x: f.cross_entropy(x, t, cw, label_smoothing=0.1)),
        ("cross_entropy-probs", lambda f, x: f.cross_entropy(x, torch.softmax(x.float(), 1).to(x.dtype))),
        ("softmax", lambda f, x: f.softmax(x, 1)),
        ("log_softmax-dtype", lambda f, x: f.log_softmax(x, 0, dtype=torch.float64)),
        ("sigmoid", lambda f, x: f.sigmoid(x)),
        ("tanh", lambda f, x: f.tanh(x)),
        ("mse_loss", lambda f, x: f.mse_loss(x, x.detach() * 0.5)),
        ("mse_loss-weighted", lambda f, x: f.mse_loss(x, t[:, None].expand(4, 5).to(x.dtype), reduction="sum", weight=cw.expand(4, 5))),
    ]


@pytest.mark.parametrize("dev,dtype", MODES)
@pytest.mark.parametrize("in_dtype", [torch.float32, "low", torch.float64])
def test_output_and_grad_dtypes_match_native(dev, dtype, in_dtype):
    in_dtype = dtype if in_dtype == "low" else in_dtype
    for name, op in _ops(dev, torch.float64 if in_dtype == torch.float64 else torch.float32):
        x = torch.randn(4, 5, device=dev, dtype=in_dtype)
        xo, xn = x.clone().requires_grad_(), x.clone().requires_grad_()
        with torch.autocast(dev, dtype=dtype):
            ours, native = op(F, xo), op(TF, xn)
        assert ours.dtype == native.dtype, name
        ours.float().sum().backward()
        native.float().sum().backward()
        assert xo.grad.dtype == xn.grad.dtype == in_dtype, name


@pytest.mark.parametrize("dev,dtype", MODES)
def test_cross_entropy_under_autocast_is_float32_throughout(dev, dtype):
    # the smoothing term with a class weight is a matmul: it must not drop to the autocast dtype
    x = torch.randn(64, 50, device=dev, dtype=dtype)
    t = torch.randint(0, 50, (64,), device=dev)
    cw = torch.rand(50, device=dev)
    with torch.autocast(dev, dtype=dtype):
        loss = F.cross_entropy(x, t, cw, label_smoothing=0.3)
    ref = F.cross_entropy(x.float(), t, cw, label_smoothing=0.3)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)


def _mlp(lib, dev):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        lib.Linear(64, 128), lib.GELU(), lib.Linear(128, 128), lib.SiLU(), lib.LeakyReLU(), lib.Linear(128, 10)
    ).to(dev)


def _run(model, loss_fn, x, y, autocast=None):
    model.zero_grad()
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        out = model(x)
        loss = loss_fn(out, y)
    loss.backward()
    return out, loss, [p.grad for p in model.parameters()]


def _err(a, ref):
    return ((a.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("dev,dtype", MODES)
def test_mlp_error_vs_float64_within_2x_native(dev, dtype):
    x, y = torch.randn(256, 64, device=dev), torch.randint(0, 10, (256,), device=dev)
    ours, native = _mlp(mnn, dev), _mlp(torch.nn, dev)
    ref = _mlp(torch.nn, dev).double()
    out_r, loss_r, grads_r = _run(ref, torch.nn.CrossEntropyLoss(), x.double(), y)
    out_o, loss_o, grads_o = _run(ours, mnn.CrossEntropyLoss(), x, y, autocast=dtype)
    out_n, loss_n, grads_n = _run(native, torch.nn.CrossEntropyLoss(), x, y, autocast=dtype)

    assert out_o.dtype == out_n.dtype == dtype
    assert loss_o.dtype == loss_n.dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in grads_o)  # master weights stay float32
    pairs = [("output", out_o, out_n, out_r), ("loss", loss_o, loss_n, loss_r)]
    pairs += [(f"grad{i}", go, gn, gr) for i, (go, gn, gr) in enumerate(zip(grads_o, grads_n, grads_r))]
    for name, o, n, r in pairs:
        e_ours, e_native = _err(o, r), _err(n, r)
        assert e_native > 0 or name == "loss", name  # a real low-precision run, not float32 in disguise
        assert e_ours <= 2 * e_native + 1e-7, f"{name}: error {e_ours:.2e} vs native {e_native:.2e}"
