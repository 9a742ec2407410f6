"""The kernels compiled on a GPU: float32 and bfloat16 against torch, a CUDA graph, torch.compile."""

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.cuda

if torch.cuda.is_available():
    pytest.importorskip("triton")
    from manual_autograd import backend

    K = backend.kernels()

DTYPES = [torch.float32, torch.bfloat16]


def _tol(dtype):
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 1.6e-2}


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_equal_torch(dtype):
    x = (torch.randn(3001, device="cuda") * 4).to(dtype)
    g = torch.randn(3001, device="cuda").to(dtype)
    tol = _tol(dtype)
    out = K.relu.forward(x)
    torch.testing.assert_close(out, F.relu(x), rtol=0, atol=0)
    torch.testing.assert_close(K.relu.backward(out, g), torch.ops.aten.threshold_backward(g, out, 0), rtol=0, atol=0)
    out, mask = K.leaky_relu.forward(x, -0.1)
    torch.testing.assert_close(out, F.leaky_relu(x, -0.1), **tol)
    torch.testing.assert_close(K.leaky_relu.backward(mask, g, -0.1), torch.ops.aten.leaky_relu_backward(g, x, -0.1, False), **tol)
    for a in ("none", "tanh"):
        torch.testing.assert_close(K.gelu.forward(x, a), F.gelu(x, approximate=a), **tol)
        torch.testing.assert_close(K.gelu.backward(x, g, a), torch.ops.aten.gelu_backward(g, x, approximate=a), **tol)
    torch.testing.assert_close(K.silu.forward(x)[0], F.silu(x), **tol)
    torch.testing.assert_close(K.silu.backward(x, g), torch.ops.aten.silu_backward(g, x), **tol)
    a, gz = K.activation_linear.backward(x, g.clone(), "gelu", "tanh")
    torch.testing.assert_close(a, F.gelu(x, approximate="tanh"), **tol)
    torch.testing.assert_close(gz, torch.ops.aten.gelu_backward(g, x, approximate="tanh"), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [10, 32000])
def test_cross_entropy_equals_torch(dtype, C):
    x = torch.randn(64, C, device="cuda").to(dtype)
    t = torch.randint(0, C, (64,), device="cuda")
    t[::7] = -100
    w = torch.rand(C, device="cuda").to(dtype)
    xr = x.detach().requires_grad_()
    loss = F.cross_entropy(xr, t, w, label_smoothing=0.1)
    loss.backward()
    ours, logp, den = K.cross_entropy.forward(x, t, w, -100, "mean", 0.1)
    tol = _tol(dtype)
    torch.testing.assert_close(ours, loss.detach(), **tol)
    grad = K.cross_entropy.backward(torch.ones((), device="cuda", dtype=dtype), logp, t, w, -100, "mean", 0.1, den)
    torch.testing.assert_close(grad, xr.grad, **tol)


def test_cuda_graph_replays_forward_and_backward():
    x = torch.randn(256, 100, device="cuda")
    t = torch.randint(0, 100, (256,), device="cuda")
    g = torch.ones((), device="cuda")

    def step():
        h, mask = K.leaky_relu.forward(x, -0.1)
        hg = K.gelu.forward(h, "tanh")
        loss, logp, den = K.cross_entropy.forward(hg, t, None, -100, "mean", 0.0)
        d = K.cross_entropy.backward(g, logp, t, None, -100, "mean", 0.0, den)
        return loss, K.leaky_relu.backward(mask, K.gelu.backward(h, d, "tanh"), -0.1)

    eager = step()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()  # warm-up: compile the kernels outside the capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    x.copy_(torch.randn_like(x))
    graph.replay()
    expected = step()
    torch.cuda.synchronize()
    for a, b in zip(captured, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(eager[1], expected[1])  # the replay saw the new input


def test_compile_fullgraph_calls_the_registered_ops():
    if not K.HAS_TRITON_OP:
        pytest.skip("torch.library.triton_op needs torch >= 2.6")

    def f(x, t):
        h = K.relu.forward(x)
        h = K.gelu.forward(h, "none")
        loss, logp, den = K.cross_entropy.forward(h, t, None, -100, "mean", 0.0)
        return loss, K.cross_entropy.backward(torch.ones_like(loss), logp, t, None, -100, "mean", 0.0, den)

    x = torch.randn(32, 50, device="cuda")
    t = torch.randint(0, 50, (32,), device="cuda")
    compiled = torch.compile(f, fullgraph=True)
    for a, b in zip(compiled(x, t), f(x, t)):
        torch.testing.assert_close(a, b)
    with backend.use("triton"):
        assert torch.compile(lambda x: x + 1 if backend.kernels_for(x) else x, fullgraph=True)(x).equal(x + 1)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_kernels_run_on_their_tensors_device_not_the_current_one():
    x = torch.randn(3001, device="cuda:1")
    t = torch.randint(0, 7, (64,), device="cuda:1")
    logits = torch.randn(64, 7, device="cuda:1")
    with torch.cuda.device(0):
        out, gx = K.gelu.forward(x), K.gelu.backward(x, x)
        loss, logp, _ = K.cross_entropy.forward(logits, t, None, -100, "mean", 0.1)
    torch.testing.assert_close(out, F.gelu(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, torch.ops.aten.gelu_backward(x, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, F.cross_entropy(logits, t, label_smoothing=0.1), atol=1e-5, rtol=1e-5)
