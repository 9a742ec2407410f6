"""LinearFunction / functional.linear: gradcheck matrix, parity with torch, what is saved."""

import itertools

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, layouts_for, leaf, record_saved
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

IN, OUT = 3, 2
X_SHAPES = {"1d": (IN,), "empty": (0, IN), "2d": (4, IN), "3d": (2, 3, IN), "zero_features": (4, 0)}
GRAD_COMBOS = [  # which of (x, W, b) require grad; bias-free cases never ask for b
    (bias, combo)
    for bias in (True, False)
    for combo in itertools.product((True, False), repeat=3)
    if any(combo) and (bias or not combo[2])
]


def _inputs(x_shape, kind, bias, req, dtype=torch.float64):
    in_f = x_shape[-1]
    x = torch.randn(x_shape, dtype=dtype)
    w = torch.randn(OUT, in_f, dtype=dtype)
    b = torch.randn(OUT, dtype=dtype) if bias else None
    x = leaf(x, kind if kind in layouts_for(x_shape) else "contiguous", req[0])  # layout() asserts non-contiguity
    w = leaf(w, kind, req[1])
    if b is not None:
        b = leaf(b, "strided" if kind != "contiguous" else "contiguous", req[2])
    return x, w, b


@pytest.mark.parametrize("bias,req", GRAD_COMBOS, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["contiguous", "strided", "transposed"])
@pytest.mark.parametrize("x_shape", list(X_SHAPES.values()), ids=list(X_SHAPES))
def test_gradcheck(x_shape, kind, bias, req):
    x, w, b = _inputs(x_shape, kind, bias, req)
    check_grads(F.linear, (x, w, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", list(X_SHAPES.values()) + [(2, 1, 3, IN)], ids=list(X_SHAPES) + ["4d"])
def test_parity(x_shape, bias, dtype):
    x, w, b = _inputs(x_shape, "contiguous", bias, (True, True, True), dtype)
    ours = F.linear(x, w, b)
    ref = TF.linear(x, w, b)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert_close(ours, ref)
    g = torch.randn_like(ref)
    params = [t for t in (x, w, b) if t is not None]
    for a, r in zip(torch.autograd.grad(ours, params, g), torch.autograd.grad(ref, params, g)):
        assert a.shape == r.shape
        assert_close(a, r)


def test_parity_1d_weight_and_broadcast_bias():
    x = torch.randn(4, IN, requires_grad=True)
    w = torch.randn(IN, requires_grad=True)
    ours, ref = F.linear(x, w), TF.linear(x, w)  # a 1-D weight drops the output dim
    assert ours.shape == ref.shape == (4,)
    assert_close(ours, ref)
    assert_close(torch.autograd.grad(ours.sum(), w)[0], torch.autograd.grad(ref.sum(), w)[0])
    w2 = torch.randn(OUT, IN)
    b1 = torch.randn(1, requires_grad=True)  # one bias value broadcast to every output feature
    ours, ref = F.linear(x, w2, b1), TF.linear(x, w2, b1)
    assert_close(ours, ref)
    (gb,) = torch.autograd.grad(ours.sum(), b1)
    (rb,) = torch.autograd.grad(ref.sum(), b1)
    assert gb.shape == (1,)
    assert_close(gb, rb)


@pytest.mark.parametrize("req", list(itertools.product((True, False), repeat=3))[:-1], ids=str)
def test_saves_only_what_backward_reads(req):
    need_x, need_w, need_b = req
    x, w, b = _inputs((5, IN), "contiguous", True, req, torch.float32)
    with record_saved() as saved:
        out = F.linear(x, w, b)
    expect = ([x] if need_w else []) + ([w] if need_x else [])
    assert len(saved) == len(expect), saved
    for s, t in zip(saved, expect):  # the inputs themselves, never a copy
        assert s.data_ptr == t.data_ptr() and s.shape == tuple(t.shape) and s.dtype == t.dtype
        assert s.nbytes == t.numel() * t.element_size()
    assert ctx_tensor_attrs(out.grad_fn) == []
    out.sum().backward()  # and backward runs on exactly that
    assert (x.grad is not None) == need_x and (w.grad is not None) == need_w and (b.grad is not None) == need_b


def test_no_grad_saves_nothing():
    x, w, b = _inputs((5, IN), "contiguous", True, (False, False, False), torch.float32)
    with record_saved() as saved:
        out = F.linear(x, w, b)
    assert saved == [] and out.grad_fn is None


def test_inputs_not_mutated():
    x, w, b = _inputs((2, 3, IN), "contiguous", True, (True, True, True))
    before = [t.detach().clone() for t in (x, w, b)]
    versions = [t._version for t in (x, w, b)]
    F.linear(x, w, b).sum().backward()
    for t, v, c in zip((x, w, b), versions, before):
        assert t._version == v and torch.equal(t.detach(), c)


def test_vmap_per_sample_grads():
    # per-sample weight gradients: vmap over the batch of grad of a one-sample loss
    x = torch.randn(6, IN, dtype=torch.float64)
    w = torch.randn(OUT, IN, dtype=torch.float64)
    b = torch.randn(OUT, dtype=torch.float64)

    def loss(lib, w, b, x):
        return lib.linear(x, w, b).pow(2).sum()

    ours = vmap(grad(lambda w, b, x: loss(F, w, b, x), argnums=(0, 1)), in_dims=(None, None, 0))(w, b, x)
    ref = vmap(grad(lambda w, b, x: loss(TF, w, b, x), argnums=(0, 1)), in_dims=(None, None, 0))(w, b, x)
    assert ours[0].shape == (6, OUT, IN)
    for a, r in zip(ours, ref):
        assert_close(a, r)
