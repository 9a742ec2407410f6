"""SiLU kernels against torch's silu and silu_backward."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, close, exact, kernel_function, strided, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_forward_backward_equal_torch(device, dtype, n):
    x, g = values(n, dtype, device), values(n, dtype, device)
    out, x0 = K.silu.forward(x)
    assert x0 is None
    close(out, F.silu(x))
    close(K.silu.backward(x, g), torch.ops.aten.silu_backward(g, x))


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_keeps_the_input_strided_and_expanded_grad(device):
    x = strided(values(300, torch.float32, device).reshape(20, 15))
    y = x.clone()
    out, x0 = K.silu.forward(y, inplace=True)
    assert out is y
    exact(x0, x)
    close(out, F.silu(x))
    g = torch.ones((), device=device).expand(20, 15)
    close(K.silu.backward(strided(x0), g), torch.ops.aten.silu_backward(g, x))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_through_the_kernels(device):
    fn = kernel_function(lambda x: (K.silu.forward(x)[0], x), K.silu.backward)
    assert torch.autograd.gradcheck(fn, torch.randn(5, 7, dtype=torch.float64, device=device, requires_grad=True))
