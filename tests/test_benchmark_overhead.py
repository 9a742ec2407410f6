"""``benchmarks/overhead.py``: its floor network is a correct 784-128-10 MLP, and the report runs.

The floor's minimal Functions are a measuring device (what any Python ``autograd.Function`` pays),
so they must compute the same loss and gradients as ``torch.nn``, or the comparison means nothing.
"""

import pytest
import torch
from torch import nn

import manual_autograd as ma

from benchmarks.cases import mlp
from benchmarks.overhead import RELU_PROBES, FloorCrossEntropyLoss, floor_mlp, main, to_markdown


@pytest.mark.parametrize("ignored", [False, True], ids=["all-rows", "a-row-ignored"])
def test_floor_mlp_equals_torch_nn(ignored):
    torch.manual_seed(0)
    native = mlp((784, 128, 10), "relu", "native").double()
    floor = floor_mlp().double()
    floor.load_state_dict(native.state_dict())
    x = torch.randn(16, 784, dtype=torch.float64)
    t = torch.randint(0, 10, (16,))
    if ignored:  # the masked path; without, the unmasked one
        t[3] = -100
    losses = []
    for model, loss_fn in ((native, nn.CrossEntropyLoss()), (floor, FloorCrossEntropyLoss())):
        loss = loss_fn(model(x), t)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for a, b in zip(native.parameters(), floor.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_relu_probes_differ_only_in_backward():
    """The probes share the forward; all but the no-op one (a timing device) give torch's gradients."""
    torch.manual_seed(0)
    native = mlp((784, 128, 10), "relu", "native").double()
    x, t = torch.randn(8, 784, dtype=torch.float64), torch.randint(0, 10, (8,))
    nn.CrossEntropyLoss()(native(x), t).backward()
    for name, relu in RELU_PROBES.items():
        model = ma.nn.build_mlp((784, 128, 10), relu, nn.Linear).double()
        model.load_state_dict(native.state_dict())
        loss = nn.CrossEntropyLoss()(model(x), t)
        loss.backward()
        same = [torch.allclose(a.grad, b.grad) for a, b in zip(native.parameters(), model.parameters())]
        assert all(same) != name.startswith("`return grad_out`"), name


def test_report_runs_and_tabulates(tmp_path):
    threads = torch.get_num_threads()
    try:
        report = main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # main() sets the process's thread count
    assert {r["impl"] for r in report["step"]} >= {"manual_autograd", "floor (minimal Functions)"}
    assert all(r["native_s"] > 0 and r["manual_s"] > 0 for r in report["step"] + report["apply"])
    text = (tmp_path / "overhead_cpu.md").read_text()
    assert text == to_markdown(report) and "floor (minimal Functions)" in text
    assert [r["relu_backward"] for r in report["relu_probe"]] == list(RELU_PROBES)
    assert len(report["loss"]) == 3 and all(r["native_s"] > 0 and r["manual_s"] > 0 for r in report["loss"])
    assert "cross-entropy alone" in text
