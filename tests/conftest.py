"""pytest configuration shared by the whole suite."""

import os

import pytest
import torch

# Triton picks its interpreter when @triton.jit decorates a kernel, i.e. when manual_autograd.kernels
# is first imported: so it is chosen here, before any test module imports them. Without a GPU the
# kernels run interpreted on CPU tensors; with one they compile. Nothing else in the suite runs Triton.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def pytest_collection_modifyitems(config, items):
    # CUDA tests skip cleanly on machines without a GPU.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    # How many gradcheck / gradgradcheck calls ran (counted by tests/helpers.check_grads).
    try:
        from helpers import COUNTS
    except ImportError:
        return
    if COUNTS["gradcheck"] or COUNTS["gradgradcheck"]:
        terminalreporter.write_line(
            f"manual_autograd: {COUNTS['gradcheck']} gradcheck and {COUNTS['gradgradcheck']} gradgradcheck calls passed"
        )


@pytest.fixture(autouse=True)
def _seed():
    # Every test starts from the same RNG state, so failures reproduce.
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _single_thread(request):
    # Modules that set SINGLE_THREAD = True work on tiny tensors, where intra-op threads only add
    # overhead (measured 5-10x slower per op on a busy 2-core machine); restored afterwards.
    if not getattr(request.module, "SINGLE_THREAD", False):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
