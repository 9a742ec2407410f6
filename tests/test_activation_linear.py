"""ActivationLinear: ``act(z) Wᵀ + b`` keeping only ``z`` (and ``W``), and the fused MLP."""

import functools

import pytest
import torch
import torch.nn.functional as TF
import torchvision
from helpers import assert_close, away_from_zero, check_grads, ctx_tensor_attrs, record_saved
from torch import nn

import manual_autograd as ma
from manual_autograd import functional as MF

# (activation, kwargs of activation_linear, torch reference of the activation, manual reference)
ACTS = {
    "relu": ({}, TF.relu, MF.relu),
    "leaky_relu": ({"negative_slope": 0.1}, functools.partial(TF.leaky_relu, negative_slope=0.1),
                   functools.partial(MF.leaky_relu, negative_slope=0.1)),
    "leaky_relu_neg": ({"negative_slope": -0.3}, functools.partial(TF.leaky_relu, negative_slope=-0.3),
                       functools.partial(MF.leaky_relu, negative_slope=-0.3)),
    "gelu": ({}, TF.gelu, MF.gelu),
    "gelu_tanh": ({"approximate": "tanh"}, functools.partial(TF.gelu, approximate="tanh"),
                  functools.partial(MF.gelu, approximate="tanh")),
    "silu": ({}, TF.silu, MF.silu),
}


def fused(name):
    kwargs = ACTS[name][0]
    act = name.replace("_neg", "").replace("_tanh", "")
    return lambda z, w, b=None: MF.activation_linear(z, w, b, act, **kwargs)


@pytest.mark.parametrize("name", list(ACTS))
def test_gradcheck_and_gradgradcheck(name):
    z = away_from_zero(2, 3, 5).requires_grad_()  # batch dims broadcast, sum in dL/dW
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    check_grads(fused(name), (z, w, b))


def test_gradcheck_without_bias_and_partial_grads():
    z = away_from_zero(3, 5).requires_grad_()
    w = torch.randn(4, 5, dtype=torch.float64)
    check_grads(fused("gelu"), (z, w), gradgrad=False)  # only dL/dz asked for
    check_grads(lambda w: fused("silu")(z.detach(), w), (w.requires_grad_(),), gradgrad=False)


@pytest.mark.parametrize("name", list(ACTS))
def test_parity_with_unfused(name):
    _, torch_act, manual_act = ACTS[name]
    z = torch.randn(16, 3, 32, requires_grad=True)
    w = torch.randn(24, 32, requires_grad=True)
    b = torch.randn(24, requires_grad=True)
    g = torch.randn(16, 3, 24)
    out = fused(name)(z, w, b)
    grads = torch.autograd.grad(out, (z, w, b), g)
    for ref_fn in (lambda: TF.linear(torch_act(z), w, b), lambda: MF.linear(manual_act(z), w, b)):
        ref = ref_fn()
        assert_close(out, ref, rtol=1e-5, atol=1e-5)
        for got, want in zip(grads, torch.autograd.grad(ref, (z, w, b), g)):
            assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "leaky_relu_neg"])
def test_saves_only_z_and_weight(name):
    z = torch.randn(8, 32).mul(2).requires_grad_()
    h = z * 1.0  # a non-leaf z, as in a network
    w = torch.randn(16, 32, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    with record_saved() as saved:
        out = fused(name)(h, w, b)
    assert {s.data_ptr for s in saved} <= {h.data_ptr(), w.data_ptr(), z.data_ptr()}
    assert h.data_ptr() in {s.data_ptr for s in saved}
    assert sum(s.storage_nbytes for s in saved if s.data_ptr != w.data_ptr()) == h.numel() * 4
    assert ctx_tensor_attrs(out.grad_fn) == []
    # dL/dW alone needs z only; dL/dz alone needs z and W
    with record_saved() as saved:
        fused(name)(h.detach(), w, b)
    assert [s.data_ptr for s in saved] == [h.data_ptr()]
    with record_saved() as saved:
        fused(name)(h, w.detach(), None)
    assert sorted(s.data_ptr for s in saved) == sorted([h.data_ptr(), w.data_ptr()])


def test_torch_func_grad_and_vmap():
    z, w, b = torch.randn(4, 6), torch.randn(5, 6), torch.randn(5)
    f = lambda w: MF.activation_linear(z, w, b, "gelu").square().sum()  # noqa: E731
    ref = lambda w: TF.linear(TF.gelu(z), w, b).square().sum()  # noqa: E731
    assert_close(torch.func.grad(f)(w), torch.func.grad(ref)(w), rtol=1e-5, atol=1e-5)
    per_row = torch.func.vmap(lambda zr: MF.activation_linear(zr, w, b, "silu"))(z)
    assert_close(per_row, TF.linear(TF.silu(z), w, b), rtol=1e-5, atol=1e-5)


def test_errors_name_the_argument():
    z, w = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4)
    with pytest.raises(ValueError, match="'activation'"):
        MF.activation_linear(z, w, None, "tanh")
    with pytest.raises(RuntimeError, match="'approximate'"):
        MF.activation_linear(z, w, None, "gelu", approximate="fast")
    with pytest.raises(RuntimeError, match="in_features=4"):
        MF.activation_linear(torch.randn(3, 5), w)
    with pytest.raises(RuntimeError, match="'bias' of shape"):
        MF.activation_linear(z, w, torch.randn(4))
    with pytest.raises(TypeError, match="'weight'"):
        MF.activation_linear(z, [[1.0]])
    with pytest.raises(TypeError, match="'negative_slope'"):
        MF.activation_linear(z, w, None, "leaky_relu", negative_slope="0.1")
    with pytest.raises(RuntimeError, match="'weight' of dtype torch.float32 on cpu like 'input', got torch.float64"):
        MF.activation_linear(z, w.double())
    with pytest.raises(Exception) as torch_error:  # the type torch raises for an integer input
        torch.nn.functional.gelu(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(Exception, match="floating-point") as info:
        MF.activation_linear(torch.ones(3, 4, dtype=torch.long), w.long())
    assert info.type is torch_error.type


# --------------------------------------------------------------------------------------------
# modules


def test_module_is_a_linear():
    torch.manual_seed(1)
    ref = nn.Linear(6, 3)
    torch.manual_seed(1)
    m = ma.nn.ActivationLinear(6, 3, activation="leaky_relu", negative_slope=0.2)
    assert isinstance(m, nn.Linear)
    assert m.state_dict().keys() == ref.state_dict().keys()
    assert torch.equal(m.weight, ref.weight)
    z = torch.randn(2, 6)
    assert_close(m(z), ref(TF.leaky_relu(z, 0.2)))
    assert "activation=leaky_relu, negative_slope=0.2" in repr(m)
    with pytest.raises(ValueError, match="'activation'"):
        ma.nn.ActivationLinear(6, 3, activation="elu")


@pytest.mark.parametrize(
    "act, norm",
    [(nn.GELU, None), (ma.nn.SiLU, None), (functools.partial(nn.GELU, approximate="tanh"), None),
     (nn.ReLU, nn.LayerNorm), (functools.partial(nn.LeakyReLU, 0.2), None)],
)
def test_mlp_matches_torchvision(act, norm):
    torch.manual_seed(2)
    ref = torchvision.ops.MLP(20, [32, 24, 5], norm_layer=norm, activation_layer=act)
    torch.manual_seed(2)
    m = ma.nn.MLP(20, [32, 24, 5], norm_layer=norm, activation_layer=act)
    x = torch.randn(7, 20)
    out, want = m(x), ref(x)
    assert_close(out, want, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, list(m.parameters()), g)
    exp = torch.autograd.grad(want, list(ref.parameters()), g)
    for a, b in zip(got, exp):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", [nn.GELU, nn.SiLU])
def test_mlp_keeps_about_half_the_activations(act):
    # 784-1024-1024-10: per hidden layer the fused MLP keeps z, the unfused one z and act(z)
    torch.manual_seed(3)
    ref = torchvision.ops.MLP(784, [1024, 1024, 10], activation_layer=act)
    m = ma.nn.MLP(784, [1024, 1024, 10], activation_layer=act)
    x = torch.randn(64, 784)

    def act_bytes(model):
        params = {p.data_ptr() for p in model.parameters()} | {x.data_ptr()}
        with record_saved() as saved:
            model(x).sum()
        return sum({s.data_ptr: s.storage_nbytes for s in saved if s.data_ptr not in params}.values())

    fused_bytes, native_bytes = act_bytes(m), act_bytes(ref)
    assert fused_bytes == 2 * 64 * 1024 * 4  # z1 and z2
    assert fused_bytes <= 0.55 * native_bytes


def test_mlp_rejects_what_cannot_be_fused():
    with pytest.raises(ValueError, match="'dropout'"):
        ma.nn.MLP(4, [8, 2], dropout=0.1)
    with pytest.raises(ValueError, match="'activation_layer'"):
        ma.nn.MLP(4, [8, 2], activation_layer=nn.Tanh)
    with pytest.raises(ValueError, match="'hidden_channels'"):
        ma.nn.MLP(4, [])
    with pytest.raises(TypeError):  # GELU takes no 'inplace', as with torchvision
        ma.nn.MLP(4, [8, 2], activation_layer=nn.GELU, inplace=True)
