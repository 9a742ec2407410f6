"""Bad input: the exception type torch raises, a message naming the argument, nothing changed.

Each case is one mistake. torch.nn.functional is called with the same mistake in the test, so
the expected exception type is torch's own, not a copy of it written here.
"""

import pytest
import torch
import torch.nn.functional as TF

import manual_autograd.functional as F
import manual_autograd.nn as mnn

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread


def _x(*shape, **kw):
    return torch.randn(*shape, **kw)


def _t(*values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


# id -> (function name, a builder of fresh positional args, keyword args, the argument the message must name)
CASES = {
    # linear
    "linear-input-not-tensor": ("linear", lambda: ([[1.0, 2.0]], _x(3, 2)), {}, "input"),
    "linear-weight-not-tensor": ("linear", lambda: (_x(2, 3), [[1.0] * 3]), {}, "weight"),
    "linear-bias-not-tensor": ("linear", lambda: (_x(2, 3), _x(4, 3), [1.0] * 4), {}, "bias"),
    "linear-input-0dim": ("linear", lambda: (torch.tensor(1.0), _x(4, 1)), {}, "input"),
    "linear-weight-3d": ("linear", lambda: (_x(2, 3), _x(4, 3, 1)), {}, "weight"),
    "linear-in-features": ("linear", lambda: (_x(2, 3), _x(4, 5)), {}, "input"),
    "linear-in-features-3d": ("linear", lambda: (_x(2, 2, 3), _x(4, 5), _x(4)), {}, "input"),
    "linear-dtype": ("linear", lambda: (_x(2, 3), _x(4, 3, dtype=torch.float64)), {}, "weight"),
    "linear-bias-shape": ("linear", lambda: (_x(2, 3), _x(4, 3), _x(3)), {}, "bias"),
    "linear-bias-dtype": ("linear", lambda: (_x(2, 3), _x(4, 3), _x(4, dtype=torch.float64)), {}, "bias"),
    "linear-bias-device": ("linear", lambda: (_x(2, 3), _x(4, 3), _x(4, device="meta")), {}, "bias"),
    # activations
    "relu-input-not-tensor": ("relu", lambda: ([1.0],), {}, "input"),
    "leaky-input-int": ("leaky_relu", lambda: (torch.arange(3),), {}, "input"),
    "leaky-slope-str": ("leaky_relu", lambda: (_x(3), "a"), {}, "negative_slope"),
    "gelu-approximate": ("gelu", lambda: (_x(3),), {"approximate": "foo"}, "approximate"),
    "gelu-approximate-None": ("gelu", lambda: (_x(3),), {"approximate": None}, "approximate"),
    "gelu-input-int": ("gelu", lambda: (torch.arange(3),), {}, "input"),
    "silu-input-int": ("silu", lambda: (torch.arange(3),), {}, "input"),
    "silu-input-not-tensor": ("silu", lambda: ([1.0],), {}, "input"),
    # cross-entropy: shapes
    "ce-input-0dim": ("cross_entropy", lambda: (torch.tensor(1.0), torch.tensor(0)), {}, "input"),
    "ce-batch": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2)), {}, "target"),
    "ce-1d-target": ("cross_entropy", lambda: (_x(5), _t(1, 2)), {}, "target"),
    "ce-kdim-target": ("cross_entropy", lambda: (_x(2, 5, 3), torch.zeros(2, 4, dtype=torch.long)), {}, "target"),
    "ce-kdim-target-2": ("cross_entropy", lambda: (_x(2, 5, 3), _t(0, 1)), {}, "target"),
    "ce-weight-shape": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"weight": torch.ones(4)}, "weight"),
    # cross-entropy: dtypes
    "ce-input-int": ("cross_entropy", lambda: (torch.ones(3, 5, dtype=torch.long), _t(1, 2, 3)), {}, "input"),
    "ce-target-int32": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3, dtype=torch.int32)), {}, "target"),
    "ce-target-float-indices": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3, dtype=torch.float32)), {}, "target"),
    "ce-prob-target-int": ("cross_entropy", lambda: (_x(3, 5), torch.ones(3, 5, dtype=torch.long)), {}, "target"),
    "ce-weight-dtype": (
        "cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"weight": torch.ones(5, dtype=torch.float64)}, "weight"
    ),
    # cross-entropy: devices
    "ce-weight-device": (
        "cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"weight": torch.ones(5, device="meta")}, "weight"
    ),
    "ce-target-device": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3).to("meta")), {}, "target"),
    "ce-input-device": ("cross_entropy", lambda: (_x(3, 5, device="meta"), _t(1, 2, 3)), {}, "input"),
    # cross-entropy: target values, on every code path (smoothing, weight, K-dim, uint8)
    "ce-target-too-big": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 5)), {}, "target"),
    "ce-target-negative": ("cross_entropy", lambda: (_x(3, 5), _t(1, -1, 2)), {}, "target"),
    "ce-target-too-big-smooth": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 7)), {"label_smoothing": 0.1}, "target"),
    "ce-target-negative-weight": (
        "cross_entropy", lambda: (_x(3, 5), _t(1, -3, 2)), {"weight": torch.ones(5)}, "target"
    ),
    "ce-target-too-big-kdim": ("cross_entropy", lambda: (_x(2, 5, 2), torch.tensor([[0, 1], [9, 2]])), {}, "target"),
    "ce-target-too-big-none": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 5)), {"reduction": "none"}, "target"),
    "ce-target-uint8": ("cross_entropy", lambda: (_x(3, 5), _t(1, 200, 2, dtype=torch.uint8)), {}, "target"),
    "ce-target-1d": ("cross_entropy", lambda: (_x(5), torch.tensor(6)), {}, "target"),
    "ce-target-is-not-ignore": ("cross_entropy", lambda: (_x(3, 5), _t(1, -100, 2)), {"ignore_index": -1}, "target"),
    # cross-entropy: enums and numbers
    "ce-reduction": ("cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"reduction": "avg"}, "reduction"),
    "ce-label-smoothing": (
        "cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"label_smoothing": 1.5}, "label_smoothing"
    ),
    "ce-prob-ignore-index": (
        "cross_entropy", lambda: (_x(3, 5), torch.rand(3, 5)), {"ignore_index": 1}, "ignore_index"
    ),
}

# Mistakes torch lets through (or answers with an unrelated error) that we refuse, with our type.
STRICTER = {
    "ce-label-smoothing-negative": (
        "cross_entropy", lambda: (_x(3, 5), _t(1, 2, 3)), {"label_smoothing": -0.1}, "label_smoothing", RuntimeError
    ),
    "linear-weight-device": ("linear", lambda: (_x(2, 3), _x(4, 3, device="meta")), {}, "weight", RuntimeError),
}


# A device mismatch between real devices (needs a GPU).
CUDA_CASES = {
    "linear-weight-cuda": ("linear", lambda: (_x(2, 3), _x(4, 3, device="cuda")), {}, "weight"),
    "linear-bias-cuda": ("linear", lambda: (_x(2, 3, device="cuda"), _x(4, 3, device="cuda"), _x(4)), {}, "bias"),
    "ce-target-cuda": ("cross_entropy", lambda: (_x(3, 5, device="cuda"), _t(1, 2, 3)), {}, "target"),
    "ce-weight-cuda": (
        "cross_entropy", lambda: (_x(3, 5, device="cuda"), _t(1, 2, 3).cuda()), {"weight": torch.ones(5)}, "weight"
    ),
}


def _args_kwargs(build, kwargs):
    return build(), dict(kwargs)


def _snapshot(args, kwargs):
    tensors = [v for v in list(args) + list(kwargs.values()) if isinstance(v, torch.Tensor)]
    return [(t, t._version, None if t.device.type == "meta" else t.detach().clone()) for t in tensors]


def _unchanged(snap):
    for t, version, values in snap:
        assert t._version == version
        if values is not None:
            assert torch.equal(t.detach(), values)


def _torch_error(name, args, kwargs):
    try:
        getattr(TF, name)(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - we want whatever torch raises
        return e
    return None


@pytest.mark.parametrize(
    "case", list(CASES) + [pytest.param(c, marks=pytest.mark.cuda) for c in CUDA_CASES]
)
def test_same_exception_type_as_torch_and_names_the_argument(case):
    name, build, kwargs, arg = CASES[case] if case in CASES else CUDA_CASES[case]
    torch.manual_seed(0)
    expected = _torch_error(name, *_args_kwargs(build, kwargs))
    assert expected is not None, "torch accepts this: move the case to STRICTER"
    args, kwargs = _args_kwargs(build, kwargs)
    snap = _snapshot(args, kwargs)
    with pytest.raises(Exception) as info:
        getattr(F, name)(*args, **kwargs)
    assert type(info.value) is type(expected), (info.value, expected)
    message = str(info.value)
    assert f"'{arg}'" in message, message  # names the argument ...
    assert "expected" in message or "must" in message or "not supported" in message, message  # ... and what it wanted
    _unchanged(snap)


@pytest.mark.parametrize("case", list(STRICTER))
def test_stricter_than_torch(case):
    name, build, kwargs, arg, error = STRICTER[case]
    args, kwargs = _args_kwargs(build, kwargs)
    snap = _snapshot(args, kwargs)
    with pytest.raises(error, match=f"'{arg}'"):
        getattr(F, name)(*args, **kwargs)
    _unchanged(snap)


def test_target_value_messages_say_what_came():
    with pytest.raises(IndexError, match=r"\[0, 5\).*got 7"):
        F.cross_entropy(_x(3, 5), _t(1, 7, 2))
    with pytest.raises(IndexError, match=r"got -2"):
        F.cross_entropy(_x(3, 5), _t(1, -2, 2), label_smoothing=0.2)


@pytest.mark.parametrize(
    "name,kwargs",
    [("relu", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": -0.5}), ("silu", {})],
    ids=["relu", "leaky", "leaky-neg", "silu"],
)
@pytest.mark.parametrize("view", [False, True])
def test_inplace_on_leaf_requiring_grad_raises_before_writing(name, kwargs, view):
    leaf = torch.randn(4, 3, requires_grad=True)
    x = leaf[1:] if view else leaf
    try:
        getattr(TF, name)(x, inplace=True, **kwargs)
    except RuntimeError as e:
        expected = e
    else:
        pytest.fail("torch accepted it")
    before, version = leaf.detach().clone(), leaf._version
    with pytest.raises(type(expected), match="'input'.*in place"):
        getattr(F, name)(x, inplace=True, **kwargs)
    assert leaf._version == version and torch.equal(leaf.detach(), before)  # nothing was written
    assert leaf.grad_fn is None and x.requires_grad


def test_module_parameters_unchanged_after_failed_call():
    m = mnn.Linear(3, 2)
    before = {k: (v.clone(), v._version) for k, v in m.state_dict(keep_vars=True).items()}
    with pytest.raises(RuntimeError, match="'input'"):
        m(torch.randn(4, 5))
    with pytest.raises(RuntimeError, match="'input'"):
        m(torch.randn(4, 3, dtype=torch.float64))
    for k, v in m.state_dict(keep_vars=True).items():
        assert torch.equal(v.detach(), before[k][0]) and v._version == before[k][1] and v.grad is None
    loss = mnn.CrossEntropyLoss(weight=torch.ones(3))
    with pytest.raises(IndexError, match="'target'"):
        loss(torch.randn(2, 3), torch.tensor([0, 3]))
    assert torch.equal(loss.weight, torch.ones(3))


def test_module_bad_enum_raises_like_torch():
    x = torch.randn(3)
    with pytest.raises(type(_torch_error("gelu", (x,), {"approximate": "foo"})), match="'approximate'"):
        mnn.GELU(approximate="foo")(x)
    x, t = torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(type(_torch_error("cross_entropy", (x, t), {"reduction": "avg"})), match="'reduction'"):
        mnn.CrossEntropyLoss(reduction="avg")(x, t)
