"""GELUFunction / functional.gelu: both approximations, gradcheck, parity, what is saved."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import ACT_CASES, ACT_SHAPES, assert_close, assert_parity, assert_saves_the_input_only, check_grads, leaf
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

APPROX = ["none", "tanh"]


@pytest.mark.parametrize("approximate", APPROX)
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(shape, kind, approximate):
    x = leaf(torch.randn(shape, dtype=torch.float64) * 2, kind)  # smooth: no kink to avoid
    check_grads(lambda x: F.gelu(x, approximate=approximate), (x,))


@pytest.mark.parametrize("approximate", APPROX)
def test_gradcheck_wide_range(approximate):
    # the tails (Φ → 0/1, tanh saturating) and the origin
    x = leaf(torch.tensor([-8.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 3.0, 8.0], dtype=torch.float64))
    check_grads(lambda x: F.gelu(x, approximate=approximate), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("approximate", APPROX)
@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()) + [(1000,)], ids=list(ACT_SHAPES) + ["wide"])
def test_parity(shape, approximate, dtype):
    x = torch.randn(shape, dtype=dtype) * 4
    # float32: 1 + tanh(..) / 1 + erf(..) cancel in the left tail, so both round to ~1e-7 absolute
    tol = dict(atol=1e-5) if dtype == torch.float32 else {}
    assert_parity(lambda t: F.gelu(t, approximate=approximate), lambda t: TF.gelu(t, approximate=approximate), x, **tol)


@pytest.mark.parametrize("approximate", APPROX)
def test_float32_accuracy_matches_torchs(approximate):
    # against a float64 reference, our float32 forward and derivative err no more than torch's (x2)
    x64 = leaf(torch.linspace(-10, 10, 2001, dtype=torch.float64))
    truth = TF.gelu(x64, approximate=approximate)
    (dtruth,) = torch.autograd.grad(truth.sum(), x64)
    errs = []
    for lib in (F, TF):
        x = leaf(x64.float())
        out = lib.gelu(x, approximate=approximate)
        (d,) = torch.autograd.grad(out.sum(), x)
        errs.append(((out.double() - truth).abs().max(), (d.double() - dtruth).abs().max()))
    (ours_f, ours_d), (ref_f, ref_d) = errs
    assert ours_f <= 2 * ref_f + 1e-7 and ours_d <= 2 * ref_d + 1e-7, errs


def test_tanh_derivative_keeps_its_tails():
    # the tanh form written with s = σ(2u): 1 − tanh² = 4 s (1 − s) does not cancel where tanh → ±1,
    # so in float32 the derivative keeps ~5 digits wherever it exceeds 1e-6 (torch's loses them all)
    x64 = leaf(torch.linspace(-10, 10, 2001, dtype=torch.float64))
    (truth,) = torch.autograd.grad(TF.gelu(x64, approximate="tanh").sum(), x64)
    x = leaf(x64.detach().float())
    (d,) = torch.autograd.grad(F.gelu(x, approximate="tanh").sum(), x)
    big = truth.abs() > 1e-6
    rel = ((d.double() - truth).abs() / truth.abs())[big]
    assert rel.max() < 1e-4, rel.max()


@pytest.mark.parametrize("approximate", APPROX)
def test_derivative_at_zero_is_torchs(approximate):
    ours, ref = leaf(torch.zeros(3, dtype=torch.float64)), leaf(torch.zeros(3, dtype=torch.float64))
    F.gelu(ours, approximate=approximate).sum().backward()
    TF.gelu(ref, approximate=approximate).sum().backward()
    assert torch.equal(ours.grad, ref.grad) and ours.grad[0] == 0.5


@pytest.mark.parametrize("approximate", APPROX)
def test_saves_the_input_only(approximate):
    assert_saves_the_input_only(lambda x: F.gelu(x, approximate=approximate))


@pytest.mark.parametrize("approximate", APPROX)
def test_vmap_grad(approximate):
    x = torch.randn(4, 6, dtype=torch.float64)
    ours = vmap(grad(lambda v: (F.gelu(v, approximate=approximate) ** 2).sum()))(x)
    ref = vmap(grad(lambda v: (TF.gelu(v, approximate=approximate) ** 2).sum()))(x)
    assert_close(ours, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_backward_off_cpu(dtype):
    # exp(x²/2) is exp2(log₂e x²/2) on CPU only; other devices keep exp. The meta device runs that
    # branch without a GPU (shapes and dtypes; its values are checked by the CUDA parity tests).
    x = torch.randn(5, 7, dtype=dtype, device="meta", requires_grad=True)
    F.gelu(x).sum().backward()
    assert x.grad.shape == x.shape and x.grad.dtype == dtype and x.grad.device.type == "meta"
