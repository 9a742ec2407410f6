"""LayerNormFunction / RMSNormFunction, functional.layer_norm / rms_norm, nn.LayerNorm / RMSNorm:
gradcheck and gradgradcheck for every option, parity with torch, what is saved, NaN/Inf, errors,
torch.func, torch.compile, autocast, the modules and convert."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, layout, leaf, record_saved
from torch.func import grad, jacrev, jvp, vmap

import manual_autograd as ma
import manual_autograd.functional as F
from manual_autograd import nn as mnn

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread
D = torch.float64

# name -> (normalized_shape, input shape, weight?, bias?): every option of both norms
LN_CASES = {
    "affine": ((5,), (3, 5), True, True),
    "weight-only": ((5,), (2, 3, 5), True, False),
    "bias-only": ((5,), (3, 5), False, True),
    "plain": ((5,), (3, 5), False, False),
    "2d-shape": ((3, 4), (2, 3, 4), True, True),
    "1d-input": ((6,), (6,), True, True),
}
RMS_CASES = {k: v[:3] for k, v in LN_CASES.items() if not k.startswith("bias")}


def _ln(shape, w, b, eps=1e-5):
    return lambda x, *p: F.layer_norm(x, shape, p[0] if w else None, p[-1] if b else None, eps)


def _params(shape, w, b=False, dtype=D):
    return [leaf(torch.randn(shape, dtype=dtype)) for on in (w, b) if on]


@pytest.mark.parametrize("name", list(LN_CASES))
@pytest.mark.parametrize("kind", ["contiguous", "strided"])
def test_layer_norm_gradcheck(name, kind):
    shape, xs, w, b = LN_CASES[name]
    x = leaf(torch.randn(xs, dtype=D) * 2 + 1, kind)
    check_grads(_ln(shape, w, b), (x, *_params(shape, w, b)))


@pytest.mark.parametrize("name", list(RMS_CASES))
@pytest.mark.parametrize("kind", ["contiguous", "strided"])
def test_rms_norm_gradcheck(name, kind):
    shape, xs, w = RMS_CASES[name]
    x = leaf(torch.randn(xs, dtype=D) * 2 + 1, kind)
    check_grads(lambda x, *p: F.rms_norm(x, shape, p[0] if w else None, 1e-6), (x, *_params(shape, w)))


def test_double_backward_of_the_weight_only_and_transposed_input():
    # x needs no gradient: the statistics are constants; a transposed input is read through reshape
    x = layout(torch.randn(4, 6, dtype=D), "transposed")
    w, b = _params((6,), True, True)
    check_grads(lambda w, b: F.layer_norm(x, (6,), w, b), (w, b))
    check_grads(lambda w: F.rms_norm(x, (6,), w), (w,))


def _parity(ours, theirs, x, params, **tol):
    a, pa = leaf(x), [leaf(p) for p in params]
    e, pe = leaf(x), [leaf(p) for p in params]
    out, expect = ours(a, *pa), theirs(e, *pe)
    assert out.dtype == expect.dtype and out.shape == expect.shape
    assert_close(out, expect, **tol)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    for u, v in zip([a, *pa], [e, *pe]):
        assert u.grad.dtype == v.grad.dtype
        assert_close(u.grad, v.grad, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, D])
@pytest.mark.parametrize("name", ["affine", "plain", "2d-shape", "bias-only"])
def test_parity_with_torch(name, dtype):
    shape, xs, w, b = LN_CASES[name]
    x = torch.randn(64, *xs, dtype=dtype) * 3 + 2
    params = [p.detach() for p in _params(shape, w, b, dtype)]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
    _parity(_ln(shape, w, b), lambda x, *p: TF.layer_norm(x, shape, p[0] if w else None, p[-1] if b else None), x, params, **tol)
    if name != "bias-only":
        _parity(lambda x, *p: F.rms_norm(x, shape, *p), lambda x, *p: TF.rms_norm(x, shape, *p), x, params[:1] if w else [], **tol)


def test_parity_far_from_zero_mean():
    # mean 1e3, spread 1: x̂ is taken as (x − μ) r, never through Σx² (no cancellation)
    x = torch.randn(16, 300) + 1e3
    w, b = torch.randn(300), torch.randn(300)
    _parity(lambda x, w, b: F.layer_norm(x, (300,), w, b), lambda x, w, b: TF.layer_norm(x, (300,), w, b), x, [w, b],
            rtol=1e-3, atol=1e-3)


def test_mixed_half_input_with_float32_params():
    # torch takes a bfloat16 input with float32 parameters: bfloat16 out, each gradient in its own dtype
    x = torch.randn(8, 16).bfloat16()
    w, b = torch.randn(16), torch.randn(16)
    tol = dict(rtol=2e-2, atol=2e-2)
    _parity(lambda x, w, b: F.layer_norm(x, (16,), w, b), lambda x, w, b: TF.layer_norm(x, (16,), w, b), x, [w, b], **tol)
    _parity(lambda x, w: F.rms_norm(x, (16,), w), lambda x, w: TF.rms_norm(x, (16,), w), x, [w], **tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_on_cpu(dtype):
    x = torch.randn(8, 32).to(dtype)
    w, b = torch.randn(32).to(dtype), torch.randn(32).to(dtype)
    tol = dict(rtol=2e-2, atol=2e-2)
    _parity(lambda x, w, b: F.layer_norm(x, (32,), w, b), lambda x, w, b: TF.layer_norm(x, (32,), w, b), x, [w, b], **tol)
    _parity(lambda x, w: F.rms_norm(x, (32,), w), lambda x, w: TF.rms_norm(x, (32,), w), x, [w], **tol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_on_cuda(dtype):
    x = torch.randn(64, 1000, device="cuda").to(dtype)
    w, b = torch.randn(1000, device="cuda").to(dtype), torch.randn(1000, device="cuda").to(dtype)
    tol = dict(rtol=2e-2, atol=2e-2)
    _parity(lambda x, w, b: F.layer_norm(x, (1000,), w, b), lambda x, w, b: TF.layer_norm(x, (1000,), w, b), x, [w, b], **tol)
    _parity(lambda x, w: F.rms_norm(x, (1000,), w), lambda x, w: TF.rms_norm(x, (1000,), w), x, [w], **tol)


def test_rms_norm_default_eps_is_the_compute_dtypes():
    # eps=None: float32's machine epsilon for half precision (torch's opmath), float64's for float64
    x = torch.full((2, 4), 1e-4, dtype=D)
    for dtype in (torch.float32, D, torch.bfloat16):
        assert_close(F.rms_norm(x.to(dtype), (4,)), TF.rms_norm(x.to(dtype), (4,)), rtol=0, atol=0)


SPECIALS = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("special", SPECIALS, ids=["nan", "inf", "-inf"])
def test_nonfinite_flow_as_torch(special):
    x = torch.randn(4, 6)
    x[1, 2] = special
    w, b = torch.randn(6), torch.randn(6)
    _parity(lambda x, w, b: F.layer_norm(x, (6,), w, b), lambda x, w, b: TF.layer_norm(x, (6,), w, b), x, [w, b])
    _parity(lambda x, w: F.rms_norm(x, (6,), w), lambda x, w: TF.rms_norm(x, (6,), w), x, [w])


def test_layer_norm_saves_the_input_and_row_statistics():
    x = leaf(torch.randn(4, 3, 5))
    w, b = leaf(torch.randn(3, 5)), leaf(torch.randn(3, 5))
    with record_saved() as saved:
        out = F.layer_norm(x, (3, 5), w, b)
    assert [s.shape for s in saved] == [(4, 3, 5), (3, 5), (4, 1, 1), (4, 1, 1)]
    assert saved[0].data_ptr == x.data_ptr() and saved[1].data_ptr == w.data_ptr()  # themselves, no copies
    assert [s.nbytes for s in saved] == [4 * 60, 4 * 15, 4 * 4, 4 * 4]
    _, mean, rstd = torch.native_layer_norm(x.detach(), (3, 5), w.detach(), b.detach(), 1e-5)
    assert torch.equal(saved[2].tensor, mean) and torch.equal(saved[3].tensor, rstd)
    assert ctx_tensor_attrs(out.grad_fn) == []
    assert saved.unique_bytes(exclude=[w, b]) == 4 * (60 + 8)
    before, version = x.detach().clone(), x._version
    out.sum().backward()
    assert x._version == version and torch.equal(x.detach(), before)


def test_rms_norm_saves_the_input_and_rstd():
    x, w = leaf(torch.randn(4, 5)), leaf(torch.randn(5))
    with record_saved() as saved:
        out = F.rms_norm(x, (5,), w)
    assert [s.shape for s in saved] == [(4, 5), (5,), (4, 1)]
    assert saved[0].data_ptr == x.data_ptr() and saved[1].data_ptr == w.data_ptr()
    assert torch.equal(saved[2].tensor, torch.ops.aten._fused_rms_norm(x.detach(), [5], w.detach(), None)[1])
    assert ctx_tensor_attrs(out.grad_fn) == []


def test_saves_only_what_the_asked_gradients_read():
    x, w, b = torch.randn(4, 5), leaf(torch.randn(5)), leaf(torch.randn(5))
    with record_saved() as saved:
        F.layer_norm(x, (5,), None, b)  # the bias's gradient reads grad_out alone
    assert len(saved) == 0
    with record_saved() as saved:
        F.layer_norm(x, (5,), w, b)  # the weight's reads x̂, not the weight
    assert [s.shape for s in saved] == [(4, 5), (4, 1), (4, 1)]
    with record_saved() as saved:
        F.rms_norm(x, (5,), w)
    assert [s.shape for s in saved] == [(4, 5), (4, 1)]


def test_native_ledger_is_no_smaller():
    # the ratio the benchmark reports, in small: manual / native saved bytes (parameters excluded) <= 1
    for ours, theirs, args in (
        (F.layer_norm, TF.layer_norm, lambda w, b: ((64,), w, b)),
        (F.rms_norm, TF.rms_norm, lambda w, b: ((64,), w)),
    ):
        sizes = []
        for fn in (ours, theirs):
            x, w, b = leaf(torch.randn(32, 64)), leaf(torch.randn(64)), leaf(torch.randn(64))
            with record_saved() as saved:
                fn(x, *args(w, b))
            sizes.append(saved.unique_bytes(exclude=[w, b]))
        assert sizes[0] <= sizes[1]


# torch.func and forward AD, against torch's own ops in float64
def _func_cases():
    x = torch.randn(3, 4, 5, dtype=D)
    w, b = torch.randn(5, dtype=D), torch.randn(5, dtype=D)
    return {
        "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b), lambda x, w, b: TF.layer_norm(x, (5,), w, b), (x, w, b)),
        "layer_norm-2d": (lambda x: F.layer_norm(x, (4, 5)), lambda x: TF.layer_norm(x, (4, 5)), (x,)),
        "rms_norm": (lambda x, w: F.rms_norm(x, (5,), w), lambda x, w: TF.rms_norm(x, (5,), w), (x, w)),
    }


@pytest.mark.parametrize("name", list(_func_cases()))
def test_torch_func(name):
    ours, theirs, inputs = _func_cases()[name]
    argnums = tuple(range(len(inputs)))

    def loss(f):
        return lambda *a: (f(*a) ** 2).sum()

    x, rest = inputs[0], inputs[1:]
    assert_close(vmap(lambda xi: ours(xi, *rest))(x), vmap(lambda xi: theirs(xi, *rest))(x))
    for a, e in zip(grad(loss(ours), argnums)(*inputs), grad(loss(theirs), argnums)(*inputs)):
        assert_close(a, e)
    per_sample = lambda f: vmap(grad(lambda xi: loss(f)(xi, *rest)))(x)  # noqa: E731
    assert_close(per_sample(ours), per_sample(theirs))
    tangents = tuple(torch.randn_like(t) for t in inputs)
    (o1, t1), (o2, t2) = jvp(ours, inputs, tangents), jvp(theirs, inputs, tangents)
    assert_close(o1, o2)
    assert_close(t1, t2)
    for a, e in zip(jacrev(ours, argnums)(*inputs), jacrev(theirs, argnums)(*inputs)):
        assert_close(a, e)
    # second order: the statistics recomputed in the recorded backward
    h = lambda f: jacrev(grad(loss(f)))(x[0], *[r for r in rest])  # noqa: E731
    assert_close(h(ours), h(theirs))


def test_forward_ad_dual_numbers():
    import torch.autograd.forward_ad as fwAD

    x, t = torch.randn(3, 5, dtype=D), torch.randn(3, 5, dtype=D)
    w, wt = torch.randn(5, dtype=D), torch.randn(5, dtype=D)
    b, bt = torch.randn(5, dtype=D), torch.randn(5, dtype=D)
    outs = []
    for fn in (F.layer_norm, TF.layer_norm):
        with fwAD.dual_level():
            y = fn(fwAD.make_dual(x, t), (5,), fwAD.make_dual(w, wt), fwAD.make_dual(b, bt))
            outs.append(fwAD.unpack_dual(y).tangent)
    assert_close(outs[0], outs[1])
    outs = []
    for fn in (F.rms_norm, TF.rms_norm):
        with fwAD.dual_level():
            outs.append(fwAD.unpack_dual(fn(fwAD.make_dual(x, t), (5,), fwAD.make_dual(w, wt))).tangent)
    assert_close(outs[0], outs[1])


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    ln, rms = mnn.LayerNorm(8), mnn.RMSNorm(8)

    def step(x):
        return (rms(ln(x) * 2.0) ** 2).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for _ in range(2):
        x = torch.randn(4, 8, requires_grad=True)
        xc = x.detach().clone().requires_grad_()
        loss, loss_c = step(x), compiled(xc)
        gs = torch.autograd.grad(loss, [x, ln.weight, ln.bias, rms.weight])
        gc = torch.autograd.grad(loss_c, [xc, ln.weight, ln.bias, rms.weight])
        assert_close(loss_c, loss, rtol=1e-5, atol=1e-5)
        for a, e in zip(gc, gs):  # the compiled backward is the reference, eager's the fast form
            assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("in_dtype", [torch.float32, "low"])
def test_autocast_cpu_follows_torchs_policy(dtype, in_dtype):
    # CPU autocast leaves both norms in their input's dtype (CUDA's casts them to float32)
    in_dtype = dtype if in_dtype == "low" else in_dtype
    x = torch.randn(4, 6).to(in_dtype)
    w, b = torch.randn(6), torch.randn(6)
    for ours, theirs in ((lambda x: F.layer_norm(x, (6,), w, b), lambda x: TF.layer_norm(x, (6,), w, b)),
                         (lambda x: F.rms_norm(x, (6,), w), lambda x: TF.rms_norm(x, (6,), w))):
        xo, xn = leaf(x), leaf(x)
        with torch.autocast("cpu", dtype=dtype):
            o, n = ours(xo), theirs(xn)
        assert o.dtype == n.dtype
        assert_close(o.float(), n.float(), rtol=2e-2, atol=2e-2)
        o.float().sum().backward()
        n.float().sum().backward()
        assert xo.grad.dtype == xn.grad.dtype == in_dtype


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cuda_runs_float32(dtype):
    x = torch.randn(4, 6, device="cuda").to(dtype)
    w, b = torch.randn(6, device="cuda"), torch.randn(6, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        assert F.layer_norm(x, (6,), w, b).dtype == TF.layer_norm(x, (6,), w, b).dtype
        assert F.rms_norm(x, (6,), w).dtype == TF.rms_norm(x, (6,), w).dtype


def _error_cases():
    x, w64 = torch.randn(4, 5), torch.randn(5, dtype=D)
    return {
        "shape": lambda f: f(x, (6,)),
        "shape-2d": lambda f: f(x, (4, 6)),
        "too-long": lambda f: f(x, (2, 4, 5)),
        "empty-shape": lambda f: f(x, ()),
        "int-shape": lambda f: f(x, 5),
        "str-shape": lambda f: f(x, "a"),
        "weight-shape": lambda f: f(x, (5,), torch.randn(3)),
        "weight-type": lambda f: f(x, (5,), [1.0] * 5),
        "integer-input": lambda f: f(torch.ones(4, 5, dtype=torch.long), (5,)),
        "not-a-tensor": lambda f: f([1.0], (1,)),
        "eps-type": lambda f: f(x, (5,), None, *((None,) if f.__name__ == "layer_norm" else ()), "a"),
        "float64-weight": lambda f: f(x, (5,), w64),  # layer_norm refuses it, rms_norm takes it
    }


@pytest.mark.parametrize("case", list(_error_cases()))
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_errors_raise_torchs_types(op, case):
    ours, theirs = getattr(F, op), getattr(TF, op)
    call = _error_cases()[case]
    try:
        call(theirs)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)) as info:
            call(ours)
        assert op in str(info.value)
    else:
        assert_close(call(ours), call(theirs))


def test_layer_norm_bias_errors():
    x = torch.randn(4, 5)
    for bias in (torch.randn(3), torch.randn(5, dtype=D)):
        with pytest.raises(RuntimeError):
            TF.layer_norm(x, (5,), None, bias)
        with pytest.raises(RuntimeError, match="'bias'"):
            F.layer_norm(x, (5,), None, bias)


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.LayerNorm(6),
        lambda nn: nn.LayerNorm([2, 3], eps=1e-3, elementwise_affine=False),
        lambda nn: nn.LayerNorm(6, bias=False),
        lambda nn: nn.RMSNorm(6),
        lambda nn: nn.RMSNorm([2, 3], eps=1e-4, elementwise_affine=False),
    ],
)
def test_modules_are_torchs(make):
    torch.manual_seed(3)
    ours = make(mnn)
    torch.manual_seed(3)
    theirs = make(torch.nn)
    assert isinstance(ours, type(theirs)) and repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)
    with torch.no_grad():
        for p in list(ours.parameters()) + list(theirs.parameters()):
            p.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 2, 3).reshape(4, 6) if "6" in repr(ours) else torch.randn(4, 2, 3)
    _parity(ours, theirs, x, [])


def test_convert_and_revert_swap_the_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.RMSNorm(6))
    fast = ma.convert(model)
    assert type(fast[1]) is mnn.LayerNorm and type(fast[2]) is mnn.RMSNorm
    x = torch.randn(3, 4)
    assert_close(fast(x), model(x))
    back = ma.revert(fast)
    assert type(back[1]) is torch.nn.LayerNorm and type(back[2]) is torch.nn.RMSNorm


@pytest.mark.parametrize("shape,k", [((37, 9), 1), ((5, 4, 3), 2), ((6,), 1), ((0, 4), 1)])
def test_fast_backward_equals_the_reference(shape, k, monkeypatch):
    # a block of 64 elements: several blocks of rows and a partial last one
    from manual_autograd.ops import layer_norm as L
    from manual_autograd.ops import rms_norm as R

    monkeypatch.setattr(R, "CHUNK", 64)
    x = layout(torch.randn(shape, dtype=D) * 3 + 2, "strided")
    if x.numel():
        x[(0,) * x.dim()] = float("nan")
    g, w = torch.randn(shape, dtype=D), torch.randn(shape[len(shape) - k:], dtype=D)
    mean, rstd = L.layer_norm_stats(x, k, 1e-5)
    r2 = R.rms_norm_rstd(x, k, 1e-6)
    for weight in (w, None):
        for need in ((True, True), (True, False), (False, True)):
            fast = L.layer_norm_grad_fast(x, g, weight, mean, rstd, k, *need) + (L.lead_sum(g, k),)
            ref = L.layer_norm_backward(x, g, weight, mean, rstd, k, *need) + (L.lead_sum(g, k),)
            fast_r = R.rms_norm_grad_fast_(x, g, weight, r2, k, *need)
            ref_r = R.rms_norm_backward(x, g, weight, r2, k, *need)
            for a, e in zip(fast + fast_r, ref + ref_r):
                assert (a is None) == (e is None)
                if a is not None:
                    assert_close(a, e)
