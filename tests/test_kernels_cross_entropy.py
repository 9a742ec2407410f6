"""Cross-entropy kernels against F.cross_entropy and its autograd gradient (class-index targets)."""

import pytest
import torch
import torch.nn.functional as F

from kernel_cases import CPU_DTYPES, DEVICES, K, close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


def _torch(x, t, w, ii, red, eps):
    x = x.detach().requires_grad_()
    loss = F.cross_entropy(x, t.long(), w, ignore_index=ii, reduction=red, label_smoothing=eps)
    g = torch.randn_like(loss) if red == "none" else torch.tensor(1.7, dtype=x.dtype, device=x.device)
    (grad,) = torch.autograd.grad(loss, x, g)
    return loss.detach(), g, grad


def _check(x, t, w=None, ii=-100, red="mean", eps=0.0, **tol):
    loss, g, grad = _torch(x, t, w, ii, red, eps)
    ours, logp, den = K.cross_entropy.forward(x, t, w, ii, red, eps)
    close(ours, loss, **tol)
    close(logp, torch.log_softmax(x, 1), **tol)
    assert (den is not None) == (red == "mean")
    close(K.cross_entropy.backward(g, logp, t, w, ii, red, eps, den), grad, **tol)
    if den is not None:  # without the forward's denominator, recomputed on the device
        close(K.cross_entropy.backward(g, logp, t, w, ii, red, eps), grad, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("red", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_equal_torch(device, dtype, red, eps, weighted):
    x = torch.randn(37, 11, dtype=dtype, device=device) * 3
    t = torch.randint(0, 11, (37,), device=device)
    t[::5] = -100  # some ignored rows
    w = torch.rand(11, dtype=dtype, device=device) + 0.1 if weighted else None
    _check(x, t, w, red=red, eps=eps)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("C", [1, 5000])  # one class; more classes than one block holds (two reads)
def test_class_counts(device, C):
    x = torch.randn(6, C, dtype=torch.float64, device=device)
    t = torch.randint(0, C, (6,), device=device)
    w = torch.rand(C, dtype=torch.float64, device=device)
    _check(x, t, w, eps=0.2)
    _check(x, t, red="none")


@pytest.mark.parametrize("device", DEVICES)
def test_uint8_target_never_wraps_ignore_index(device):
    x = torch.randn(8, 300, dtype=torch.float64, device=device)
    t = torch.randint(0, 300, (8,), device=device).to(torch.uint8)  # 156 = -100 mod 256 must count
    t[0] = 156
    _check(x, t, ii=-100)
    _check(x, t, ii=156, red="sum")


@pytest.mark.parametrize("device", DEVICES)
def test_strided_logits_and_expanded_grad(device):
    x = torch.randn(9, 14, dtype=torch.float64, device=device)[:, ::2]  # non-contiguous rows
    t = torch.randint(0, 7, (9,), device=device)
    _check(x, t, red="mean", eps=0.1)
    loss, logp, _ = K.cross_entropy.forward(x, t, reduction="none")
    g = torch.ones((), dtype=x.dtype, device=device).expand(9)  # loss.sum().backward()
    xr = x.detach().requires_grad_()
    F.cross_entropy(xr, t, reduction="none").sum().backward()
    close(K.cross_entropy.backward(g, logp, t, reduction="none"), xr.grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("red", ["none", "mean", "sum"])
def test_empty_and_all_ignored(device, red):
    x = torch.randn(0, 4, dtype=torch.float64, device=device)
    t = torch.zeros(0, dtype=torch.long, device=device)
    loss, _, _ = K.cross_entropy.forward(x, t, reduction=red)
    close(loss, F.cross_entropy(x, t, reduction=red))  # mean over nothing: NaN, as torch
    x = torch.randn(4, 3, dtype=torch.float64, device=device)
    t = torch.full((4,), -100, device=device)
    _check(x, t, red=red)  # NaN loss for the mean, zero gradient, as torch
    w = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64, device=device)
    _check(x, torch.zeros(4, dtype=torch.long, device=device), w, red=red)  # kept rows of weight 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("C", [3, 5000])
def test_large_nan_and_inf_logits(device, C):
    x = torch.randn(6, C, dtype=torch.float32, device=device)
    x[0, 0] = 1e4
    x[1] = -1e4
    x[1, 1] = 1e4
    x[2, 1] = float("nan")
    x[3, 0] = float("inf")
    x[4, 0] = -float("inf")
    x[5] = -float("inf")
    t = torch.tensor([0, 1, 2, 1, 2, 0], device=device) % C
    _check(x, t, red="none")
    _check(x, t, red="mean", eps=0.1)


@pytest.mark.parametrize("device", DEVICES)
def test_very_negative_rows_after_an_all_minus_inf_block(device):
    # rows wider than a block: the running max must stay -inf through the first, all -inf block, or
    # the next block's exp(x - 0) underflows (float32 exp(-110) is 0) and the loss becomes inf
    x = torch.full((3, 5000), -110.0, dtype=torch.float32, device=device)
    x[:, :4096] = -float("inf")
    x[2] = torch.linspace(-300.0, -110.0, 5000)
    t = torch.tensor([4100, 4999, 4500], device=device)
    _check(x, t, red="none")
    _check(x, t, red="mean", eps=0.1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("red", ["none", "mean", "sum"])
def test_gradcheck_through_the_kernels(device, red):
    t = torch.tensor([0, 3, -100, 2, 1, 3], device=device)
    w = torch.rand(4, dtype=torch.float64, device=device) + 0.5

    def fwd(x):
        loss, logp, den = K.cross_entropy.forward(x, t, w, -100, red, 0.1)
        return loss, (logp, den)

    def bwd(saved, g):
        return K.cross_entropy.backward(g, saved[0], t, w, -100, red, 0.1, saved[1])

    class CE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            loss, ctx.saved = fwd(x)
            return loss

        @staticmethod
        def backward(ctx, g):
            return bwd(ctx.saved, g)

    assert torch.autograd.gradcheck(CE.apply, torch.randn(6, 4, dtype=torch.float64, device=device, requires_grad=True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weighted", [False, True])
def test_a_class_out_of_range_gives_a_nan_row(device, weighted):
    # torch's CUDA kernels assert on the device; the kernels never read out of bounds and say NaN
    x = torch.randn(5, 7, device=device)
    t = torch.tensor([0, 7, -3, -100, 1000], device=device)
    w = torch.rand(7, device=device) if weighted else None
    loss, logp, _ = K.cross_entropy.forward(x, t, w, -100, "none", 0.1)
    assert loss[[1, 2, 4]].isnan().all() and loss[3] == 0 and loss[0].isfinite()
    grad = K.cross_entropy.backward(torch.ones(5, device=device), logp, t, w, -100, "none", 0.1)
    assert grad[[1, 2, 4]].isnan().all() and (grad[3] == 0).all() and grad[0].isfinite().all()
    assert K.cross_entropy.forward(x, t, w, -100, "mean", 0.0)[0].isnan()


@pytest.mark.parametrize("device", DEVICES)
def test_no_classes(device):
    x = torch.empty(3, 0, device=device)
    kept, ignored = torch.zeros(3, dtype=torch.long, device=device), torch.full((3,), -100, device=device)
    assert K.cross_entropy.forward(x, kept, None, -100, "none", 0.0)[0].isnan().all()
    close(K.cross_entropy.forward(x, ignored, None, -100, "none", 0.0)[0], torch.zeros(3, device=device))
    assert K.cross_entropy.forward(x, ignored, None, -100, "mean", 0.0)[0].isnan()  # as torch: 0 / 0
    assert K.cross_entropy.forward(x, ignored, None, -100, "sum", 0.0)[0] == 0


def test_the_op_on_the_kernels_refuses_a_class_out_of_range_on_cpu():
    import manual_autograd.functional as MF
    from manual_autograd import backend

    with backend.use("triton"), pytest.raises(IndexError, match=r"class indices in \[0, 4\)"):
        MF.cross_entropy(torch.randn(3, 4), torch.tensor([0, 4, 1]))
