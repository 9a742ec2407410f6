"""ActivationLinear's backward pass kernel against torch's activations and their backward ops."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, close, strided, torch_value, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf

CASES = [
    ("relu", None, lambda z: F.relu(z), lambda g, z: torch.ops.aten.threshold_backward(g, z, 0)),
    ("leaky_relu", 0.1, lambda z: F.leaky_relu(z, 0.1), lambda g, z: torch.ops.aten.leaky_relu_backward(g, z, 0.1, False)),
    ("leaky_relu", -0.2, lambda z: F.leaky_relu(z, -0.2), lambda g, z: torch.ops.aten.leaky_relu_backward(g, z, -0.2, False)),
    ("gelu", "none", lambda z: F.gelu(z), lambda g, z: torch.ops.aten.gelu_backward(g, z)),
    ("gelu", "tanh", lambda z: F.gelu(z, approximate="tanh"), lambda g, z: torch.ops.aten.gelu_backward(g, z, approximate="tanh")),
    ("silu", None, F.silu, lambda g, z: torch.ops.aten.silu_backward(g, z)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_act_and_derivative_equal_torch(device, dtype, case):
    activation, param, act, act_bwd = case
    z = values(1500, dtype, device).reshape(30, 50)
    g = values(1500, dtype, device).reshape(30, 50)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 and param == "tanh" else {}
    expected_grad = torch_value(act_bwd, g, z)
    g_in = g.clone()
    a, gz = K.activation_linear.backward(z, g_in, activation, param)
    assert gz is g_in  # written in place
    close(a, torch_value(act, z), **tol)
    close(gz, expected_grad, **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_one_output_only_strided_and_empty(device):
    z = strided(values(300, torch.float32, device).reshape(20, 15))
    a, gz = K.activation_linear.backward(z, None, "silu", None)
    assert gz is None
    close(a, F.silu(z))
    g = strided(values(300, torch.float32, device).reshape(20, 15))
    expected = torch.ops.aten.gelu_backward(g, z)
    a, gz = K.activation_linear.backward(z, g, "gelu", "none", need_act=False)
    assert a is None and gz is g  # a non-contiguous g is still written in place
    close(g, expected)
    a, gz = K.activation_linear.backward(z[:0], z[:0].clone(), "relu")
    assert a.shape == gz.shape == (0, 15)
