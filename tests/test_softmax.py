"""softmax / log_softmax: gradcheck and double backward, parity with torch, the output as the only
thing saved, NaN/±Inf, dim=None and dtype=, errors, torch.func, torch.compile, autocast, modules."""

import warnings

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch.func import grad, jacrev, jvp, vmap

import manual_autograd
import manual_autograd.functional as F
from manual_autograd import nn as mnn
from manual_autograd.ops.softmax import softmax_backward, softmax_grad_fast

SINGLE_THREAD = True
NAMES = ["softmax", "log_softmax"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape,dim", [((), 0), ((5,), -1), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), 1), ((2, 0, 3), 2)])
def test_gradcheck(name, shape, dim):
    x = leaf(torch.randn(shape, dtype=torch.float64) * 2)
    check_grads(lambda x: getattr(F, name)(x, dim), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_strided_and_dtype(name):
    x = leaf(torch.randn(4, 6, dtype=torch.float64), "transposed")
    check_grads(lambda x: getattr(F, name)(x, 1), (x,))
    x32 = leaf(torch.randn(3, 5))  # dtype= casts first: the gradient comes back as float32
    check_grads(lambda x: getattr(F, name)(x, -1, dtype=torch.float64), (x32,), grad=False, gradgrad=False)
    out = getattr(F, name)(x32, -1, dtype=torch.float64)
    assert out.dtype == torch.float64
    out.sum().backward()
    ref = leaf(x32)
    getattr(TF, name)(ref, -1, dtype=torch.float64).sum().backward()
    assert x32.grad.dtype == torch.float32
    assert_close(x32.grad, ref.grad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", [((7,), 0), ((4, 9), 1), ((3, 5, 4), 0), ((3, 5, 4), -2)])
def test_parity(name, dtype, shape, dim):
    x = torch.randn(shape, dtype=dtype) * 3
    ours, ref = leaf(x), leaf(x)
    out, expect = getattr(F, name)(ours, dim), getattr(TF, name)(ref, dim)
    assert_close(out, expect)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("name", NAMES)
def test_fast_equals_reference(name):
    for dtype in (torch.float32, torch.float64):
        out = getattr(TF, name)(torch.randn(6, 7, dtype=dtype), 0)
        g = torch.randn(7, 6, dtype=dtype).t()
        log = name == "log_softmax"
        torch.testing.assert_close(softmax_grad_fast(out, g, 0, log), softmax_backward(out, g, 0, log))


@pytest.mark.parametrize("name", NAMES)
def test_saves_the_output_only(name):
    x = leaf(torch.randn(4, 5))
    with record_saved() as saved:
        out = getattr(F, name)(x, 1)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == out.data_ptr() and s.nbytes == s.storage_nbytes == 4 * 20
    assert ctx_tensor_attrs(out.grad_fn) == []
    with record_saved() as native:
        getattr(TF, name)(leaf(x), 1)
    assert saved.unique_bytes() <= native.unique_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_like_torch(name):
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[1.0, inf, 0.0], [-inf, -inf, -inf], [1.0, nan, 2.0], [-inf, 0.0, 1.0], [inf, inf, 1.0]])
    ours, ref = leaf(x), leaf(x)
    out, expect = getattr(F, name)(ours, 1), getattr(TF, name)(ref, 1)
    assert_close(out, expect)
    g = torch.randn_like(x)
    out.backward(g)
    expect.backward(g)
    assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_implicit_dim_warns_as_torch(name, shape):
    x = torch.randn(shape)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        out = getattr(F, name)(x)
        mout = getattr(mnn, "Softmax" if name == "softmax" else "LogSoftmax")()(x)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        expect = getattr(TF, name)(x)
        getattr(torch.nn, "Softmax" if name == "softmax" else "LogSoftmax")()(x)
    assert_close(out, expect)
    assert_close(mout, expect)
    # the same warnings, each pointing at the same frame as torch's
    assert [(str(w.message), w.category, w.filename) for w in ours] == [
        (str(w.message), w.category, w.filename) for w in theirs
    ]
    assert len(ours) == 2 and ours[0].filename == __file__


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((torch.arange(3), 0), {}),  # not floating
        ((torch.randn(3, dtype=torch.cfloat), 0), {}),
        ((torch.randn(3), 0), {"dtype": torch.long}),
        ((torch.randn(2, 3), 2), {}),  # dim out of range
        ((torch.randn(2, 3), -3), {}),
        ((torch.tensor(1.0), 1), {}),
        ((torch.randn(2, 3), 1.0), {}),
        ((torch.randn(2, 3), True), {}),
        ((torch.randn(2, 3), 1), {"dtype": "float"}),
        (([1.0, 2.0], 0), {}),
    ],
)
def test_errors_as_torch(name, args, kwargs):
    with pytest.raises(Exception) as theirs:
        getattr(TF, name)(*args, **kwargs)
    with pytest.raises(type(theirs.value), match="'(input|dim|dtype)'"):
        getattr(F, name)(*args, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_func_transforms(name):
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    ours, ref = (lambda v: getattr(F, name)(v, -1)), (lambda v: getattr(TF, name)(v, -1))
    w = torch.randn(5, dtype=torch.float64)
    assert_close(vmap(grad(lambda v: (ours(v) * w).sum()))(x), vmap(grad(lambda v: (ref(v) * w).sum()))(x))
    assert_close(jacrev(ours)(x[0]), jacrev(ref)(x[0]))
    t = torch.randn_like(x)
    for a, b in zip(jvp(ours, (x,), (t,)), jvp(ref, (x,), (t,))):
        assert_close(a, b)
    assert_close(vmap(ours, in_dims=1)(x), vmap(ref, in_dims=1)(x))


@pytest.mark.parametrize("name", NAMES)
def test_forward_ad(name):
    import torch.autograd.forward_ad as fwAD

    x, t = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    with fwAD.dual_level():
        ours = fwAD.unpack_dual(getattr(F, name)(fwAD.make_dual(x, t), 0)).tangent
        ref = fwAD.unpack_dual(getattr(TF, name)(fwAD.make_dual(x, t), 0)).tangent
    assert_close(ours, ref)


def test_compile_fullgraph():
    def step(f, x):
        return (f.softmax(x, -1) * f.log_softmax(x, 0, dtype=torch.float64).float()).sum()

    x = torch.randn(4, 6)
    ours, ref = leaf(x), leaf(x)
    out = torch.compile(lambda v: step(F, v), backend="aot_eager", fullgraph=True)(ours)
    expect = step(TF, ref)
    out.backward()
    expect.backward()
    assert_close(out, expect)
    assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu_as_torch(dtype):
    for x in (torch.randn(4, 5), torch.randn(4, 5).to(dtype)):
        for name in NAMES:
            xo, xn = leaf(x), leaf(x)
            with torch.autocast("cpu", dtype=dtype):
                ours, native = getattr(F, name)(xo, 1), getattr(TF, name)(xn, 1)
            assert ours.dtype == native.dtype
            torch.testing.assert_close(ours, native)
            ours.float().sum().backward()
            native.float().sum().backward()
            assert xo.grad.dtype == xn.grad.dtype
            torch.testing.assert_close(xo.grad, xn.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half_and_autocast(dtype):
    x = torch.randn(64, 300, device="cuda", dtype=dtype)
    for name in NAMES:
        ours, ref = leaf(x), leaf(x)
        out, expect = getattr(F, name)(ours, -1), getattr(TF, name)(ref, -1)
        torch.testing.assert_close(out, expect, atol=2e-2, rtol=2e-2)
        g = torch.randn_like(out)
        out.backward(g)
        expect.backward(g)
        torch.testing.assert_close(ours.grad, ref.grad, atol=5e-2, rtol=5e-2)
        with torch.autocast("cuda", dtype=dtype):
            assert getattr(F, name)(x, 0).dtype == getattr(TF, name)(x, 0).dtype
            assert getattr(F, name)(x.float(), 0).dtype == getattr(TF, name)(x.float(), 0).dtype


@pytest.mark.parametrize("ours,theirs", [(mnn.Softmax, torch.nn.Softmax), (mnn.LogSoftmax, torch.nn.LogSoftmax)])
def test_modules(ours, theirs):
    for dim in (None, 0, -1):
        m, t = ours(dim), theirs(dim)
        assert isinstance(m, theirs) and repr(m) == repr(t) and m.state_dict() == t.state_dict() == {}
    x = torch.randn(3, 4)
    assert_close(ours(dim=1)(x), theirs(dim=1)(x))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), theirs(dim=-1))
    fast = manual_autograd.convert(model)
    assert type(fast[1]) is ours and fast[1].dim == -1
    assert type(manual_autograd.revert(fast)[1]) is theirs
    assert_close(fast(x), model(x))
