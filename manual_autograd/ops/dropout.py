"""Dropout: ``out = x · m / (1 − p)``, ``m ~ Bernoulli(1 − p)`` elementwise.

* backward: ``dx = grad_out · m / (1 − p)``;
* saved: the mask ``m`` bit-packed (:func:`~manual_autograd.ops.base.pack_bits`), returned by the
  forward as a second, non-differentiable output; for ``p = 1`` nothing (``m = 0``);
* bytes per element: 1/8 (torch keeps the scaled mask: 4 bytes in float32 on CPU, 1 on CUDA).

On CPU the mask is torch's own draw, ``empty_like(x).bernoulli_(1 − p)`` as at::native's
``_dropout_impl``, so under the same ``torch.manual_seed`` the values equal ``F.dropout``'s bit for
bit. The CUDA kernel draws its own mask (``tl.rand``, seeded from torch's generator).
"""

from __future__ import annotations

import torch

from .. import backend
from .base import Function, in_place, pack_bits, save_for_jvp, unpack_bits

__all__ = ["DropoutFunction", "dropout_noise"]


class DropoutFunction(Function):
    """Dropout with ``0 < p <= 1``, in place when ``inplace``; returns ``(out, mask)`` for ``p < 1``."""

    @staticmethod
    def forward(x, p, inplace):
        if p == 1:  # torch multiplies by a zero: no draw, NaN and Inf become NaN
            zero = x.new_zeros(())
            return x.mul_(zero) if inplace else x * zero
        if backend.kernels_for(x):
            return backend.kernels().dropout.forward(x, p, inplace)
        noise = torch.empty_like(x).bernoulli_(1 - p)  # torch's draw, in torch's order
        mask = pack_bits(noise != 0)
        noise.div_(1 - p)
        out = x.mul_(noise) if inplace else x * noise  # the input object itself when in place (torch.compile)
        return out, mask

    @staticmethod
    def setup_context(ctx, inputs, out):
        x, p, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        ctx.p, ctx.shape = p, x.shape
        if p == 1:
            save_for_jvp(ctx, inplace=inplace)
            return
        ctx.mark_non_differentiable(out[1])
        ctx.save_for_backward(out[1])
        save_for_jvp(ctx, out[1], inplace=inplace)

    @staticmethod
    def backward(ctx, grad_out, *_):
        if ctx.p == 1:
            return grad_out * grad_out.new_zeros(()), None, None
        (mask,) = ctx.saved_tensors
        if backend.kernels_for(mask, grad_out, grad=True):
            return backend.kernels().dropout.backward(mask, grad_out, ctx.p), None, None
        noise = dropout_noise(mask, ctx.shape, ctx.p, grad_out.dtype)
        return noise.mul_(grad_out) if in_place(grad_out) else grad_out * noise, None, None

    @staticmethod
    def forward_ad(ctx, x_t, *_):
        if ctx.p == 1:
            noise = x_t.new_zeros(())
        else:
            noise = dropout_noise(ctx.saved_tensors[0], ctx.shape, ctx.p, x_t.dtype)
        out_t = x_t.mul_(noise) if ctx.inplace else x_t * noise  # in place: the tangent too
        return out_t if ctx.p == 1 else (out_t, None)


def dropout_noise(mask, shape, p, dtype):
    """``m / (1 − p)`` of ``dtype`` from the packed mask: the factor the forward multiplied by, to the bit."""
    return unpack_bits(mask, shape).to(dtype).div_(1 - p)
