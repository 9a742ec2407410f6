"""The transformer layers alone, manual beside native: ``python -m benchmarks --module transformer``.

Each op at the shape it has in a GPT-2-small-sized block on 2048 tokens (``d = 768``, MLP width
3072; norms and softmax rows of 1024), forward and a training step, with the bytes each keeps
for backward. Writes ``results/transformer_<device>.{json,md,png}``. Attention has its own
command, :mod:`benchmarks.attention` (it needs the peak memory of a step as well). The fused Llama
MLP (:func:`benchmarks.fused.gated_mlp_case`) closes the list.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as TF
from manual_autograd import functional as MF

from .common import op_case
from .fused import gated_mlp_case

__all__ = ["cases"]

# Saved-bytes targets of the transformer-layers issue (manual / native, CPU float32); step ≤ 1.5.
STEP_TARGET = 1.5


def cases(device: torch.device, quick: bool = False, tokens=None, d=768, width=3072, vocab=50257) -> list:
    g = torch.Generator(device="cpu").manual_seed(3)
    tokens = tokens or (512 if quick else 2048)

    def randn(*shape, grad=False, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device).requires_grad_(grad)

    x = randn(tokens, d, grad=True)
    gx = randn(tokens, d)
    w, b = randn(d, grad=True), randn(d, grad=True)
    rows = randn(tokens, 4 * d // 3, grad=True)
    grows = randn(tokens, 4 * d // 3)
    h = randn(tokens, width, grad=True)
    gh = randn(tokens, width)
    h2, gh2 = randn(tokens, width, grad=True), randn(tokens, width)
    target = randn(tokens, d)
    idx = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    table = randn(vocab, d, grad=True, scale=0.02)
    shape = {"tokens": tokens, "step_target": STEP_TARGET}
    saved1 = {**shape, "saved_target": 1.00}
    out = [
        op_case(f"layer_norm {d}", lambda x, w, b: TF.layer_norm(x, (d,), w, b),
                lambda x, w, b: MF.layer_norm(x, (d,), w, b), [x], [w, b], gx, meta=saved1),
        op_case(f"rms_norm {d}", lambda x, w: TF.rms_norm(x, (d,), w), lambda x, w: MF.rms_norm(x, (d,), w),
                [x], [w], gx, meta=saved1),
        op_case(f"softmax {4 * d // 3}", functools.partial(TF.softmax, dim=-1), functools.partial(MF.softmax, dim=-1),
                [rows], grad_out=grows, meta=saved1),
        op_case(f"log_softmax {4 * d // 3}", functools.partial(TF.log_softmax, dim=-1),
                functools.partial(MF.log_softmax, dim=-1), [rows], grad_out=grows, meta=saved1),
        op_case("sigmoid", torch.sigmoid, MF.sigmoid, [h], grad_out=gh, meta=saved1),
        op_case("tanh", torch.tanh, MF.tanh, [h], grad_out=gh, meta=saved1),
        op_case("dropout p=0.1", functools.partial(TF.dropout, p=0.1), functools.partial(MF.dropout, p=0.1),
                [h], grad_out=gh, meta={**shape, "saved_target": 0.125}),
        op_case("swiglu", lambda a, u: TF.silu(a) * u, MF.swiglu, [h, h2], grad_out=gh2, meta=shape),
        op_case("geglu (tanh)", lambda a, u: TF.gelu(a, approximate="tanh") * u,
                functools.partial(MF.geglu, approximate="tanh"), [h, h2], grad_out=gh2, meta=shape),
        op_case(f"embedding {vocab}×{d}", TF.embedding, MF.embedding, [idx], [table], gx, meta=saved1),
        op_case("mse_loss", TF.mse_loss, MF.mse_loss, [x, target], meta=saved1),
    ]
    for c in out:
        c.name = f"{c.name}, {tokens} tokens"
    out.append(gated_mlp_case(device, tokens, hidden=d, intermediate=8 * d // 3))  # a Llama MLP is 8/3 d wide

    return out
