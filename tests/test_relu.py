"""ReLUFunction / functional.relu: gradcheck matrix, the convention at 0, parity, what is saved."""

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
    record_saved,
    with_zeros,
)
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(shape, kind, inplace):
    if inplace:  # an in-place op needs a non-leaf: a fresh copy in the layout under test
        x = leaf(away_from_zero(*shape))
        check_grads(lambda x: F.relu(fresh(x, kind), inplace=True), (x,))
    else:
        check_grads(F.relu, (leaf(away_from_zero(*shape), kind),))


@pytest.mark.parametrize("inplace", [False, True])
def test_derivative_at_zero_is_torchs(inplace):
    x = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    ours, ref = leaf(x), leaf(x)
    F.relu(ours.clone(), inplace=inplace).sum().backward()
    TF.relu(ref.clone(), inplace=inplace).sum().backward()
    assert torch.equal(ours.grad, ref.grad)
    assert ours.grad[0] == 0.0  # max(x, 0) is taken as flat at the kink


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
def test_parity(shape, inplace, dtype):
    assert_parity(
        lambda t: F.relu(t.clone(), inplace=inplace),
        lambda t: TF.relu(t.clone(), inplace=inplace),
        with_zeros(*shape, dtype=dtype),
        exact=True,
    )


def test_integer_input_forward_like_torch():
    x = torch.arange(-3, 4)
    assert torch.equal(F.relu(x), TF.relu(x))


@pytest.mark.parametrize("inplace", [False, True])
def test_saves_the_output_only(inplace):
    x = leaf(torch.randn(4, 5, dtype=torch.float32))
    h = x * 1.0  # a non-leaf (in place needs one)
    with record_saved() as saved:
        out = F.relu(h, inplace=inplace)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == out.data_ptr() and s.dtype == torch.float32 and s.nbytes == 4 * 20
    assert s.storage_nbytes == out.untyped_storage().nbytes()  # the returned tensor itself: no extra bytes
    assert ctx_tensor_attrs(out.grad_fn) == []
    if inplace:
        assert out is h and h._version > 0
    out.sum().backward()
    assert torch.equal(x.grad, (x > 0).float())


def test_not_inplace_leaves_input_alone():
    x = leaf(torch.randn(3, 4))
    before, version = x.detach().clone(), x._version
    F.relu(x).sum().backward()
    assert x._version == version and torch.equal(x.detach(), before)


def test_inplace_on_leaf_without_grad_or_under_no_grad():
    # allowed where torch allows it: a leaf that needs no grad, or any tensor under no_grad
    x = torch.randn(5)
    expect = TF.relu(x)
    assert F.relu(x, inplace=True) is x and torch.equal(x, expect)
    w = torch.randn(5, requires_grad=True)
    with torch.no_grad():
        F.relu(w, inplace=True)
    assert (w >= 0).all()


def test_relu_():
    x = torch.randn(6)
    expect = TF.relu(x)
    assert F.relu_(x) is x and torch.equal(x, expect)


def test_vmap_grad():
    x = with_zeros(4, 6)
    ours = vmap(grad(lambda v: (F.relu(v) ** 2).sum()))(x)
    ref = vmap(grad(lambda v: (TF.relu(v) ** 2).sum()))(x)
    assert_close(ours, ref)
