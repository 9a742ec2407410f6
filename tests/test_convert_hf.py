"""convert / revert on Hugging Face transformers models: GPT-2 and Llama (grouped-query attention),
built from tiny configs with random weights: same logits, loss and gradients as the unconverted
model, less saved for backward, and revert gives the original classes and attention back."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

import manual_autograd  # noqa: E402
from manual_autograd import nn as mnn  # noqa: E402
from manual_autograd.ledger import record_saved  # noqa: E402

from helpers import function_nodes, run_python  # noqa: E402

hf = pytest.importorskip("manual_autograd.hf")

VOCAB, SEQ = 128, 16


def gpt2(attn="sdpa", p=0.0):
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=SEQ, bos_token_id=0, eos_token_id=0,
        resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, attn_implementation=attn,
    )
    return transformers.GPT2LMHeadModel(cfg)


def llama(attn="sdpa", p=0.0):
    cfg = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0, pad_token_id=None,
        attention_dropout=p, attn_implementation=attn,
    )
    return transformers.LlamaForCausalLM(cfg)


MODELS = {"gpt2": gpt2, "llama": llama}
# the classes convert gives each model: everything else stays native
SWAPPED = {
    "gpt2": {hf.Conv1D, hf.NewGELUActivation, hf.GPT2MLP, mnn.LayerNorm, mnn.Dropout, mnn.Embedding, mnn.Linear},
    "llama": {hf.LlamaRMSNorm, hf.LlamaMLP, hf.SiLUActivation, mnn.Linear, mnn.Embedding},
}


def _build(name, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    return MODELS[name](**kw).to(dtype)


def _batch(pad=False):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=g)
    mask = None
    if pad:  # the second sequence right-padded: a boolean mask goes to the attention
        mask = torch.ones(2, SEQ, dtype=torch.long)
        mask[1, -5:] = 0
    return ids, mask


def _run(model, ids, mask):
    model.zero_grad()
    out = model(ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    return out.logits, out.loss, {k: p.grad.clone() for k, p in model.named_parameters()}


def _assert_same(a, b, **tol):
    torch.testing.assert_close(a[0], b[0], **tol)
    torch.testing.assert_close(a[1], b[1], **tol)
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        torch.testing.assert_close(a[2][k], b[2][k], msg=k, **tol)


def _types(model):
    return [type(m) for m in model.modules()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,attn", [("gpt2", "sdpa"), ("gpt2", "eager"), ("llama", "sdpa"), ("llama", "eager")])
def test_same_logits_loss_and_grads(name, attn, dtype):
    model = _build(name, dtype, attn=attn).eval()
    fast = manual_autograd.convert(model)
    assert model.config._attn_implementation == attn  # the original is untouched
    assert fast.config._attn_implementation == hf.ATTENTION
    assert SWAPPED[name] == {type(m) for m in fast.modules() if type(m).__module__.startswith("manual_autograd")}
    assert not any(hf.library_class(m) for m in fast.modules())  # nothing convertible left behind
    tol = {} if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    if name == "llama" and dtype == torch.float64:  # LlamaRMSNorm rounds to float32 in both: its backward's rounding differs
        tol = dict(rtol=1e-6, atol=1e-6)
    for pad in (False, True):
        ids, mask = _batch(pad)
        ref, ours = _run(model, ids, mask), _run(fast, ids, mask)
        _assert_same(ours, ref, **tol)
    nodes = {type(n).__name__ for n in function_nodes(fast(ids, labels=ids).loss.grad_fn)}
    assert "AttentionFunctionBackward" in nodes  # the library's attention ran
    if name == "gpt2":
        assert "ActivationLinearFunctionBackward" in nodes
    if name == "llama":
        assert "GatedLinearFunctionBackward" in nodes and isinstance(fast.model.layers[0].mlp, mnn.GatedMLP)


@pytest.mark.parametrize("name", MODELS)
def test_trains_with_dropout(name):
    fast = manual_autograd.convert(_build(name, p=0.1)).train()
    opt = torch.optim.AdamW(fast.parameters(), lr=1e-2)
    ids, mask = _batch(pad=True)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = fast(ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


@pytest.mark.parametrize("name,attn", [("gpt2", "sdpa"), ("llama", "eager")])
def test_revert_inplace_and_idempotent(name, attn):
    model = _build(name, attn=attn).eval()
    before, params = _types(model), list(model.parameters())
    ids, mask = _batch(pad=True)
    ref = _run(model, ids, mask)
    assert manual_autograd.convert(model, inplace=True) is model
    assert all(a is b for a, b in zip(model.parameters(), params))  # the same parameter objects, shared
    converted = _types(model)
    twice = manual_autograd.convert(model)  # a copy converted again: nothing changes
    assert _types(twice) == converted and twice.config._attn_implementation == hf.ATTENTION
    manual_autograd.convert(model, inplace=True)
    assert _types(model) == converted
    back = manual_autograd.revert(twice)  # the copy of a twice-converted model reverts fully
    assert _types(back) == before and back.config._attn_implementation == attn
    assert manual_autograd.revert(model, inplace=True) is model
    assert _types(model) == before and model.config._attn_implementation == attn
    assert not any(hasattr(m, "_manual_autograd_attn_implementation") for m in model.modules())
    assert all(a is b for a, b in zip(model.parameters(), params))
    _assert_same(_run(model, ids, mask), ref, rtol=0, atol=0)  # native again: the very same numbers
    assert model.state_dict().keys() == manual_autograd.convert(model).state_dict().keys()


def _saved(model, ids):
    with record_saved(keep_tensors=False) as saved:
        loss = model(ids, labels=ids).loss
    saved.add_ctx_tensors(loss)
    return saved.unique_bytes(exclude=list(model.parameters()) + [ids])


@pytest.mark.parametrize("name", MODELS)
def test_saves_less(name):
    model = _build(name, p=0.1).train()
    fast = manual_autograd.convert(model)
    ids, _ = _batch()
    native, ours = _saved(model, ids), _saved(fast, ids)
    assert 0 < ours < native, (ours, native)


def test_import_without_transformers():
    out = run_python(
        "import sys, torch, manual_autograd\n"
        "manual_autograd.convert(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU()))\n"
        "print('transformers' in sys.modules, 'manual_autograd.hf' in sys.modules)"
    )
    assert out.split() == ["False", "False"]


def test_benchmark_rows():
    from benchmarks import hf as bench

    shape = dict(seq=32, batch=1, hidden=32, heads=4, vocab=64, layers=2)
    r = bench.measure("llama", "eager", rounds=1, min_run_time=0.001, shape=shape)
    assert 0 < r["saved_per_block"]["manual"] < r["saved_per_block"]["native"]
    assert r["saved_per_block_ratio"] < 1 and r["peak_ratio"] < 1 and r["step"]["ratio"] > 0
    report = {"command": "test", "rounds": 1, "shape": shape, "rows": [r], "wall_s": 0.0,
              "env": {"device_name": "cpu", "threads": 1, "torch": "", "python": "", "date": ""}}
    assert "| llama | eager |" in bench.to_markdown(report)


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16(name):
    model = _build(name, torch.bfloat16).eval()  # LlamaRMSNorm's float32 round trip, the casts of the attention
    ids, mask = _batch(pad=True)
    ref, ours = _run(model, ids, mask), _run(manual_autograd.convert(model), ids, mask)
    assert ours[0].dtype == ref[0].dtype == torch.bfloat16
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=2e-2)
    torch.testing.assert_close(ours[1], ref[1], rtol=2e-3, atol=0)
    for k in ref[2]:
        assert (ours[2][k] - ref[2][k]).abs().max() <= 5e-2 * ref[2][k].abs().max(), k
