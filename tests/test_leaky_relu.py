"""LeakyReLUFunction / functional.leaky_relu: slopes of every sign, in place or not."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import (
    ACT_CASES,
    ACT_SHAPES,
    assert_close,
    assert_parity,
    away_from_zero,
    check_grads,
    ctx_tensor_attrs,
    fresh,
    leaf,
    packed_bytes,
    record_saved,
    with_zeros,
)
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

SLOPES = [0.2, 0.0, -0.5]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(shape, kind, slope, inplace):
    if inplace:
        x = leaf(away_from_zero(*shape))
        check_grads(lambda x: F.leaky_relu(fresh(x, kind), slope, inplace=True), (x,))
    else:
        check_grads(lambda x: F.leaky_relu(x, slope), (leaf(away_from_zero(*shape), kind),))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("slope", SLOPES + [1.5])
def test_derivative_at_zero_is_torchs(slope, inplace):
    x = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    ours, ref = leaf(x), leaf(x)
    F.leaky_relu(ours.clone(), slope, inplace=inplace).sum().backward()
    TF.leaky_relu(ref.clone(), slope).sum().backward()  # torch refuses in place with a negative slope
    assert torch.equal(ours.grad, ref.grad)
    assert ours.grad[0] == slope  # at the kink the slope of the negative side, as torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("slope", SLOPES + [0.01, 1.5])
@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
def test_parity(shape, slope, inplace, dtype):
    assert_parity(
        lambda t: F.leaky_relu(t.clone(), slope, inplace),
        lambda t: TF.leaky_relu(t.clone(), slope, inplace and slope >= 0),
        with_zeros(*shape, dtype=dtype),
    )


def test_default_slope_and_int_slope():
    x = with_zeros(4, 5)
    assert torch.equal(F.leaky_relu(x), TF.leaky_relu(x))
    assert torch.equal(F.leaky_relu(x, 0), TF.leaky_relu(x, 0))
    assert torch.equal(F.leaky_relu(x, -1), TF.leaky_relu(x, -1))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_nonnegative_slope_saves_the_output(slope, inplace):
    x = leaf(torch.randn(4, 5))
    h = x * 1.0
    with record_saved() as saved:
        out = F.leaky_relu(h, slope, inplace)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == out.data_ptr() and s.dtype == torch.float32 and s.nbytes == 4 * 20
    assert ctx_tensor_attrs(out.grad_fn) == []
    if inplace:
        assert out is h
    out.sum().backward()
    assert torch.equal(x.grad, torch.where(x > 0, 1.0, slope))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("n", [0, 1, 8, 13, 64, 1001])
def test_negative_slope_saves_a_bit_packed_mask(n, inplace):
    x = leaf(torch.randn(n))
    h = x * 1.0
    with record_saved() as saved:
        out = F.leaky_relu(h, -0.3, inplace)
    assert len(saved) == 1
    (s,) = saved
    assert s.dtype == torch.uint8 and s.shape == (packed_bytes(n),)
    assert s.nbytes == s.storage_nbytes == packed_bytes(n)  # 1 bit an element, and no bigger buffer behind it
    assert ctx_tensor_attrs(out.grad_fn) == []
    if inplace:
        assert out is h
    out.sum().backward()
    assert torch.equal(x.grad, torch.where(x > 0, 1.0, -0.3))


def test_not_inplace_leaves_input_alone():
    for slope in SLOPES:
        x = leaf(torch.randn(3, 4))
        before, version = x.detach().clone(), x._version
        F.leaky_relu(x, slope).sum().backward()
        assert x._version == version and torch.equal(x.detach(), before)


def test_leaky_relu_():
    x = with_zeros(7)
    expect = TF.leaky_relu(x, 0.3)
    assert F.leaky_relu_(x, 0.3) is x and torch.equal(x, expect)


@pytest.mark.parametrize("slope", SLOPES)
def test_vmap_grad(slope):
    x = with_zeros(4, 6)
    ours = vmap(grad(lambda v: (F.leaky_relu(v, slope) ** 2).sum()))(x)
    ref = vmap(grad(lambda v: (TF.leaky_relu(v, slope) ** 2).sum()))(x)
    assert_close(ours, ref)
