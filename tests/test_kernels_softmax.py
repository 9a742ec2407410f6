"""Softmax / log-softmax, sigmoid and tanh kernels against torch's ops and backward kernels."""

import pytest
import torch

from kernel_cases import CPU_DTYPES, DEVICES, K, SIZES, close, kernel_function, strided, values

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("n", SIZES)
def test_elementwise_forward_backward_equal_torch(device, dtype, name, n):
    x, g = values(n, dtype, device), values(n, dtype, device)
    if n > 8:
        x[8:12] = torch.tensor([1e-7, -3e-4, 0.05, -0.099])  # tanh's small-|x| branch
    mod = getattr(K, name)
    out = mod.forward(x)
    close(out, getattr(torch, name)(x))
    ref_bwd = torch.ops.aten.sigmoid_backward if name == "sigmoid" else torch.ops.aten.tanh_backward
    close(mod.backward(out, g), ref_bwd(g, out))
    e = torch.ones((), dtype=dtype, device=device).expand(20, 15) if n == 1500 else None
    if e is not None:  # a strided output and an expanded grad_out
        o = strided(out[:300].reshape(20, 15))
        close(mod.backward(o, e), ref_bwd(e, o))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((), 0), ((0, 5), 1), ((7, 13), 1), ((7, 13), 0), ((3, 5000), 1), ((2, 3, 4), 1)])
def test_softmax_forward_backward_equal_torch(device, dtype, log, shape, dim):
    x = torch.randn(shape, dtype=dtype, device=device) * 3
    if len(shape) == 2 and shape[0] >= 5 and dim == 1:
        inf = float("inf")
        x[0, :3] = torch.tensor([1.0, inf, 0.0])
        x[1] = -inf
        x[2, 1] = float("nan")
        x[3, :2] = -inf
        x[4, :] = -1e4
    g = torch.randn(shape, dtype=dtype, device=device)
    out = K.softmax.forward(x, dim, log)
    ref = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
    close(out, ref)
    fn = torch._log_softmax_backward_data if log else torch._softmax_backward_data
    close(K.softmax.backward(ref, g, dim, log), fn(g, ref, dim, dtype))
    if len(shape) == 2 and shape[1] > 1:  # a transposed grad_out, an output not in dim-last layout
        gt = g.t().contiguous().t()
        close(K.softmax.backward(ref.t().contiguous().t(), gt, dim, log), fn(g, ref, dim, dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_through_the_kernels(device):
    x = torch.randn(5, 7, dtype=torch.float64, device=device, requires_grad=True)
    for name in ("sigmoid", "tanh"):
        mod = getattr(K, name)
        fn = kernel_function(lambda x, mod=mod: (lambda o: (o, o))(mod.forward(x)), mod.backward)
        assert torch.autograd.gradcheck(fn, x)
    for log in (False, True):
        fwd = lambda x, log=log: (lambda o: (o, o))(K.softmax.forward(x, 0, log))  # noqa: E731
        fn = kernel_function(fwd, lambda o, g, log=log: K.softmax.backward(o, g, 0, log))
        assert torch.autograd.gradcheck(fn, x)
