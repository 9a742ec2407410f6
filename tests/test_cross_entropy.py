"""CrossEntropyFunction / functional.cross_entropy: the whole contract of torch's cross_entropy.

The gradcheck matrix is every target kind x reduction x weight x ignore_index x label_smoothing x
K-dim; parity with torch in float32 and float64 runs over the same matrix.
"""

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch.func import grad, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

C = 3
KDIMS = {"1d": (C,), "2d": (2, C), "3d": (2, C, 2), "4d": (1, C, 2, 2)}
REDUCTIONS = ["none", "mean", "sum"]
WEIGHTS = ["none", "given", "requires_grad"]
IGNORES = {"absent": (-100, False), "present": (-100, True), "present_class": (1, True)}
SMOOTHING = [0.0, 0.2]


def _target_shape(x_shape):
    return () if len(x_shape) == 1 else x_shape[:1] + x_shape[2:]


def make_case(kdim, kind, weight, ignore="absent", dtype=torch.float64, x_grad=True, t_grad=True):
    """Inputs ``(x, target, weight, ignore_index)`` of one matrix cell."""
    shape = KDIMS[kdim] if isinstance(kdim, str) else kdim
    x = leaf(torch.randn(shape, dtype=dtype) * 2, requires_grad=x_grad)
    ignore_index, present = IGNORES[ignore]
    if kind == "index":
        t = torch.randint(0, C, _target_shape(shape))
        if ignore_index >= 0:  # the ignored class appears only where we put it
            t = torch.where(t == ignore_index, (ignore_index + 1) % C, t)
        if present:
            t.view(-1)[0] = ignore_index
    else:  # class probabilities, rows summing to 1
        class_dim = 0 if len(shape) == 1 else 1
        t = leaf(torch.rand(shape, dtype=dtype).softmax(class_dim), requires_grad=t_grad)
    w = None
    if weight != "none":
        w = leaf(torch.rand(C, dtype=dtype) + 0.5, requires_grad=weight == "requires_grad")
    return x, t, w, ignore_index


MATRIX = [
    pytest.param(
        kind, kdim, reduction, weight, ignore, eps, id=f"{kind}-{kdim}-{reduction}-w_{weight}-ii_{ignore}-ls{eps}"
    )
    for kind in ("index", "prob")
    for kdim in KDIMS
    for reduction in REDUCTIONS
    for weight in WEIGHTS
    for ignore in (IGNORES if kind == "index" else ["absent"])
    for eps in SMOOTHING
    # a (C) input has one target: ignoring it leaves a 0/0 mean (nan), checked in test_all_ignored
    if not (kdim == "1d" and IGNORES[ignore][1] and reduction == "mean")
]


def _ce(reduction, ignore_index, eps):
    def fn(x, t, w):
        return F.cross_entropy(x, t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)

    return fn


@pytest.mark.parametrize("kind,kdim,reduction,weight,ignore,eps", MATRIX)
def test_gradcheck(kind, kdim, reduction, weight, ignore, eps):
    x, t, w, ignore_index = make_case(kdim, kind, weight, ignore)
    # full Jacobians for the scalar reductions; fast mode (random projections) for the 'none' ones
    check_grads(_ce(reduction, ignore_index, eps), (x, t, w), fast=reduction == "none")


# every needs_input_grad combination of (input, target, weight) that has something to check
GRAD_COMBOS = [
    pytest.param(kind, kdim, req, id=f"{kind}-{kdim}-{''.join('xtw'[i] for i in range(3) if req[i])}")
    for kind in ("index", "prob")
    for kdim in ("2d", "3d")
    for req in itertools.product((True, False), repeat=3)
    if any(req) and (kind == "prob" or not req[1])
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind,kdim,req", GRAD_COMBOS)
def test_gradcheck_needs_input_grad(kind, kdim, req, reduction):
    x, t, w, _ = make_case(kdim, kind, "given", x_grad=req[0], t_grad=req[1])
    w.requires_grad_(req[2])
    out = _ce(reduction, -100, 0.1)(x, t, w)
    check_grads(_ce(reduction, -100, 0.1), (x, t, w))
    grads = torch.autograd.grad(out.sum(), [v for v in (x, t, w) if v.requires_grad])
    assert len(grads) == sum(req)


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize(
    "kdim,kind_layout", [("2d", "transposed"), ("2d", "strided"), ("3d", "transposed"), ("4d", "strided")]
)
def test_gradcheck_non_contiguous(kdim, kind_layout, kind):
    x, t, w, _ = make_case(kdim, kind, "requires_grad")
    x = leaf(x, kind_layout)
    if kind == "prob":
        t = leaf(t, kind_layout)
    assert not x.is_contiguous()
    check_grads(_ce("mean", -100, 0.1), (x, t, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,kdim,reduction,weight,ignore,eps", MATRIX)
def test_parity(kind, kdim, reduction, weight, ignore, eps, dtype):
    x, t, w, ignore_index = make_case(kdim, kind, weight, ignore, dtype=dtype)
    ref_x = leaf(x)
    ref_t = leaf(t) if kind == "prob" else t
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    out = F.cross_entropy(x, t, w, **kw)
    # torch refuses a weight that requires grad with class indices (ours differentiates it)
    ref_w = w.detach() if kind == "index" and w is not None else w
    expect = TF.cross_entropy(ref_x, ref_t, ref_w, **kw)
    assert out.shape == expect.shape and out.dtype == expect.dtype
    assert_close(out, expect)
    g = torch.randn_like(expect)
    # torch differentiates the weight only for probability targets; its target gradient there too
    ours = [x] + ([t] + ([w] if weight == "requires_grad" else []) if kind == "prob" else [])
    theirs = [ref_x] + ([ref_t] + ([w] if weight == "requires_grad" else []) if kind == "prob" else [])
    for a, b in zip(torch.autograd.grad(out, ours, g), torch.autograd.grad(expect, theirs, g)):
        assert a.shape == b.shape
        assert_close(a, b)


@pytest.mark.parametrize("eps", SMOOTHING)
@pytest.mark.parametrize("weight", ["none", "given"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(C,), (4, C), (2, C, 3)], ids=["1d", "2d", "3d"])
def test_all_ignored(shape, reduction, weight, eps):
    x, _, w, _ = make_case(shape, "index", weight)
    t = torch.full(_target_shape(shape), -100)
    ref_x = leaf(x)
    out = F.cross_entropy(x, t, w, reduction=reduction, label_smoothing=eps)
    expect = TF.cross_entropy(ref_x, t, w, reduction=reduction, label_smoothing=eps)
    assert_close(out, expect)  # nan for 'mean' (0/0) in both; zeros otherwise
    if reduction == "mean":
        assert out.isnan()
    (gx,) = torch.autograd.grad(out.sum(), x)
    (rx,) = torch.autograd.grad(expect.sum(), ref_x)
    assert torch.equal(gx, rx) and torch.equal(gx, torch.zeros_like(gx))


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, C), (0, C, 2), (2, C, 0)], ids=["N0", "N0-k", "d0"])
def test_empty_batch(shape, reduction, kind):
    x, t, w, _ = make_case(shape, kind, "given")
    ref_x = leaf(x)
    ref_t = leaf(t) if kind == "prob" else t
    out = F.cross_entropy(x, t, w, reduction=reduction, label_smoothing=0.1)
    expect = TF.cross_entropy(ref_x, ref_t, w, reduction=reduction, label_smoothing=0.1)
    assert out.shape == expect.shape
    assert_close(out, expect)
    if out.numel():
        (gx,) = torch.autograd.grad(out.sum(), x)
        (rx,) = torch.autograd.grad(expect.sum(), ref_x)
        assert gx.shape == x.shape
        assert_close(gx, rx)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_uint8_targets(reduction):
    # uint8 class indices, including a class (156) that a negative ignore_index would wrap onto
    x = leaf(torch.randn(5, 200, dtype=torch.float64))
    t = torch.tensor([156, 3, 0, 199, 7], dtype=torch.uint8)
    for ignore_index in (-100, 3):
        ref_x = leaf(x)
        out = F.cross_entropy(x, t, ignore_index=ignore_index, reduction=reduction)
        expect = TF.cross_entropy(ref_x, t, ignore_index=ignore_index, reduction=reduction)
        assert_close(out, expect)
        assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(expect.sum(), ref_x)[0])


@pytest.mark.parametrize(
    "size_average,reduce", list(itertools.product((None, True, False), repeat=2))[1:], ids=str
)
def test_legacy_size_average_reduce(size_average, reduce):
    x, t, w, _ = make_case("3d", "index", "given", "present")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation warning
        out = F.cross_entropy(x, t, w, size_average, -100, reduce)
        expect = TF.cross_entropy(x, t, w, size_average, -100, reduce)
    assert out.shape == expect.shape
    assert_close(out, expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_huge_logits_finite_and_equal(kind, dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    if kind == "index":
        t = torch.tensor([1, 2, 2, 0])
    else:
        t = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=dtype)
    for reduction in REDUCTIONS:
        for eps in SMOOTHING:
            ours, ref = leaf(x), leaf(x)
            out = F.cross_entropy(ours, t, reduction=reduction, label_smoothing=eps)
            expect = TF.cross_entropy(ref, t, reduction=reduction, label_smoothing=eps)
            assert torch.isfinite(out).all()
            assert_close(out, expect)
            out.sum().backward()
            expect.sum().backward()
            assert torch.isfinite(ours.grad).all()
            assert_close(ours.grad, ref.grad)


def test_default_arguments_like_torch():
    x, t, _, _ = make_case("2d", "index", "none")
    assert_close(F.cross_entropy(x, t), TF.cross_entropy(x, t))


# --------------------------------------------------------------------------------------------
# what is saved


@pytest.mark.parametrize("eps", SMOOTHING)
@pytest.mark.parametrize("weight", ["none", "given"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind,tdtype", [("index", torch.int64), ("index", torch.uint8), ("prob", torch.float32)])
def test_saves_log_probabilities_target_weight_and_weighted_mean_output(kind, tdtype, reduction, weight, eps):
    x, t, w, _ = make_case("3d", kind, weight, dtype=torch.float32)
    if kind == "index":
        t = t.to(tdtype)
    with record_saved() as saved:
        out = F.cross_entropy(x, t, w, reduction=reduction, label_smoothing=eps)
    # log softmax(x) in place of the logits (the same size; the logits themselves are not kept)
    assert saved[0].shape == tuple(x.shape) and saved[0].dtype == x.dtype
    assert saved[0].storage_nbytes == x.numel() * x.element_size() and saved[0].data_ptr != x.data_ptr()
    assert_close(saved[0].tensor, torch.log_softmax(x.detach(), 1))
    # the mean's output only where the class weight's gradient reads it (index targets)
    keeps_out = reduction == "mean" and w is not None and kind == "index"
    expect = [t] + ([w] if w is not None else []) + ([out] if keeps_out else [])
    assert len(saved) == 1 + len(expect), saved
    for s, e in zip(saved[1:], expect):  # the tensors themselves: no copies, no extra logits-sized buffers
        assert s.data_ptr == e.data_ptr() and s.shape == tuple(e.shape) and s.dtype == e.dtype
        assert s.nbytes == e.numel() * e.element_size()
    logits_sized = [s for s in saved if s.shape == tuple(x.shape)]
    assert len(logits_sized) == (1 if kind == "index" else 2)  # the logits (and a probability target)
    if keeps_out:
        assert saved[-1].shape == () and saved[-1].nbytes == 4
    assert ctx_tensor_attrs(out.grad_fn) == []
    before = [v.detach().clone() for v in (x, t)]
    out.sum().backward()
    for v, b in zip((x, t), before):
        assert torch.equal(v.detach(), b)


# --------------------------------------------------------------------------------------------
# torch.func and double backward


def test_vmap_grad_per_sample():
    x = torch.randn(6, 5, dtype=torch.float64)
    t = torch.tensor([0, 4, 2, -100, 1, 3])
    w = torch.rand(5, dtype=torch.float64) + 0.5
    for lib_pair in ((F, TF),):
        ours, ref = (
            vmap(grad(lambda x, t: lib.cross_entropy(x, t, w, label_smoothing=0.1)))(x, t) for lib in lib_pair
        )
        assert_close(ours, ref)
    p = torch.rand(6, 5, dtype=torch.float64).softmax(1)
    ours = vmap(grad(lambda x, p: F.cross_entropy(x, p, w)))(x, p)
    ref = vmap(grad(lambda x, p: TF.cross_entropy(x, p, w)))(x, p)
    assert_close(ours, ref)


def _mlp_loss(lib, x, t, w1, b1, w2, b2, act):
    h = lib.linear(x, w1, b1)
    h = {"gelu": lib.gelu, "silu": lib.silu, "tanh_gelu": lambda v: lib.gelu(v, approximate="tanh")}[act](h)
    logits = lib.linear(h, w2, b2)
    return lib.cross_entropy(logits, t, weight=torch.tensor([1.0, 2.0, 0.5], dtype=x.dtype), label_smoothing=0.1)


@pytest.mark.parametrize("act", ["gelu", "tanh_gelu", "silu"])
def test_double_backward_through_mlp(act):
    x = leaf(torch.randn(3, 4, dtype=torch.float64))
    t = torch.tensor([0, 2, -100])
    params = [leaf(torch.randn(s, dtype=torch.float64) * 0.5) for s in [(4, 4), (4,), (3, 4), (3,)]]
    check_grads(lambda x, *p: _mlp_loss(F, x, t, *p, act), (x, *params))
    # Hessian-vector product against torch's own layers
    vs = [torch.randn_like(p) for p in params]
    hvps = []
    for lib in (F, TF):
        loss = _mlp_loss(lib, x, t, *params, act)
        gs = torch.autograd.grad(loss, params, create_graph=True)
        hvps.append(torch.autograd.grad(sum((g * v).sum() for g, v in zip(gs, vs)), params))
    for a, b in zip(*hvps):
        assert_close(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cuda_backward_never_waits_on_the_device(reduction):
    # the unmasked path reads a value back, on CPU only; on a GPU forward and backward stay asynchronous
    x = torch.randn(64, 10, device="cuda", requires_grad=True)
    t = torch.randint(0, 10, (64,), device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = F.cross_entropy(x, t, reduction=reduction)
        loss.backward(torch.ones_like(loss))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.grad is not None


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_uint8_target_class_156_is_not_ignored(weighted, label_smoothing):
    # every path that compares the target with ignore_index does so as int64 (uint8 would wrap -100 to 156)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 200, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(200, generator=g, dtype=torch.float64) + 0.5 if weighted else None
    target = torch.tensor([3] * 32 + [156] * 32, dtype=torch.uint8)
    ours = F.cross_entropy(x, target, w, label_smoothing=label_smoothing)
    ref = TF.cross_entropy(x, target.long(), w, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, x), torch.autograd.grad(ref, x))
