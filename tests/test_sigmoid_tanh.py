"""sigmoid / tanh: gradcheck and double backward, parity with torch, the output as the only thing
saved, NaN/±Inf, integer inputs, torch.func, torch.compile, autocast, modules."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import ACT_CASES, assert_close, assert_parity, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch.func import grad, jacrev, jvp, vmap

import manual_autograd
import manual_autograd.functional as F
from manual_autograd import nn as mnn
from manual_autograd.ops.sigmoid import sigmoid_derivative, sigmoid_grad_fast
from manual_autograd.ops.tanh import tanh_derivative, tanh_grad_fast

SINGLE_THREAD = True
NAMES = ["sigmoid", "tanh"]
FAST = {"sigmoid": (sigmoid_derivative, sigmoid_grad_fast), "tanh": (tanh_derivative, tanh_grad_fast)}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(name, shape, kind):
    check_grads(getattr(F, name), (leaf(torch.randn(shape, dtype=torch.float64) * 2, kind),))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4, 5)])
def test_parity(name, dtype, shape):
    assert_parity(getattr(F, name), getattr(TF, name), torch.randn(shape, dtype=dtype) * 4)


@pytest.mark.parametrize("name", NAMES)
def test_fast_equals_reference_with_nonfinite(name):
    derivative, fast = FAST[name]
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(30, 20, dtype=dtype) * 4
        x[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        out = getattr(torch, name)(x).t()[:, ::2]
        g = torch.randn(20, 30, dtype=dtype)[:, ::2]
        torch.testing.assert_close(fast(out, g), g * derivative(out), equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_saves_the_output_only(name):
    x = leaf(torch.randn(4, 5))
    with record_saved() as saved:
        out = getattr(F, name)(x)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == out.data_ptr() and s.nbytes == s.storage_nbytes == 4 * 20
    assert ctx_tensor_attrs(out.grad_fn) == []
    with record_saved() as native:
        getattr(TF, name)(leaf(x))
    assert saved.unique_bytes() == native.unique_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_like_torch(name):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e4, -1e4, 0.0, -0.0])
    assert_parity(getattr(F, name), getattr(TF, name), x)


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_and_errors_as_torch(name):
    for x in (torch.arange(5), torch.tensor([True, False])):
        out, expect = getattr(F, name)(x), getattr(TF, name)(x)
        assert out.dtype == expect.dtype
        assert_close(out, expect)
    with pytest.raises(Exception) as theirs:
        getattr(TF, name)([1.0])
    with pytest.raises(type(theirs.value), match="'input'"):
        getattr(F, name)([1.0])


@pytest.mark.parametrize("name", NAMES)
def test_func_transforms_and_forward_ad(name):
    import torch.autograd.forward_ad as fwAD

    x, t = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    ours, ref = getattr(F, name), getattr(TF, name)
    assert_close(vmap(grad(lambda v: (ours(v) ** 2).sum()))(x), vmap(grad(lambda v: (ref(v) ** 2).sum()))(x))
    assert_close(jacrev(ours)(x[0]), jacrev(ref)(x[0]))
    for a, b in zip(jvp(ours, (x,), (t,)), jvp(ref, (x,), (t,))):
        assert_close(a, b)
    with fwAD.dual_level():
        assert_close(fwAD.unpack_dual(ours(fwAD.make_dual(x, t))).tangent, fwAD.unpack_dual(ref(fwAD.make_dual(x, t))).tangent)


def test_compile_fullgraph():
    def step(f, x):
        return (f.sigmoid(x) * f.tanh(x)).sum()

    x = torch.randn(4, 6)
    ours, ref = leaf(x), leaf(x)
    out = torch.compile(lambda v: step(F, v), backend="aot_eager", fullgraph=True)(ours)
    expect = step(TF, ref)
    out.backward()
    expect.backward()
    assert_close(out, expect)
    assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu_as_torch(name, dtype):
    for x in (torch.randn(4, 5), torch.randn(4, 5).to(dtype)):
        xo, xn = leaf(x), leaf(x)
        with torch.autocast("cpu", dtype=dtype):
            ours, native = getattr(F, name)(xo), getattr(TF, name)(xn)
        assert ours.dtype == native.dtype
        torch.testing.assert_close(ours, native)
        ours.float().sum().backward()
        native.float().sum().backward()
        torch.testing.assert_close(xo.grad, xn.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half(name, dtype):
    x = torch.randn(64, 300, device="cuda", dtype=dtype) * 3
    ours, ref = leaf(x), leaf(x)
    out, expect = getattr(F, name)(ours), getattr(TF, name)(ref)
    torch.testing.assert_close(out, expect)
    g = torch.randn_like(out)
    out.backward(g)
    expect.backward(g)
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("ours,theirs", [(mnn.Sigmoid, torch.nn.Sigmoid), (mnn.Tanh, torch.nn.Tanh)])
def test_modules(ours, theirs):
    m, t = ours(), theirs()
    assert isinstance(m, theirs) and repr(m) == repr(t) and m.state_dict() == t.state_dict() == {}
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), theirs())
    fast = manual_autograd.convert(model)
    assert type(fast[1]) is ours and type(manual_autograd.revert(fast)[1]) is theirs
    x = torch.randn(3, 4)
    assert_close(fast(x), model(x))
