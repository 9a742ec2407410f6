"""Attention kernels (FlashAttention-2) against the float64 math reference and torch's SDPA and its autograd."""

import math

import pytest
import torch
import torch.nn.functional as TF

import manual_autograd.functional as MF
from helpers import layout
from kernel_cases import DEVICES, K, close
from manual_autograd import backend

A = K.attention
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf
SINGLE_THREAD = True
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _mask(L, S, device):
    # torch's is_causal: top-left aligned, query i sees keys j <= i (checked against SDPA below)
    return torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=0)


def _reference(q, k, v, causal, scale):
    """``(out, lse)`` in float64 by the math a user writes; differentiable."""
    q, k, v = q.double(), k.double(), v.double()
    s = q @ k.transpose(-1, -2) * scale
    if causal:
        s = s.masked_fill(~_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    return s.softmax(-1) @ v, s.logsumexp(-1)


def _qkv(B, H, L, S, E, EV, dtype, device, seq_major=False):
    """Leaves ``q, k, v``; ``seq_major``: stored as ``(B, L, H, E)`` and seen through ``transpose(1, 2)``."""
    def one(n, d):
        if seq_major:
            return torch.randn(B, n, H, d, dtype=dtype, device=device).transpose(1, 2).requires_grad_()
        return torch.randn(B, H, n, d, dtype=dtype, device=device).requires_grad_()
    return one(L, E), one(S, E), one(S, EV)


def _check(q, k, v, causal, scale, grad_out=None, tol=None):
    dtype = q.dtype
    tol = tol or TOL[dtype]
    out, lse = A.forward(q.detach(), k.detach(), v.detach(), causal, scale)
    ref_out, ref_lse = _reference(q, k, v, causal, scale)
    assert out.shape == ref_out.shape and out.dtype == dtype and lse.dtype == dtype and lse.shape == ref_lse.shape
    close(out, ref_out.to(dtype), **tol)
    close(lse, ref_lse.to(dtype), **tol)
    g = torch.randn_like(out) if grad_out is None else grad_out
    grads = A.backward(q.detach(), k.detach(), v.detach(), out, lse, g, causal, scale)
    ref = torch.autograd.grad(ref_out, (q, k, v), g.double(), allow_unused=True)
    for ours, want, x in zip(grads, ref, (q, k, v)):
        want = torch.zeros_like(x, dtype=torch.float64) if want is None else want
        assert ours.dtype == x.dtype and ours.shape == x.shape
        close(ours, want.to(dtype), **tol)
    return out, lse, grads


# (L, S, E, Ev): one of each, tails of the 16-row interpreter tiles, L < S, L > S, odd head dims
SHAPES = [(1, 1, 16, 16), (17, 40, 24, 16), (40, 17, 16, 24), (32, 32, 64, 64), (40, 32, 3, 40)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_equal_reference(device, dtype, causal, shape):
    L, S, E, EV = shape
    q, k, v = _qkv(2, 2, L, S, E, EV, dtype, device)
    _check(q, k, v, causal, 1 / math.sqrt(E))


def test_reference_is_torch_sdpa():
    # the reference's causal mask is torch's, where it matters: L != S
    for L, S in ((5, 9), (9, 5)):
        q, k, v = _qkv(1, 2, L, S, 8, 8, torch.float64, "cpu")
        for causal in (False, True):
            close(_reference(q, k, v, causal, 8 ** -0.5)[0], TF.scaled_dot_product_attention(q, k, v, is_causal=causal))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_equal_torch_sdpa_and_its_autograd(device, causal):
    q, k, v = _qkv(2, 2, 33, 20, 24, 24, torch.float64, device)
    out = TF.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=0.3)
    g = torch.randn_like(out)
    ours, _, grads = _check(q, k, v, causal, 0.3, grad_out=g)
    close(ours, out.detach(), **TOL[torch.float64])
    for a, b in zip(grads, torch.autograd.grad(out, (q, k, v), g)):
        close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_any_layout(device, causal):
    # q, k, v as (B, L, H, E).transpose(1, 2) (a projection's output split into heads); grad_out too
    q, k, v = _qkv(2, 3, 17, 21, 16, 24, torch.float64, device, seq_major=True)
    g = torch.randn(2, 17, 3, 24, dtype=torch.float64, device=device).transpose(1, 2)
    *_, grads = _check(q, k, v, causal, 0.25, grad_out=g)
    assert grads[0].stride() == q.stride()  # the gradients keep the inputs' layout
    _check(q, k, v, causal, 0.25, grad_out=torch.tensor(1.5, dtype=q.dtype, device=device).expand(g.shape))  # out.sum()'s
    if device == "cpu":  # the head dims strided and transposed (helpers.layout builds on the CPU)
        q2, k2, v2 = (layout(t.detach(), kind).requires_grad_() for t, kind in zip((q, k, v), ("strided", "transposed", "strided")))
        _check(q2, k2, v2, causal, 0.25, grad_out=layout(g, "transposed"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("sizes", [(2, 0, 5), (2, 5, 0), (0, 5, 5)], ids=["L0", "S0", "B0"])
def test_empty(device, causal, sizes):
    B, L, S = sizes
    q, k, v = _qkv(B, 2, L, S, 16, 8, torch.float64, device)
    out, lse, grads = _check(q, k, v, causal, 0.25)
    if S == 0 and B:  # no key: 0 (as torch's SDPA gives), and the log-sum-exp of nothing
        assert (out == 0).all() and (lse == float("-inf")).all()
        close(out, TF.scaled_dot_product_attention(q, k, v, is_causal=causal).detach())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_nonfinite_flow_as_torch(device, causal):
    q, k, v = _qkv(1, 2, 20, 20, 16, 16, torch.float64, device)
    with torch.no_grad():
        k[0, 0, 5, 3] = float("nan")  # causal: rows before key 5 never see it
        v[0, 1, 7, 2] = float("inf")
    out, lse = A.forward(q.detach(), k.detach(), v.detach(), causal, 0.25)
    ref_out, ref_lse = _reference(q, k, v, causal, 0.25)
    close(out, ref_out.detach(), **TOL[torch.float64])
    close(lse, ref_lse.detach(), **TOL[torch.float64])
    assert out.isnan().any() and (out[0, 0, :5].isfinite().all() if causal else out[0, 0].isnan().all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_tiles(device, dtype, monkeypatch):
    # the tiles and warps the launchers pick on a GPU (not the interpreter's 16 x 16), several
    # blocks and tails at each: every program shape a compiled launch runs, here interpreted
    monkeypatch.setattr(A, "interpreting", lambda: False)
    for causal, (L, S, E) in ((True, (150, 97, 64)), (False, (70, 131, 128))):
        q, k, v = _qkv(1, 1, L, S, E, E, dtype, device)
        _check(q, k, v, causal, E ** -0.5)


def test_launchers_take_scale_none_as_torch_default():
    q, k, v = _qkv(1, 2, 9, 11, 24, 16, torch.float64, "cpu")
    if not K.INTERPRETED:
        pytest.skip("kernels not interpreted")
    close(A.forward(q.detach(), k.detach(), v.detach(), False, None)[0],
          TF.scaled_dot_product_attention(q, k, v).detach(), **TOL[torch.float64])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_half_equal_torch_sdpa(dtype, E, causal):
    # each within twice torch's own error from the float32 SDPA (plus a little), values and gradients
    q, k, v = _qkv(2, 4, 1024, 1024, E, E, dtype, "cuda")
    g = torch.randn(2, 4, 1024, E, dtype=dtype, device="cuda")
    out, lse = A.forward(q.detach(), k.detach(), v.detach(), causal, E ** -0.5)
    assert out.dtype == dtype and lse.dtype == torch.float32
    grads = A.backward(q.detach(), k.detach(), v.detach(), out, lse, g, causal, E ** -0.5)
    half = TF.scaled_dot_product_attention(q, k, v, is_causal=causal)
    half_grads = torch.autograd.grad(half, (q, k, v), g)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    full = TF.scaled_dot_product_attention(q32, k32, v32, is_causal=causal)
    full_grads = torch.autograd.grad(full, (q32, k32, v32), g.float())
    _, ref_lse = _reference(q32, k32, v32, causal, E ** -0.5)
    close(lse, ref_lse.float(), rtol=1e-3, atol=1e-3)
    for ours, theirs, want in zip((out, *grads), (half, *half_grads), (full, *full_grads)):
        err, their_err = (ours.float() - want).abs().max(), (theirs.float() - want).abs().max()
        assert err <= 2 * their_err + 1e-3 * want.abs().max(), (err, their_err)


@pytest.mark.skipif(not K.INTERPRETED, reason="kernels not interpreted")
@pytest.mark.parametrize("causal", [False, True])
def test_dispatch_through_the_op(causal, monkeypatch):
    seen = []
    for name in ("forward", "backward"):
        def spy(*a, _f=getattr(A, name), _n=name, **kw):
            seen.append(_n)
            return _f(*a, **kw)
        monkeypatch.setattr(A, name, spy)
    q, k, v = _qkv(2, 2, 19, 23, 16, 24, torch.float64, "cpu")
    with backend.use("triton"):
        out = MF.scaled_dot_product_attention(q, k, v, is_causal=causal)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, (q, k, v), g)
    assert seen == ["forward", "backward"]
    ref = TF.scaled_dot_product_attention(q, k, v, is_causal=causal)
    close(out, ref, **TOL[torch.float64])
    for a, b in zip(grads, torch.autograd.grad(ref, (q, k, v), g)):
        close(a, b, **TOL[torch.float64])
