"""ReLU kernels (manual_autograd.kernels.relu) against torch's relu and threshold_backward."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, exact, strided, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_forward_backward_equal_torch(device, dtype, n):
    x = values(n, dtype, device)
    g = values(n, dtype, device)
    out = K.relu.forward(x)
    exact(out, F.relu(x))
    exact(K.relu.backward(out, g), torch.ops.aten.threshold_backward(g, out, 0))


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inplace_and_expanded_grad(device):
    x = strided(values(300, torch.float32, device).reshape(20, 15))
    expected = F.relu(x)
    out = K.relu.forward(x)
    assert out.is_contiguous()
    exact(out, expected)
    y = x.clone()
    assert K.relu.forward(y, inplace=True) is y
    exact(y, expected)
    g = torch.ones((), device=device).expand(20, 15)  # what loss.sum().backward() hands down
    exact(K.relu.backward(strided(out), g), torch.ops.aten.threshold_backward(g, out, 0))
