"""AttentionFunction / functional.scaled_dot_product_attention: torch's contract, over blocks of keys.

Keys come in blocks of 3 here (``KEY_BLOCK`` patched), so every case with S > 3 runs the online
log-sum-exp across several blocks, a last short block included.
"""

import math

import pytest
import torch
import torch.nn.functional as TF
from helpers import assert_close, check_grads, ctx_tensor_attrs, record_saved
from torch.func import grad, jvp, vmap

import manual_autograd.functional as F
from manual_autograd.ops import attention as attn_op

SINGLE_THREAD = True  # tiny tensors: see conftest._single_thread
HAS_GQA = "enable_gqa" in (TF.scaled_dot_product_attention.__doc__ or "")


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(attn_op, "KEY_BLOCK", 3)


def qkv(qs, ks, vs, dtype=torch.float64, requires_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(requires_grad) for s in (qs, ks, vs)]


def math_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """``softmax(q kᵀ · scale + mask) v`` as a user writes it (torch's documented reference)."""
    L, S = q.shape[-2], k.shape[-2]
    s = q @ k.transpose(-1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool).tril()
    if attn_mask is not None:
        s = s.masked_fill(attn_mask.logical_not(), -math.inf) if attn_mask.dtype == torch.bool else s + attn_mask
    return torch.softmax(s, -1) @ v


# name: (q, k, v shapes, kwargs, mask shape and kind)
CASES = {
    "plain": ((2, 2, 4, 3), (2, 2, 7, 3), (2, 2, 7, 3), {}, None),
    "causal-L=S": ((1, 2, 7, 3), (1, 2, 7, 3), (1, 2, 7, 3), {"is_causal": True}, None),
    "causal-L<S": ((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 3), {"is_causal": True}, None),
    "causal-L>S": ((1, 2, 7, 3), (1, 2, 4, 3), (1, 2, 4, 3), {"is_causal": True}, None),
    "bool-mask": ((2, 2, 4, 3), (2, 2, 7, 3), (2, 2, 7, 3), {}, ((2, 1, 4, 7), "bool")),
    "float-mask": ((2, 2, 4, 3), (2, 2, 7, 3), (2, 2, 7, 3), {}, ((4, 7), "float")),
    "float-mask-per-row": ((2, 2, 4, 3), (2, 2, 7, 3), (2, 2, 7, 3), {}, ((2, 1, 4, 1), "float")),
    "scale": ((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 3), {"scale": 0.7}, None),
    "Ev!=E": ((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 5), {}, None),
    "3d": ((2, 4, 3), (2, 7, 3), (2, 7, 2), {}, None),
    "5d": ((2, 1, 2, 4, 3), (2, 1, 2, 5, 3), (2, 1, 2, 5, 2), {"is_causal": True}, None),
    "broadcast-batch": ((2, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 3), {}, None),
}
if HAS_GQA:
    CASES["gqa"] = ((1, 4, 4, 3), (1, 2, 7, 3), (1, 2, 7, 2), {"enable_gqa": True}, ((4, 1, 7), "float"))
    CASES["gqa-k!=v"] = ((1, 4, 4, 3), (1, 2, 5, 3), (1, 1, 5, 2), {"enable_gqa": True}, None)


def make(name, dtype=torch.float64, mask_grad=True):
    qs, ks, vs, kw, mask = CASES[name]
    q, k, v = qkv(qs, ks, vs, dtype)
    if mask is not None:
        shape, kind = mask
        g = torch.Generator().manual_seed(1)
        if kind == "bool":
            m = torch.rand(shape, generator=g) > 0.3
            m[..., 0] = True  # every row sees a key (fully masked rows: their own test)
        else:
            m = torch.randn(shape, generator=g, dtype=dtype).requires_grad_(mask_grad)
        kw = {**kw, "attn_mask": m}
    return q, k, v, kw


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_and_gradgradcheck(name):
    q, k, v, kw = make(name)
    m = kw.pop("attn_mask", None)
    if m is not None and m.requires_grad:  # the float mask's gradient too
        check_grads(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw), (q, k, v, m))
    else:
        check_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw), (q, k, v))


def test_gradcheck_dropout_with_a_fixed_seed():
    q, k, v, _ = make("causal-L<S")

    def fn(q, k, v):
        torch.manual_seed(0)  # the same mask on every call
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)

    check_grads(fn, (q, k, v))


def test_double_backward_reaches_the_saved_output_and_lse():
    # a gradient of the first backward's output w.r.t. grad_out flows through the saved out and lse
    q, k, v, kw = make("causal-L<S")
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    g = torch.randn_like(out, requires_grad=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), g, create_graph=True)
    ref_out = math_attention(q, k, v, **kw)
    rq, rk, rv = torch.autograd.grad(ref_out, (q, k, v), g, create_graph=True)
    w = [torch.randn_like(t) for t in (dq, dk, dv)]
    ours = torch.autograd.grad(sum((a * b).sum() for a, b in zip((dq, dk, dv), w)), (q, k, v, g))
    theirs = torch.autograd.grad(sum((a * b).sum() for a, b in zip((rq, rk, rv), w)), (q, k, v, g))
    for a, b in zip(ours, theirs):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_equal_torch(name, dtype):
    q, k, v, kw = make(name, dtype)
    rq, rk, rv = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    expect = TF.scaled_dot_product_attention(rq, rk, rv, **kw)
    assert out.shape == expect.shape and out.dtype == expect.dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    assert_close(out, expect, **tol)
    g = torch.randn_like(out)
    ins, refs = [q, k, v], [rq, rk, rv]
    m = kw.get("attn_mask")
    if m is not None and m.requires_grad:
        ins.append(m)
        refs.append(m)
    ours = torch.autograd.grad(out, ins, g)
    theirs = torch.autograd.grad(expect, refs, g)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert_close(a, b, **tol)
    if not kw.get("enable_gqa"):  # the explicit math (no grouped heads in it)
        assert_close(out, math_attention(q, k, v, **{n: kw[n] for n in kw if n != "enable_gqa"}), **tol)


def test_heads_last_layout_and_one_input_needing_a_gradient():
    # q, k, v as (B, L, H, E).transpose(1, 2), the layout a projection gives; only q needs a gradient
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, n, 2, 3, generator=g, dtype=torch.float64).transpose(1, 2) for n in (4, 7, 7))
    q.requires_grad_()
    out, expect = F.scaled_dot_product_attention(q, k, v, is_causal=True), TF.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(out, expect)
    w = torch.randn_like(out)
    assert_close(torch.autograd.grad(out, q, w)[0], torch.autograd.grad(expect, q, w)[0])


def test_default_block_equals_small_blocks(monkeypatch):
    q, k, v = qkv((1, 2, 5, 4), (1, 2, 300, 4), (1, 2, 300, 3))
    small = F.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(attn_op, "KEY_BLOCK", 256)  # the default: 2 blocks of 256 and 44
    assert_close(F.scaled_dot_product_attention(q, k, v), small)


def test_dropout_values_equal_softmax_times_its_mask():
    # reconstruct the mask the op drew (generator seeded with seed + block index, per key block)
    q, k, v = qkv((2, 2, 4, 3), (2, 2, 7, 3), (2, 2, 7, 2))
    p = 0.4
    torch.manual_seed(5)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    blocks = [attn_op._keep(seed, i, torch.empty(2, 2, 4, s1 - s0), p) for i, (s0, s1) in enumerate(attn_op._blocks(7, 3))]
    keep = torch.cat(blocks, -1)
    assert 0 < keep.float().mean() < 1
    probs = torch.softmax(
        (q @ k.transpose(-1, -2) / math.sqrt(3)).masked_fill(~torch.ones(4, 7, dtype=torch.bool).tril(), -math.inf), -1
    )
    assert_close(out, (probs * keep / (1 - p)) @ v)
    # and the gradient is that of the same masked product
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), g)
    theirs = torch.autograd.grad((probs * keep / (1 - p)) @ v, (q, k, v), g)
    for a, b in zip(ours, theirs):
        assert_close(a, b)


def test_dropout_edges_as_torch():
    q, k, v = qkv((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 2), requires_grad=False)
    assert torch.equal(F.scaled_dot_product_attention(q, k, v, dropout_p=1.0), torch.zeros(1, 2, 4, 2, dtype=q.dtype))
    # torch ignores p <= 0
    assert_close(F.scaled_dot_product_attention(q, k, v, dropout_p=-0.1), TF.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_as_torchs_cpu_kernel(kind):
    q, k, v = qkv((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 2))
    keep = torch.rand(4, 7) > 0.3
    keep[1] = False
    m = keep if kind == "bool" else torch.zeros(4, 7, dtype=q.dtype).masked_fill(~keep, -math.inf)
    rq, rk, rv = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out, expect = F.scaled_dot_product_attention(q, k, v, attn_mask=m), TF.scaled_dot_product_attention(rq, rk, rv, attn_mask=m)
    assert torch.equal(out[..., 1, :], torch.zeros_like(out[..., 1, :]))
    assert_close(out, expect)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(expect, (rq, rk, rv), g)):
        assert_close(a, b)


def test_empty_keys_and_queries_as_torch():
    for L, S in ((0, 5), (3, 0)):
        q, k, v = qkv((1, 2, L, 3), (1, 2, S, 3), (1, 2, S, 2))
        out, expect = F.scaled_dot_product_attention(q, k, v), TF.scaled_dot_product_attention(q, k, v)
        assert_close(out, expect)
        grads = torch.autograd.grad(out.sum(), (q, k, v))
        assert [t.shape for t in grads] == [q.shape, k.shape, v.shape] and all(torch.all(t == 0) for t in grads)


@pytest.mark.parametrize("where", ["q-nan", "k-nan", "v-inf", "k-inf"])
def test_nonfinite_flow_as_torch(where):
    q, k, v = qkv((1, 1, 3, 4), (1, 1, 5, 4), (1, 1, 5, 2), requires_grad=False)
    t = {"q": q, "k": k, "v": v}[where[0]]
    t[0, 0, 1, 1] = math.nan if where.endswith("nan") else math.inf
    assert_close(F.scaled_dot_product_attention(q, k, v), TF.scaled_dot_product_attention(q, k, v))


def test_saves_q_k_v_out_and_one_lse_per_row():
    q, k, v = qkv((2, 2, 8, 4), (2, 2, 9, 4), (2, 2, 9, 3), dtype=torch.float32)
    with record_saved() as saved:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    kept = {s.data_ptr: s for s in saved}
    for t in (q, k, v, out):
        assert t.data_ptr() in kept
    others = [s for p, s in kept.items() if p not in (q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr())]
    assert [(s.shape, s.dtype) for s in others] == [((2, 2, 8), torch.float32)]  # the lse, L floats per row
    assert all(s.nbytes < 8 * 9 * 4 * 4 for s in others)  # nothing of size L·S
    assert ctx_tensor_attrs(out.grad_fn) == []
    # a grouped-query call keeps the inputs themselves too (views, not repeat_interleave copies)
    if HAS_GQA:
        q, k, v = qkv((1, 4, 4, 3), (1, 2, 7, 3), (1, 2, 7, 3), dtype=torch.float32)
        with record_saved() as saved:
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        assert {s.data_ptr for s in saved} >= {q.data_ptr(), k.data_ptr(), v.data_ptr()}
        assert sum(s.nbytes for s in saved if s.data_ptr not in (q.data_ptr(), k.data_ptr(), v.data_ptr())) == 4 * 16 * (3 + 1)


def test_torch_compile_fullgraph():
    q, k, v = qkv((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 3), dtype=torch.float32)
    m = torch.randn(4, 7)

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.5)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    out = compiled(q, k, v)
    assert_close(out, fn(q, k, v))
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(fn(q, k, v), (q, k, v), g)):
        assert_close(a, b)


def test_torch_func_vmap_grad_jvp_equal_torchs():
    q, k, v = qkv((3, 2, 4, 3), (3, 2, 7, 3), (3, 2, 7, 2), requires_grad=False)

    def ours(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def theirs(q, k, v):
        return TF.scaled_dot_product_attention(q, k, v, is_causal=True)

    assert_close(vmap(ours)(q, k, v), vmap(theirs)(q, k, v))
    gs = grad(lambda *a: ours(*a).square().sum(), argnums=(0, 1, 2))(q, k, v)
    ge = grad(lambda *a: theirs(*a).square().sum(), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(gs, ge):
        assert_close(a, b)
    tangents = tuple(torch.randn_like(t) for t in (q, k, v))
    assert_close(jvp(ours, (q, k, v), tangents)[1], jvp(theirs, (q, k, v), tangents)[1])
    # per-example gradients: vmap over grad
    pe = vmap(grad(lambda q, k, v: ours(q, k, v).sum()))(q, k, v)
    assert_close(pe, vmap(grad(lambda q, k, v: theirs(q, k, v).sum()))(q, k, v))


def test_forward_ad_with_a_float_mask_and_dropout():
    q, k, v = qkv((1, 2, 4, 3), (1, 2, 7, 3), (1, 2, 7, 2), requires_grad=False)
    m = torch.randn(4, 7, dtype=q.dtype)
    tangents = tuple(torch.randn_like(t) for t in (q, k, v, m))

    def fn(p):
        def f(q, k, v, m):
            torch.manual_seed(0)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=p)

        return f

    def ref(q, k, v, m):
        return math_attention(q, k, v, attn_mask=m)

    assert_close(jvp(fn(0.0), (q, k, v, m), tangents)[1], jvp(ref, (q, k, v, m), tangents)[1])
    # dropout: against the double-vjp-free route, the Jacobian from reverse mode
    f = fn(0.3)
    primals = (q, k, v, m)
    _, t_out = torch.autograd.functional.jvp(f, primals, tangents)
    with torch.autograd.forward_ad.dual_level():
        duals = [torch.autograd.forward_ad.make_dual(a, b) for a, b in zip(primals, tangents)]
        fwd = torch.autograd.forward_ad.unpack_dual(f(*duals)).tangent
    assert_close(fwd, t_out)


def test_autocast_cpu_bf16_as_torch():
    q, k, v = qkv((1, 2, 4, 8), (1, 2, 7, 8), (1, 2, 7, 8), dtype=torch.float32)
    m = torch.randn(4, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        expect = TF.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert out.dtype == expect.dtype == torch.bfloat16  # torch's policy: SDPA in the autocast dtype
    assert_close(out.float(), expect.float(), rtol=2e-2, atol=2e-2)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(expect, (q, k, v), g)):
        assert a.dtype == b.dtype == torch.float32
        assert_close(a, b, rtol=5e-2, atol=5e-2)


def test_half_precision_on_cpu_keeps_a_float32_lse():
    q, k, v = qkv((1, 2, 4, 8), (1, 2, 7, 8), (1, 2, 7, 8), dtype=torch.bfloat16)
    with record_saved() as saved:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == torch.bfloat16
    assert sorted(str(s.dtype) for s in saved if s.shape == (1, 2, 4)) == ["torch.float32"]
    ref = [t.detach().float().requires_grad_() for t in (q, k, v)]
    expect = TF.scaled_dot_product_attention(*ref, is_causal=True)
    assert_close(out.float(), expect, rtol=2e-2, atol=2e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("is_causal", [False, True])
def test_cuda_half_equals_torch(dtype, is_causal):
    q, k, v = (t.detach().cuda().requires_grad_() for t in qkv((2, 4, 64, 32), (2, 4, 80, 32), (2, 4, 80, 32), dtype=dtype))
    rq, rk, rv = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    expect = TF.scaled_dot_product_attention(rq, rk, rv, is_causal=is_causal)
    assert out.dtype == dtype
    assert_close(out, expect, rtol=2e-2, atol=2e-2)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(expect, (rq, rk, rv), g)):
        assert_close(a, b, rtol=3e-2, atol=3e-2)


def _bad(**over):
    q, k, v = qkv((2, 4, 3, 8), (2, 4, 5, 8), (2, 4, 5, 6), dtype=torch.float32, requires_grad=False)
    args = {"query": q, "key": k, "value": v, **over}
    return args.pop("query"), args.pop("key"), args.pop("value"), args


ERRORS = {
    "E mismatch": (dict(key=torch.randn(2, 4, 5, 7)), RuntimeError),
    "S mismatch": (dict(value=torch.randn(2, 4, 6, 6)), RuntimeError),
    "batch mismatch": (dict(key=torch.randn(3, 4, 5, 8), value=torch.randn(3, 4, 5, 6)), RuntimeError),
    "heads without gqa": (dict(key=torch.randn(2, 2, 5, 8), value=torch.randn(2, 2, 5, 6)), RuntimeError),
    "dtype": (dict(key=torch.randn(2, 4, 5, 8, dtype=torch.float64)), RuntimeError),
    "integer": (dict(query=torch.ones(2, 4, 3, 8, dtype=torch.long), key=torch.ones(2, 4, 5, 8, dtype=torch.long),
                     value=torch.ones(2, 4, 5, 6, dtype=torch.long)), RuntimeError),
    "1-D": (dict(query=torch.randn(8), key=torch.randn(8), value=torch.randn(8)), RuntimeError),
    "mask shape": (dict(attn_mask=torch.ones(3, 4, dtype=torch.bool)), RuntimeError),
    "mask grows the batch": (dict(attn_mask=torch.ones(7, 1, 3, 5, dtype=torch.bool)), RuntimeError),
    "mask dtype": (dict(attn_mask=torch.ones(3, 5, dtype=torch.long)), RuntimeError),
    "mask float64": (dict(attn_mask=torch.ones(3, 5, dtype=torch.float64)), RuntimeError),
    "causal and mask": (dict(attn_mask=torch.ones(3, 5, dtype=torch.bool), is_causal=True), RuntimeError),
    "dropout > 1": (dict(dropout_p=1.5), RuntimeError),
    "query not a tensor": (dict(query=1.0), TypeError),
    "mask not a tensor": (dict(attn_mask=1.0), TypeError),
    "scale a str": (dict(scale="a"), TypeError),
    "dropout a str": (dict(dropout_p="a"), TypeError),
    "is_causal an int": (dict(is_causal=1), TypeError),
}
if HAS_GQA:
    ERRORS["gqa heads do not divide"] = (
        dict(key=torch.randn(2, 3, 5, 8), value=torch.randn(2, 3, 5, 6), enable_gqa=True), RuntimeError
    )


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_raise_torchs_types(case):
    over, exc = ERRORS[case]
    q, k, v, kw = _bad(**over)
    with pytest.raises(exc) as theirs:
        TF.scaled_dot_product_attention(q, k, v, **kw)
    with pytest.raises(exc) as ours:
        F.scaled_dot_product_attention(q, k, v, **kw)
    assert type(ours.value) is type(theirs.value)
    assert "scaled_dot_product_attention()" in str(ours.value)


def test_signature_is_torchs():
    q, k, v = qkv((1, 3, 4), (1, 5, 4), (1, 5, 4), dtype=torch.float32, requires_grad=False)
    with pytest.raises(TypeError):  # scale is keyword-only, as torch's
        F.scaled_dot_product_attention(q, k, v, None, 0.0, False, 0.5)
    assert_close(F.scaled_dot_product_attention(q, k, v, None, 0.0, True), TF.scaled_dot_product_attention(q, k, v, None, 0.0, True))


def test_kernel_dispatch_wiring(monkeypatch):
    # the launchers' interface, played by the reference: 4-D (B, H, L, E) in, (out, lse) and (dq, dk, dv) out
    from types import SimpleNamespace

    from manual_autograd import backend

    calls = []

    def forward(q, k, v, is_causal, scale):
        assert q.dim() == k.dim() == v.dim() == 4
        calls.append("forward")
        return attn_op.attention_forward(q, k, v, None, 0.0, is_causal, scale, 0, 3)

    def backward(q, k, v, out, lse, grad_out, is_causal, scale):
        assert lse.shape == q.shape[:-1] and grad_out.shape == out.shape
        calls.append("backward")
        return attn_op.attention_backward(q, k, v, None, out, lse, grad_out, None, 0.0, is_causal, scale, 0, 3, (True,) * 3 + (False,))[:3]

    kernels = SimpleNamespace(attention=SimpleNamespace(forward=forward, backward=backward))
    monkeypatch.setattr(backend, "kernels_for", lambda *t, grad=False: not (grad and torch.is_grad_enabled()))
    monkeypatch.setattr(backend, "kernels", lambda: kernels)
    q, k, v = qkv((3, 4, 2), (3, 7, 2), (3, 7, 5))  # 3-D: the op hands the launchers (1, 3, L, E)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), g)
    assert calls == ["forward", "backward"]
    expect = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(out, expect)
    for a, b in zip(ours, torch.autograd.grad(expect, (q, k, v), g)):
        assert_close(a, b)
    # a mask, dropout or grouped heads take the reference
    calls.clear()
    F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 7, dtype=torch.bool)).sum().backward()
    F.scaled_dot_product_attention(q, k[:1], v[:1]).sum().backward()
    assert calls == []


@pytest.mark.parametrize("layout", ["contiguous", "heads-last", "fused-qkv"])
def test_output_takes_the_query_layout_as_torch(layout):
    # torch's CPU attention follows q's order of dims; for heads-last q (also the views of one
    # fused qkv projection) the output projection's input out.transpose(1, 2).reshape(B, L, H·E)
    # is then a view of the output attention saved
    x = torch.randn(2, 9, 3 * 12)
    q, k, v = (t.view(2, 9, 3, 4).transpose(1, 2) for t in x.split(12, dim=2))
    if layout == "heads-last":
        q, k, v = (t.clone(memory_format=torch.preserve_format) for t in (q, k, v))
    elif layout == "contiguous":
        q, k, v = (t.contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expect = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.stride() == expect.stride()
    assert_close(out, expect)
    q = q.detach().requires_grad_()
    with record_saved() as saved:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    flat = out.transpose(1, 2).reshape(2, 9, 12)
    assert (flat.data_ptr() == out.data_ptr()) == (layout != "contiguous")
    assert any(s.data_ptr == out.data_ptr() for s in saved)
