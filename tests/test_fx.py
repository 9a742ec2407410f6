"""torch.fx: every public functional is a leaf of a symbolic trace (as torch.nn.functional's
are), so converted models, the fused modules and functional code trace; the GraphModule gives
the same outputs and gradients; torchvision's feature extraction works on a converted model."""

import pytest
import torch
import torchvision
from helpers import assert_close
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import manual_autograd
import manual_autograd.functional as F
from manual_autograd import nn as mnn

D = torch.float64


def _check_trace(model, *inputs):
    """Trace ``model``, check that no op of ours was traced through (each is one call of
    manual_autograd.functional) and that the graph runs the same forward and backward."""
    gm = torch.fx.symbolic_trace(model)
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    modules = {getattr(t, "__module__", None) or "" for t in targets}
    assert all(m == "manual_autograd.functional" or not m.startswith("manual_autograd") for m in modules), modules
    ours = {t for t in targets if getattr(t, "__module__", "") == "manual_autograd.functional"}
    runs = []
    for m in (model, gm):
        leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
        m.zero_grad()
        out = m(*leaves)
        out.sum().backward()
        runs.append((out, [x.grad for x in leaves if x.is_floating_point()], [p.grad for p in m.parameters()]))
    (out, gx, gp), (out_g, gx_g, gp_g) = runs
    assert_close(out_g, out)
    for a, b in zip(gx_g + gp_g, gx + gp):
        assert_close(a, b)
    return ours


def _torch_models():
    return {
        "activations": nn.Sequential(
            nn.Linear(5, 6), nn.ReLU(), nn.LeakyReLU(-0.1), nn.GELU("tanh"), nn.SiLU(), nn.ReLU(inplace=True), nn.Linear(6, 3)
        ),
        "torchvision-mlp": torchvision.ops.MLP(5, [8, 3], activation_layer=nn.GELU, dropout=0.0),
    }


@pytest.mark.parametrize("name", list(_torch_models()))
def test_converted_model_traces(name):
    torch.manual_seed(0)
    model = manual_autograd.convert(_torch_models()[name]).double()
    ours = _check_trace(model, torch.randn(4, 5, dtype=D))
    assert F.linear in ours


def test_cross_entropy_loss_module_traces():
    loss = manual_autograd.convert(nn.CrossEntropyLoss(weight=torch.rand(4, dtype=D), label_smoothing=0.1))
    gm = torch.fx.symbolic_trace(loss)
    x, t = torch.randn(3, 4, dtype=D), torch.tensor([0, 3, 1])
    assert_close(gm(x, t), loss(x, t))


@pytest.mark.parametrize(
    "make,inputs",
    [
        pytest.param(lambda: mnn.MLP(5, [6, 6, 3], activation_layer=nn.SiLU), lambda: (torch.randn(4, 5, dtype=D),), id="MLP"),
        pytest.param(
            lambda: mnn.ActivationLinear(5, 3, activation="leaky_relu", negative_slope=-0.2),
            lambda: (torch.randn(4, 5, dtype=D),),
            id="ActivationLinear",
        ),
        pytest.param(
            lambda: mnn.LinearCrossEntropyLoss(5, 20, bias=True, reduction="none", chunk_size=8),
            lambda: (torch.randn(4, 5, dtype=D), torch.randint(0, 20, (4,))),
            id="LinearCrossEntropyLoss",
        ),
    ],
)
def test_fused_modules_trace(make, inputs):
    torch.manual_seed(0)
    _check_trace(make().double(), *inputs())


def test_functional_code_traces():
    w, b = torch.randn(6, 5, dtype=D), torch.randn(6, dtype=D)
    wc = torch.randn(30, 6, dtype=D)

    def f(x, t):
        h = F.activation_linear(F.silu(F.linear(x, w, b)), wc[:6, :6], None, "gelu")
        h = F.leaky_relu(F.relu(h), 0.1) + F.gelu(h, "tanh")
        return F.cross_entropy(h, t % 6) + F.linear_cross_entropy(h, wc, t, chunk_size=7)

    gm = torch.fx.symbolic_trace(f)
    x, t = torch.randn(4, 5, dtype=D), torch.randint(0, 30, (4,))
    assert_close(gm(x, t), f(x, t))
    names = {n.target.__name__ for n in gm.graph.nodes if n.op == "call_function" and hasattr(n.target, "__name__")}
    assert {"linear", "silu", "activation_linear", "relu", "leaky_relu", "gelu", "cross_entropy", "linear_cross_entropy"} <= names


def test_feature_extraction_on_a_converted_vision_transformer():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).double()
    fast = manual_autograd.convert(model)
    # NOTE: torch.fx keeps torch.nn's modules as leaves (call_module nodes, named by the module) and
    # traces into others: a converted layer is its one functional call, named "<module path>.<function>"
    nodes = {"encoder.layers.encoder_layer_0.mlp": "mlp", "heads.head": "logits"}
    feats = create_feature_extractor(fast, {"encoder.layers.encoder_layer_0.mlp": "mlp", "heads.head.linear": "logits"})
    ref = create_feature_extractor(model, nodes)
    x = torch.randn(2, 3, 16, 16, dtype=D)
    got, want = feats(x), ref(x)
    assert got.keys() == want.keys() == {"mlp", "logits"}
    for k in got:
        assert_close(got[k], want[k])
    got["logits"].sum().backward()  # a gradient through the extracted graph
    assert all(p.grad is not None for p in feats.heads.parameters())
