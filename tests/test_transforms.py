"""The table of docs/transforms.md, cell by cell: every op under each PyTorch transform or tool.

Each row of ``SPECS`` is one op of the table: the library's function, torch's (its
``torch.nn.functional`` twin, or the composition a fused op replaces) and the differentiable
inputs. Each test is one column: it runs the library's op under the transform and compares it
with torch's op under the same transform (or with itself in eager mode). ``test_table_is_held``
reads docs/transforms.md and fails if a cell says "yes" that no test here runs.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close
from torch.func import jvp, vmap

import manual_autograd.functional as F

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread
D = torch.float64
DOC = Path(__file__).resolve().parents[1] / "docs" / "transforms.md"


def _ce_target():
    t = torch.tensor([0, 3, -100, 4])  # one ignored row
    return t


def _causal(fn):
    return lambda q, k, v: fn(q, k, v, is_causal=True)


def _lce_ref(x, w, t):
    return TF.cross_entropy(TF.linear(x, w), t, label_smoothing=0.1)


def _gated_ref(g, u, w, b):
    return TF.linear(TF.silu(g) * u, w, b)


# row of the table -> (ours, torch's, input shapes); inputs are random, of the test's dtype
SPECS = {
    "linear": (F.linear, TF.linear, [(4, 5), (6, 5), (6,)]),
    "relu": (F.relu, TF.relu, [(3, 4)]),
    "leaky_relu": (functools.partial(F.leaky_relu, negative_slope=-0.2),
                   functools.partial(TF.leaky_relu, negative_slope=-0.2), [(3, 4)]),
    "gelu": (functools.partial(F.gelu, approximate="tanh"), functools.partial(TF.gelu, approximate="tanh"), [(3, 4)]),
    "silu": (F.silu, TF.silu, [(3, 4)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, _ce_target(), label_smoothing=0.1),
                      lambda x: TF.cross_entropy(x, _ce_target(), label_smoothing=0.1), [(4, 5)]),
    "activation_linear": (lambda z, w, b: F.activation_linear(z, w, b, "gelu"),
                          lambda z, w, b: TF.linear(TF.gelu(z), w, b), [(4, 5), (6, 5), (6,)]),
    "linear_cross_entropy": (lambda x, w: F.linear_cross_entropy(x, w, _ce_target(), label_smoothing=0.1, chunk_size=3),
                             lambda x, w: _lce_ref(x, w, _ce_target()), [(4, 5), (7, 5)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b), lambda x, w, b: TF.layer_norm(x, (5,), w, b),
                   [(3, 5), (5,), (5,)]),
    "rms_norm": (lambda x, w: F.rms_norm(x, (5,), w), lambda x, w: TF.rms_norm(x, (5,), w), [(3, 5), (5,)]),
    "softmax": (functools.partial(F.softmax, dim=-1), functools.partial(TF.softmax, dim=-1), [(3, 5)]),
    "log_softmax": (functools.partial(F.log_softmax, dim=0), functools.partial(TF.log_softmax, dim=0), [(3, 5)]),
    "sigmoid": (F.sigmoid, torch.sigmoid, [(3, 4)]),
    "tanh": (F.tanh, torch.tanh, [(3, 4)]),
    "mse_loss": (F.mse_loss, TF.mse_loss, [(3, 4), (3, 4)]),
    "dropout": (functools.partial(F.dropout, p=0.3), functools.partial(TF.dropout, p=0.3), [(3, 4)]),
    "embedding": (lambda w: F.embedding(torch.tensor([[1, 4, 1], [0, 6, 1]]), w, padding_idx=0),
                  lambda w: TF.embedding(torch.tensor([[1, 4, 1], [0, 6, 1]]), w, padding_idx=0), [(7, 3)]),
    "swiglu": (F.swiglu, lambda g, u: TF.silu(g) * u, [(3, 4), (3, 4)]),
    "geglu": (F.geglu, lambda g, u: TF.gelu(g) * u, [(3, 4), (3, 4)]),
    "gated_linear": (F.gated_linear, _gated_ref, [(4, 5), (4, 5), (6, 5), (6,)]),
    "scaled_dot_product_attention": (_causal(F.scaled_dot_product_attention),
                                     _causal(TF.scaled_dot_product_attention), [(2, 5, 4), (2, 6, 4), (2, 6, 3)]),
}
# cells that hold for a different reason than the generic test checks (the table says why)
NOT_UNDER_AUTOCAST = {"embedding"}  # its input is indices: autocast casts only the weight's users
GRAPH_BREAK = {"linear_cross_entropy"}  # the chunked path checks class indices on the host (CPU)
COLUMNS = ("autocast", "compile", "vmap", "forward AD", "fx", "double backward")


def _inputs(name, dtype, requires_grad=True):
    g = torch.Generator().manual_seed(len(name))
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(requires_grad) for s in SPECS[name][2]]


def _traceable(fn, n):
    """``fn`` as a function of ``n`` named arguments (symbolic_trace cannot trace ``*args``)."""
    names = ", ".join(f"x{i}" for i in range(n))
    return eval(f"lambda {names}: fn({names})", {"fn": fn})


def _run(fn, *args):
    """``fn(*args)`` from a fixed RNG state: the library and torch draw the same dropout mask."""
    torch.manual_seed(5)
    return fn(*args)


def _grads(out, inputs):
    g = torch.ones_like(out) if out.dim() else None
    return torch.autograd.grad(out, inputs, g, allow_unused=True)


@pytest.mark.parametrize("name", [n for n in SPECS if n not in NOT_UNDER_AUTOCAST])
def test_autocast(name):
    # CPU bf16 autocast: output and gradient dtypes are torch's, and so are the values (to bf16)
    ours, ref, _ = SPECS[name]
    xo, xr = _inputs(name, torch.float32), _inputs(name, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expect = _run(ours, *xo), _run(ref, *xr)
        assert out.dtype == expect.dtype
        go, gr = _grads(out, xo), _grads(expect, xr)
    torch.testing.assert_close(out.float(), expect.float(), rtol=4e-2, atol=4e-2)
    for a, b in zip(go, gr):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("name", list(SPECS))
def test_compile(name):
    # dynamo + AOTAutograd in one graph (fullgraph raises on a break); values and gradients as eager
    ours, _, _ = SPECS[name]
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=name not in GRAPH_BREAK)
    xe, xc = _inputs(name, torch.float32), _inputs(name, torch.float32)
    out, expect = _run(compiled, *xc), _run(ours, *xe)
    assert_close(out, expect)
    for a, b in zip(_grads(out, xc), _grads(expect, xe)):
        assert_close(a, b)


@pytest.mark.parametrize("name", list(SPECS))
def test_vmap(name):
    # a batch of two samples through torch.func.vmap (and per-sample gradients through it)
    ours, ref, _ = SPECS[name]
    inputs = [torch.stack([x, 2 * x]) for x in _inputs(name, D, requires_grad=False)]
    out = _run(vmap(ours, randomness="same"), *inputs)
    assert_close(out, _run(vmap(ref, randomness="same"), *inputs))


@pytest.mark.parametrize("name", list(SPECS))
def test_forward_ad(name):
    # torch.func.jvp: the hand-written forward-mode rule against torch's
    ours, ref, _ = SPECS[name]
    inputs = tuple(_inputs(name, D, requires_grad=False))
    tangents = tuple(torch.randn_like(x) for x in inputs)
    out, out_t = _run(jvp, ours, inputs, tangents)
    expect, expect_t = _run(jvp, ref, inputs, tangents)
    assert_close(out, expect)
    assert_close(out_t, expect_t)


@pytest.mark.parametrize("name", list(SPECS))
def test_fx(name):
    # torch.fx.symbolic_trace: the op is one call_function node of the library, the graph runs as eager
    ours, _, _ = SPECS[name]
    gm = torch.fx.symbolic_trace(_traceable(ours, len(SPECS[name][2])))
    targets = {getattr(n.target, "__module__", None) for n in gm.graph.nodes if n.op == "call_function"}
    assert "manual_autograd.functional" in targets
    xe, xt = _inputs(name, D), _inputs(name, D)
    out, expect = _run(gm, *xt), _run(ours, *xe)
    assert_close(out, expect)
    for a, b in zip(_grads(out, xt), _grads(expect, xe)):
        assert_close(a, b)


@pytest.mark.parametrize("name", list(SPECS))
def test_double_backward(name):
    ours, _, _ = SPECS[name]
    inputs = _inputs(name, D)
    if name in ("relu", "leaky_relu"):  # away from the kink at 0
        inputs = [(x.detach() + x.detach().sign() * 0.1).requires_grad_() for x in inputs]
    assert torch.autograd.gradgradcheck(lambda *x: _run(ours, *x), inputs, fast_mode=True)


TESTS = {"autocast": test_autocast, "compile": test_compile, "vmap": test_vmap, "forward AD": test_forward_ad,
         "fx": test_fx, "double backward": test_double_backward}


def _table():
    """docs/transforms.md's op table: ``{op: {column: cell}}``."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| op |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(head[1:], cells[1:]))
    return head[1:], rows


def test_table_is_held():
    columns, rows = _table()
    assert tuple(columns) == COLUMNS
    assert set(rows) == set(SPECS), "the table lists exactly the ops tested here"
    for op, cells in rows.items():
        for column, cell in cells.items():
            if re.match(r"yes\b", cell):
                params = TESTS[column].pytestmark[0].args[1]
                assert op in params, f"docs/transforms.md says {op} × {column} works, no test here runs it"
