"""Gated-unit kernels against torch's activations, their backward ops and the product."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, close, strided, torch_value, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf

# (activation, approximate, act, act's backward op)
CASES = [
    ("silu", "none", F.silu, lambda g, x: torch.ops.aten.silu_backward(g, x)),
    ("gelu", "none", F.gelu, lambda g, x: torch.ops.aten.gelu_backward(g, x)),
    ("gelu", "tanh", lambda x: F.gelu(x, approximate="tanh"), lambda g, x: torch.ops.aten.gelu_backward(g, x, approximate="tanh")),
]


def _expected(case, gate, up, g):
    _, approximate, act, act_bwd = case
    a = torch_value(act, gate)
    gu = g * up
    if approximate == "tanh" and gate.dtype == torch.float32:
        # NOTE: torch's float32 tanh-GELU backward takes 1 − tanh², which cancels near x ≈ −5 (0
        # where the derivative is 1e-6); the kernels' σ form does not: compared with float64 there
        dgate = torch_value(act_bwd, gu.double(), gate.double()).float()
    else:
        dgate = torch_value(act_bwd, gu, gate)
    return a * up, dgate, g * a


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_forward_and_backward_equal_torch(device, dtype, n, case):
    activation, approximate = case[:2]
    gate, up, g = values(n, dtype, device), values(n, dtype, device).flip(0), values(n, dtype, device, specials=False)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 and approximate == "tanh" else {}
    prod, dgate, dup = _expected(case, gate, up, g)
    close(K.glu.forward(gate, up, activation, approximate), prod, **tol)
    p, dg, du = K.glu.backward(gate, up, g, activation, approximate, need_prod=True)
    close(p, prod, **tol)
    close(dg, dgate, **tol)
    close(du, dup, **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_partial_outputs_strided_and_expanded_grad(device):
    gate, up = strided(values(300, torch.float32, device).reshape(20, 15)), strided(values(300, torch.float32, device).reshape(20, 15))
    g = torch.full((), 0.5, device=device).expand(20, 15)
    prod, dgate, dup = _expected(CASES[0], gate, up, g)
    p, dg, du = K.glu.backward(gate, None, g, "silu", "none", need_gate=False)
    assert p is None and dg is None
    close(du, dup)
    p, dg, du = K.glu.backward(gate, up, None, "gelu", "tanh", need_prod=True)
    assert dg is None and du is None
    close(p, F.gelu(gate, approximate="tanh") * up)
    p, dg, du = K.glu.backward(gate, up, g, "silu", "none", need_up=False)
    assert p is None and du is None
    close(dg, dgate)
    close(K.glu.forward(gate, up), prod)
    assert K.glu.forward(gate[:0], up[:0]).shape == (0, 15)
