"""Drop-in at the edges (issue 32): an empty batch, class-probability dtype promotion, a tensor
leaky_relu slope; each through the functional and the module API, against torch."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close

import manual_autograd.functional as F
from manual_autograd import nn as mnn

D = torch.float64


# ------------------------------------------------------------------------------------------------
# an empty batch: every op and fused op on zero rows, forward and backward, as torch


def _empty_cases():
    W, b, cw = torch.randn(6, 5, dtype=D), torch.randn(6, dtype=D), torch.rand(6, dtype=D) + 0.5
    Wc, bc, cwc = torch.randn(40, 5, dtype=D), torch.randn(40, dtype=D), torch.rand(40, dtype=D) + 0.5
    t, tc = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    cases = {
        "linear": (lambda x: F.linear(x, W, b), lambda x: TF.linear(x, W, b), (0, 5)),
        "relu": (F.relu, TF.relu, (0, 5)),
        "leaky_relu": (lambda x: F.leaky_relu(x, -0.1), lambda x: TF.leaky_relu(x, -0.1), (0, 5)),
        "gelu": (F.gelu, TF.gelu, (0, 5)),
        "silu": (F.silu, TF.silu, (0, 5)),
        "activation_linear": (
            lambda x: F.activation_linear(x, W, b, "gelu"), lambda x: TF.linear(TF.gelu(x), W, b), (0, 5)
        ),
    }
    for red in ("mean", "sum", "none"):
        for kw in ({}, {"weight": "cw"}, {"label_smoothing": 0.2}, {"weight": "cw", "label_smoothing": 0.2}):
            name = f"{red}-{'-'.join(kw) or 'plain'}"

            def ce_kw(kw=kw, w=cw, red=red):
                return {**kw, "reduction": red, **({"weight": w} if "weight" in kw else {})}

            cases[f"cross_entropy-{name}"] = (
                lambda x, k=ce_kw(): F.cross_entropy(x, t, **k), lambda x, k=ce_kw(): TF.cross_entropy(x, t, **k), (0, 6)
            )
            for chunk in (None, 16):  # 40 classes > 5 features: the chunked path, whole or in blocks
                cases[f"linear_cross_entropy-{name}-chunk{chunk}"] = (
                    lambda x, k=ce_kw(w=cwc), c=chunk: F.linear_cross_entropy(x, Wc, tc, linear_bias=bc, chunk_size=c, **k),
                    lambda x, k=ce_kw(w=cwc): TF.cross_entropy(TF.linear(x, Wc, bc), tc, **k),
                    (0, 5),
                )
    return cases


@pytest.mark.parametrize("name", list(_empty_cases()))
def test_empty_batch_matches_torch(name):
    ours, theirs, shape = _empty_cases()[name]
    xo, xt = torch.zeros(shape, dtype=D, requires_grad=True), torch.zeros(shape, dtype=D, requires_grad=True)
    out, ref = ours(xo), theirs(xt)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert_close(out, ref)
    out.sum().backward()
    ref.sum().backward()
    assert xo.grad.shape == xt.grad.shape


def test_empty_batch_on_the_kernel_path():
    from manual_autograd import backend

    with backend.use("triton"):
        if not backend.kernels_for(torch.zeros(1, dtype=D)):
            pytest.skip("no Triton kernels here")
        for name in _empty_cases():
            test_empty_batch_matches_torch(name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [None, 300])
def test_empty_batch_linear_cross_entropy_module_and_parameter_grads(reduction, chunk_size):
    # the example of the issue: x (0, 64), W (1000, 64); the weight's and bias's gradients are 0
    torch.manual_seed(0)
    ours = mnn.LinearCrossEntropyLoss(64, 1000, bias=True, reduction=reduction, label_smoothing=0.1, chunk_size=chunk_size)
    theirs = torch.nn.Linear(64, 1000)
    theirs.load_state_dict(ours.linear.state_dict())
    x, t = torch.zeros(0, 64), torch.zeros(0, dtype=torch.long)
    out = ours(x, t)
    ref = TF.cross_entropy(theirs(x), t, reduction=reduction, label_smoothing=0.1)
    assert out.shape == ref.shape
    assert_close(out, ref)
    (out.sum() if reduction == "none" else out).backward()
    (ref.sum() if reduction == "none" else ref).backward()
    assert_close(ours.linear.weight.grad, theirs.weight.grad)
    assert_close(ours.linear.bias.grad, theirs.bias.grad)


def test_empty_batch_modules():
    x = torch.zeros(0, 5, requires_grad=True)
    for m in [mnn.MLP(5, [4, 3]), mnn.ActivationLinear(5, 3, activation="silu"), mnn.Linear(5, 3)]:
        out = m(x)
        assert out.shape == (0, 3)
        out.sum().backward()
        assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in m.parameters())
    loss = mnn.CrossEntropyLoss()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert loss.isnan()


# ------------------------------------------------------------------------------------------------
# class-probability targets: the loss in the dtype torch promotes to, gradients in each input's


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _probability_runs(x_dtype, t_dtype, w_dtype):
    torch.manual_seed(0)
    x0, t0, w0 = torch.randn(4, 5), torch.softmax(torch.randn(4, 5), 1), torch.rand(5) + 0.5
    runs = []
    for f in (F, TF):
        x, t = x0.to(x_dtype).requires_grad_(), t0.to(t_dtype).requires_grad_()
        w = None if w_dtype is None else w0.to(w_dtype)
        out = f.cross_entropy(x, t, w, label_smoothing=0.1)
        out.backward()
        runs.append((out, x.grad, t.grad))
    return runs


@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("t_dtype", DTYPES)
def test_probability_target_dtype_promotion_matches_torch(x_dtype, t_dtype):
    for w_dtype in (None, torch.float32, torch.float64):
        (out, gx, gt), (ref, rx, rt) = _probability_runs(x_dtype, t_dtype, w_dtype)
        assert (out.dtype, gx.dtype, gt.dtype) == (ref.dtype, rx.dtype, rt.dtype), w_dtype
        # torch's log_softmax runs in the logits' dtype, its smoothing of the target in the target's
        tol = 1e-6 if max(torch.finfo(x_dtype).eps, torch.finfo(t_dtype).eps) < 1e-6 else 2e-2
        assert_close(out.double(), ref.double(), rtol=tol, atol=tol)


def test_probability_dtype_promotion_through_module_and_linear_cross_entropy():
    x, t = torch.randn(4, 5, dtype=torch.bfloat16), torch.softmax(torch.randn(4, 3), 1)
    assert mnn.CrossEntropyLoss()(x[:, :3], t).dtype == torch.float32
    w = torch.randn(3, 5, dtype=torch.bfloat16, requires_grad=True)
    out = F.linear_cross_entropy(x, w, t)
    ref = TF.cross_entropy(TF.linear(x, w), t)
    assert out.dtype == ref.dtype == torch.float32
    out.backward()
    assert w.grad.dtype == torch.bfloat16
    loss = mnn.LinearCrossEntropyLoss(5, 3, dtype=torch.float32)
    assert loss(x.float(), t.double()).dtype == torch.float64


# ------------------------------------------------------------------------------------------------
# leaky_relu's negative_slope: what torch's Number takes, refused as torch refuses


SLOPES_OK = [0.1, -0.2, 1, True, torch.tensor(0.1), torch.tensor(0.3, dtype=D), torch.tensor(2), torch.tensor(True)]
SLOPES_BAD = [torch.tensor([0.1]), torch.tensor([0.1, 0.2]), torch.tensor(0.1, requires_grad=True), "a", None, 0.2j]


def _error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type torch raises is the answer
        return type(e)
    return None


@pytest.mark.parametrize("slope", SLOPES_OK, ids=repr)
def test_leaky_relu_slopes_torch_accepts(slope):
    x = torch.randn(3, 4, dtype=D)
    ref = TF.leaky_relu(x, slope)
    assert_close(F.leaky_relu(x, slope), ref)
    assert_close(F.leaky_relu_(x.clone(), slope), ref)
    assert_close(mnn.LeakyReLU(slope)(x), torch.nn.LeakyReLU(slope)(x))
    assert_close(mnn.LeakyReLU(slope, inplace=True)(x.clone()), ref)
    w = torch.randn(2, 4, dtype=D)
    assert_close(F.activation_linear(x, w, None, "leaky_relu", slope), TF.linear(ref, w))
    m = mnn.ActivationLinear(4, 2, activation="leaky_relu", negative_slope=slope).double()
    assert_close(m(x), TF.linear(ref, m.weight, m.bias))


@pytest.mark.parametrize("slope", SLOPES_BAD, ids=repr)
def test_leaky_relu_slopes_torch_refuses(slope):
    x = torch.randn(3, 4)
    expected = _error(lambda: TF.leaky_relu(x, slope))
    assert expected is not None
    with pytest.raises(expected, match="negative_slope"):
        F.leaky_relu(x, slope)
    with pytest.raises(expected, match="negative_slope"):
        mnn.LeakyReLU(slope)(x)
    with pytest.raises(expected, match="negative_slope"):
        F.activation_linear(x, torch.randn(2, 4), None, "leaky_relu", slope)
