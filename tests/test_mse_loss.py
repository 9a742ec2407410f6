"""mse_loss: gradcheck and double backward (input, target, weight) for every reduction and
broadcast, parity with torch, references to the inputs as the only thing saved, the size warning,
legacy arguments, dtype promotion, NaN/±Inf, errors, torch.func, compile, autocast, the module."""

import warnings

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch.func import grad, jacrev, jvp, vmap

import manual_autograd
import manual_autograd.functional as F
from manual_autograd import nn as mnn

SINGLE_THREAD = True
REDUCTIONS = ["none", "mean", "sum"]
pytestmark = pytest.mark.filterwarnings("ignore:Using a target size")
SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (2, 4)), ((), ()), ((0, 3), (0, 3))]
HAS_WEIGHT = "weight" in __import__("inspect").signature(TF.mse_loss).parameters


def _w(shape):
    return leaf(torch.rand(shape, dtype=torch.float64) + 0.5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("xs,ts", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck(reduction, xs, ts, weighted):
    x, t = leaf(torch.randn(xs, dtype=torch.float64)), leaf(torch.randn(ts, dtype=torch.float64))
    w = _w(xs) if weighted else None
    nan = reduction == "mean" and x.numel() == 0  # a NaN loss: gradgradcheck cannot compare it
    check_grads(lambda x, t, w: F.mse_loss(x, t, reduction=reduction, weight=w), (x, t, w), gradgrad=not nan)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("xs,ts", SHAPES[:3])
@pytest.mark.parametrize("weighted", [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_WEIGHT, reason="torch without weight"))])
def test_parity(dtype, reduction, xs, ts, weighted):
    x, t = torch.randn(xs, dtype=dtype) * 3, torch.randn(ts, dtype=dtype)
    w = torch.rand(xs, dtype=dtype) + 0.5 if weighted else None
    args = [(leaf(x), leaf(t), None if w is None else leaf(w)) for _ in range(2)]
    kw = lambda a: {"weight": a[2]} if weighted else {}  # noqa: E731
    out, expect = F.mse_loss(*args[0][:2], reduction=reduction, **kw(args[0])), TF.mse_loss(*args[1][:2], reduction=reduction, **kw(args[1]))
    assert out.shape == expect.shape and out.dtype == expect.dtype
    assert_close(out, expect)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    for a, b in zip(args[0], args[1]):
        if a is not None:
            assert_close(a.grad, b.grad)


def test_saves_references_to_the_inputs_only():
    x, t = leaf(torch.randn(4, 5)), torch.randn(4, 5)
    for reduction in REDUCTIONS:
        with record_saved() as saved:
            out = F.mse_loss(x, t, reduction=reduction)
        assert sorted(s.data_ptr for s in saved) == sorted((x.data_ptr(), t.data_ptr()))
        assert ctx_tensor_attrs(out.grad_fn) == []
        with record_saved() as native:
            TF.mse_loss(x, t, reduction=reduction)
        assert saved.unique_bytes() == native.unique_bytes()
    w = torch.rand(4, 5)
    with record_saved() as saved:
        F.mse_loss(x, t, weight=w)
    assert sorted(s.data_ptr for s in saved) == sorted((x.data_ptr(), t.data_ptr(), w.data_ptr()))


def test_size_warning_and_legacy_arguments_as_torch():
    x, t = torch.randn(3, 4), torch.randn(4)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        out = F.mse_loss(x, t)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        expect = TF.mse_loss(x, t)
    assert [(str(w.message), w.category, w.filename) for w in ours] == [(str(w.message), w.category, w.filename) for w in theirs]
    assert ours[0].filename == __file__
    assert_close(out, expect)
    for sa, rd in ((False, None), (None, False), (True, True), (False, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_close(F.mse_loss(x, x * 2, sa, rd), TF.mse_loss(x, x * 2, sa, rd))


def test_dtype_promotion_as_torch():
    x = leaf(torch.randn(3, 4))
    for t in (torch.randn(3, 4, dtype=torch.float64), torch.ones(3, 4, dtype=torch.long)):
        out, expect = F.mse_loss(x, t), TF.mse_loss(x, t)
        assert out.dtype == expect.dtype
        assert_close(out, expect)
        out.backward()
        assert x.grad.dtype == torch.float32
        x.grad = None


def test_nonfinite_like_torch():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0, float("inf")])
    t = torch.tensor([1.0, 2.0, -float("inf"), float("nan"), float("inf")])
    for reduction in REDUCTIONS:
        xo, xn, to, tn = leaf(x), leaf(x), leaf(t), leaf(t)
        out, expect = F.mse_loss(xo, to, reduction=reduction), TF.mse_loss(xn, tn, reduction=reduction)
        assert_close(out, expect)
        out.backward(torch.ones_like(out))
        expect.backward(torch.ones_like(expect))
        assert_close(xo.grad, xn.grad)
        assert_close(to.grad, tn.grad)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((torch.randn(3), torch.randn(3)), {"reduction": "avg"}),
        ((torch.randn(3), torch.randn(3)), {"reduction": None}),
        ((torch.randn(3, 4), torch.randn(5)), {}),  # not broadcastable
        ((torch.arange(3), torch.arange(3)), {}),  # integers
        ((torch.randn(3), torch.randn(3, device="meta")), {}),
        ((torch.randn(3), 1.0), {}),
        (([1.0], torch.randn(1)), {}),
    ]
    + ([((torch.randn(3, 4), torch.randn(3, 4)), {"weight": torch.ones(4)})] if HAS_WEIGHT else []),
)
def test_errors_as_torch(args, kwargs):
    with pytest.raises(Exception) as theirs:
        TF.mse_loss(*args, **kwargs)
    with pytest.raises(type(theirs.value), match="'(input|target|weight|reduction)'"):
        F.mse_loss(*args, **kwargs)


def test_func_transforms_and_forward_ad():
    import torch.autograd.forward_ad as fwAD

    x, t = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    for red in REDUCTIONS:
        ours, ref = (lambda a, b: F.mse_loss(a, b, reduction=red)), (lambda a, b: TF.mse_loss(a, b, reduction=red))
        gs = [vmap(grad(lambda a, b, f=f: f(a, b).sum(), argnums=(0, 1)))(x, t) for f in (ours, ref)]
        assert_close(gs[0][0], gs[1][0])
        assert_close(gs[0][1], gs[1][1])
        assert_close(jacrev(ours)(x[0], t[0]), jacrev(ref)(x[0], t[0]))
        tx, tt = torch.randn_like(x), torch.randn_like(t)
        for a, b in zip(jvp(ours, (x, t), (tx, tt)), jvp(ref, (x, t), (tx, tt))):
            assert_close(a, b)
    w, tw = torch.rand(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    ref = lambda a, b, c: ((a - b) ** 2 * c).sum() / c.sum()  # noqa: E731  (torch's weighted mean)
    with fwAD.dual_level():
        dual = [fwAD.make_dual(a, b) for a, b in ((x, tx), (t, tt), (w, tw))]
        ours_t = fwAD.unpack_dual(F.mse_loss(*dual[:2], weight=dual[2])).tangent
    assert_close(ours_t, jvp(ref, (x, t, w), (tx, tt, tw))[1])
    assert_close(vmap(lambda a, c: F.mse_loss(a, t[0], weight=c))(x, w), vmap(lambda a, c: ref(a, t[0], c))(x, w))


def test_compile_fullgraph():
    x, t = torch.randn(4, 6), torch.randn(6)
    ours, ref = leaf(x), leaf(x)
    step = lambda f, v: f.mse_loss(v, t) + f.mse_loss(v, t, reduction="none").sum()  # noqa: E731
    out = torch.compile(lambda v: step(F, v), backend="aot_eager", fullgraph=True)(ours)
    expect = step(TF, ref)
    out.backward()
    expect.backward()
    assert_close(out, expect)
    assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu_is_float32_as_torch(dtype):
    for x in (torch.randn(4, 5), torch.randn(4, 5).to(dtype)):
        xo, xn = leaf(x), leaf(x)
        t = torch.randn(4, 5).to(dtype)
        with torch.autocast("cpu", dtype=dtype):
            ours, native = F.mse_loss(xo, t), TF.mse_loss(xn, t)
        assert ours.dtype == native.dtype == torch.float32
        torch.testing.assert_close(ours, native)
        ours.backward()
        native.backward()
        assert xo.grad.dtype == xn.grad.dtype
        torch.testing.assert_close(xo.grad, xn.grad)
        if HAS_WEIGHT:  # torch's weighted form: tensor ops, type promotion only
            for w in (torch.rand(4, 5), torch.rand(4, 5).to(dtype)):
                with torch.autocast("cpu", dtype=dtype):
                    ours, native = F.mse_loss(x, t, weight=w), TF.mse_loss(x, t, weight=w)
                assert ours.dtype == native.dtype
                torch.testing.assert_close(ours, native, rtol=1e-2, atol=1e-2)  # bf16/fp16 rounding points differ


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half(dtype):
    x, t = torch.randn(64, 300, device="cuda", dtype=dtype), torch.randn(300, device="cuda", dtype=dtype)
    for reduction in REDUCTIONS:
        ours, ref = leaf(x), leaf(x)
        out, expect = F.mse_loss(ours, t, reduction=reduction), TF.mse_loss(ref, t, reduction=reduction)
        torch.testing.assert_close(out, expect, atol=1e-2, rtol=1e-2)
        out.backward(torch.ones_like(out))
        expect.backward(torch.ones_like(expect))
        torch.testing.assert_close(ours.grad, ref.grad, atol=1e-2, rtol=1e-2)


def test_module():
    for kw in ({}, {"reduction": "sum"}, {"reduction": "none"}):
        m, t = mnn.MSELoss(**kw), torch.nn.MSELoss(**kw)
        assert isinstance(m, torch.nn.MSELoss) and repr(m) == repr(t) and m.state_dict() == t.state_dict() == {}
        x, y = torch.randn(3, 4), torch.randn(3, 4)
        assert_close(m(x, y), t(x, y))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.MSELoss())
    assert type(manual_autograd.convert(model)[1]) is mnn.MSELoss
    assert type(manual_autograd.revert(manual_autograd.convert(model))[1]) is torch.nn.MSELoss
