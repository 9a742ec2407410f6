"""The backend switch (manual_autograd.backend): env var, use(), get(), kernels_for()."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from manual_autograd import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
    """Run ``code`` in a fresh interpreter from the repository root; returns its stdout."""
    full = {k: v for k, v in os.environ.items() if k not in ("MANUAL_AUTOGRAD_BACKEND", "TRITON_INTERPRET")}
    full.update(env, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full, capture_output=True, text=True)
    return proc


def test_env_values():
    assert backend._from_env({}) == "auto"
    assert backend._from_env({backend.ENV: ""}) == "auto"
    assert backend._from_env({backend.ENV: " Triton "}) == "triton"
    assert backend._from_env({backend.ENV: "torch"}) == "torch"
    with pytest.raises(ValueError, match=r"MANUAL_AUTOGRAD_BACKEND must be one of 'auto', 'torch', 'triton', got 'cuda'"):
        backend._from_env({backend.ENV: "cuda"})


def test_invalid_env_raises_at_import():
    proc = _run("import manual_autograd.backend", MANUAL_AUTOGRAD_BACKEND="kernels")
    assert proc.returncode != 0
    assert "ValueError: environment variable MANUAL_AUTOGRAD_BACKEND must be one of" in proc.stderr
    assert "got 'kernels'" in proc.stderr


def test_auto_on_cpu_imports_nothing_and_triton_needs_the_interpreter():
    pytest.importorskip("triton")
    proc = _run(
        """
        import sys, torch
        from manual_autograd import backend
        x = torch.zeros(3)
        print(backend.get(), backend.kernels_for(x), 'triton' in sys.modules, 'torch._dynamo' in sys.modules)
        with backend.use("triton"):  # kernels decorated without TRITON_INTERPRET: not for CPU tensors
            print(backend.kernels_for(x), backend.kernels().INTERPRETED)
        """,
        TRITON_INTERPRET="0",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["auto False False False", "False False"]


def test_use_nests_restores_and_decorates():
    start = backend.get()
    with backend.use("torch"):
        assert backend.get() == "torch"
        with backend.use("triton"):
            assert backend.get() == "triton"
        assert backend.get() == "torch"
        with pytest.raises(RuntimeError):
            with backend.use("auto"):
                raise RuntimeError
        assert backend.get() == "torch"
    assert backend.get() == start

    @backend.use("torch")
    def inner():
        return backend.get()

    assert inner() == "torch" and backend.get() == start
    with pytest.raises(ValueError, match=r"use\(\): argument 'backend' must be one of 'auto', 'torch', 'triton', got 'gpu'"):
        backend.use("gpu").__enter__()
    assert backend.get() == start


def _kernels_interpreted():
    try:
        return backend.kernels().INTERPRETED
    except RuntimeError:
        return False


needs_interpreter = pytest.mark.skipif(not _kernels_interpreted(), reason="needs triton kernels under TRITON_INTERPRET=1")


def test_torch_and_auto_take_the_reference_on_cpu():
    x = torch.zeros(3)
    with backend.use("torch"):
        assert not backend.kernels_for(x)
    with backend.use("auto"):
        assert not backend.kernels_for(x)


@needs_interpreter
def test_triton_on_cpu_dtypes():
    with backend.use("triton"):
        assert backend.kernels_for(torch.zeros(3))
        assert backend.kernels_for(torch.zeros(3, dtype=torch.float64), None, torch.zeros(3, dtype=torch.uint8))
        assert backend.kernels_for(torch.zeros(3), torch.zeros(3, dtype=torch.long))  # a target passes
        for dtype in (torch.float16, torch.bfloat16, torch.complex64):
            assert not backend.kernels_for(torch.zeros(3, dtype=dtype))
        assert not backend.kernels_for(torch.zeros(3), torch.zeros(3, dtype=torch.bfloat16))  # every tensor counts
    with backend.use("torch"):
        assert not backend.kernels_for(torch.zeros(3))


@needs_interpreter
def test_backward_under_a_recorded_graph_takes_the_reference():
    seen = []

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            seen.append(backend.kernels_for(x, g, grad=True))
            return 2 * x * g

    with backend.use("triton"):
        x = torch.randn(4, dtype=torch.float64, requires_grad=True)
        torch.autograd.grad(Square.apply(x).sum(), x)  # plain backward: kernels
        (gx,) = torch.autograd.grad(Square.apply(x).sum(), x, create_graph=True)  # double backward: reference
        gx.sum().backward()
        assert seen == [True, False]
        assert backend.kernels_for(x, grad=True) is False  # grad mode on, outside any backward
        with torch.no_grad():
            assert backend.kernels_for(x, grad=True)


@needs_interpreter
def test_func_transforms_and_compile_take_the_reference():
    with backend.use("triton"):
        seen = []

        def f(x):
            seen.append(backend.kernels_for(x))
            return x.sin().sum()

        torch.func.grad(f)(torch.randn(3))
        torch.func.vmap(f)(torch.randn(2, 3))
        assert seen == [False, False]

        @torch.compile(fullgraph=True, backend="eager")
        def g(x):
            return x + 1 if backend.kernels_for(x) else x - 1  # CPU under compile: interpreted kernels can't trace

        assert torch.equal(g(torch.zeros(2)), -torch.ones(2))


@needs_interpreter
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on -inf
def test_compiled_ops_are_registered_and_run_eagerly():
    k = backend.kernels()
    if not k.HAS_TRITON_OP:
        pytest.skip("torch.library.triton_op needs torch >= 2.6")
    ops = torch.ops.manual_autograd
    x = torch.randn(40, 9, dtype=torch.float64)
    torch.testing.assert_close(ops.relu_forward(x), torch.relu(x))
    out, mask = ops.leaky_relu_forward_masked(x, -0.5)
    torch.testing.assert_close(ops.leaky_relu_backward(mask, torch.ones_like(x), -0.5), torch.where(x > 0, 1.0, -0.5).double())
    torch.testing.assert_close(ops.gelu_forward(x, "tanh"), torch.nn.functional.gelu(x, approximate="tanh"))
    torch.testing.assert_close(ops.silu_backward(x, torch.ones_like(x)), torch.ops.aten.silu_backward(torch.ones_like(x), x))
    t = torch.randint(0, 9, (40,))
    loss, logp, den = ops.cross_entropy_forward(x, t, None, -100, "mean", 0.1)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(x, t, label_smoothing=0.1))
    assert ops.cross_entropy_backward(torch.ones((), dtype=x.dtype), logp, t, None, -100, "mean", 0.1, den).shape == x.shape
    a, gz = ops.activation_linear_backward(x, x.clone(), "relu", 0.0, "none", True)
    torch.testing.assert_close(a, torch.relu(x))
    lse = torch.full((40,), float("-inf"), dtype=x.dtype)
    lse2, z_t, _ = ops.lce_block_update(x, t, 0, lse, torch.zeros_like(lse), None, None)
    torch.testing.assert_close(lse2, x.logsumexp(1))
    assert torch.isinf(lse).all()  # functional: the input state is untouched
    torch.testing.assert_close(ops.lce_softmax_scale(x, lse2, torch.ones_like(lse2)), x.softmax(1))
