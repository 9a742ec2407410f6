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


# ------------------------------------------------------------------------------------------------
# the fused layers: the policy of the unfused native chain each replaces


def _fused(dev):
    """name -> (ours, the native unfused chain): functions of ``(x, w, b, class_weight)``."""
    t = torch.randint(0, 40, (32,), device=dev)
    t[3] = -100
    acts = {"relu": TF.relu, "leaky_relu": lambda z: TF.leaky_relu(z, -0.1), "gelu": TF.gelu, "silu": TF.silu}
    cases = {
        f"activation_linear-{a}": (
            lambda x, w, b, cw, a=a: F.activation_linear(x, w[:24, :16], b[:24], a, -0.1),
            lambda x, w, b, cw, a=a: TF.linear(acts[a](x), w[:24, :16], b[:24]),
        )
        for a in acts
    }
    for chunk in (None, 16):  # the chunked path (40 classes > 16 features, or chunks of 16) and the unfused one (few classes)
        for eps in (0.0, 0.1):  # with a class weight and smoothing, or neither
            name = f"linear_cross_entropy-chunk{chunk}-{'w' if eps else 'plain'}"
            cases[name] = (
                lambda x, w, b, cw, eps=eps, chunk=chunk: F.linear_cross_entropy(
                    x, w, t, linear_bias=b, chunk_size=chunk, weight=cw if eps else None, label_smoothing=eps
                ),
                lambda x, w, b, cw, eps=eps: TF.cross_entropy(
                    TF.linear(x, w, b), t, weight=cw if eps else None, label_smoothing=eps
                ),
            )
    cases["linear_cross_entropy-unfused-few-classes"] = (
        lambda x, w, b, cw: F.linear_cross_entropy(x, w[:8], t.clamp(0, 7), linear_bias=b[:8]),
        lambda x, w, b, cw: TF.cross_entropy(TF.linear(x, w[:8], b[:8]), t.clamp(0, 7)),
    )
    return cases


@pytest.mark.parametrize("dev,dtype", MODES)
@pytest.mark.parametrize("in_dtype", [torch.float32, "low"])
def test_fused_ops_dtypes_and_error_vs_float64_within_2x_native(dev, dtype, in_dtype):
    _check_fused(dev, dtype, dtype if in_dtype == "low" else in_dtype)


def _check_fused(dev, dtype, in_dtype, only=None):
    torch.manual_seed(0)
    x0 = torch.randn(32, 16, device=dev)
    w0, b0 = torch.randn(40, 16, device=dev) / 4, torch.randn(40, device=dev)
    cw0 = torch.rand(40, device=dev) + 0.5
    for name, (ours, native) in _fused(dev).items():
        if only is not None and name not in only:
            continue
        runs = {}
        for key, fn, x_dtype, p_dtype, cast in [
            ("ref", native, torch.float64, torch.float64, False),
            ("ours", ours, in_dtype, torch.float32, True),
            ("native", native, in_dtype, torch.float32, True),
        ]:
            x = x0.to(x_dtype).clone().requires_grad_()
            w, b = w0.to(p_dtype).clone().requires_grad_(), b0.to(p_dtype).clone().requires_grad_()
            with torch.autocast(dev, dtype=dtype, enabled=cast):
                out = fn(x, w, b, cw0.to(p_dtype))
            out.float().sum().backward()
            runs[key] = (out, x.grad, w.grad, b.grad)
        (o, *go), (n, *gn), (r, *gr) = runs["ours"], runs["native"], runs["ref"]
        assert o.dtype == n.dtype, name
        assert [g.dtype for g in go] == [g.dtype for g in gn], name
        for what, a, c, ref in [("out", o, n, r), *[(f"grad{i}", a, c, ref) for i, (a, c, ref) in enumerate(zip(go, gn, gr))]]:
            e_ours, e_native = _err(a, ref), _err(c, ref)
            assert e_ours <= 2 * e_native + 1e-6, f"{name} {what}: error {e_ours:.2e} vs native {e_native:.2e}"


@pytest.mark.parametrize("dev,dtype", MODES)
def test_fused_modules_under_autocast(dev, dtype):
    # nn.MLP(fused=True): its first Linear (torch's) gives the autocast dtype, ActivationLinear float32 weights
    torch.manual_seed(0)
    x, y = torch.randn(16, 12, device=dev), torch.randint(0, 30, (16,), device=dev)
    mlp = mnn.MLP(12, [20, 20, 8], activation_layer=torch.nn.GELU).to(dev)
    al = mnn.ActivationLinear(12, 8, activation="silu").to(dev)
    lce = mnn.LinearCrossEntropyLoss(12, 30, bias=True).to(dev)
    for name, m in [("mlp", mlp), ("al", al)]:
        with torch.autocast(dev, dtype=dtype):
            out = m(x)
        assert out.dtype == dtype, name
        out.float().sum().backward()
        assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in m.parameters()), name
    with torch.autocast(dev, dtype=dtype):
        loss = lce(x, y)
    loss.backward()
    assert loss.dtype == torch.float32 and lce.linear.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("dev,dtype", [p for p in MODES if p.id != "cpu-fp16"])  # (the interpreter is slow)
def test_fused_ops_under_autocast_on_the_kernel_path(dev, dtype, monkeypatch):
    # the Triton backward of ActivationLinear gets z in float32 and g cast back to it; the chunked
    # linear_cross_entropy's block kernels get float32 blocks. On CPU the interpreter runs them
    # (float32 inputs: it has no bf16), on CUDA the compiled kernels (both input dtypes).
    from manual_autograd import backend

    with backend.use("triton"):
        if not backend.kernels_for(torch.zeros(1, device=dev)):
            pytest.skip("no Triton kernels for this device")
        calls = []
        for mod, name in [("activation_linear", "backward"), ("linear_cross_entropy", "block_update_")]:
            fn = getattr(getattr(backend.kernels(), mod), name)
            monkeypatch.setattr(getattr(backend.kernels(), mod), name, lambda *a, fn=fn, mod=mod, **k: (calls.append(mod), fn(*a, **k))[1])
        # on CPU two cases (the interpreter is slow): one activation, the chunked loss with weight and smoothing
        only = None if dev == "cuda" else ("activation_linear-gelu", "linear_cross_entropy-chunk16-w")
        _check_fused(dev, dtype, torch.float32, only)
        if dev == "cuda":
            _check_fused(dev, dtype, dtype)
    assert {"activation_linear", "linear_cross_entropy"} <= set(calls)  # the kernels ran


def test_fused_mlp_under_autocast_compiles_fullgraph():
    torch.manual_seed(0)
    mlp = mnn.MLP(12, [20, 20, 8], activation_layer=torch.nn.SiLU)
    x = torch.randn(16, 12)
    compiled = torch.compile(mlp, fullgraph=True, backend="aot_eager")
    runs = []
    for m in (mlp, compiled):
        mlp.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        out.float().sum().backward()
        runs.append((out, [p.grad.clone() for p in mlp.parameters()]))
    (out_e, grads_e), (out_c, grads_c) = runs
    assert out_c.dtype == torch.bfloat16
    torch.testing.assert_close(out_c, out_e)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)
