"""The library's layers on a GPU, on the kernel path: a training step equal to torch.nn's, no host
synchronisation, a whole step captured in a CUDA graph, and torch.compile with fullgraph=True."""

import copy

import pytest
import torch
from torch import nn

import manual_autograd.nn as mnn

pytestmark = pytest.mark.cuda

if torch.cuda.is_available():
    pytest.importorskip("triton")
    from manual_autograd import backend


def _batch(n=64, features=48, classes=10, dtype=torch.float32):
    x = torch.randn(n, features, device="cuda", dtype=dtype)
    t = torch.randint(0, classes, (n,), device="cuda")
    t[::9] = -100
    return x, t


def _twins(activation, dtype=torch.float32):
    torch.manual_seed(0)
    ours = mnn.build_mlp([48, 96, 10], activation).to("cuda", dtype)
    theirs = mnn.build_mlp([48, 96, 10], activation, "torch").to("cuda", dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("activation", list(mnn.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_step_equals_torch_nn(activation, dtype, monkeypatch):
    calls = []
    kernels = backend.kernels()
    real = kernels.cross_entropy.backward
    monkeypatch.setattr(kernels.cross_entropy, "backward", lambda *a, **k: calls.append(1) or real(*a, **k))
    ours, theirs = _twins(activation, dtype)
    x, t = _batch(dtype=dtype)
    mnn.CrossEntropyLoss()(ours(x), t).backward()
    nn.CrossEntropyLoss()(theirs(x), t).backward()
    assert calls, "the kernel path was not taken"
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **tol)


def test_kernel_step_never_synchronises():
    ours, _ = _twins("gelu")
    x, t = _batch()
    loss_fn = mnn.CrossEntropyLoss(label_smoothing=0.1)
    loss_fn(ours(x), t).backward()  # warm-up: the kernels compile outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for reduction in ("mean", "sum", "none"):
            loss = mnn.CrossEntropyLoss(reduction=reduction)(ours(x), t)
            (loss.sum() if reduction == "none" else loss).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graph_replays_a_training_step():
    eager, _ = _twins("silu")
    graphed = copy.deepcopy(eager)
    x, t = _batch()
    loss_fn = mnn.CrossEntropyLoss()

    def step(model, opt):
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    opt_e = torch.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_g = torch.optim.SGD(graphed.parameters(), lr=0.1, momentum=0.9)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # warm-up outside the capture, as CUDA graphs ask
            step(graphed, opt_g)
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(3):
        step(eager, opt_e)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step(graphed, opt_g)
    for i in range(3):
        new_x, new_t = _batch()
        x.copy_(new_x)
        t.copy_(new_t)
        graph.replay()
        loss = step(eager, opt_e)
        torch.testing.assert_close(static_loss, loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(graphed.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_fullgraph_takes_the_kernels():
    if not hasattr(torch.library, "triton_op"):
        pytest.skip("torch.library.triton_op needs torch >= 2.6; compiled graphs take the reference")
    ours, _ = _twins("gelu")
    x, t = _batch()
    loss_fn = mnn.CrossEntropyLoss()
    compiled = torch.compile(lambda x, t: loss_fn(ours(x), t), fullgraph=True)
    loss = compiled(x, t)
    torch.testing.assert_close(loss, loss_fn(ours(x), t), rtol=1e-5, atol=1e-6)
