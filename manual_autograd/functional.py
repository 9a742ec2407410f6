"""Functional interface, signature for signature the same as ``torch.nn.functional``.

Each function checks its arguments (:mod:`manual_autograd.checks`, before anything is computed
or mutated) and applies the hand-written Function (:mod:`manual_autograd.ops`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import List, Optional

import torch
from torch import Tensor
from torch.nn import _reduction
from torch.overrides import handle_torch_function, has_torch_function
from torch.nn.functional import _get_softmax_dim

from . import backend, checks
from .ops import (
    ActivationLinearFunction,
    AttentionFunction,
    CrossEntropyFunction,
    DropoutFunction,
    EmbeddingFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearCrossEntropyFunction,
    LayerNormFunction,
    LinearFunction,
    ReLUFunction,
    RMSNormFunction,
    SiLUFunction,
    default_chunk_size,
)
from .ops import attention as _attention  # its KEY_BLOCK, read at each call
from .ops import GatedLinearFunction, GLUFunction
from .ops import MSELossFunction, SigmoidFunction, SoftmaxFunction, TanhFunction

__all__ = [
    "linear",
    "relu",
    "relu_",
    "leaky_relu",
    "leaky_relu_",
    "gelu",
    "silu",
    "cross_entropy",
    "activation_linear",
    "linear_cross_entropy",
    "dropout",
    "embedding",
    "scaled_dot_product_attention",
    "swiglu",
    "geglu",
    "gated_linear",
    "layer_norm",
    "rms_norm",
    "softmax",
    "log_softmax",
    "sigmoid",
    "tanh",
    "mse_loss",
]


def _autocast(dtype: torch.dtype, device: torch.device, *tensors):
    """Cast what autocast casts (floating-point tensors on its device, float64 excepted), as the
    native ops' policy: linear runs in the autocast dtype, cross_entropy in float32, the
    activations in their input's dtype (no cast)."""
    return tuple(t.to(dtype) if _autocasts(t, device) else t for t in tensors)


def _autocasts(t, device: torch.device) -> bool:
    """Whether autocast casts ``t``: a floating-point tensor on its device, float64 excepted."""
    return isinstance(t, Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device == device


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r"""Apply ``y = x Wᵀ + b`` with a hand-written backward. See :class:`manual_autograd.nn.Linear`.

    Args:
        input: ``(*, in_features)``.
        weight: ``(out_features, in_features)`` or ``(in_features)``.
        bias: ``(out_features)`` or ``()``; optional.
    """
    if torch._C._is_any_autocast_enabled() and isinstance(input, Tensor):
        dev = input.device
        if torch.is_autocast_enabled(dev.type):
            input, weight, bias = _autocast(torch.get_autocast_dtype(dev.type), dev, input, weight, bias)
    if not checks.linear_ok(input, weight, bias):
        if isinstance(weight, Tensor) and weight.dim() == 1 and isinstance(input, Tensor):
            # a 1-D weight is one output feature whose dim is dropped, as torch does
            b = None if bias is None else bias.reshape(1)
            return linear(input, weight.unsqueeze(0), b).squeeze(-1)
        checks.linear_error(input, weight, bias)
    return LinearFunction.apply(input, weight, bias)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""Apply ``max(x, 0)`` elementwise. See :class:`manual_autograd.nn.ReLU`."""
    if not isinstance(input, Tensor):
        checks.tensor("relu", "input", input, 1)
    if inplace:
        checks.inplace_input("relu", input)
    return ReLUFunction.apply(input, bool(inplace))


def relu_(input: Tensor) -> Tensor:
    r"""In-place :func:`relu`."""
    return relu(input, inplace=True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    r"""Apply ``x if x > 0 else negative_slope * x``. See :class:`manual_autograd.nn.LeakyReLU`."""
    negative_slope = checks.leaky_relu(input, negative_slope, inplace)
    if inplace and negative_slope < 0 and checks.grad_view(input):
        # the Function also returns its mask, and autograd lets a Function that modifies a view in
        # place return nothing else: compute out of place (the mask is still all that is saved), copy back
        return input.copy_(LeakyReLUFunction.apply(input, negative_slope, False)[0])
    out = LeakyReLUFunction.apply(input, negative_slope, bool(inplace))
    return out if negative_slope >= 0 else out[0]


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    r"""In-place :func:`leaky_relu`."""
    return leaky_relu(input, negative_slope, inplace=True)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    r"""Apply GELU, exact (``'none'``) or tanh-approximated. See :class:`manual_autograd.nn.GELU`."""
    checks.gelu(input, approximate)
    return GELUFunction.apply(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""Apply ``x σ(x)`` elementwise. See :class:`manual_autograd.nn.SiLU`."""
    checks.silu(input, inplace)
    if inplace:
        if input.requires_grad and torch.is_grad_enabled():
            # The old input must be kept; a differentiable copy (what torch's silu_ keeps too) lets
            # double backward flow through it and works on views, then the result is copied back.
            return input.copy_(SiLUFunction.apply(input.clone(), False))
        return SiLUFunction.apply(input, True)[0]
    return SiLUFunction.apply(input, False)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Softmax and cross-entropy fused, with a hand-written backward.

    Same contract as :func:`torch.nn.functional.cross_entropy`: ``input`` of shape ``(C)``,
    ``(N, C)`` or ``(N, C, d1, ..., dk)``; ``target`` of class indices (``(), (N)`` or
    ``(N, d1, ..., dk)``, int64 or uint8) or of class probabilities (the shape of ``input``);
    ``weight`` of shape ``(C)``; ``ignore_index``; ``reduction``; ``label_smoothing``.
    See :class:`manual_autograd.nn.CrossEntropyLoss`.
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    checks.tensor("cross_entropy", "input", input, 1)
    checks.tensor("cross_entropy", "target", target, 2)
    if torch._C._is_any_autocast_enabled() and torch.is_autocast_enabled(input.device.type):
        # float32 under autocast, as torch's own; autocast stays off inside (no lower-precision matmul)
        input, target, weight = _autocast(torch.float32, input.device, input, target, weight)
        with torch.autocast(input.device.type, enabled=False):
            return cross_entropy(input, target, weight, None, ignore_index, None, reduction, label_smoothing)
    target = checks.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    if target.is_floating_point():  # class probabilities: computed in the promoted dtype, as torch's
        dtype = checks.probability_dtype(input, target, weight)
        input, target = input.to(dtype), target.to(dtype)
        weight = None if weight is None else weight.to(dtype)
    if not target.is_floating_point() and target.device.type == "cpu" and backend.kernels_for(input, weight):
        # the interpreted kernels raise nothing for a class out of range (on CUDA: NaN rows); nll_loss does
        checks.target_values(target, input.shape[0] if input.dim() == 1 else input.shape[1], ignore_index)
    try:
        return CrossEntropyFunction.apply(input, target, weight, int(ignore_index), reduction, float(label_smoothing))[0]
    except (RuntimeError, IndexError):  # an out-of-range class index: name it clearly
        if not target.is_floating_point() and target.device.type == "cpu":
            checks.target_values(target, input.shape[0] if input.dim() == 1 else input.shape[1], ignore_index)
        raise


def activation_linear(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: str = "relu",
    negative_slope: float = 0.01,
    approximate: str = "none",
) -> Tensor:
    r"""Apply ``act(input) Wᵀ + b`` as one op that keeps only ``input`` (and ``W``) for backward.

    Equal to ``linear(act(input), weight, bias)``; see :class:`manual_autograd.nn.ActivationLinear`.

    Args:
        input: ``(*, in_features)``, the activation's input ``z``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features)``; optional.
        activation: ``'relu'`` | ``'leaky_relu'`` | ``'gelu'`` | ``'silu'``.
        negative_slope: slope for ``x < 0`` of ``'leaky_relu'``.
        approximate: ``'none'`` | ``'tanh'``, the GELU variant.

    Examples::

        >>> z = torch.randn(8, 20, requires_grad=True)
        >>> w, b = torch.randn(30, 20), torch.randn(30)
        >>> activation_linear(z, w, b, "gelu").shape
        torch.Size([8, 30])
    """
    act_dtype = None
    if torch._C._is_any_autocast_enabled() and isinstance(input, Tensor) and torch.is_autocast_enabled(input.device.type):
        # the unfused chain's policy: the activation in z's dtype, the Linear in the autocast dtype
        dev, dtype = input.device, torch.get_autocast_dtype(input.device.type)
        act_dtype = dtype if _autocasts(input, dev) else input.dtype
        weight, bias = _autocast(dtype, dev, weight, bias)
    param = checks.activation_linear(input, weight, bias, activation, negative_slope, approximate, act_dtype)
    return ActivationLinearFunction.apply(input, weight, bias, activation, param)


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    chunk_size: Optional[int] = None,
) -> Tensor:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target)`` without the whole logits.

    Same signature and result as :func:`torch.nn.functional.linear_cross_entropy`, with
    ``chunk_size`` in place of ``options``. Class-index targets go through
    :class:`LinearCrossEntropyFunction`, blocks of ``chunk_size`` classes at a time (default:
    :func:`~manual_autograd.ops.default_chunk_size`: 1024, or all classes if fewer), when the
    number of classes exceeds ``in_features`` or ``chunk_size`` is given. Otherwise (few classes,
    as MNIST's 10, where the logits are smaller than the input; class-probability targets;
    a K-dimensional ``linear_weight``) it is the unfused :func:`~manual_autograd.functional.linear`
    then :func:`~manual_autograd.functional.cross_entropy`, so nothing gets slower. Under autocast
    both paths follow the unfused chain's policy: the logits' matmuls in the autocast dtype, the
    cross-entropy (softmax, sums, class weight, gradient of the logits) in float32.

    Args:
        input: ``(in_features)`` or ``(N, in_features)``.
        linear_weight: ``(C, in_features)`` or ``(C, d1, ..., dK, in_features)``.
        target: class indices ``()``, ``(N)`` or ``(N, d1, ..., dK)``, or class probabilities of
            the logits' shape.
        linear_bias: ``(C)`` or ``(C, d1, ..., dK)``; optional.
        weight: ``(C)`` rescaling weight per class; optional.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        ignore_index: target value that is ignored; ``None`` means -100 for class indices.
        label_smoothing: in ``[0.0, 1.0]``.
        chunk_size: classes per block of the chunked path; ``None`` picks it (and picks the path).

    Examples::

        >>> x = torch.randn(64, 32, requires_grad=True)
        >>> w = torch.randn(1000, 32, requires_grad=True)
        >>> linear_cross_entropy(x, w, torch.randint(0, 1000, (64,))).backward()
    """
    autocast = torch._C._is_any_autocast_enabled() and isinstance(input, Tensor) and torch.is_autocast_enabled(input.device.type)
    if autocast:  # the native chain's policy: the Linear in the autocast dtype, cross-entropy in float32
        input, linear_weight, linear_bias = _autocast(
            torch.get_autocast_dtype(input.device.type), input.device, input, linear_weight, linear_bias
        )
        (weight,) = _autocast(torch.float32, input.device, weight)
    logits_shape, probabilities = checks.linear_cross_entropy(
        input, linear_weight, target, linear_bias, reduction, ignore_index, label_smoothing, chunk_size
    )
    ignore_index = -100 if ignore_index is None else ignore_index
    in_features, C = input.shape[-1], linear_weight.shape[0]
    if probabilities or linear_weight.dim() > 2 or (chunk_size is None and C <= in_features):
        w2d = linear_weight.reshape(-1, in_features)
        b1d = None if linear_bias is None else linear_bias.reshape(-1)
        logits = linear(input, w2d, b1d).reshape(logits_shape)
        return cross_entropy(
            logits, target, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
        )
    # chunked path: class indices, (N, in) input
    # under autocast the cross-entropy computes in float32 (float64 stays), its blocks' matmuls in x's dtype
    acc = torch.float32 if autocast and input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    checks.linear_cross_entropy_chunked(input, target, weight, C, ignore_index, logits_shape, acc)
    x = input if input.dim() == 2 else input.unsqueeze(0)
    chunk = chunk_size or default_chunk_size(C)
    with torch.autocast(input.device.type, enabled=False) if autocast else contextlib.nullcontext():
        out = LinearCrossEntropyFunction.apply(
            x, linear_weight, linear_bias, target.reshape(-1), weight, int(ignore_index), reduction,
            float(label_smoothing), int(chunk), acc,
        )[0]
    return out.reshape(target.shape) if reduction == "none" and out.shape != target.shape else out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    r"""Zero each element with probability ``p`` and scale the rest by ``1 / (1 − p)``, keeping a
    1-bit mask for backward. See :class:`manual_autograd.nn.Dropout`.

    On CPU the mask is torch's own draw: under the same seed the result is ``torch.nn.functional.dropout``'s.
    """
    checks.dropout(input, p, inplace)
    p = float(p)
    if p == 0 or not training or input.numel() == 0:
        return input  # torch returns the input itself
    if not input.is_floating_point():
        if p == 1:  # torch multiplies by an integer zero
            return input.mul_(0) if inplace else input * 0
        raise RuntimeError(f"dropout(): expected 'input' to be a floating-point tensor, got dtype {input.dtype}")
    if inplace and p < 1 and checks.grad_view(input):
        # a Function that modifies a view in place may return nothing else (the mask): out of place, copied back
        return input.copy_(DropoutFunction.apply(input, p, False)[0])
    out = DropoutFunction.apply(input, p, bool(inplace))
    return out if p == 1 else out[0]


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: Optional[int] = None,
    max_norm: Optional[float] = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    r"""Look up rows of ``weight`` by the indices ``input``, keeping only the indices for backward.

    Same contract as :func:`torch.nn.functional.embedding` (``max_norm`` renormalises the rows
    looked up in place, as there; ``sparse=True`` gives a sparse COO gradient).
    See :class:`manual_autograd.nn.Embedding`.
    """
    padding_idx = checks.embedding(input, weight, padding_idx)
    num = weight.shape[0]
    kernels = backend.kernels_for(weight, input)
    if kernels or max_norm is not None:
        if input.device.type == "cpu":  # the interpreted kernel and embedding_renorm_ do not check
            checks.embedding_indices(input, num)
        else:
            torch._assert_async(((input >= 0) & (input < num)).all())
    if max_norm is not None:
        input = input.contiguous()
        with torch.no_grad():
            torch.embedding_renorm_(weight, input, max_norm, norm_type)
    try:
        return EmbeddingFunction.apply(input, weight, padding_idx, bool(scale_grad_by_freq), bool(sparse))
    except IndexError:  # an index out of range: name it clearly
        if input.device.type == "cpu":
            checks.embedding_indices(input, num)
        raise


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
) -> Tensor:
    r"""``softmax(query keyᵀ · scale + mask) value``, keeping one log-sum-exp per query row, never the probabilities.

    Same signature and result as :func:`torch.nn.functional.scaled_dot_product_attention`
    (``enable_gqa`` as torch ≥ 2.5 has it). :class:`~manual_autograd.ops.AttentionFunction` saves
    ``query``, ``key``, ``value``, the output and the per-row log-sum-exp, and recomputes the
    probabilities block by block of keys in backward. ``is_causal``: query ``i`` sees key ``j ≤ i``
    (torch's top-left alignment, also when ``L ≠ S``); a row that sees no key gives 0, as torch's
    (math and CPU kernel alike). Dropout regenerates its mask from a seed drawn from torch's generator: the mask
    is not torch's (whose fused kernels draw their own), its law is; with dropout, a
    ``torch.compile(fullgraph=True)`` graph breaks (the seed is read as a Python int, the
    generator is an opaque object) and torch.func transforms are not supported. Grouped-query attention is
    a view of ``query`` as ``(…, Hkv, G, L, E)`` against ``key``/``value`` as ``(…, Hkv, 1, S, E)``,
    not a ``repeat_interleave`` copy. There is no module twin: :class:`torch.nn.MultiheadAttention`
    takes its own path, and :mod:`manual_autograd.convert` leaves it as it is.

    Args:
        query: ``(…, L, E)``.
        key: ``(…, S, E)``.
        value: ``(…, S, Ev)``.
        attn_mask: bool (True takes part) or float (added), broadcastable to ``(…, L, S)``; optional.
        dropout_p: probability of dropping an attention weight (torch ignores ``p ≤ 0``).
        is_causal: the causal mask (not with ``attn_mask``).
        scale: the factor of ``query keyᵀ``; ``None`` means ``1/√E``.
        enable_gqa: ``key``/``value`` heads (dim −3) divide ``query``'s, each serving a group.

    Examples::

        >>> q, k, v = (torch.randn(2, 8, 128, 64, requires_grad=True) for _ in range(3))
        >>> scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    """
    if torch._C._is_any_autocast_enabled() and isinstance(query, Tensor):
        dev = query.device
        if torch.is_autocast_enabled(dev.type):  # torch's policy: attention runs in the autocast dtype
            query, key, value, attn_mask = _autocast(torch.get_autocast_dtype(dev.type), dev, query, key, value, attn_mask)
    checks.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    E = query.shape[-1]
    scale = (1.0 / math.sqrt(E) if E else 1.0) if scale is None else float(scale)
    p = float(dropout_p) if dropout_p > 0 else 0.0
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64)) if p > 0 else 0
    q, k, v, mask, grouped = query, key, value, attn_mask, False
    if enable_gqa and min(q.dim(), k.dim(), v.dim()) >= 3:
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        if hk == hv and hk != hq:  # one group of G = hq / hk query heads per key/value head: a view
            q, k, v, grouped = q.unflatten(-3, (hk, hq // hk)), k.unsqueeze(-3), v.unsqueeze(-3), True
            if mask is not None and mask.dim() >= 3:
                mask = mask.unflatten(-3, (hk, hq // hk)) if mask.shape[-3] == hq else mask.unsqueeze(-3)
        elif hk != hq or hv != hq:  # key and value grouped differently: expanded, as torch does
            k = k.repeat_interleave(hq // hk, -3) if hk != hq else k
            v = v.repeat_interleave(hq // hv, -3) if hv != hq else v
    out = AttentionFunction.apply(q, k, v, mask, p, bool(is_causal), scale, seed, _attention.KEY_BLOCK)[0]
    return out.flatten(-4, -3) if grouped else out


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    r"""SwiGLU, ``silu(gate) · up``, keeping only ``gate`` and ``up`` for backward.

    Equal to ``torch.nn.functional.silu(gate) * up`` (which also keeps ``silu(gate)``).

    Args:
        gate: ``(*)``, the activation's input.
        up: ``(*)``, the same shape, dtype and device as ``gate`` (no broadcasting).

    Examples::

        >>> gate, up = torch.randn(8, 64, requires_grad=True), torch.randn(8, 64)
        >>> swiglu(gate, up).shape
        torch.Size([8, 64])
    """
    checks.glu("swiglu", gate, up)
    return GLUFunction.apply(gate, up, "silu", "none")


def geglu(gate: Tensor, up: Tensor, approximate: str = "none") -> Tensor:
    r"""GEGLU, ``gelu(gate, approximate) · up``, keeping only ``gate`` and ``up`` for backward.

    Equal to ``torch.nn.functional.gelu(gate, approximate=approximate) * up``.

    Args:
        gate: ``(*)``, the activation's input.
        up: ``(*)``, the same shape, dtype and device as ``gate`` (no broadcasting).
        approximate: ``'none'`` | ``'tanh'``, the GELU variant.
    """
    checks.glu("geglu", gate, up, approximate)
    return GLUFunction.apply(gate, up, "gelu", approximate)


def gated_linear(
    gate: Tensor,
    up: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: str = "silu",
    approximate: str = "none",
) -> Tensor:
    r"""Apply ``(act(gate) · up) Wᵀ + b`` as one op keeping ``gate``, ``up`` (and ``W``) for backward.

    Equal to ``linear(act(gate) * up, weight, bias)``, the down projection of a Llama-style MLP;
    the product is recomputed in backward. Under autocast it follows the unfused chain: the
    product in the inputs' dtype, the matrix product in the autocast dtype.
    See :class:`manual_autograd.nn.GatedMLP`.

    Args:
        gate: ``(*, in_features)``, the activation's input.
        up: ``(*, in_features)``, the same shape, dtype and device as ``gate``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features)``; optional.
        activation: ``'silu'`` (SwiGLU) | ``'gelu'`` (GEGLU).
        approximate: ``'none'`` | ``'tanh'``, the GELU variant.

    Examples::

        >>> gate, up = torch.randn(8, 64, requires_grad=True), torch.randn(8, 64)
        >>> gated_linear(gate, up, torch.randn(16, 64)).shape
        torch.Size([8, 16])
    """
    cast = False
    if torch._C._is_any_autocast_enabled() and isinstance(gate, Tensor):
        dev = gate.device
        if torch.is_autocast_enabled(dev.type) and gate.dtype != torch.float64:  # the product's operands, as linear's
            weight, bias = _autocast(torch.get_autocast_dtype(dev.type), dev, weight, bias)
            cast = True
    checks.gated_linear(gate, up, weight, bias, activation, approximate, autocast=cast)
    return GatedLinearFunction.apply(gate, up, weight, bias, activation, approximate)


def _fp32_autocast(input) -> bool:
    """Whether autocast runs a norm in float32 here: torch's policy casts ``layer_norm`` and
    ``rms_norm`` to float32 on CUDA, and leaves them in the input's dtype on CPU."""
    return (
        torch._C._is_any_autocast_enabled() and isinstance(input, Tensor) and input.device.type == "cuda"
        and torch.is_autocast_enabled("cuda")
    )


def layer_norm(
    input: Tensor,
    normalized_shape: List[int],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Apply layer normalisation over the last ``len(normalized_shape)`` dims, with a hand-written
    backward that keeps the input and per-row mean and rstd. See :class:`manual_autograd.nn.LayerNorm`."""
    if _fp32_autocast(input):
        input, weight, bias = _autocast(torch.float32, input.device, input, weight, bias)
        with torch.autocast("cuda", enabled=False):
            return layer_norm(input, normalized_shape, weight, bias, eps)
    normalized_shape = checks.norm("layer_norm", input, normalized_shape, weight, bias, eps, 5)
    return LayerNormFunction.apply(input, normalized_shape, weight, bias, float(eps))[0]


def rms_norm(
    input: Tensor,
    normalized_shape: List[int],
    weight: Optional[Tensor] = None,
    eps: Optional[float] = None,
) -> Tensor:
    r"""Apply root mean square normalisation over the last ``len(normalized_shape)`` dims, with a
    hand-written backward that keeps the input and per-row rstd. ``eps=None`` is the machine epsilon
    of the compute dtype (float32 for half precision), as torch's. See :class:`manual_autograd.nn.RMSNorm`."""
    if _fp32_autocast(input):
        input, weight = _autocast(torch.float32, input.device, input, weight)
        with torch.autocast("cuda", enabled=False):
            return rms_norm(input, normalized_shape, weight, eps)
    normalized_shape = checks.norm("rms_norm", input, normalized_shape, weight, False, eps, 4)
    if eps is None:
        eps = torch.finfo(torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype).eps
    return RMSNormFunction.apply(input, normalized_shape, weight, float(eps))[0]


def _softmax_dtype(input: Tensor, dtype):
    """The ``dtype`` softmax casts to: CUDA autocast runs softmax in float32 unless a dtype is
    given (torch's ``fp32_set_opt_dtype`` policy); CPU autocast leaves it in the input's dtype."""
    if (
        dtype is None
        and torch._C._is_any_autocast_enabled()
        and input.is_cuda
        and torch.is_autocast_enabled("cuda")
        and input.is_floating_point()
        and input.dtype != torch.float64
    ):
        return torch.float32
    return dtype


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""Apply softmax along ``dim``, saving only the output. See :class:`manual_autograd.nn.Softmax`.

    Same as :func:`torch.nn.functional.softmax`: ``dim=None`` picks a dim as torch does (with its
    deprecation warning); ``dtype`` casts the input before the op.
    """
    if dim is None:
        dim = _get_softmax_dim("softmax", input.dim(), _stacklevel + 1)  # + the __torch_function__ wrapper
    dim = checks.softmax("softmax", input, dim, dtype)
    dtype = _softmax_dtype(input, dtype)
    return SoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim, False)


def log_softmax(
    input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[torch.dtype] = None
) -> Tensor:
    r"""Apply ``log(softmax(x))`` along ``dim``, saving only the output. See :class:`manual_autograd.nn.LogSoftmax`."""
    if dim is None:
        dim = _get_softmax_dim("log_softmax", input.dim(), _stacklevel + 1)
    dim = checks.softmax("log_softmax", input, dim, dtype)
    dtype = _softmax_dtype(input, dtype)
    return SoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim, True)


def sigmoid(input: Tensor) -> Tensor:
    r"""Apply ``1 / (1 + exp(-x))`` elementwise, saving the output. See :class:`manual_autograd.nn.Sigmoid`."""
    checks.activation_input("sigmoid", input)
    if not input.is_floating_point():  # integers (no gradient) and complex: torch's own op, as is
        return torch.sigmoid(input)
    return SigmoidFunction.apply(input)


def tanh(input: Tensor) -> Tensor:
    r"""Apply ``tanh(x)`` elementwise, saving the output. See :class:`manual_autograd.nn.Tanh`."""
    checks.activation_input("tanh", input)
    if not input.is_floating_point():  # integers (no gradient) and complex: torch's own op, as is
        return torch.tanh(input)
    return TanhFunction.apply(input)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Mean squared error, optionally weighted, saving only references to its inputs.

    Same contract as :func:`torch.nn.functional.mse_loss` (torch 2.14's signature, ``weight``
    included): ``target`` broadcasts against ``input`` (with torch's warning when the sizes
    differ), ``weight`` has ``input``'s shape and a weighted ``'mean'`` divides by ``Σ weight``.
    See :class:`manual_autograd.nn.MSELoss`.
    """
    checks._tensor_attr("mse_loss", "input", input)
    checks._tensor_attr("mse_loss", "target", target)
    if target.size() != input.size() and not torch.compiler.is_compiling():  # dynamo cannot trace warn
        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,  # the caller of the __torch_function__ wrapper
        )
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    dtype = checks.mse_loss(input, target, weight, reduction)
    if weight is None and torch._C._is_any_autocast_enabled() and torch.is_autocast_enabled(input.device.type):
        # float32 under autocast, as torch's mse_loss; (torch's weighted form is plain tensor ops that
        # autocast leaves to type promotion); autocast stays off inside
        input, target = _autocast(torch.float32, input.device, input, target)
        with torch.autocast(input.device.type, enabled=False):
            return _mse_loss(input, target, None, reduction, checks.mse_loss(input, target, None, reduction))
    return _mse_loss(input, target, weight, reduction, dtype)


def _mse_loss(input, target, weight, reduction, dtype):
    input, target = input.to(dtype), target.to(dtype)  # torch's type promotion (no copy when equal)
    if weight is not None:
        weight = weight.to(dtype)
    return MSELossFunction.apply(input, target, weight, reduction)


def _overridable(fn):
    """``fn`` with torch.nn.functional's ``__torch_function__`` protocol: a call on a tensor-like
    that overrides it (a torch.fx ``Proxy``, a tensor subclass, an active TorchFunctionMode) is
    handed to that override, as torch's own functionals do; so a symbolic trace records one
    ``call_function`` node of this function however it was imported."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if has_torch_function(args) or (kwargs and has_torch_function(tuple(kwargs.values()))):
            return handle_torch_function(wrapper, (*args, *kwargs.values()), *args, **kwargs)
        return fn(*args, **kwargs)

    # a code object of its own: dynamo's cache (and recompile limit) is per code object
    wrapper.__code__ = wrapper.__code__.replace(co_name=fn.__name__)
    return wrapper


for _name in __all__:
    globals()[_name] = _overridable(globals()[_name])
del _name
