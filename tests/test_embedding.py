"""EmbeddingFunction / functional.embedding / nn.Embedding: torch's lookup, saving the indices only."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, leaf, record_saved
from torch.func import grad, jvp, vmap

import manual_autograd
import manual_autograd.functional as F
import manual_autograd.nn as mnn
from manual_autograd import backend

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread

NUM, DIM = 7, 3
OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param(dict(padding_idx=2), id="pad"),
    pytest.param(dict(padding_idx=-1), id="pad-neg"),
    pytest.param(dict(scale_grad_by_freq=True), id="freq"),
    pytest.param(dict(padding_idx=0, scale_grad_by_freq=True), id="pad-freq"),
]
INDEX_SHAPES = {"0d": (), "1d": (5,), "2d": (3, 4), "empty": (0,), "empty2d": (2, 0)}


def indices(shape, dtype=torch.int64):
    idx = torch.randint(0, NUM, shape, dtype=dtype)
    if idx.numel() >= 4:  # repeats and the padding rows, for sure
        idx.view(-1)[:4] = torch.tensor([2, 2, 0, NUM - 1], dtype=dtype)
    return idx


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("shape", ["1d", "2d", "0d"])
def test_gradcheck_wrt_weight(shape, options):
    idx = indices(INDEX_SHAPES[shape])
    w = leaf(torch.randn(NUM, DIM, dtype=torch.float64))
    # the backward's own derivative (double backward) is checked with every option as it stands
    check_grads(lambda w: F.embedding(idx, w, **options), (w,), grad=False)
    # the first derivative is the true one off the padding row and without repeats: checked there
    # (the padding row kept constant; distinct indices, so each count is 1)
    pad = options.get("padding_idx")
    if options.get("scale_grad_by_freq"):
        idx = torch.randperm(NUM)[: [1, 6, 6][idx.dim()]].reshape([(), (6,), (2, 3)][idx.dim()])
    if pad is None:
        check_grads(lambda w: F.embedding(idx, w, **options), (w,), gradgrad=False)
        return
    pad %= NUM
    const = torch.randn(1, DIM, dtype=torch.float64)
    rest = leaf(torch.randn(NUM - 1, DIM, dtype=torch.float64))
    check_grads(lambda r: F.embedding(idx, torch.cat([r[:pad], const, r[pad:]]), **options), (rest,), gradgrad=False)


def test_gradcheck_max_norm_inactive_and_transposed_weight():
    # max_norm renormalises in place, outside autograd (as torch): the gradient is of the lookup only
    idx = indices((3, 4))
    w = leaf(torch.randn(NUM, DIM, dtype=torch.float64), "transposed")
    check_grads(lambda w: F.embedding(idx, w, max_norm=100.0), (w,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("shape", list(INDEX_SHAPES), ids=list(INDEX_SHAPES))
def test_values_and_grads_are_torchs(shape, options, index_dtype, dtype):
    idx = indices(INDEX_SHAPES[shape], index_dtype)
    ours = leaf(torch.randn(NUM, DIM, dtype=dtype))
    ref = leaf(ours)
    out, expect = F.embedding(idx, ours, **options), TF.embedding(idx, ref, **options)
    assert out.shape == expect.shape and out.dtype == expect.dtype and torch.equal(out, expect)
    g = torch.randn_like(expect)
    out.backward(g)
    expect.backward(g)
    assert_close(ours.grad, ref.grad)


def test_nonfinite_flow_as_torchs():
    idx = torch.tensor([[0, 1, 2], [2, 3, 1]])
    w = torch.randn(4, 2, dtype=torch.float64)
    w[1, 0], w[3, 1] = float("nan"), float("inf")
    g = torch.randn(2, 3, 2, dtype=torch.float64)
    g[0, 1, 1], g[1, 0, 0] = float("nan"), -float("inf")  # at index 1 (padding below) and index 2
    for options in (dict(), dict(padding_idx=1), dict(padding_idx=2, scale_grad_by_freq=True)):
        ours, ref = leaf(w), leaf(w)
        out, expect = F.embedding(idx, ours, **options), TF.embedding(idx, ref, **options)
        assert_close(out, expect, rtol=0, atol=0)
        out.backward(g)
        expect.backward(g)
        assert_close(ours.grad, ref.grad, rtol=0, atol=0)  # a NaN at a padding index does not flow


@pytest.mark.parametrize("options", OPTIONS)
def test_saves_the_indices_only(options):
    idx = indices((3, 4))
    w = leaf(torch.randn(NUM, DIM))
    with record_saved() as saved:
        out = F.embedding(idx, w, **options)
    assert len(saved) == 1
    (s,) = saved
    assert s.data_ptr == idx.data_ptr() and s.dtype == torch.int64 and s.nbytes == 8 * 12  # the input itself
    assert ctx_tensor_attrs(out.grad_fn) == []
    out.sum().backward()
    assert w.grad.shape == (NUM, DIM)


def test_no_weight_grad_needed():
    w = torch.randn(NUM, DIM)
    out = F.embedding(indices((4,)), w)
    assert out.grad_fn is None and torch.equal(out, w[indices((4,))])


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_max_norm_renormalises_as_torch(norm_type):
    idx = torch.tensor([[0, 2, 2], [5, 0, 1]])
    w = torch.randn(NUM, DIM) * 3
    ours, ref = leaf(w), leaf(w)
    # torch renormalises the leaf's rows in place (no_grad); so must we
    out = F.embedding(idx, ours, max_norm=1.5, norm_type=norm_type)
    expect = TF.embedding(idx, ref, max_norm=1.5, norm_type=norm_type)
    assert torch.equal(ours, ref) and not torch.equal(ours, w)
    assert torch.equal(out, expect)
    g = torch.randn_like(out)
    out.backward(g)
    expect.backward(g)
    assert_close(ours.grad, ref.grad)


def test_sparse_with_scale_grad_by_freq_fails_in_backward_as_torch():
    idx = indices((3, 4))
    for fn in (F.embedding, TF.embedding):
        w = leaf(torch.randn(NUM, DIM))
        out = fn(idx, w, sparse=True, scale_grad_by_freq=True)
        with pytest.raises(RuntimeError, match="scale_grad_by_freq"):
            out.sum().backward()


@pytest.mark.parametrize("options", [dict(), dict(padding_idx=2), dict(padding_idx=-3)])
def test_sparse_gradient_is_torchs(options):
    idx = indices((3, 4))
    ours = leaf(torch.randn(NUM, DIM, dtype=torch.float64))
    ref = leaf(ours)
    g = torch.randn(3, 4, DIM, dtype=torch.float64)
    F.embedding(idx, ours, sparse=True, **options).backward(g)
    TF.embedding(idx, ref, sparse=True, **options).backward(g)
    assert ours.grad.layout == ref.grad.layout == torch.sparse_coo
    assert torch.equal(ours.grad._indices(), ref.grad._indices())
    assert_close(ours.grad.to_dense(), ref.grad.to_dense())
    opt = torch.optim.SGD([ours], lr=0.1)  # what sparse gradients are for
    opt.step()


def test_errors_are_torchs():
    w = torch.randn(NUM, DIM, requires_grad=True)
    cases = [
        (RuntimeError, (torch.tensor([1.0]), w), {}),
        (RuntimeError, (torch.tensor([1], dtype=torch.uint8), w), {}),
        (IndexError, (torch.tensor([NUM]), w), {}),
        (IndexError, (torch.tensor([-1]), w), {}),
        (RuntimeError, (torch.tensor([1]), w[0]), {}),
        (RuntimeError, (torch.tensor([1]), torch.randn(2, 3, 4)), {}),
        (AssertionError, (torch.tensor([1]), w), dict(padding_idx=NUM)),
        (AssertionError, (torch.tensor([1]), w), dict(padding_idx=-NUM - 1)),
        (TypeError, ([1, 2], w), {}),
    ]
    for err, args, kwargs in cases:
        for fn in (F.embedding, TF.embedding):
            with pytest.raises(err):
                fn(*args, **kwargs)
    with pytest.raises(IndexError, match="'input'"):
        F.embedding(torch.tensor([0, NUM + 3]), w)
    before = w.detach().clone()
    with pytest.raises(IndexError, match="'input'"):  # before max_norm changes the weight
        F.embedding(torch.tensor([0, NUM]), w * 10, max_norm=0.1)
    assert torch.equal(w, before)


def test_torch_func_grad_jvp_vmap_are_torchs():
    idx, w, t = indices((3, 4)), torch.randn(NUM, DIM), torch.randn(NUM, DIM)
    for options in (dict(), dict(padding_idx=2)):
        ours = lambda w, i=idx: F.embedding(i, w, **options)  # noqa: E731
        ref = lambda w, i=idx: TF.embedding(i, w, **options)  # noqa: E731
        assert_close(grad(lambda w: (ours(w) ** 2).sum())(w), grad(lambda w: (ref(w) ** 2).sum())(w))
        for a, b in zip(jvp(ours, (w,), (t,)), jvp(ref, (w,), (t,))):
            assert torch.equal(a, b)
        batch = torch.randint(0, NUM, (5, 6))
        assert torch.equal(vmap(lambda i: ours(w, i))(batch), vmap(lambda i: ref(w, i))(batch))
        ws = torch.randn(2, NUM, DIM)
        assert torch.equal(vmap(ours)(ws), vmap(ref)(ws))
        per_sample = vmap(grad(lambda w, i: (ours(w, i) ** 2).sum()), (None, 0))(w, batch)
        expect = vmap(grad(lambda w, i: (ref(w, i) ** 2).sum()), (None, 0))(w, batch)
        assert_close(per_sample, expect)


def test_compile_fullgraph_is_torchs():
    idx = indices((3, 4))
    fn = lambda i, w: F.embedding(i, w, padding_idx=2, scale_grad_by_freq=True).sin().sum()  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    ours = leaf(torch.randn(NUM, DIM))
    ref = leaf(ours)
    compiled(idx, ours).backward()
    TF.embedding(idx, ref, padding_idx=2, scale_grad_by_freq=True).sin().sum().backward()
    assert_close(ours.grad, ref.grad)


def test_autocast_keeps_the_dtype_as_torch():
    idx, w = indices((3, 4)), torch.randn(NUM, DIM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expect = F.embedding(idx, w), TF.embedding(idx, w)
    assert out.dtype == expect.dtype == torch.float32 and torch.equal(out, expect)


def test_signature_is_torchs():
    import inspect

    def params(fn):
        return [(q.name, q.default, q.kind) for q in inspect.signature(fn).parameters.values()]

    assert params(F.embedding) == params(TF.embedding)


def test_module_is_torchs_and_converts():
    for args, kwargs in (((10, 4), {}), ((10, 4), dict(padding_idx=-2, max_norm=1.0, scale_grad_by_freq=True))):
        torch.manual_seed(0)
        ours = mnn.Embedding(*args, **kwargs)
        torch.manual_seed(0)
        theirs = torch.nn.Embedding(*args, **kwargs)
        assert isinstance(ours, torch.nn.Embedding) and repr(ours) == repr(theirs)
        assert ours.padding_idx == theirs.padding_idx
        assert ours.state_dict().keys() == theirs.state_dict().keys() and torch.equal(ours.weight, theirs.weight)
    pre = mnn.Embedding.from_pretrained(torch.randn(5, 3), padding_idx=1)
    assert type(pre) is mnn.Embedding and not pre.weight.requires_grad and pre.padding_idx == 1
    m = torch.nn.Sequential(torch.nn.Embedding(10, 4, padding_idx=0), torch.nn.Linear(4, 2))
    conv = manual_autograd.convert(m)
    assert type(conv[0]) is mnn.Embedding and conv[0].padding_idx == 0
    assert type(manual_autograd.revert(conv)[0]) is torch.nn.Embedding
    x = torch.randint(0, 10, (3, 5))
    assert torch.equal(conv(x), m(x))
    conv(x).sum().backward()
    m(x).sum().backward()
    assert_close(conv[0].weight.grad, m[0].weight.grad)
    assert torch.equal(conv[0].weight.grad[0], torch.zeros(4))


# The Triton kernels, interpreted on CPU (tests/conftest.py), compiled on CUDA.


def _kernels():
    pytest.importorskip("triton")
    K = backend.kernels()
    if not K.INTERPRETED:
        pytest.skip("kernels not interpreted")
    return K


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding_idx,freq", [(-1, False), (3, True)])
def test_kernels_equal_the_reference(padding_idx, freq, dtype):
    from manual_autograd.ops.embedding import embedding_grad_rows

    K = _kernels()
    num, dim = 11, 1030  # a row over two column blocks
    w = torch.randn(num, dim, dtype=dtype)
    w[4, 5] = float("nan")
    for idx in (torch.randint(0, num, (6, 5)), torch.randint(0, num, (9,), dtype=torch.int32), torch.zeros(0, 2).long()):
        if idx.numel():
            idx.view(-1)[:3] = 3  # repeats, at the padding index
        assert_close(K.embedding.forward(idx, w), w[idx.long()], rtol=0, atol=0)
        g = torch.randn(*idx.shape, dim, dtype=dtype)
        flat = idx.reshape(-1).long()
        rows = embedding_grad_rows(flat, g.reshape(-1, dim), num, padding_idx, freq)
        expect = torch.zeros(num, dim, dtype=dtype).index_add_(0, flat, rows)
        assert_close(K.embedding.backward(idx, g, num, padding_idx, freq), expect)
        expanded = torch.ones((), dtype=dtype).expand(*idx.shape, dim)  # loss.sum()'s grad_out
        rows = embedding_grad_rows(flat, expanded.reshape(-1, dim), num, padding_idx, freq)
        assert_close(K.embedding.backward(idx, expanded, num, padding_idx, freq), rows.new_zeros(num, dim).index_add_(0, flat, rows))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kernel_path_is_taken_and_double_backward_works():
    K = _kernels()
    idx = indices((3, 4))
    w = leaf(torch.randn(NUM, DIM, dtype=torch.float64))
    calls = []
    fwd, bwd = K.embedding.forward, K.embedding.backward
    try:
        K.embedding.forward = lambda *a: calls.append("forward") or fwd(*a)
        K.embedding.backward = lambda *a: calls.append("backward") or bwd(*a)
        with backend.use("triton"):
            check_grads(lambda w: F.embedding(idx, w), (w,), fast=True)
            check_grads(lambda w: F.embedding(idx, w, padding_idx=2, scale_grad_by_freq=True), (w,), grad=False)
            w.grad = None
            out = F.embedding(idx, w, padding_idx=2, scale_grad_by_freq=True)
            out.backward(torch.ones_like(out))
            with pytest.raises(IndexError, match="'input'"):  # checked before the kernel reads out of bounds
                F.embedding(torch.tensor([NUM]), w)
    finally:
        K.embedding.forward, K.embedding.backward = fwd, bwd
    assert "forward" in calls and "backward" in calls
    ref = leaf(w)
    TF.embedding(idx, ref, padding_idx=2, scale_grad_by_freq=True).sum().backward()
    assert_close(w.grad, ref.grad)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_values_and_grads(dtype):
    idx = torch.randint(0, 1000, (16, 64), device="cuda")
    idx[:, :8] = 5  # many rows into one index: float32 accumulation
    w = torch.randn(1000, 96, device="cuda", dtype=dtype)
    ours, ref = leaf(w), w.detach().clone().requires_grad_()
    for options in (dict(), dict(padding_idx=7, scale_grad_by_freq=True)):
        ours.grad = ref.grad = None
        out, expect = F.embedding(idx, ours, **options), TF.embedding(idx, ref, **options)
        assert torch.equal(out, expect)
        g = torch.randn_like(out)
        out.backward(g)
        expect.backward(g)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(ours.grad, ref.grad, **tol)
