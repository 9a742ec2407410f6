"""manual_autograd.convert / revert: torch.nn layers swapped for the library's anywhere in a model."""

import pytest
import torch
import torchvision
from torch import nn

import manual_autograd
from manual_autograd import nn as mnn

OURS = (mnn.Linear, mnn.ReLU, mnn.LeakyReLU, mnn.GELU, mnn.SiLU, mnn.CrossEntropyLoss)
THEIRS = (nn.Linear, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.CrossEntropyLoss)


def _types(model):
    return [type(m) for m in model.modules()]


def _loss_and_grads(model, loss_fn, x, y):
    model.zero_grad()
    out = model(x)
    loss = loss_fn(out, y)
    loss.backward()
    return out, loss, {k: p.grad.clone() for k, p in model.named_parameters()}


def _assert_same_run(a, b):
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        torch.testing.assert_close(a[2][k], b[2][k], msg=k)


def test_torchvision_mlp():
    model = torchvision.ops.MLP(12, [32, 32, 5], activation_layer=nn.ReLU, inplace=True, dropout=0.0).double()
    before = _types(model)
    fast = manual_autograd.convert(model)
    assert _types(model) == before  # the original is untouched ...
    assert fast[0].weight is not model[0].weight  # ... and not shared with the copy
    assert [type(m) for m in fast if type(m) in OURS] == [mnn.Linear, mnn.ReLU, mnn.Linear, mnn.ReLU, mnn.Linear]
    assert not any(type(m) in THEIRS for m in fast.modules())
    assert fast[1].inplace
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.randint(0, 5, (16,))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    _assert_same_run(
        _loss_and_grads(fast, manual_autograd.convert(loss_fn), x, y), _loss_and_grads(model, loss_fn, x, y)
    )


def test_torchvision_vision_transformer():
    # Linear + GELU MLP blocks inside encoder layers, attention, a Linear head; random weights
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ).double()
    fast = manual_autograd.convert(model)
    mlp = fast.encoder.layers[0].mlp
    assert type(mlp[0]) is mnn.Linear and type(mlp[1]) is mnn.GELU and type(mlp[3]) is mnn.Linear
    assert type(fast.heads.head) is mnn.Linear
    # attention's out_proj is a Linear *subclass* that MultiheadAttention reads the weight of: left alone
    out_proj = fast.encoder.layers[0].self_attention.out_proj
    assert type(out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    n_linear = sum(type(m) is nn.Linear for m in model.modules())
    assert sum(type(m) is mnn.Linear for m in fast.modules()) == n_linear == 5
    x, y = torch.randn(3, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (3,))
    _assert_same_run(
        _loss_and_grads(fast, mnn.CrossEntropyLoss(), x, y), _loss_and_grads(model, nn.CrossEntropyLoss(), x, y)
    )


class _Net(nn.Module):
    """Nested custom modules, a shared layer, a subclass of Linear, a loss held as an attribute."""

    class Wide(nn.Linear):
        pass

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.body = nn.Sequential(self.shared, nn.SiLU(), nn.Sequential(nn.LeakyReLU(0.2), self.shared))
        self.wide = _Net.Wide(8, 8)
        self.head = nn.ModuleDict({"fc": nn.Linear(8, 3), "act": nn.GELU(approximate="tanh")})
        self.loss = nn.CrossEntropyLoss(weight=torch.ones(3))

    def forward(self, x):
        return self.head["act"](self.head["fc"](self.wide(self.body(x))))


def test_inplace_keeps_objects_weights_hooks_mode_device_dtype():
    model = _Net().double()
    model.body.eval()
    objects = {name: m for name, m in model.named_modules()}
    params = {name: p for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    fc = model.head["fc"]
    fc.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    fc.register_forward_hook(lambda m, args, out: calls.append("fwd"))
    fc.register_full_backward_hook(lambda m, gin, gout: calls.append(("bwd", gout[0].shape)))
    removable = model.shared.register_forward_hook(lambda m, args, out: calls.append("shared"))

    assert manual_autograd.convert(model, inplace=True) is model
    assert {name: m for name, m in model.named_modules()} == objects  # the same objects, in place
    assert all(p is params[name] for name, p in model.named_parameters())  # weights shared, not copied
    assert type(model.shared) is mnn.Linear and model.body[2][1] is model.shared
    assert type(model.body[1]) is mnn.SiLU and type(model.body[2][0]) is mnn.LeakyReLU
    assert model.body[2][0].negative_slope == 0.2 and model.head["act"].approximate == "tanh"
    assert type(model.loss) is mnn.CrossEntropyLoss and model.loss.weight.dtype == torch.float64
    assert type(model.wide) is _Net.Wide  # a subclass: left alone
    assert not model.body.training and model.head.training
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model.state_dict().keys() == state.keys()

    x, y = torch.randn(4, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    model.loss(model(x), y).backward()
    assert calls == ["shared", "shared", "pre", "fwd", ("bwd", (4, 3))]
    removable.remove()  # a handle taken before the conversion still works
    calls.clear()
    model(x)
    assert calls == ["pre", "fwd"]
    opt.step()  # the optimizer holds the very parameters the converted model uses
    assert not torch.equal(model.shared.weight, state["shared.weight"])


def test_copy_matches_original_and_keeps_hooks_mode():
    model = _Net().double()
    model.head.eval()
    seen = []
    model.head["fc"].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    fast = manual_autograd.convert(model)
    assert type(model.shared) is nn.Linear and type(fast.shared) is mnn.Linear
    assert fast.body[2][1] is fast.shared  # sharing survives the copy
    assert not fast.head.training and fast.body.training
    x, y = torch.randn(4, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    _assert_same_run(_loss_and_grads(fast, fast.loss, x, y), _loss_and_grads(model, model.loss, x, y))
    assert seen == [(4, 3), (4, 3)]  # the hook fired in the copy too


def test_meta_device_is_kept():
    model = nn.Sequential(nn.Linear(4, 4, device="meta"), nn.ReLU())
    fast = manual_autograd.convert(model)
    assert fast[0].weight.device.type == "meta" and type(fast[0]) is mnn.Linear
    assert fast(torch.empty(2, 4, device="meta")).shape == (2, 4)


def test_revert_is_the_inverse():
    model = _Net()
    fast = manual_autograd.convert(model)
    back = manual_autograd.revert(fast)
    assert _types(back) == _types(model)
    assert all(type(m) in OURS for m in fast.modules() if type(m) in OURS + THEIRS)
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    # a model built from the library directly reverts to plain torch.nn, in place
    built = nn.Sequential(mnn.Linear(3, 3), mnn.GELU(), mnn.Linear(3, 2))
    assert manual_autograd.revert(built, inplace=True) is built
    assert _types(built) == [nn.Sequential, nn.Linear, nn.GELU, nn.Linear]
    # a single layer converts too
    assert type(manual_autograd.convert(nn.SiLU())) is mnn.SiLU


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match=r"convert\(\): argument 'module' must be a torch.nn.Module, not str"):
        manual_autograd.convert("model")
    with pytest.raises(TypeError, match=r"revert\(\): argument 'inplace' must be bool, not str"):
        manual_autograd.revert(nn.ReLU(), inplace="yes")
