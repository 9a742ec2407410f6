"""torch.func and forward-mode AD: vmap(grad) per-sample gradients, jacrev / jvp / hessian per op.

Every op is compared with the ``torch.nn.functional`` op it replaces under the same transform,
in float64 so that the comparison is tight.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as TF
from helpers import assert_close
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

import manual_autograd.functional as F
from manual_autograd import nn as mnn

D = torch.float64


def _ce_target(n=4, c=5):
    t = torch.randint(0, c, (n,))
    t[1] = -100  # one ignored row
    return t


def _ce_ref(x, t, w, label_smoothing=0.0, reduction="mean"):
    """Composite class-index cross-entropy, differentiable in ``w`` too (torch's is not)."""
    nlp, C, valid = -torch.log_softmax(x, 1), x.shape[1], (t != -100)
    t = torch.where(valid, t, 0)
    w_t = torch.where(valid, w[t], 0.0)
    loss = (1 - label_smoothing) * w_t * nlp.gather(1, t[:, None])[:, 0]
    loss = loss + torch.where(valid, (nlp * w).sum(1), 0.0) * label_smoothing / C
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / w_t.sum()}[reduction]


# name -> (ours, torch's, inputs): the functions take only the tensors differentiated.
def _ops():
    x3, x2 = torch.randn(2, 3, 5, dtype=D), torch.randn(4, 5, dtype=D)
    w, b = torch.randn(6, 5, dtype=D), torch.randn(6, dtype=D)
    a = torch.randn(3, 4, dtype=D)
    logits, logits3 = torch.randn(4, 5, dtype=D), torch.randn(2, 5, 3, dtype=D)
    t, t3 = _ce_target(), torch.randint(0, 5, (2, 3))
    probs = torch.softmax(torch.randn(4, 5, dtype=D), 1)
    cw = torch.rand(5, dtype=D) + 0.5

    def ce(f, target=t, **kw):
        return lambda x: f(x, target, **kw)

    return {
        "linear-2d": (F.linear, TF.linear, (x2, w, b)),
        "linear-3d": (F.linear, TF.linear, (x3, w, b)),
        "linear-nobias": (lambda x, w: F.linear(x, w), lambda x, w: TF.linear(x, w), (x3, w)),
        "relu": (F.relu, TF.relu, (a,)),
        "leaky_relu": (F.leaky_relu, TF.leaky_relu, (a,)),
        "leaky_relu-negative": (lambda x: F.leaky_relu(x, -0.2), lambda x: TF.leaky_relu(x, -0.2), (a,)),
        "gelu": (F.gelu, TF.gelu, (a,)),
        "gelu-tanh": (lambda x: F.gelu(x, "tanh"), lambda x: TF.gelu(x, approximate="tanh"), (a,)),
        "silu": (F.silu, TF.silu, (a,)),
        "ce-mean": (ce(F.cross_entropy), ce(TF.cross_entropy), (logits,)),
        "ce-none-smooth": (
            ce(F.cross_entropy, reduction="none", label_smoothing=0.1),
            ce(TF.cross_entropy, reduction="none", label_smoothing=0.1),
            (logits,),
        ),
        "ce-weight-smooth-sum": (
            ce(F.cross_entropy, weight=cw, label_smoothing=0.2, reduction="sum"),
            ce(TF.cross_entropy, weight=cw, label_smoothing=0.2, reduction="sum"),
            (logits,),
        ),
        "ce-weight-mean": (ce(F.cross_entropy, weight=cw), ce(TF.cross_entropy, weight=cw), (logits,)),
        "ce-3d": (ce(F.cross_entropy, target=t3), ce(TF.cross_entropy, target=t3), (logits3,)),
        "ce-probs": (
            ce(F.cross_entropy, target=probs, weight=cw, label_smoothing=0.1),
            ce(TF.cross_entropy, target=probs, weight=cw, label_smoothing=0.1),
            (logits,),
        ),
        # the class weight and the target probabilities differentiated too
        "ce-wrt-weight-smooth": (
            lambda x, w: F.cross_entropy(x, t, w, label_smoothing=0.1),
            lambda x, w: _ce_ref(x, t, w, label_smoothing=0.1),
            (logits, cw),
        ),
        "ce-wrt-weight-none": (
            lambda x, w: F.cross_entropy(x, t, w, reduction="none"),
            lambda x, w: _ce_ref(x, t, w, reduction="none"),
            (logits, cw),
        ),
        "ce-probs-wrt-target-weight": (
            lambda x, q, w: F.cross_entropy(x, q, w, label_smoothing=0.1),
            lambda x, q, w: TF.cross_entropy(x, q, w, label_smoothing=0.1),
            (logits, probs, cw),
        ),
    }


OPS = list(_ops())


@pytest.mark.parametrize("name", OPS)
def test_jacrev_matches_torch(name):
    ours, ref, inputs = _ops()[name]
    argnums = tuple(range(len(inputs)))
    for a, b in zip(jacrev(ours, argnums)(*inputs), jacrev(ref, argnums)(*inputs)):
        assert_close(a, b)


@pytest.mark.parametrize("name", OPS)
def test_jvp_matches_torch(name):
    ours, ref, inputs = _ops()[name]
    tangents = tuple(torch.randn_like(x) for x in inputs)
    out, out_t = jvp(ours, inputs, tangents)
    ref_out, ref_t = jvp(ref, inputs, tangents)
    assert_close(out, ref_out)
    assert_close(out_t, ref_t)
    # the same through torch.autograd.forward_ad (the eager path, outside torch.func)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) for x, t in zip(inputs, tangents)]
        assert_close(fwAD.unpack_dual(ours(*duals)).tangent, ref_t)


@pytest.mark.parametrize(
    "ours,ref",
    [
        pytest.param(lambda x: F.relu(x, inplace=True), lambda x: TF.relu(x, inplace=True), id="relu_"),
        pytest.param(lambda x: F.leaky_relu(x, 0.1, True), lambda x: TF.leaky_relu(x, 0.1, True), id="leaky_relu_"),
        # torch's own in-place leaky_relu refuses a negative slope; compare with its out-of-place one
        pytest.param(lambda x: F.leaky_relu(x, -0.1, True), lambda x: TF.leaky_relu(x, -0.1), id="leaky_relu_-neg"),
        pytest.param(lambda x: F.silu(x, inplace=True), lambda x: TF.silu(x, inplace=True), id="silu_"),
    ],
)
def test_jvp_inplace_matches_torch(ours, ref):
    x, t = torch.randn(3, 4, dtype=D), torch.randn(3, 4, dtype=D)
    # an in-place op must update the tangent in place too; run it on a fresh non-leaf copy
    out, out_t = jvp(lambda x: ours(x * 1.0), (x,), (t,))
    ref_out, ref_t = jvp(lambda x: ref(x * 1.0), (x,), (t,))
    assert_close(out, ref_out)
    assert_close(out_t, ref_t)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.clone(), t.clone())
        res = ours(dual)
        assert res is dual  # modified in place, and so is its tangent
        assert_close(fwAD.unpack_dual(dual).tangent, ref_t)


@pytest.mark.parametrize("name", ["gelu", "silu", "ce-weight-smooth-sum", "ce-probs"])
def test_hessian_matches_torch(name):
    # hessian = jacfwd(jacrev): forward-mode over the hand-written backward
    ours, ref, (x,) = _ops()[name]
    f_ours = (lambda x: ours(x).sum()) if name in ("gelu", "silu") else ours
    f_ref = (lambda x: ref(x).sum()) if name in ("gelu", "silu") else ref
    assert_close(hessian(f_ours)(x), hessian(f_ref)(x))


@pytest.mark.parametrize("name", ["linear-3d", "leaky_relu-negative", "gelu-tanh", "ce-none-smooth"])
def test_vmap_matches_torch(name):
    ours, ref, inputs = _ops()[name]
    batched = tuple(torch.stack([x, 2 * x]) for x in inputs)
    assert_close(vmap(ours)(*batched), vmap(ref)(*batched))
    assert_close(jacfwd(ours)(*inputs), jacfwd(ref)(*inputs))


def _mlp(cls):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        cls.Linear(6, 8), cls.GELU(), cls.Linear(8, 8), cls.SiLU(), cls.LeakyReLU(), cls.Linear(8, 3), cls.ReLU()
    ).to(D)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_per_sample_grads_vmap_grad_equal_loop(label_smoothing):
    model, ref_model = _mlp(mnn), _mlp(torch.nn)
    loss_fn = mnn.CrossEntropyLoss(label_smoothing=label_smoothing)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.randn(7, 6, dtype=D), torch.randint(0, 3, (7,))

    def sample_loss(params, x, y):
        return loss_fn(functional_call(model, params, (x[None],)), y[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            assert_close(per_sample[k][i], p.grad)
    # and the same as torch's own layers under the same transform
    ref_loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    ref = vmap(grad(lambda p, x, y: ref_loss(functional_call(ref_model, p, (x[None],)), y[None])), (None, 0, 0))(
        params, x, y
    )
    for k in params:
        assert_close(per_sample[k], ref[k])


# ------------------------------------------------------------------------------------------------
# forward-mode AD through the fused ops, against torch's unfused composition


_ACT_REF = {
    "relu": TF.relu,
    "leaky_relu": lambda z: TF.leaky_relu(z, -0.2),
    "gelu": lambda z: TF.gelu(z, approximate="tanh"),
    "silu": TF.silu,
}


def _fused_ops():
    z, w, b = torch.randn(2, 3, 5, dtype=D), torch.randn(6, 5, dtype=D), torch.randn(6, dtype=D)
    x, wc, bc = torch.randn(5, 4, dtype=D), torch.randn(7, 4, dtype=D), torch.randn(7, dtype=D)
    cw = torch.rand(7, dtype=D) + 0.5
    t = torch.randint(0, 7, (5,))
    t[1] = 3
    cases = {
        f"activation_linear-{a}": (
            lambda z, w, b, a=a: F.activation_linear(z, w, b, a, -0.2, "tanh"),
            lambda z, w, b, a=a: TF.linear(_ACT_REF[a](z), w, b),
            (z, w, b),
        )
        for a in _ACT_REF
    }
    cases["activation_linear-nobias"] = (
        lambda z, w: F.activation_linear(z, w, None, "silu"), lambda z, w: TF.linear(TF.silu(z), w), (z, w)
    )
    for red in ("none", "sum", "mean"):
        for eps, ii in ((0.0, -100), (0.2, 3)):  # (ignore_index 3: the target's row 1 is ignored)
            # chunks of 3 classes: the tangent is built block by block; the class weight's tangent too
            cases[f"linear_cross_entropy-{red}-eps{eps}"] = (
                lambda x, w, b, c, red=red, eps=eps, ii=ii: F.linear_cross_entropy(
                    x, w, t, linear_bias=b, weight=c, reduction=red, label_smoothing=eps, ignore_index=ii, chunk_size=3
                ),
                lambda x, w, b, c, red=red, eps=eps, ii=ii: _ce_ref_ii(x @ w.T + b, t, c, eps, red, ii),
                (x, wc, bc, cw),
            )
    cases["linear_cross_entropy-noweight-nobias"] = (
        lambda x, w: F.linear_cross_entropy(x, w, t, label_smoothing=0.1, chunk_size=4),
        lambda x, w: TF.cross_entropy(x @ w.T, t, label_smoothing=0.1),
        (x, wc),
    )
    return cases


def _ce_ref_ii(x, t, w, label_smoothing, reduction, ignore_index):
    """:func:`_ce_ref` with another ``ignore_index``."""
    return _ce_ref(x, torch.where(t == ignore_index, -100, t), w, label_smoothing, reduction)


@pytest.mark.parametrize("name", list(_fused_ops()))
def test_fused_ops_forward_ad_matches_torch(name):
    ours, ref, inputs = _fused_ops()[name]
    tangents = tuple(torch.randn_like(x) for x in inputs)
    out, out_t = jvp(ours, inputs, tangents)
    ref_out, ref_t = jvp(ref, inputs, tangents)
    assert_close(out, ref_out)
    assert_close(out_t, ref_t)
    with fwAD.dual_level():  # the eager path, outside torch.func
        duals = [fwAD.make_dual(x, t) for x, t in zip(inputs, tangents)]
        assert_close(fwAD.unpack_dual(ours(*duals)).tangent, ref_t)
    argnums = tuple(range(len(inputs)))
    for a, b in zip(jacfwd(ours, argnums)(*inputs), jacfwd(ref, argnums)(*inputs)):
        assert_close(a, b)


def test_fused_modules_forward_ad_matches_torch():
    torch.manual_seed(0)
    mlp = mnn.MLP(5, [6, 6, 3], activation_layer=torch.nn.GELU).double()
    ref = torch.nn.Sequential(mlp[0], torch.nn.GELU(), torch.nn.Linear(6, 6), torch.nn.GELU(), torch.nn.Linear(6, 3)).double()
    ref[2].load_state_dict(mlp[1].state_dict())
    ref[4].load_state_dict(mlp[2].state_dict())
    x, v = torch.randn(4, 5, dtype=D), torch.randn(4, 5, dtype=D)
    assert_close(jvp(mlp, (x,), (v,))[1], jvp(ref, (x,), (v,))[1])
    loss = mnn.LinearCrossEntropyLoss(5, 20, bias=True, chunk_size=8, label_smoothing=0.1).double()
    t = torch.randint(0, 20, (4,))
    params = dict(loss.named_parameters())
    p_t = {k: torch.randn_like(p) for k, p in params.items()}
    ours = jvp(lambda p: functional_call(loss, p, (x, t)), (params,), (p_t,))[1]
    theirs = jvp(lambda p: TF.cross_entropy(TF.linear(x, p["linear.weight"], p["linear.bias"]), t, label_smoothing=0.1), (params,), (p_t,))[1]
    assert_close(ours, theirs)
