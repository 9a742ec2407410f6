"""Saved-for-backward bytes of the benchmark cases: deterministic, so the targets are asserted here.

Timings are not: they live in ``python -m benchmarks`` only.
"""

import pytest
import torch
from helpers import run_python

from benchmarks.cases import model_cases, op_cases
from benchmarks.common import IMPLS, saved_bytes

DEVICE = torch.device("cpu")
MODELS = {c.name: c for c in model_cases(DEVICE)}
OPS = {c.name: c for c in op_cases(DEVICE, batch=8, width=16)}


def _saved(case):
    out = {}
    for impl in IMPLS:
        run = case.build(impl)
        out[impl] = saved_bytes(run.record, run.params, run.inputs)
    return out["native"], out["manual"]


@pytest.mark.parametrize("name", [n for n, c in MODELS.items() if "saved_target" in c.meta])
def test_model_saved_ratio_meets_target(name):
    case = MODELS[name]
    native, manual = _saved(case)
    assert native["act"] > 0
    assert manual["act"] / native["act"] <= case.meta["saved_target"], (native, manual)
    # the model input is kept by the first Linear in both, and reported apart
    assert manual["input"] == native["input"] > 0


def test_relu_mlp_keeps_no_byte_more_than_native():
    # ReLU saves its output, which the next Linear keeps anyway: not one byte more than torch.nn,
    # and the loss 4 bytes fewer (torch keeps nll_loss's 0-dim total weight; an unweighted mean
    # needs no 0-dim tensor in the library's backward)
    native, manual = _saved(MODELS["MLP 784-1024-1024-10 relu, b256"])
    assert native["act"] - manual["act"] == 4


def test_leaky_relu_mlp_keeps_about_half():
    # torch keeps LeakyReLU's input and the next Linear's input (its output); the manual layer
    # saves its output only, shared with that Linear (and the loss 4 bytes fewer, as above)
    native, manual = _saved(MODELS["MLP 784-1024-1024-10 leaky_relu, b256"])
    hidden = 2 * 256 * 1024 * 4  # two hidden layers of float32 activations
    assert native["act"] - manual["act"] == hidden + 4


@pytest.mark.parametrize("name", list(OPS))
def test_op_alone_saves_no_more_than_native(name):
    native, manual = _saved(OPS[name])
    assert manual["act"] + manual["input"] <= native["act"] + native["input"]


# --------------------------------------------------------------------------------------------
# the counter itself


class _KeepsAttr(torch.autograd.Function):
    """Keeps a tensor outside save_for_backward: the counter must still see it."""

    @staticmethod
    def forward(ctx, x):
        ctx.stash = x * 2
        return x.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


class _SavesTwice(torch.autograd.Function):
    """Saves two views of one storage: counted once, at the storage's size."""

    @staticmethod
    def forward(ctx, x):
        y = x * 2
        ctx.save_for_backward(y[:2], y[2:])
        return x.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


def test_saved_bytes_counts_ctx_attributes():
    x = torch.randn(4, 3, requires_grad=True)
    got = saved_bytes(lambda: _KeepsAttr.apply(x))
    assert got["act"] == 4 * 3 * 4


def test_saved_bytes_dedups_by_storage():
    x = torch.randn(4, 3, requires_grad=True)
    got = saved_bytes(lambda: _SavesTwice.apply(x))
    assert got["act"] == 4 * 3 * 4


def test_saved_bytes_excludes_params_and_reports_input_apart():
    lin = torch.nn.Linear(3, 5)
    x = torch.randn(4, 3)
    got = saved_bytes(lambda: torch.relu(lin(x)).sum(), exclude=list(lin.parameters()), model_input=x)
    # Linear keeps x (the input, apart) and the weight (excluded); ReLU keeps its output
    assert got == {"act": 4 * 5 * 4, "input": 4 * 3 * 4, "tensors": got["tensors"]}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_of_the_first_step_leaves_out_one_time_allocations():
    # a fresh process: cuBLAS's workspace is allocated on the process's first matmul
    code = (
        "import torch\n"
        "from benchmarks.common import peak_step_bytes\n"
        "d = torch.device('cuda')\n"
        "x = torch.randn(256, 784, device=d)\n"
        "lin = torch.nn.Linear(784, 1024, device=d)\n"
        "x.requires_grad_()\n"
        "leaves = [x, *lin.parameters()]\n"
        "step = lambda: lin(x).sum().backward()  # leaves its gradients behind\n"
        "print(peak_step_bytes(step, d, leaves), peak_step_bytes(step, d, leaves))\n"
    )
    out = run_python(code)
    first, second = map(int, out.split())
    # the same step measures the same, and without cuBLAS's workspace (32 MiB on Hopper)
    assert first == second < 16 * 2**20
