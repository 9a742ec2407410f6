"""Shared inputs of the kernel tests (tests/test_kernels_*.py): devices, dtypes, awkward tensors."""

import pytest
import torch

triton = pytest.importorskip("triton")

from manual_autograd import backend  # noqa: E402

K = backend.kernels()

# CPU: the kernels interpreted (tests/conftest.py sets TRITON_INTERPRET=1 where no GPU is present);
# CUDA: compiled. Each test runs on both, skipping the one this machine lacks.
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not K.INTERPRETED, reason="kernels not interpreted")),
    pytest.param("cuda", marks=pytest.mark.cuda),
]
CPU_DTYPES = [torch.float32, torch.float64]
SIZES = [0, 1, 1500]  # empty, one element, not a multiple of the 1024-element block


def values(n, dtype, device, specials=True):
    """``n`` values spread over ±4 with, when there is room, 0, -0, ±1e4, NaN and ±inf."""
    x = torch.randn(n, dtype=torch.float64).mul_(4)
    if specials and n >= 8:
        x[:8] = torch.tensor([0.0, -0.0, 1e4, -1e4, float("nan"), float("inf"), -float("inf"), 1e-30])
    return x.to(dtype=dtype, device=device)


def torch_value(fn, *args):
    """``fn(*args)`` as torch computes it, except where only its float32 result is NaN: there the
    float64 one. NOTE: on AVX512 CPUs torch's float32 exact GELU gives NaN at +inf (its vectorised
    erf); on AVX2 and CUDA, and in float64, it gives inf, which is what the kernels compute."""
    out = fn(*args)
    if out.dtype != torch.float32:
        return out
    out64 = fn(*(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args))
    return torch.where(out.isnan() & ~out64.isnan(), out64.to(out.dtype), out)


def strided(x):
    """``x`` as a non-contiguous view (every other column of a wider buffer), equal values."""
    buf = torch.empty(x.numel(), 2, dtype=x.dtype, device=x.device)
    buf[:, 0] = x.reshape(-1)
    return buf[:, 0].reshape(x.shape) if x.numel() else x


def exact(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def close(actual, expected, **tol):
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol)


def kernel_function(forward, backward):
    """A Function whose forward and backward are the given launchers: ``forward(x) -> (out, saved)``,
    ``backward(saved, grad_out) -> grad_x``; for gradcheck through the kernel path."""

    class KernelFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out, saved = forward(x)
            ctx.save_for_backward(saved)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            return backward(ctx.saved_tensors[0], grad_out)

    return KernelFunction.apply
