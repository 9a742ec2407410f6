"""torch.compile: models built from the library trace into one graph and match eager.

Every compile here is ``fullgraph=True``, which raises on any graph break, so each test also
proves that dynamo traced the whole model and loss (forward and hand-written backward) as one
graph. Compilation is slow on a small CPU: the file compiles few, small functions.
"""

import pytest
import torch

from manual_autograd import functional as F
from manual_autograd import nn as mnn


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        mnn.Linear(12, 16),
        mnn.GELU(approximate="tanh"),
        mnn.Linear(16, 16),
        mnn.SiLU(),
        mnn.LeakyReLU(-0.1),  # a negative slope: the Function also returns its bit-packed mask
        mnn.Linear(16, 16),
        mnn.ReLU(),
        mnn.Linear(16, 16),
        mnn.GELU(),
        mnn.Linear(16, 5),
    )


def _data():
    return torch.randn(8, 12), torch.randint(0, 5, (8,))


class _Step:
    """Loss and gradients of one forward/backward, from ``fn(model, loss_fn, x, y)``."""

    def __init__(self, weight=None):
        self.model = _model()
        self.loss_fn = mnn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)

    def __call__(self, fn, x, y):
        self.model.zero_grad()
        out, loss = fn(self.model, self.loss_fn, x, y)
        loss.backward()
        return out, loss, [p.grad.clone() for p in self.model.parameters() if p.grad is not None]


def _fwd(model, loss_fn, x, y):
    out = model(x)
    return out, loss_fn(out, y)


def _fwd_inplace(model, loss_fn, x, y):
    h = F.linear(x, model[0].weight, model[0].bias)
    h = F.relu(h, inplace=True)
    h = F.silu(F.linear(h, model[2].weight, model[2].bias), inplace=True)
    h = F.leaky_relu(F.linear(h, model[5].weight, model[5].bias), 0.2, inplace=True)
    out = F.linear(h, model[9].weight[:, :16], model[9].bias)
    return out, loss_fn(out, y)


def _fwd_small(model, loss_fn, x, y):
    out = model[9](model[8](model[7](model[1](model[0](x)))))
    return out, loss_fn(out, y)


def test_fullgraph_inductor_matches_eager():
    # inductor codegen is the slow part of compiling: a short slice of the model
    step = _Step()
    compiled = torch.compile(_fwd_small, fullgraph=True)
    for _ in range(2):  # second call: the cached graph, new data
        x, y = _data()
        out_e, loss_e, grads_e = step(_fwd_small, x, y)
        out_c, loss_c, grads_c = step(compiled, x, y)
        assert loss_c.grad_fn is not None and "Compiled" in type(loss_c.grad_fn).__name__
        torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
        for gc, ge in zip(grads_c, grads_e):
            torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [_fwd, _fwd_inplace], ids=["modules", "functional-inplace"])
def test_fullgraph_aot_eager_matches_eager_with_and_without_autocast(fn):
    # every op, in-place ones too, through dynamo + AOTAutograd (aot_eager: no codegen, fast)
    step = _Step(weight=torch.rand(5) + 0.5)
    x, y = _data()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out_e, loss_e, grads_e = step(fn, x, y)
            out_c, loss_c, grads_c = step(compiled, x, y)
        assert out_c.dtype == (torch.bfloat16 if autocast else torch.float32)
        assert loss_c.dtype == torch.float32
        torch.testing.assert_close(out_c, out_e)
        torch.testing.assert_close(loss_c, loss_e)
        for gc, ge in zip(grads_c, grads_e):
            torch.testing.assert_close(gc, ge)
