"""LayerNorm / RMSNorm kernels against torch's native_layer_norm(_backward) and _fused_rms_norm,
and against the reference backward for the gradients."""

import pytest
import torch

from kernel_cases import CPU_DTYPES, DEVICES, K, close, strided
from manual_autograd.ops.layer_norm import layer_norm_backward
from manual_autograd.ops.rms_norm import rms_norm_backward

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf
SINGLE_THREAD = True

# (rows shape, normalized shape): one row, a whole row per block, a row over two blocks (N > 4096), 2-D shape, no rows
SHAPES = [((1,), (7,)), ((5, 3), (300,)), ((3,), (5000,)), ((4,), (3, 5)), ((0,), (8,))]


def _tol(dtype):
    # the interpreter reads a float argument (eps) as float32, so float64 agrees to ~1e-13, not 1e-15
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def _inputs(lead, ns, dtype, device, specials=False):
    x = torch.randn(*lead, *ns, dtype=dtype, device=device) * 2 + 0.5
    if specials and x.numel() >= 8:
        x.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -1e4])
    w, b = torch.randn(ns, dtype=dtype, device=device), torch.randn(ns, dtype=dtype, device=device)
    return x, w, b, torch.randn_like(x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("lead,ns", SHAPES)
def test_layer_norm_equals_torch(device, dtype, lead, ns):
    x, w, b, g = _inputs(lead, ns, dtype, device)
    out, mean, rstd = K.layer_norm.forward(x, ns, w, b, 1e-5)
    ref = torch.native_layer_norm(x, ns, w, b, 1e-5)
    for a, e in zip((out, mean, rstd), ref):
        assert a.shape == e.shape and a.dtype == e.dtype
        close(a, e, **_tol(dtype))
    dx, dw, db = K.layer_norm.backward(x, g, w, mean, rstd, len(ns))
    ex, ew, eb = torch.ops.aten.native_layer_norm_backward(g, x, ns, ref[1], ref[2], w, b, [True, True, True])
    close(dx, ex, **_tol(dtype))
    close(dw, ew, **_tol(dtype))
    close(db, eb, **_tol(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("lead,ns", SHAPES)
def test_rms_norm_equals_torch(device, dtype, lead, ns):
    x, w, _, g = _inputs(lead, ns, dtype, device)
    out, rstd = K.rms_norm.forward(x, ns, w, 1e-6)
    ref = torch.ops.aten._fused_rms_norm(x, list(ns), w, 1e-6)
    for a, e in zip((out, rstd), ref):
        assert a.shape == e.shape and a.dtype == e.dtype
        close(a, e, **_tol(dtype))
    dx, dw = K.rms_norm.backward(x, g, w, rstd, len(ns))
    ex, ew = rms_norm_backward(x, g, w, ref[1], len(ns), True, True)
    close(dx, ex, **_tol(dtype))
    close(dw, ew, **_tol(dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_options_strided_expanded_and_nonfinite(device):
    # no weight / no bias, a strided input, an expanded grad_out, NaN and inf rows: as the reference
    x, w, b, _ = _inputs((6,), (40,), torch.float32, device, specials=True)
    xs = strided(x)
    g = torch.ones((), device=device).expand(6, 40)
    for weight, bias in ((None, None), (w, None), (None, b)):
        out, mean, rstd = K.layer_norm.forward(xs, (40,), weight, bias, 1e-5)
        close(out, torch.native_layer_norm(x, (40,), weight, bias, 1e-5)[0], rtol=1e-5, atol=1e-5)
        dx, dw, db = K.layer_norm.backward(xs, g, weight, mean, rstd, 1, True, weight is not None, bias is not None)
        ex, ew = layer_norm_backward(x, g, weight, mean, rstd, 1, True, weight is not None)
        close(dx, ex, rtol=1e-5, atol=1e-5)
        assert (dw is None) == (weight is None) and (db is None) == (bias is None)
        if dw is not None:
            close(dw, ew, rtol=1e-5, atol=1e-5)
        if db is not None:
            close(db, g.sum(0))
    for weight in (None, w):
        out, rstd = K.rms_norm.forward(xs, (40,), weight, 1e-6)
        close(out, torch.ops.aten._fused_rms_norm(x, [40], weight, 1e-6)[0], rtol=1e-5, atol=1e-5)
        dx, dw = K.rms_norm.backward(xs, g, weight, rstd, 1, True, weight is not None)
        ex, ew = rms_norm_backward(x, g, weight, rstd, 1, True, weight is not None)
        close(dx, ex, rtol=1e-5, atol=1e-5)
        if weight is not None:
            close(dw, ew, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_of_the_parameters_only(device):
    x, w, b, g = _inputs((9,), (5000,), torch.float64, device)  # several blocks per row, no dx
    _, mean, rstd = K.layer_norm.forward(x, (5000,), w, b, 1e-5)
    dx, dw, db = K.layer_norm.backward(x, g, w, mean, rstd, 1, False, True, True)
    assert dx is None
    close(dw, layer_norm_backward(x, g, w, mean, rstd, 1, False, True)[1], **_tol(torch.float64))
    close(db, g.sum(0), **_tol(torch.float64))
