"""Gated units: swiglu / geglu (``act(gate) · up``), the fused gated_linear (``(act(gate) · up) Wᵀ + b``)
and the Llama-style GatedMLP, against the torch compositions they replace."""

import functools

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch import nn
from torch.func import grad, jvp, vmap

import manual_autograd as ma
from manual_autograd import functional as MF

SINGLE_THREAD = True

# name -> (ours (gate, up), torch's composition, activation, approximate)
UNITS = {
    "swiglu": (MF.swiglu, lambda g, u: TF.silu(g) * u, "silu", "none"),
    "geglu": (MF.geglu, lambda g, u: TF.gelu(g) * u, "gelu", "none"),
    "geglu-tanh": (functools.partial(MF.geglu, approximate="tanh"), lambda g, u: TF.gelu(g, approximate="tanh") * u,
                   "gelu", "tanh"),
}


def fused(name):
    _, _, act, approx = UNITS[name]
    return lambda g, u, w, b=None: MF.gated_linear(g, u, w, b, act, approx)


def unfused(name):
    ref = UNITS[name][1]
    return lambda g, u, w, b=None: TF.linear(ref(g, u), w, b)


def _inputs(*shape, dtype=torch.float64, out=5, bias=True):
    g, u = torch.randn(*shape, dtype=dtype), torch.randn(*shape, dtype=dtype)
    w = torch.randn(out, shape[-1], dtype=dtype)
    return g, u, w, torch.randn(out, dtype=dtype) if bias else None


def _grads(fn, inputs, seed=1):
    """``fn``'s output and the gradients of every input under one random ``grad_out``."""
    inputs = [leaf(t) for t in inputs if t is not None]
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    return out, torch.autograd.grad(out, inputs, g)


def _assert_same(ours, ref, **tol):
    assert ours[0].dtype == ref[0].dtype and ours[0].shape == ref[0].shape
    assert_close(ours[0], ref[0], **tol)
    for a, b in zip(ours[1], ref[1]):
        assert a.dtype == b.dtype
        assert_close(a, b, **tol)


# --------------------------------------------------------------------------------------------
# gradcheck, parity


@pytest.mark.parametrize("name", list(UNITS))
@pytest.mark.parametrize("kind", ["contiguous", "strided"])
def test_glu_gradcheck_and_gradgradcheck(name, kind):
    g, u = leaf(torch.randn(2, 3, 4, dtype=torch.float64), kind), leaf(torch.randn(2, 3, 4, dtype=torch.float64), kind)
    check_grads(UNITS[name][0], (g, u))


@pytest.mark.parametrize("name", list(UNITS))
@pytest.mark.parametrize("bias", [True, False])
def test_gated_linear_gradcheck_and_gradgradcheck(name, bias):
    g, u, w, b = _inputs(2, 3, 4, bias=bias)  # 3-D: the leading dims sum in dW
    inputs = [leaf(g, "strided"), leaf(u, "transposed"), leaf(w)] + ([leaf(b)] if bias else [])
    check_grads(fused(name), tuple(inputs))


def test_one_dim_zero_dim_and_empty_inputs():
    g, u, w, b = _inputs(4)
    check_grads(fused("swiglu"), (leaf(g), leaf(u), leaf(w), leaf(b)))  # one sample: (in,) -> (out,)
    for shape in ((), (0,), (2, 0, 3)):
        g, u = torch.randn(shape), torch.randn(shape)
        for name, (ours, ref, _, _) in UNITS.items():
            _assert_same(_grads(ours, (g, u)), _grads(ref, (g, u)))
    g, u, w, b = _inputs(0, 4, dtype=torch.float32)
    _assert_same(_grads(fused("geglu"), (g, u, w, b)), _grads(unfused("geglu"), (g, u, w, b)))


def test_gated_linear_partial_grads_gradcheck():
    g, u, w, _ = _inputs(3, 4)
    check_grads(lambda g: fused("swiglu")(g, u, w), (leaf(g),), gradgrad=False)
    check_grads(lambda u: fused("geglu")(g, u, w), (leaf(u),), gradgrad=False)
    check_grads(lambda w: fused("geglu-tanh")(g, u, w), (leaf(w),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(UNITS))
def test_values_and_grads_equal_torch(name, dtype):
    ours, ref = UNITS[name][:2]
    g, u, w, b = _inputs(4, 3, 16, dtype=dtype, out=8)
    _assert_same(_grads(ours, (g, u)), _grads(ref, (g, u)))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}  # the matmuls sum in another order
    _assert_same(_grads(fused(name), (g, u, w, b)), _grads(unfused(name), (g, u, w, b)), **tol)
    _assert_same(_grads(fused(name), (g, u, w)), _grads(unfused(name), (g, u, w)), **tol)


def _specials(*shape, dtype=torch.float32):
    x = torch.randn(*shape, dtype=dtype).reshape(-1)
    x[:7] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e4, -1e4], dtype=dtype)
    return x[torch.randperm(x.numel())].reshape(shape)


@pytest.mark.parametrize("name", list(UNITS))
def test_nan_and_inf_flow_as_torch(name):
    ours, ref = UNITS[name][:2]
    for g, u in ((_specials(6, 7), torch.randn(6, 7)), (torch.randn(6, 7), _specials(6, 7)), (_specials(6, 7), _specials(6, 7))):
        _assert_same(_grads(ours, (g, u)), _grads(ref, (g, u)), rtol=0, atol=0)
        w = torch.randn(3, 7)
        _assert_same(_grads(fused(name), (g, u, w)), _grads(unfused(name), (g, u, w)))


# --------------------------------------------------------------------------------------------
# what is kept for backward


@pytest.mark.parametrize("name", list(UNITS))
def test_glu_saves_gate_and_up_only(name):
    g0, u0 = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    g, u = g0 * 1.0, u0 * 1.0  # non-leaves, as in a network
    with record_saved() as saved:
        out = UNITS[name][0](g, u)
    assert sorted(s.data_ptr for s in saved) == sorted([g.data_ptr(), u.data_ptr()])
    assert all(s.nbytes == 4 * 24 for s in saved)
    assert ctx_tensor_attrs(out.grad_fn) == []
    with record_saved() as saved:  # d_up alone reads gate only
        UNITS[name][0](g.detach(), u)
    assert [s.data_ptr for s in saved] == [g.data_ptr()]


@pytest.mark.parametrize("name", list(UNITS))
def test_gated_linear_saves_gate_up_and_weight_only(name):
    g0, u0 = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    g, u = g0 * 1.0, u0 * 1.0
    w, b = torch.randn(3, 6, requires_grad=True), torch.randn(3, requires_grad=True)
    with record_saved() as saved:
        out = fused(name)(g, u, w, b)
    assert sorted(s.data_ptr for s in saved) == sorted([g.data_ptr(), u.data_ptr(), w.data_ptr()])
    assert ctx_tensor_attrs(out.grad_fn) == []
    cases = [  # (what needs a gradient) -> what is saved
        ((g.detach(), u.detach(), w, b), [g, u]),  # dW: the recomputed product
        ((g.detach(), u, w.detach(), None), [g, w]),  # d_up = (grad W) act(gate)
        ((g, u.detach(), w.detach(), None), [g, u, w]),
        ((g.detach(), u.detach(), w.detach(), b), []),  # db reads nothing
    ]
    for args, kept in cases:
        with record_saved() as saved:
            fused(name)(*args)
        assert sorted(s.data_ptr for s in saved) == sorted(t.data_ptr() for t in kept)


def _activation_bytes(model, x):
    """Bytes a training forward keeps, parameters and the input excepted, each storage once."""
    params = {p.data_ptr() for p in model.parameters()} | {x.data_ptr()}
    with record_saved() as saved:
        model(x)
    return sum({s.data_ptr: s.storage_nbytes for s in saved if s.data_ptr not in params}.values())


class TorchGatedMLP(nn.Module):
    """The unfused twin, Hugging Face's LlamaMLP: three torch.nn.Linear built in its order."""

    def __init__(self, hidden, inter, bias=False, act=TF.silu):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias)
        self.up_proj = nn.Linear(hidden, inter, bias)
        self.down_proj = nn.Linear(inter, hidden, bias)
        self.act = act

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def test_mlp_keeps_half_the_activations_of_the_unfused_one():
    T, H, I = 32, 16, 44  # noqa: E741
    x = torch.randn(T, H)
    ours, native = _activation_bytes(ma.nn.GatedMLP(H, I), x), _activation_bytes(TorchGatedMLP(H, I), x)
    assert ours == 2 * T * I * 4  # gate, up
    assert native == 4 * T * I * 4  # gate, silu(gate), up, the product
    assert ours / native == 0.5


# --------------------------------------------------------------------------------------------
# the module


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("name", ["swiglu", "geglu-tanh"])
def test_gated_mlp_matches_its_torch_twin(name, bias):
    _, _, act, approx = UNITS[name]
    torch.manual_seed(3)
    ref = TorchGatedMLP(8, 20, bias, act=TF.silu if act == "silu" else functools.partial(TF.gelu, approximate=approx))
    torch.manual_seed(3)
    m = ma.nn.GatedMLP(8, 20, bias=bias, activation=act, approximate=approx)
    assert m.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k  # the same initial draws
    assert all(isinstance(mod, nn.Linear) for mod in (m.gate_proj, m.up_proj, m.down_proj))
    x = torch.randn(2, 5, 8)
    out, want = m(x), ref(x)
    assert_close(out, want, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, list(m.parameters()), g), torch.autograd.grad(want, list(ref.parameters()), g)):
        assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert ("approximate='tanh'" in repr(m)) == (approx == "tanh")


def test_from_linears_shares_the_parameters():
    ref = TorchGatedMLP(6, 10)
    x = torch.randn(3, 6)
    want = ref(x)
    weights = [ref.gate_proj.weight, ref.up_proj.weight, ref.down_proj.weight]
    m = ma.nn.GatedMLP.from_linears(ref.gate_proj, ref.up_proj, ref.down_proj)
    assert [p for p in m.parameters()] == weights and m.intermediate_size == 10
    assert type(m.gate_proj) is ma.nn.Linear
    assert_close(m(x), want)
    with pytest.raises(ValueError, match="down_proj 10->6"):
        ma.nn.GatedMLP.from_linears(nn.Linear(6, 10), nn.Linear(6, 10), nn.Linear(10, 5))
    with pytest.raises(TypeError, match="'up_proj'"):
        ma.nn.GatedMLP.from_linears(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 6))
    with pytest.raises(ValueError, match="'activation'"):
        ma.nn.GatedMLP(6, 10, activation="relu")


# --------------------------------------------------------------------------------------------
# transforms


def test_torch_func_vmap_grad_jvp_equal_torch():
    g, u, w, b = _inputs(4, 6, dtype=torch.float32)
    for name in ("swiglu", "geglu-tanh"):
        ours, ref = UNITS[name][:2]
        assert_close(vmap(ours)(g, u), vmap(ref)(g, u))
        assert_close(vmap(ours, in_dims=(0, None))(g, u[0]), ref(g, u[0].expand_as(g)))
        f, r = fused(name), unfused(name)
        assert_close(vmap(lambda gi, ui: f(gi, ui, w, b))(g, u), r(g, u, w, b), rtol=1e-5, atol=1e-6)
        for argnums in (0, 1, 2):
            got = grad(lambda *a: f(*a, b).square().sum(), argnums)(g, u, w)
            exp = grad(lambda *a: r(*a, b).square().sum(), argnums)(g, u, w)
            assert_close(got, exp, rtol=1e-5, atol=1e-5)
        tangents = tuple(torch.randn_like(t) for t in (g, u, w, b))
        for o, e in zip(jvp(f, (g, u, w, b), tangents), jvp(r, (g, u, w, b), tangents)):
            assert_close(o, e, rtol=1e-5, atol=1e-5)
        for o, e in zip(jvp(ours, (g, u), tangents[:2]), jvp(ref, (g, u), tangents[:2])):
            assert_close(o, e)


def test_compile_fullgraph_equals_eager():
    m = ma.nn.GatedMLP(8, 12, bias=True, activation="gelu", approximate="tanh")
    x = torch.randn(6, 8)

    def step(x):
        out = m(x)
        return out, MF.swiglu(out, x)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    results = []
    for fn in (step, compiled):
        xx = leaf(x)
        out, y = fn(xx)
        grads = torch.autograd.grad((out.sum() + y.square().sum()), [xx, *m.parameters()])
        results.append((out, y, *grads))
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["swiglu", "geglu"])
def test_autocast_cpu_bf16_as_the_native_chain(name):
    _, _, act, approx = UNITS[name]
    torch.manual_seed(4)
    ref = TorchGatedMLP(16, 24, True, act=TF.silu if act == "silu" else TF.gelu)
    torch.manual_seed(4)
    m = ma.nn.GatedMLP(16, 24, bias=True, activation=act, approximate=approx)
    x = torch.randn(10, 16)
    results = []
    for model in (m, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        grads = torch.autograd.grad(out.float().square().sum(), list(model.parameters()))
        results.append((out, grads))
    (out, grads), (want, exp) = results
    assert out.dtype == want.dtype == torch.bfloat16
    assert_close(out, want, rtol=0, atol=0)  # the same casts in the same places: the same numbers
    for a, b in zip(grads, exp):
        assert a.dtype == b.dtype == torch.float32
        assert_close(a, b, rtol=1e-2, atol=1e-2)
    # float32 gate and up given directly: the product in float32, the matmul in bf16, as native
    g, u, w, b = _inputs(5, 24, dtype=torch.float32, out=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, native = _grads(fused(name), (g, u, w, b)), _grads(unfused(name), (g, u, w, b))
    _assert_same(ours, native, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# errors


def test_errors_name_the_argument():
    g, u, w = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(RuntimeError, match=r"gate of shape \(3, 4\) and up of shape \(4,\)"):
        MF.swiglu(g, u[0])
    with pytest.raises(TypeError, match=r"geglu\(\): argument 'up' \(position 2\) must be Tensor"):
        MF.geglu(g, 1.0)
    with pytest.raises(RuntimeError, match="'approximate' must be 'none' or 'tanh'"):
        MF.geglu(g, u, approximate="fast")
    with pytest.raises(RuntimeError, match="expected 'up' of dtype torch.float32"):
        MF.swiglu(g, u.double())
    with pytest.raises(Exception) as torch_error:  # the type torch raises for an integer input
        TF.silu(torch.ones(3, dtype=torch.long))
    with pytest.raises(Exception, match="'gate' to be a floating-point") as info:
        MF.swiglu(g.long(), u.long())
    assert info.type is torch_error.type
    with pytest.raises(ValueError, match="'activation'"):
        MF.gated_linear(g, u, w, activation="relu")
    with pytest.raises(RuntimeError, match="in_features=5"):
        MF.gated_linear(g, u, w.t())
    with pytest.raises(RuntimeError, match=r"'bias' of shape \(5,\)"):
        MF.gated_linear(g, u, w, torch.randn(4))
    with pytest.raises(RuntimeError, match="'weight' of dtype torch.float32 on cpu like 'gate', got torch.float64"):
        MF.gated_linear(g, u, w.double())
    with pytest.raises(RuntimeError, match="0-dim"):
        MF.gated_linear(g[0, 0], u[0, 0], w)


# --------------------------------------------------------------------------------------------
# CUDA (the compiled kernels)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("name", list(UNITS))
def test_cuda_half_precision_equals_torch(name, dtype):
    ours, ref = UNITS[name][:2]
    g, u, w, b = (t.to("cuda", dtype) for t in _inputs(64, 96, dtype=torch.float32, out=32))
    tol = {} if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    _assert_same(_grads(ours, (g, u)), _grads(ref, (g, u)), **tol)
    _assert_same(_grads(fused(name), (g, u, w, b)), _grads(unfused(name), (g, u, w, b)), **({"rtol": 1e-4, "atol": 1e-4} if not tol else tol))


@pytest.mark.cuda
def test_cuda_mlp_under_autocast_and_compile():
    torch.manual_seed(5)
    ref = TorchGatedMLP(64, 160).cuda()
    torch.manual_seed(5)
    m = ma.nn.GatedMLP(64, 160, device="cuda")
    x = torch.randn(32, 64, device="cuda")
    for fn in (m, torch.compile(m, fullgraph=True)):
        outs = []
        for model in (fn, ref):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            outs.append((out, torch.autograd.grad(out.float().square().sum(), list(ref.parameters() if model is ref else m.parameters()))))
        (o, gs), (e, es) = outs
        assert o.dtype == e.dtype == torch.bfloat16
        assert_close(o.float(), e.float(), rtol=2e-2, atol=2e-2)
        for a, c in zip(gs, es):
            assert_close(a, c, rtol=5e-2, atol=5e-2)


def test_benchmark_row_runs_and_keeps_half():
    from benchmarks.common import measure_case
    from benchmarks.fused import gated_mlp_case

    cpu = torch.device("cpu")
    row = measure_case(gated_mlp_case(cpu, tokens=16, hidden=8, intermediate=12), cpu, rounds=1, min_run_time=0.001)
    assert row["step"]["ratio"] > 0
    assert row["manual_saved"]["act"] == 2 * 16 * 12 * 4 and row["saved_ratio"] == 0.5
