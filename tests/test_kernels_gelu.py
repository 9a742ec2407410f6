"""GELU kernels ('none' and 'tanh') against torch's gelu and gelu_backward."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, close, kernel_function, strided, torch_value, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_forward_backward_equal_torch(device, dtype, n, approximate):
    x, g = values(n, dtype, device), values(n, dtype, device)
    out, gx = K.gelu.forward(x, approximate), K.gelu.backward(x, g, approximate)
    ref = torch_value(lambda x: F.gelu(x, approximate=approximate), x)
    ref_gx = torch_value(lambda g, x: torch.ops.aten.gelu_backward(g, x, approximate=approximate), g, x)
    if dtype == torch.float32:  # close to torch's float32 and to the float64 values alike
        tol = {"atol": 1e-5, "rtol": 1e-5}  # tanh: x σ(2u) against torch's ½ x (1 + tanh u), rounded
        close(out, F.gelu(x.double(), approximate=approximate).float(), **tol)
        close(gx, torch.ops.aten.gelu_backward(g.double(), x.double(), approximate=approximate).float(), **tol)
    else:
        tol = {}
    close(out, ref, **tol)
    close(gx, ref_gx, **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_expanded_grad(device):
    x = strided(values(300, torch.float32, device).reshape(20, 15))
    g = torch.ones((), device=device).expand(20, 15)
    close(K.gelu.forward(x), F.gelu(x))
    close(K.gelu.backward(x, g), torch.ops.aten.gelu_backward(g, x))


def test_bad_approximate_raises():
    with pytest.raises(ValueError, match="approximate"):
        K.gelu.forward(torch.zeros(3), "erf")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradcheck_through_the_kernels(device, approximate):
    fn = kernel_function(lambda x: (K.gelu.forward(x, approximate), x), lambda x, g: K.gelu.backward(x, g, approximate))
    assert torch.autograd.gradcheck(fn, torch.randn(5, 7, dtype=torch.float64, device=device, requires_grad=True))
