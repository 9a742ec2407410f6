"""LeakyReLU kernels against torch's leaky_relu and leaky_relu_backward; the packed mask against
the reference's pack_bits/unpack_bits, both ways."""

import pytest
import torch
import torch.nn.functional as F
import triton

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, close, exact, kernel_function, strided, values
from manual_autograd.ops import pack_bits as _pack_bits, unpack_bits as _unpack_bits

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf

SLOPES = [0.01, 0.0, 1.5, -0.2]
# compiled Triton passes a float argument annotated tl.float64 as float64 from 3.4 on, as float32 before
FLOAT64_ARGS = tuple(int(v) for v in triton.__version__.split(".")[:2]) >= (3, 4)


def _check(x, g, slope, out, mask):
    # float64: the interpreter and Triton < 3.4 pass the slope as float32, so only close there
    same = exact if x.dtype == torch.float32 or (not K.INTERPRETED and FLOAT64_ARGS) else close
    same(out, F.leaky_relu(x, slope))
    if slope < 0:
        exact(mask, _pack_bits(x > 0))
        same(K.leaky_relu.backward(mask, g, slope), torch.ops.aten.leaky_relu_backward(g, x, slope, False))
    else:
        assert mask is None
        same(K.leaky_relu.backward(out, g, slope), torch.ops.aten.leaky_relu_backward(g, out, slope, True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("slope", SLOPES)
def test_forward_backward_equal_torch(device, dtype, n, slope):
    x, g = values(n, dtype, device), values(n, dtype, device)
    _check(x, g, slope, *K.leaky_relu.forward(x, slope))


@pytest.mark.parametrize("device", DEVICES)
def test_mask_format_is_the_references_both_ways(device):
    x = values(1003, torch.float32, device).reshape(17, 59)  # 1003 elements: a partial last byte
    g = values(1003, torch.float32, device).reshape(17, 59)
    _, mask = K.leaky_relu.forward(x, -0.3)
    assert mask.dtype == torch.uint8 and mask.shape == ((1003 + 7) // 8,)
    assert torch.equal(_unpack_bits(mask, x.shape), x > 0)  # the reference backward reads our mask
    ours = K.leaky_relu.backward(_pack_bits(x > 0), g, -0.3)  # our backward reads the reference's
    exact(ours, torch.where(x > 0, g, g * -0.3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slope", [0.1, -0.1])
def test_strided_inplace_and_expanded_grad(device, slope):
    x = strided(values(300, torch.float32, device).reshape(20, 15))
    g = torch.full((), 2.0, device=device).expand(20, 15)
    y = x.clone()
    out, mask = K.leaky_relu.forward(y, slope, inplace=True)
    assert out is y
    _check(x, g, slope, out, mask)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slope", [0.1, -0.3])
def test_gradcheck_through_the_kernels(device, slope):
    def fwd(x):
        out, mask = K.leaky_relu.forward(x, slope)
        return out, (out if mask is None else mask)

    fn = kernel_function(fwd, lambda saved, g: K.leaky_relu.backward(saved, g, slope))
    x = torch.randn(5, 7, dtype=torch.float64, device=device)
    x = (x + x.sign() * 0.1).requires_grad_()  # away from the kink
    assert torch.autograd.gradcheck(fn, x)
