"""DropoutFunction / functional.dropout / nn.Dropout: torch's mask bit for bit on CPU, a 1-bit ledger."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import (
    ACT_CASES,
    ACT_SHAPES,
    assert_close,
    check_grads,
    ctx_tensor_attrs,
    fresh,
    leaf,
    packed_bytes,
    record_saved,
    with_zeros,
)
from torch.func import grad, jvp, vmap

import manual_autograd
import manual_autograd.functional as F
import manual_autograd.nn as mnn
from manual_autograd import backend
from manual_autograd.ops import unpack_bits

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

PS = [0.1, 0.5, 0.9]


def seeded(fn, seed=7):
    """``fn`` re-seeded on every call: each evaluation draws the same mask (for gradcheck)."""

    def run(*args):
        torch.manual_seed(seed)
        return fn(*args)

    return run


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("p", [0.3, 1.0])
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(shape, kind, p, inplace):
    x = leaf(torch.randn(shape, dtype=torch.float64))
    check_grads(seeded(lambda x: F.dropout(fresh(x, kind), p, inplace=inplace)), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("p", PS + [1.0])
@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
def test_values_and_grads_are_torchs_bit_for_bit(shape, p, inplace, dtype):
    x = with_zeros(*shape, dtype=dtype)
    ours, ref = leaf(x), leaf(x)
    torch.manual_seed(3)
    out = F.dropout(ours * 1.0, p, inplace=inplace)
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    expect = TF.dropout(ref * 1.0, p, inplace=inplace)
    assert torch.equal(torch.random.get_rng_state(), state)  # the same draws, as many
    assert out.dtype == expect.dtype and torch.equal(out, expect)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    assert torch.equal(ours.grad, ref.grad)


def test_strided_input_is_torchs():
    x = leaf(torch.randn(6, 10), "transposed")
    torch.manual_seed(1)
    out = F.dropout(x, 0.4)
    torch.manual_seed(1)
    assert torch.equal(out, TF.dropout(x, 0.4))


@pytest.mark.parametrize("inplace", [False, True])
def test_identity_cases_return_the_input_as_torch(inplace):
    x = torch.randn(3, 4)
    for kwargs in (dict(p=0.0), dict(p=0.5, training=False), dict(p=1.0, training=False)):
        assert F.dropout(x, inplace=inplace, **kwargs) is x
        assert TF.dropout(x, inplace=inplace, **kwargs) is x
    e = torch.empty(0, 3)
    assert F.dropout(e, 0.5, inplace=inplace) is e and TF.dropout(e, 0.5, inplace=inplace) is e


def test_nonfinite_flow_as_torchs():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0] * 8, dtype=torch.float64)
    for p in (0.5, 1.0):
        ours, ref = leaf(x), leaf(x)
        torch.manual_seed(0)
        out = F.dropout(ours, p)
        torch.manual_seed(0)
        expect = TF.dropout(ref, p)
        assert_close(out, expect, rtol=0, atol=0)  # a dropped NaN or Inf is NaN: x · 0
        g = torch.full_like(x, float("nan"))
        out.backward(g)
        expect.backward(g)
        assert_close(ours.grad, ref.grad, rtol=0, atol=0)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("n", [0, 1, 13, 1001])
def test_saves_a_bit_packed_mask_only(n, inplace):
    x = leaf(torch.randn(n))
    h = x * 1.0
    with record_saved() as saved:
        out = F.dropout(h, 0.3, inplace=inplace)
    if n == 0:
        assert out is h and len(saved) == 0
        return
    assert len(saved) == 1
    (s,) = saved
    assert s.dtype == torch.uint8 and s.shape == (packed_bytes(n),)
    assert s.nbytes == s.storage_nbytes == packed_bytes(n)  # 1 bit an element, no bigger buffer behind it
    assert ctx_tensor_attrs(out.grad_fn) == []
    assert (out is h) == inplace
    (mask,) = out.grad_fn.saved_tensors
    noise = unpack_bits(mask, (n,)).float().div_(0.7)
    assert torch.equal(out, x.detach() * noise)  # the values are m · x / (1 − p) for the mask kept
    g = torch.randn(n)
    out.backward(g)
    assert torch.equal(x.grad, g * noise)  # and the backward reads that mask only


def test_p1_saves_nothing_and_draws_nothing():
    x = leaf(torch.randn(4, 5))
    state = torch.random.get_rng_state()
    with record_saved() as saved:
        out = F.dropout(x, 1.0)
    assert len(saved) == 0 and torch.equal(torch.random.get_rng_state(), state)
    assert ctx_tensor_attrs(out.grad_fn) == []
    out.sum().backward()
    assert torch.equal(out, torch.zeros(4, 5)) and torch.equal(x.grad, torch.zeros(4, 5))


def test_inplace_on_a_view_and_leaf_errors_as_torch():
    x = leaf(torch.randn(4, 6))
    for fn in (F.dropout, TF.dropout):
        with pytest.raises(RuntimeError):
            fn(x, 0.5, inplace=True)
    base_o, base_r = x * 1.0, x * 1.0
    torch.manual_seed(2)
    out = F.dropout(base_o[:, 1:], 0.5, inplace=True)
    torch.manual_seed(2)
    TF.dropout(base_r[:, 1:], 0.5, inplace=True)
    assert out._base is base_o and torch.equal(base_o, base_r)
    (go,) = torch.autograd.grad(base_o.sum(), x)
    (gr,) = torch.autograd.grad(base_r.sum(), x)
    assert torch.equal(go, gr)


def test_errors_are_torchs():
    x = torch.randn(3)
    for bad in (-0.1, 1.1):
        for fn in (F.dropout, TF.dropout):
            with pytest.raises(ValueError, match="between 0 and 1"):
                fn(x, bad)
    for fn in (F.dropout, TF.dropout):
        with pytest.raises(TypeError):
            fn([1.0, 2.0], 0.5)
        with pytest.raises(RuntimeError):
            fn(torch.arange(4), 0.5)
    assert torch.equal(F.dropout(torch.arange(4), 1.0), TF.dropout(torch.arange(4), 1.0))


@pytest.mark.parametrize("randomness", ["error", "same", "different"])
def test_vmap_randomness_is_torchs(randomness):
    x = torch.randn(4, 16)
    results = []
    for fn in (F.dropout, TF.dropout):
        torch.manual_seed(5)
        try:
            results.append(vmap(lambda v: fn(v, 0.5), randomness=randomness)(x))
        except RuntimeError as e:
            results.append(type(e))
    if randomness == "error":
        assert results == [RuntimeError, RuntimeError]
    else:
        assert torch.equal(*results)
        rows_equal = all(torch.equal(results[0][0] != 0, r != 0) for r in results[0])
        assert rows_equal == (randomness == "same")


def test_grad_and_jvp_are_torchs():
    x, t = torch.randn(5, 6), torch.randn(5, 6)
    res = []
    for fn in (F.dropout, TF.dropout):
        torch.manual_seed(4)
        g = grad(lambda v: (fn(v, 0.3) ** 2).sum())(x)
        torch.manual_seed(4)
        res.append((g, *jvp(lambda v: fn(v, 0.3), (x,), (t,))))
    for a, b in zip(*res):
        assert torch.equal(a, b)


def test_forward_ad_in_place():
    import torch.autograd.forward_ad as fwAD

    x, t = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    with fwAD.dual_level():
        d = fwAD.make_dual(x.clone(), t.clone())
        torch.manual_seed(1)
        out = F.dropout(d, 0.4, inplace=True)
        out_p, out_t = fwAD.unpack_dual(out)
    assert torch.equal(out_t, t * (out_p != 0) / 0.6)


def test_compile_fullgraph_is_torchs():
    compiled = torch.compile(lambda v: F.dropout(v, 0.3) * 2.0, fullgraph=True, backend="aot_eager")
    ours, ref = leaf(torch.randn(6, 8)), leaf(torch.randn(6, 8))
    ref.data.copy_(ours.data)
    torch.manual_seed(9)
    out = compiled(ours)
    torch.manual_seed(9)
    expect = TF.dropout(ref, 0.3) * 2.0
    assert torch.equal(out, expect)
    out.sum().backward()
    expect.sum().backward()
    assert torch.equal(ours.grad, ref.grad)


def test_autocast_keeps_the_dtype_as_torch():
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        out = F.dropout(x, 0.5)
        torch.manual_seed(0)
        expect = TF.dropout(x, 0.5)
    assert out.dtype == expect.dtype == torch.float32 and torch.equal(out, expect)


def test_signature_is_torchs():
    import inspect

    def params(fn):
        return [(q.name, q.default, q.kind) for q in inspect.signature(fn).parameters.values()]

    assert params(F.dropout) == params(TF.dropout)


def test_module_is_torchs_and_converts():
    for kwargs in (dict(), dict(p=0.2), dict(p=0.7, inplace=True)):
        ours, theirs = mnn.Dropout(**kwargs), torch.nn.Dropout(**kwargs)
        assert isinstance(ours, torch.nn.Dropout)
        assert repr(ours) == repr(theirs) and ours.state_dict() == theirs.state_dict() == {}
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.25))
    conv = manual_autograd.convert(m)
    assert type(conv[1]) is mnn.Dropout and conv[1].p == 0.25
    assert type(manual_autograd.revert(conv)[1]) is torch.nn.Dropout
    x = torch.randn(3, 4)
    torch.manual_seed(0)
    a = conv(x)
    torch.manual_seed(0)
    assert torch.equal(a, m(x))
    conv.eval()
    assert torch.equal(conv(x), conv[0](x))


# The Triton kernel, interpreted on CPU (tests/conftest.py), compiled on CUDA.


def _kernels():
    triton = pytest.importorskip("triton")  # noqa: F841
    K = backend.kernels()
    if not K.INTERPRETED:
        pytest.skip("kernels not interpreted")
    return K


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.6])
def test_kernel_mask_values_and_backward(p, dtype):
    from manual_autograd.ops.dropout import dropout_noise

    K = _kernels()
    n = 4001  # not a whole number of blocks nor of bytes
    x = with_zeros(n, dtype=dtype)
    x[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
    g = torch.randn(n, dtype=dtype)
    torch.manual_seed(0)
    out, mask = K.dropout.forward(x, p)
    torch.manual_seed(0)
    assert torch.equal(K.dropout.forward(x, p)[1], mask)  # torch.manual_seed fixes the mask
    assert mask.dtype == torch.uint8 and mask.shape == (packed_bytes(n),)
    assert mask[-1] >> (n % 8) == 0  # the padding bits of the last byte are 0
    kept = unpack_bits(mask, (n,))
    assert abs(kept.double().mean().item() - (1 - p)) < 0.03
    noise = dropout_noise(mask, (n,), p, dtype)
    # float64: the interpreter passes the float argument as float32, so only close there
    tol = dict(rtol=0, atol=0) if dtype == torch.float32 else dict(rtol=1e-6, atol=0)
    assert_close(out, x * noise, **tol)
    assert_close(K.dropout.backward(mask, g, p), g * noise, **tol)
    assert_close(K.dropout.backward(mask, torch.ones(()).to(dtype).expand(n), p), noise, **tol)
    y = x.clone()
    out2, mask2 = K.dropout.forward(y, p, inplace=True)
    assert out2 is y and mask2.shape == mask.shape


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kernel_path_double_backward_reads_the_kernels_mask():
    _kernels()
    x = leaf(torch.randn(37, 11, dtype=torch.float64), "transposed")
    with backend.use("triton"):
        check_grads(seeded(lambda x: F.dropout(x, 0.4)), (x,), fast=True)
        out = F.dropout(x, 0.4)
        g = torch.randn_like(out, requires_grad=True)
        (gx,) = torch.autograd.grad(out, x, g, create_graph=True)  # the reference backward, on the kernel's mask
        (gg,) = torch.autograd.grad(gx.sum(), g)
    kept = (out != 0).double()
    assert torch.equal(gx, g * kept / 0.6) and torch.equal(gg, kept / 0.6)
    assert abs(kept.mean().item() - 0.6) < 0.1


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_half_values_and_grads(dtype):
    x = torch.randn(1000, 33, device="cuda", dtype=dtype, requires_grad=True)
    out = F.dropout(x, 0.2)
    g = torch.randn_like(out)
    out.backward(g)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01
    scale = torch.ones((), dtype=torch.float32).div_(0.8)
    expect = (x.detach().float() * scale * kept).to(dtype)
    torch.testing.assert_close(out, expect, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, (g.float() * scale * kept).to(dtype), rtol=0, atol=0)
