"""Embedding: ``out[..., :] = W[idx[...], :]``, a row lookup.

* backward: ``dW = zeros(num, dim).index_add(0, idx, g)``, where each row of ``g`` is first
  zeroed at ``idx = padding_idx`` and, with ``scale_grad_by_freq``, divided by how many times its
  index occurs in ``idx``; no gradient for ``idx``. With ``sparse`` the same rows as a sparse COO
  gradient (padding rows left out; with ``scale_grad_by_freq`` a RuntimeError, as torch);
* saved: the indices only (the input itself, not a copy); ``W``'s shape as attributes;
* bytes per element: 0 per element of ``W`` or of the output; 8 per int64 index (as torch).
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, in_place, save_for_jvp

__all__ = ["EmbeddingFunction", "embedding_grad_rows"]


class EmbeddingFunction(Function):
    """``weight[input]``; ``padding_idx`` is normalised to ``[0, num)`` or -1 for none."""

    @staticmethod
    def forward(input, weight, padding_idx, scale_grad_by_freq, sparse):
        if backend.kernels_for(weight, input):
            return backend.kernels().embedding.forward(input, weight)
        return weight.index_select(0, input.reshape(-1)).reshape(*input.shape, weight.shape[1])

    @staticmethod
    def setup_context(ctx, inputs, out):
        input, weight, padding_idx, scale_grad_by_freq, sparse = inputs
        ctx.save_for_backward(input)
        ctx.num, ctx.dim = weight.shape
        ctx.padding_idx, ctx.scale_grad_by_freq, ctx.sparse = padding_idx, scale_grad_by_freq, sparse
        save_for_jvp(ctx, input)

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None
        (input,) = ctx.saved_tensors
        idx, pad, freq = input.reshape(-1), ctx.padding_idx, ctx.scale_grad_by_freq
        if ctx.sparse:
            return None, embedding_sparse_grad(idx, grad_out, ctx.num, ctx.dim, pad, freq), None, None, None
        if backend.kernels_for(grad_out, idx, grad=True):
            return None, backend.kernels().embedding.backward(idx, grad_out, ctx.num, pad, freq), None, None, None
        g = embedding_grad_rows(idx, grad_out.reshape(-1, ctx.dim), ctx.num, pad, freq)
        dw = g.new_zeros(ctx.num, ctx.dim)
        # index_add (out of place, differentiable) would copy the whole table once more
        return None, dw.index_add_(0, idx, g) if in_place(grad_out) else dw.index_add(0, idx, g), None, None, None

    @staticmethod
    def forward_ad(ctx, input_t, weight_t, *_):
        (input,) = ctx.saved_tensors
        return weight_t.index_select(0, input.reshape(-1)).reshape(*input.shape, ctx.dim)


def embedding_grad_rows(idx, g, num, padding_idx, scale_grad_by_freq):
    """The rows of ``g`` (one per index of flat ``idx``) as they are added into ``dW``: 0 at
    ``padding_idx`` (a NaN there does not flow, as torch skips the row), scaled by ``1 / count`` of its index."""
    if scale_grad_by_freq:
        count = torch.bincount(idx, minlength=num).index_select(0, idx)
        g = g * count.unsqueeze(1).to(g.dtype).reciprocal()  # torch adds g · (1/count)
    if padding_idx >= 0:
        g = torch.where((idx != padding_idx).unsqueeze(1), g, 0.0)
    return g


def embedding_sparse_grad(idx, grad_out, num, dim, padding_idx, scale_grad_by_freq):
    """``dW`` as an uncoalesced sparse COO tensor, one entry per index except ``padding_idx``'s (torch's layout)."""
    if scale_grad_by_freq:  # as torch, which refuses it in backward too (the forward alone is fine)
        raise RuntimeError("embedding(): 'scale_grad_by_freq' is not supported with sparse gradients (sparse=True)")
    g = grad_out.reshape(-1, dim)
    if padding_idx >= 0:
        keep = idx != padding_idx
        idx, g = idx[keep], g[keep]
    return torch.sparse_coo_tensor(idx.long().unsqueeze(0), g, (num, dim), check_invariants=False)
