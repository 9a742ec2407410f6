"""The ledger: every tensor saved for backward, attributed to its module, shared storage counted once."""

import math

import pytest
import torch
from torch import nn

import manual_autograd as ma
from manual_autograd.ledger import Ledger, SavedRecord, ctx_tensors, record_saved


def mlp(impl, sizes=(784, 128, 10), act=None):
    lin = ma.nn.Linear if impl == "manual" else nn.Linear
    act = act or (ma.nn.ReLU if impl == "manual" else nn.ReLU)
    return nn.Sequential(lin(sizes[0], sizes[1]), act(), lin(sizes[1], sizes[2]))


def rows(led):
    return [(r.module, r.role, r.shape, r.dtype) for r in led.records]


@pytest.mark.parametrize("impl", ["manual", "torch"])
def test_mlp_records_and_sharing(impl):
    model = mlp(impl)
    x = torch.randn(64, 784)
    with ma.ledger(model) as led:
        h = model(x)
    # Linear 0: only the input (x needs no grad, so W is not needed); ReLU: its output;
    # Linear 2: its input (the same storage as the ReLU's output) and its weight.
    assert [(r.module, r.role) for r in led.records] == [("0", "input"), ("1", "output"), ("2", "input"), ("2", "weight")]
    r0, r1, r2, w2 = led.records
    assert r0.shape == (64, 784) and r0.bytes == 64 * 784 * 4
    assert r1.storage == r2.storage and r1.shares_with == ["2"] and r2.shares_with == ["1"]
    assert w2.parameter == "2.weight"
    assert led.unique_bytes == (64 * 784 + 64 * 128 + 10 * 128) * 4
    assert led.activation_bytes == (64 * 784 + 64 * 128) * 4
    assert led.total_bytes == led.unique_bytes + 64 * 128 * 4  # the shared one counted twice
    h.sum().backward()  # the graph is intact


def test_manual_and_native_mlp_keep_the_same_activations():
    leds = {}
    for impl in ("manual", "torch"):
        model = mlp(impl)
        with ma.ledger(model) as led:
            model(torch.randn(32, 784))
        leds[impl] = led
    assert leds["manual"].activation_bytes == leds["torch"].activation_bytes
    assert [r.shape for r in leds["manual"].records][:3] == [r.shape for r in leds["torch"].records][:3]


def test_loss_outside_the_model_and_plain_ops():
    model, loss_fn = mlp("manual", (8, 6, 3)), ma.nn.CrossEntropyLoss()
    x, y = torch.randn(5, 8), torch.randint(0, 3, (5,))
    with ma.ledger(model, loss_fn) as led:
        loss = loss_fn(model(x), y)
        extra = (loss * loss).sum()  # outside every module
    by = led.by_module()
    # log softmax, target; not the mean, which only a class weight's gradient reads
    assert [r.role for r in by["CrossEntropyLoss"]] == ["intermediate", "input1"]
    assert by["CrossEntropyLoss"][1].dtype == "int64"
    assert None in by and all(r.module is None for r in by[None])
    # a module not among the roots is named by class
    other = nn.Tanh()
    with ma.ledger(model) as led2:
        other(model(x))
    assert led2.records[-1].module == "Tanh" and led2.records[-1].role == "output"
    extra.backward()


def test_leaky_relu_mask_is_a_saved_tensor():
    # with a negative slope the library saves a bit-packed mask (a forward output of the Function)
    model = mlp("manual", (16, 13, 4), act=lambda: ma.nn.LeakyReLU(-0.1))
    x = torch.randn(7, 16)
    with ma.ledger(model) as led:
        model(x).sum().backward()
    masks = [r for r in led.records if r.module == "1"]
    assert len(masks) == 1
    assert masks[0].dtype == "uint8" and masks[0].shape == (math.ceil(7 * 13 / 8),)
    assert masks[0].bytes == math.ceil(7 * 13 / 8)
    # the following Linear keeps its own input: nothing shared
    assert masks[0].shares_with == []


def test_parameters_saved_when_input_needs_grad():
    model = mlp("torch", (6, 5, 3))
    x = torch.randn(4, 6, requires_grad=True)
    with ma.ledger(model) as led:
        model(x)
    params = sorted(r.parameter for r in led.records if r.parameter)
    assert params == ["0.weight", "2.weight"]  # native addmm keeps W.t(), a view of the parameter
    assert led.unique_bytes - led.activation_bytes == (5 * 6 + 3 * 5) * 4


def test_no_grad_records_nothing_and_hooks_are_removed():
    model = mlp("manual", (6, 5, 3))
    with ma.ledger(model) as led:
        with torch.no_grad():
            model(torch.randn(4, 6))
    assert len(led) == 0
    model(torch.randn(4, 6))  # after exit: not recorded
    assert len(led) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with ma.ledger(model) as led:
            model[1].register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
            model(torch.randn(4, 6))
    n = len(led)
    model[1]._forward_hooks.clear()
    model(torch.randn(4, 6))
    assert len(led) == n


def test_gradients_unchanged():
    torch.manual_seed(0)
    model = mlp("manual", (6, 5, 3))
    x = torch.randn(4, 6, requires_grad=True)
    model(x).square().sum().backward()
    ref = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    x.grad = None
    model.zero_grad()
    with ma.ledger(model):
        out = model(x)
    out.square().sum().backward()
    got = [x.grad] + [p.grad for p in model.parameters()]
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_graph_is_freed_and_double_backward_works():
    import weakref

    model = nn.Sequential(ma.nn.Linear(6, 5), ma.nn.ReLU(), nn.Linear(5, 4), nn.Tanh())
    x = torch.randn(3, 6, requires_grad=True)
    with ma.ledger(model):
        out = model(x)  # ReLU and Tanh save their outputs
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    g.square().sum().backward()  # the saved outputs unpack with their grad_fn
    ref = weakref.ref(out)
    del out, g
    assert ref() is None  # freed by reference counting: no cycle through the saved outputs


def test_parameter_found_without_a_root():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    with ma.ledger() as led:
        lin(x)
    assert {r.role: r.parameter for r in led.records} == {"input": None, "weight": "Linear.weight"}


def test_table_and_data():
    model = mlp("manual", (8, 6, 3))
    with ma.ledger(model) as led:
        model(torch.randn(5, 8))
    text = str(led)
    head, rule, *body, total = text.splitlines()
    assert head.split()[:5] == ["module", "saved", "shape", "dtype", "bytes"]
    assert len(body) == len(led.records) == 4
    assert "(5, 6)" in body[1] and "float32" in body[1]
    assert total.startswith("4 saved tensors")
    d = led.to_dict()
    assert d["unique_bytes"] == led.unique_bytes and len(d["records"]) == 4
    assert d["records"][0] == {
        "module": "0", "role": "input", "shape": (5, 8), "dtype": "float32", "bytes": 160,
        "storage": 0, "parameter": None, "shares_with": [],
    }
    assert isinstance(led.records[0], SavedRecord) and isinstance(led, Ledger)


def test_bad_root():
    with pytest.raises(TypeError, match="argument 0 must be an nn.Module, not Tensor"):
        ma.ledger(torch.zeros(1))


# --------------------------------------------------------------------------------------------
# record_saved: the counter under the ledger, used by benchmarks and tests


class _Stash(torch.autograd.Function):
    """Keeps a tensor in a dict on ``ctx``, outside save_for_backward: only a graph walk finds it."""

    @staticmethod
    def forward(ctx, x):
        ctx.stash = {"kept": x * 3}
        return x.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


def test_record_saved_counts_each_storage_once_at_full_size():
    y = torch.randn(4, 3, requires_grad=True) * 2
    with record_saved() as saved:
        out = _Stash.apply(y[:2] * y[2:])  # mul saves both operands: two views of y's storage
    assert [s.shape for s in saved] == [(2, 3), (2, 3)] and saved[0].storage == saved[1].storage
    assert [s.nbytes for s in saved] == [24, 24] and saved[0].storage_nbytes == 48
    assert saved.unique_bytes() == 48
    assert {s.data_ptr for s in saved} == {y[:2].data_ptr(), y[2:].data_ptr()}
    torch.testing.assert_close(saved[0].tensor + saved[1].tensor, y.detach()[2:] + y.detach()[:2])
    assert [name for _, name, _ in ctx_tensors(out)] == ["stash"]
    saved.add_ctx_tensors(out)
    assert len(saved) == 3 and saved.unique_bytes() == 48 + 24


def test_record_saved_exclude_and_only():
    lin = nn.Linear(3, 5)
    x = torch.randn(4, 3, requires_grad=True)
    with record_saved(keep_tensors=False) as saved:
        torch.relu(lin(x))
    params = list(lin.parameters())
    assert all(s.tensor is None for s in saved)
    # Linear keeps x and the weight (x needs a gradient), ReLU its output
    assert saved.unique_bytes() == (4 * 3 + 5 * 3 + 4 * 5) * 4
    assert saved.unique_bytes(exclude=params) == (4 * 3 + 4 * 5) * 4
    assert saved.unique_bytes(exclude=params, only=[x]) == 4 * 3 * 4
    assert saved.unique_bytes(exclude=[*params, x]) == 4 * 5 * 4


def test_a_freed_storage_whose_address_returns_counts_anew():
    x = torch.randn(256, 256, requires_grad=True)
    with record_saved(keep_tensors=False) as saved:
        for _ in range(3):  # each graph is freed before the next: its address may be reused
            torch.sigmoid(x * 1.0).sum().backward()
    assert len(saved) == 3 and len(saved.storage_bytes) == 3
    assert saved.unique_bytes() == 3 * 256 * 256 * 4


def test_ledger_totals_are_the_counters():
    model = mlp("manual", (8, 6, 3))
    x = torch.randn(5, 8)
    with ma.ledger(model) as led:
        a = model(x)
    with record_saved() as saved:
        b = model(x)
    assert led.unique_bytes == saved.unique_bytes() and len(led) == len(saved)
    assert led.activation_bytes == saved.unique_bytes(exclude=list(model.parameters()))
    (a + b).sum().backward()
