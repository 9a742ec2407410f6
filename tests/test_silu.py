"""SiLUFunction / functional.silu: gradcheck in place or not, parity, what is saved."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import (
    ACT_CASES,
    ACT_SHAPES,
    assert_close,
    assert_parity,
    assert_saves_the_input_only,
    check_grads,
    ctx_tensor_attrs,
    fresh,
    leaf,
    record_saved,
)
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape,kind", ACT_CASES)
def test_gradcheck(shape, kind, inplace):
    x = torch.randn(shape, dtype=torch.float64) * 2
    if inplace:
        check_grads(lambda x: F.silu(fresh(x, kind), inplace=True), (leaf(x),))
    else:
        check_grads(F.silu, (leaf(x, kind),))


def test_gradcheck_wide_range():
    x = leaf(torch.tensor([-30.0, -5.0, -1.0, 0.0, 1e-3, 2.0, 30.0], dtype=torch.float64))
    check_grads(F.silu, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()) + [(1000,)], ids=list(ACT_SHAPES) + ["wide"])
def test_parity(shape, inplace, dtype):
    x = torch.randn(shape, dtype=dtype) * 4
    assert_parity(lambda t: F.silu(t.clone(), inplace=inplace), lambda t: TF.silu(t.clone(), inplace=inplace), x)


def test_saves_the_input_only():
    assert_saves_the_input_only(F.silu)


def test_inplace_saves_one_copy_of_the_input():
    x = leaf(torch.randn(4, 5))
    h = x * 1.0
    before = h.detach().clone()
    with record_saved() as saved:
        out = F.silu(h, inplace=True)
    assert out is h and h._version > 0
    assert len(saved) == 1
    (s,) = saved
    # the input is overwritten, so its old values are what is kept: one input-sized tensor
    assert s.data_ptr != h.data_ptr() and s.dtype == torch.float32 and s.nbytes == s.storage_nbytes == 4 * 20
    assert torch.equal(s.tensor, before)
    assert ctx_tensor_attrs(out.grad_fn) == []
    out.sum().backward()
    expect = leaf(before)
    TF.silu(expect).sum().backward()
    assert_close(x.grad, expect.grad)


def test_vmap_grad():
    x = torch.randn(4, 6, dtype=torch.float64)
    ours = vmap(grad(lambda v: (F.silu(v) ** 2).sum()))(x)
    ref = vmap(grad(lambda v: (TF.silu(v) ** 2).sum()))(x)
    assert_close(ours, ref)
