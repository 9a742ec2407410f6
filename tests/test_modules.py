"""manual_autograd.nn: drop-in for torch.nn (init, state_dict, repr, isinstance, module walking)."""

import copy

import pytest
import torch
from helpers import assert_close, function_nodes
from torch import nn as tnn

import manual_autograd.nn as mnn

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

# (ours, torch's twin, constructor args, kwargs, an input builder)
CASES = {
    "Linear": (mnn.Linear, tnn.Linear, (5, 3), {}),
    "Linear-nobias": (mnn.Linear, tnn.Linear, (5, 3), {"bias": False}),
    "Linear-f64": (mnn.Linear, tnn.Linear, (5, 3), {"dtype": torch.float64}),
    "ReLU": (mnn.ReLU, tnn.ReLU, (), {}),
    "ReLU-inplace": (mnn.ReLU, tnn.ReLU, (True,), {}),
    "LeakyReLU": (mnn.LeakyReLU, tnn.LeakyReLU, (), {}),
    "LeakyReLU-neg": (mnn.LeakyReLU, tnn.LeakyReLU, (-0.2,), {"inplace": True}),
    "GELU": (mnn.GELU, tnn.GELU, (), {}),
    "GELU-tanh": (mnn.GELU, tnn.GELU, (), {"approximate": "tanh"}),
    "SiLU": (mnn.SiLU, tnn.SiLU, (), {}),
    "SiLU-inplace": (mnn.SiLU, tnn.SiLU, (), {"inplace": True}),
    "CrossEntropyLoss": (mnn.CrossEntropyLoss, tnn.CrossEntropyLoss, (), {}),
    "CrossEntropyLoss-args": (
        mnn.CrossEntropyLoss,
        tnn.CrossEntropyLoss,
        (),
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "ignore_index": 1, "reduction": "sum", "label_smoothing": 0.1},
    ),
}


def _build(ours, theirs, args, kw, seed=0):
    torch.manual_seed(seed)
    a = ours(*args, **kw)
    torch.manual_seed(seed)
    b = theirs(*args, **kw)
    return a, b


@pytest.mark.parametrize("name", list(CASES))
def test_same_init_repr_state_dict_and_isinstance(name):
    ours, theirs, args, kw = CASES[name]
    a, b = _build(ours, theirs, args, kw)
    assert isinstance(a, theirs)
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:  # same RNG draws in the same order: identical parameters and buffers
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k])
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("name", list(CASES))
def test_same_output_and_grads_as_twin(name, device):
    ours, theirs, args, kw = CASES[name]
    a, b = _build(ours, theirs, args, kw)
    a, b = a.to(device), b.to(device)
    if name == "LeakyReLU-neg":
        b.inplace = False  # torch has no backward for an in-place negative slope; ours does
    dtype = kw.get("dtype", torch.float32)
    x = torch.randn(4, 5 if ours is mnn.Linear else 3, dtype=dtype, device=device)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    if ours is mnn.CrossEntropyLoss:
        t = torch.tensor([0, 1, 2, 1], device=device)
        oa, ob = a(xa, t), b(xb, t)
    elif kw.get("inplace") or (args and args[0] is True):
        oa, ob = a(xa * 1.0), b(xb * 1.0)
    else:
        oa, ob = a(xa), b(xb)
    tol = {} if device == "cpu" else dict(rtol=1e-4, atol=1e-5)  # other kernels, other rounding
    assert oa.device == ob.device
    assert_close(oa, ob, **tol)
    g = torch.randn_like(ob)
    oa.backward(g)
    ob.backward(g)
    assert_close(xa.grad, xb.grad, **tol)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert_close(pa.grad, pb.grad, **tol)
    # and it is our hand-written Function that ran
    assert function_nodes(oa.grad_fn)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_state_dict_loads_both_ways(bias):
    ref = tnn.Linear(4, 3, bias=bias)
    ours = mnn.Linear(4, 3, bias=bias)
    ours.load_state_dict(ref.state_dict())  # strict: same keys, same shapes
    x = torch.randn(2, 4)
    assert torch.equal(ours(x), ref(x))
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(1.0)
    back = tnn.Linear(4, 3, bias=bias)
    back.load_state_dict(ours.state_dict())
    assert torch.equal(back(x), ours(x))
    with pytest.raises(RuntimeError, match="size mismatch"):  # torch's own checks still apply
        ours.load_state_dict(tnn.Linear(5, 3, bias=bias).state_dict())


def test_cross_entropy_weight_buffer_in_state_dict():
    w = torch.tensor([1.0, 2.0, 0.5])
    ours, ref = mnn.CrossEntropyLoss(weight=w), tnn.CrossEntropyLoss(weight=w)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    fresh = mnn.CrossEntropyLoss(weight=torch.ones(3))
    fresh.load_state_dict(ref.state_dict())
    assert torch.equal(fresh.weight, w)


def test_constructor_device_dtype_and_legacy_args():
    m = mnn.Linear(3, 2, device="meta", dtype=torch.float64)
    assert m.weight.device.type == "meta" and m.weight.dtype == torch.float64
    with pytest.warns(UserWarning):
        a = mnn.CrossEntropyLoss(size_average=False)
    with pytest.warns(UserWarning):
        b = tnn.CrossEntropyLoss(size_average=False)
    assert a.reduction == b.reduction == "sum"
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert_close(a(x, t), b(x, t))


def _mlp(lib):
    return tnn.Sequential(
        lib.Linear(6, 8), lib.ReLU(), lib.Linear(8, 8), lib.GELU(), lib.Linear(8, 8), lib.SiLU(),
        lib.Linear(8, 8), lib.LeakyReLU(0.1), lib.Linear(8, 3),
    )


def test_init_loop_optimizer_groups_and_training_steps_match_torch():
    models = []
    for lib in (mnn, tnn):
        torch.manual_seed(1)
        model = _mlp(lib)
        for m in model.modules():  # a typical init loop keyed on torch.nn classes
            if isinstance(m, tnn.Linear):
                tnn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                tnn.init.zeros_(m.bias)
        decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
        no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
        groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=1e-2)
        models.append((model, opt))
    (ours, opt_a), (ref, opt_b) = models
    assert sum(isinstance(m, tnn.Linear) for m in ours.modules()) == 5
    assert all(isinstance(m, mnn.Linear) for m in ours.modules() if isinstance(m, tnn.Linear))
    loss_a, loss_b = mnn.CrossEntropyLoss(label_smoothing=0.1), tnn.CrossEntropyLoss(label_smoothing=0.1)
    x, t = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        for model, opt, loss in ((ours, opt_a, loss_a), (ref, opt_b, loss_b)):
            opt.zero_grad()
            loss(model(x), t).backward()
            opt.step()
    for pa, pb in zip(ours.parameters(), ref.parameters()):
        assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_deepcopy_and_pickle_roundtrip(tmp_path):
    m = _mlp(mnn)
    c = copy.deepcopy(m)
    x = torch.randn(2, 6)
    assert torch.equal(m(x), c(x))
    path = tmp_path / "m.pt"
    torch.save(m, path)
    loaded = torch.load(path, weights_only=False)
    assert type(loaded[0]) is mnn.Linear and torch.equal(loaded(x), m(x))


@pytest.mark.parametrize("activation", list(mnn.ACTIVATIONS))
def test_build_mlp_twins_start_equal(activation):
    torch.manual_seed(0)
    ours = mnn.build_mlp([6, 5, 4, 3], activation)
    torch.manual_seed(0)
    theirs = mnn.build_mlp([6, 5, 4, 3], activation, "torch")
    assert [type(m) for m in theirs] == [tnn.Linear, mnn.ACTIVATIONS[activation][0]] * 2 + [tnn.Linear]
    assert all(isinstance(m, mnn.Linear) for m in ours[::2]) and isinstance(ours[1], mnn.ACTIVATIONS[activation][1])
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(7, 6)
    torch.testing.assert_close(ours(x), theirs(x))


def test_build_mlp_factories_and_errors():
    m = mnn.build_mlp((3, 2), tnn.Tanh, tnn.Linear)
    assert len(m) == 1 and type(m[0]) is tnn.Linear
    assert type(mnn.build_mlp((3, 4, 2), tnn.Tanh, tnn.Linear)[1]) is tnn.Tanh
    assert isinstance(mnn.build_mlp((3, 4, 2), "gelu", fused=True), mnn.MLP)
    for kwargs, match in [
        (dict(sizes=(3, 2), activation="tanh"), "argument 'activation'"),
        (dict(sizes=(3, 2), impl="jax"), "argument 'impl'"),
        (dict(sizes=(3,)), "argument 'sizes'"),
        (dict(sizes=(3, 4, 2), impl="torch", fused=True), "impl='manual'"),
    ]:
        with pytest.raises(ValueError, match=match):
            mnn.build_mlp(**kwargs)
