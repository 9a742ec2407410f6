"""pytest configuration shared by the whole suite."""

import pytest
import torch


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
