"""linear_cross_entropy: ``cross_entropy(x Wᵀ + b, target)`` in blocks of classes."""

import itertools

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, record_saved, run_python
from torch.utils._python_dispatch import TorchDispatchMode

import manual_autograd as ma
from manual_autograd import functional as MF
from manual_autograd.ops import linear_cross_entropy as lce_op
from manual_autograd import LinearCrossEntropyFunction


def make(N=13, D=6, C=29, dtype=torch.float64, bias=True, class_weight=False, ignored=True):
    x = torch.randn(N, D, dtype=dtype, requires_grad=True)
    w = torch.randn(C, D, dtype=dtype, requires_grad=True)
    b = torch.randn(C, dtype=dtype, requires_grad=True) if bias else None
    cw = torch.rand(C, dtype=dtype) + 0.5 if class_weight else None
    t = torch.randint(0, C, (N,))
    if ignored:
        t[::4] = -100
    return x, w, b, cw, t


def reference(x, w, b, t, **kw):
    return TF.cross_entropy(TF.linear(x, w, b), t, **kw)


def torch_linear_cross_entropy(input, weight, target, linear_bias=None, **kw):
    """torch's own op where this torch has it; else the logits it stands for, (N, C, d...)."""
    if hasattr(TF, "linear_cross_entropy"):
        return TF.linear_cross_entropy(input, weight, target, linear_bias=linear_bias, **kw)
    logits = torch.tensordot(input, weight, dims=([-1], [-1]))
    return TF.cross_entropy(logits if linear_bias is None else logits + linear_bias, target, **kw)


PARITY = list(itertools.product(["mean", "sum", "none"], [0.0, 0.2], [False, True], [False, True]))


@pytest.mark.parametrize("reduction, eps, class_weight, bias", PARITY)
def test_parity_with_unfused(reduction, eps, class_weight, bias):
    x, w, b, cw, t = make(bias=bias, class_weight=class_weight)
    kw = dict(weight=cw, reduction=reduction, label_smoothing=eps)
    params = [p for p in (x, w, b) if p is not None]
    want = reference(x, w, b, t, **kw)
    g = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, params, g)
    manual = MF.cross_entropy(MF.linear(x, w, b), t, **kw)
    for chunk in (1, 7, 29, 100):  # 7 does not divide 29; 100 is one block
        out = MF.linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=chunk, **kw)
        assert out.grad_fn.name().startswith("LinearCrossEntropyFunction")
        assert_close(out, want)
        assert_close(out, manual)
        for got, exp in zip(torch.autograd.grad(out, params, g), want_grads):
            assert_close(got, exp)


@pytest.mark.parametrize("bias", [False, True])
def test_row_tiles(monkeypatch, bias):
    # large inputs are tiled by rows too; force small tiles to check the tiled loops
    monkeypatch.setattr(lce_op, "_tile_rows", lambda rows, d, chunk: 3)
    x, w, b, cw, t = make(N=13, C=20, bias=bias, class_weight=True)
    kw = dict(weight=cw, label_smoothing=0.1)
    params = [p for p in (x, w, b) if p is not None]
    out = MF.linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=6, **kw)
    want = reference(x, w, b, t, **kw)
    assert_close(out, want)
    for got, exp in zip(torch.autograd.grad(out, params), torch.autograd.grad(want, params)):
        assert_close(got, exp)


def test_float32_parity_at_a_vocabulary_size():
    x, w, b, _, t = make(N=64, D=32, C=3000, dtype=torch.float32)
    out = MF.linear_cross_entropy(x, w, t, linear_bias=b, label_smoothing=0.1)  # auto: C > in_features
    assert out.grad_fn.name().startswith("LinearCrossEntropyFunction")
    want = reference(x, w, b, t, label_smoothing=0.1)
    assert_close(out, want, rtol=1e-5, atol=1e-5)
    for got, exp in zip(torch.autograd.grad(out, (x, w, b)), torch.autograd.grad(want, (x, w, b))):
        assert_close(got, exp, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "reduction, eps, class_weight", [("mean", 0.0, False), ("mean", 0.3, True), ("sum", 0.1, False), ("none", 0.0, True)]
)
def test_gradcheck_and_gradgradcheck(reduction, eps, class_weight):
    x, w, b, cw, t = make(N=5, D=3, C=7, class_weight=class_weight)
    t[1] = -100
    inputs = (x, w, b) + ((cw.requires_grad_(),) if class_weight else ())

    def fn(x, w, b, cw=None):
        return MF.linear_cross_entropy(
            x, w, t, linear_bias=b, weight=cw, reduction=reduction, label_smoothing=eps, chunk_size=3
        )

    check_grads(fn, inputs, fast=True)


def test_double_backward_matches_composition():
    x, w, b, _, t = make(N=6, D=4, C=11)
    v = [torch.randn_like(p) for p in (x, w, b)]

    def hvp(loss):
        grads = torch.autograd.grad(loss, (x, w, b), create_graph=True)
        return torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), (x, w, b))

    got = hvp(MF.linear_cross_entropy(x, w, t, linear_bias=b, label_smoothing=0.1, chunk_size=4))
    want = hvp(reference(x, w, b, t, label_smoothing=0.1))
    for a, e in zip(got, want):
        assert_close(a, e)


def test_keeps_inputs_and_one_value_per_row():
    N, D, C = 32, 8, 500
    x, w, b, _, t = make(N, D, C, dtype=torch.float32)
    h = x * 1.0
    with record_saved() as saved:
        out = MF.linear_cross_entropy(h, w, t, linear_bias=b)
    inputs = (h.data_ptr(), w.data_ptr(), b.data_ptr(), t.data_ptr())
    kept = {s.data_ptr: s for s in saved}
    others = [s for p, s in kept.items() if p not in inputs]
    assert h.data_ptr() in kept and w.data_ptr() in kept
    assert sorted(s.shape for s in others) == [(N,)]  # the per-row logsumexp (no class weight: not the mean)
    assert ctx_tensor_attrs(out.grad_fn) == []
    cw = torch.rand(C)
    with record_saved() as saved:
        MF.linear_cross_entropy(h, w, t, linear_bias=b, weight=cw)
    # with a class weight: it, the logsumexp and the mean's output (read by the weight's gradient)
    assert sorted(s.shape for s in saved if s.data_ptr not in inputs) == [(), (N,), (C,)]


class _Largest(TorchDispatchMode):
    """Records the largest tensor any op produced."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                self.numel = max(self.numel, o.numel())
        return out


def test_never_builds_the_whole_logits():
    N, D, C = 64, 16, 20000
    x, w, b, _, t = make(N, D, C, dtype=torch.float32)
    with _Largest() as largest:
        MF.linear_cross_entropy(x, w, t, linear_bias=b, label_smoothing=0.1).backward()
    assert largest.numel == C * D  # dL/dW; every logits block is at most N × 1024
    with _Largest() as largest:
        reference(x, w, b, t).backward()
    assert largest.numel == N * C


def test_few_classes_take_the_unfused_path():
    x, w, b, _, t = make(N=8, D=16, C=10, dtype=torch.float32)
    out = MF.linear_cross_entropy(x, w, t, linear_bias=b)
    assert out.grad_fn.name().startswith("CrossEntropyFunction")
    assert_close(out, reference(x, w, b, t))


def test_shapes_torch_accepts():
    # unbatched input; K-dimensional weight; class probabilities: same result as torch's op
    x, w, b, _, t = make(N=4, D=5, C=9)
    cases = [
        (x[0], w, t[1], dict(linear_bias=b, reduction="none")),
        (x, w.reshape(3, 3, 5), torch.randint(0, 3, (4, 3)), dict(linear_bias=b.reshape(3, 3))),
        (x, w, torch.softmax(torch.randn(4, 9, dtype=torch.float64), 1), dict(label_smoothing=0.1)),
    ]
    for inp, weight, target, kw in cases:
        want = torch_linear_cross_entropy(inp, weight, target, **kw)
        assert_close(MF.linear_cross_entropy(inp, weight, target, **kw), want)
        assert_close(MF.linear_cross_entropy(inp, weight, target, chunk_size=2, **kw), want)


def test_all_ignored_mean_is_nan_like_torch():
    x, w, b, _, t = make(N=4, D=3, C=10)
    t.fill_(-100)
    out = MF.linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=4)
    assert torch.isnan(out) and torch.isnan(reference(x, w, b, t))
    out.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_torch_func_grad():
    x, w, b, _, t = make(N=6, D=4, C=20)
    f = lambda w: MF.linear_cross_entropy(x.detach(), w, t, linear_bias=b.detach(), chunk_size=6)  # noqa: E731
    ref = lambda w: reference(x.detach(), w, b.detach(), t)  # noqa: E731
    assert_close(torch.func.grad(f)(w.detach()), torch.func.grad(ref)(w.detach()))


class _UnfusedLinearCrossEntropyLoss(torch.nn.Module):
    """The twin on a torch without torch.nn.LinearCrossEntropyLoss: same Linear, same loss."""

    def __init__(self, in_features, num_classes, bias, label_smoothing):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, num_classes, bias)
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return TF.cross_entropy(self.linear(input), target, label_smoothing=self.label_smoothing)


def test_module_matches_torch():
    twin = getattr(torch.nn, "LinearCrossEntropyLoss", _UnfusedLinearCrossEntropyLoss)
    torch.manual_seed(5)
    want_mod = twin(12, 300, bias=True, label_smoothing=0.1)
    torch.manual_seed(5)
    mod = ma.nn.LinearCrossEntropyLoss(12, 300, bias=True, label_smoothing=0.1, chunk_size=64)
    assert mod.state_dict().keys() == want_mod.state_dict().keys() == {"linear.weight", "linear.bias"}
    x, t = torch.randn(10, 12), torch.randint(0, 300, (10,))
    out, want = mod(x, t), want_mod(x, t)
    assert_close(out, want, rtol=1e-5, atol=1e-6)
    out.backward()
    want.backward()
    assert_close(mod.linear.weight.grad, want_mod.linear.weight.grad, rtol=1e-4, atol=1e-7)
    assert "chunk_size=64" in repr(mod)


def test_module_checks_like_torch():
    with pytest.raises(RuntimeError, match="expected weight shape to be \\(10,\\), got \\(9,\\)"):
        ma.nn.LinearCrossEntropyLoss(3, 10, weight=torch.ones(9))
    with pytest.raises(RuntimeError, match="expected label_smoothing to be in range \\[0, 1\\], got 1.5"):
        ma.nn.LinearCrossEntropyLoss(3, 10, label_smoothing=1.5)
    mod = ma.nn.LinearCrossEntropyLoss(3, 10, out_features=(2,), weight=torch.ones(10))
    assert mod.linear.weight.shape == (20, 3) and mod.weight.shape == (10,) and mod.options is None


def test_errors_name_the_argument():
    x, w, b, _, t = make(N=4, D=3, C=10)
    with pytest.raises(IndexError, match="class indices in \\[0, 10\\)"):
        MF.linear_cross_entropy(x, w, torch.tensor([0, 1, 10, 2]))
    with pytest.raises(ValueError, match="'reduction'"):
        MF.linear_cross_entropy(x, w, t, reduction="avg")
    with pytest.raises(RuntimeError, match="'label_smoothing'"):
        MF.linear_cross_entropy(x, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="'chunk_size'"):
        MF.linear_cross_entropy(x, w, t, chunk_size=0)
    with pytest.raises(RuntimeError, match="in_features=3"):
        MF.linear_cross_entropy(x, torch.randn(10, 4, dtype=torch.float64), t)
    with pytest.raises(RuntimeError, match="'linear_weight' of dtype torch.float64 on cpu like 'input', got torch.float32"):
        MF.linear_cross_entropy(x, w.detach().float(), t)
    with pytest.raises(RuntimeError, match="'weight' of shape \\(10,\\)"):
        MF.linear_cross_entropy(x, w, t, weight=torch.ones(9, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="'ignore_index'"):
        MF.linear_cross_entropy(x, w, torch.softmax(torch.randn(4, 10, dtype=torch.float64), 1), ignore_index=0)
    with pytest.raises(ValueError, match="'target' of shape \\(4,\\)"):
        MF.linear_cross_entropy(x, w, t[:3])
    with pytest.raises(RuntimeError, match="'linear_bias'"):
        MF.linear_cross_entropy(x, w, t, linear_bias=torch.zeros(3, dtype=torch.float64))
    assert x.grad is None and w.grad is None


def test_function_is_exported():
    assert ma.LinearCrossEntropyFunction is LinearCrossEntropyFunction


def test_imports_and_works_on_a_torch_without_the_twin():
    # torch 2.11 (the GPU image's) has no nn.LinearCrossEntropyLoss, no F.linear_cross_entropy
    code = (
        "import torch, torch.nn.functional as F\n"
        "for mod, name in [(torch.nn, 'LinearCrossEntropyLoss'), (torch.nn, 'LinearCrossEntropyOptions'),\n"
        "                  (F, 'linear_cross_entropy')]:\n"
        "    if hasattr(mod, name):\n"
        "        delattr(mod, name)\n"
        "import manual_autograd as ma\n"
        "torch.manual_seed(0)\n"
        "mod = ma.nn.LinearCrossEntropyLoss(12, 300, bias=True, label_smoothing=0.1, chunk_size=64)\n"
        "x, t = torch.randn(10, 12), torch.randint(0, 300, (10,))\n"
        "out = mod(x, t)\n"
        "want = F.cross_entropy(mod.linear(x), t, label_smoothing=0.1)\n"
        "torch.testing.assert_close(out, want)\n"
        "out.backward()\n"
        "print(type(mod).__mro__[1].__name__, sorted(mod.state_dict()))\n"
    )
    out = run_python(code)
    assert out.split(None, 1) == ["_WeightedLoss", "['linear.bias', 'linear.weight']\n"]


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_uint8_target_class_156_is_not_ignored(reduction, chunk):
    # a uint8 target compared with ignore_index=-100 as uint8 wraps it to 156: class 156 was dropped
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(200, 16, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3] * 32 + [156] * 32, dtype=torch.uint8)
    ours = MF.linear_cross_entropy(x, w, target, reduction=reduction, chunk_size=chunk)
    ref = torch.nn.functional.cross_entropy(x @ w.T, target.long(), reduction=reduction)
    torch.testing.assert_close(ours, ref)
    g_out = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, w), g_out), torch.autograd.grad(ref, (x, w), g_out))
