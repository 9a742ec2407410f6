"""Functional interface, signature for signature the same as ``torch.nn.functional``.

Each function checks its arguments (:mod:`manual_autograd.checks`, before anything is computed
or mutated) and applies the hand-written Function (:mod:`manual_autograd.ops`).
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor
from torch.nn import _reduction
from torch.nn.functional import _get_softmax_dim

from . import backend, checks
from .ops import (
    ActivationLinearFunction,
    CrossEntropyFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearCrossEntropyFunction,
    LinearFunction,
    ReLUFunction,
    SiLUFunction,
    default_chunk_size,
)
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
    return tuple(
        t.to(dtype)
        if isinstance(t, Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device == device
        else t
        for t in tensors
    )


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
    checks.leaky_relu(input, negative_slope, inplace)
    negative_slope = float(negative_slope)
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
    param = checks.activation_linear(input, weight, bias, activation, negative_slope, approximate)
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
    then :func:`~manual_autograd.functional.cross_entropy`, so nothing gets slower.

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
    checks.linear_cross_entropy_chunked(input, target, weight, C, ignore_index, logits_shape)
    x = input if input.dim() == 2 else input.unsqueeze(0)
    chunk = chunk_size or default_chunk_size(C)
    out = LinearCrossEntropyFunction.apply(
        x, linear_weight, linear_bias, target.reshape(-1), weight, int(ignore_index), reduction,
        float(label_smoothing), int(chunk),
    )[0]
    return out.reshape(target.shape) if reduction == "none" and out.shape != target.shape else out


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
        dim = _get_softmax_dim("softmax", input.dim(), _stacklevel)
    dim = checks.softmax("softmax", input, dim, dtype)
    dtype = _softmax_dtype(input, dtype)
    return SoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim, False)


def log_softmax(
    input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[torch.dtype] = None
) -> Tensor:
    r"""Apply ``log(softmax(x))`` along ``dim``, saving only the output. See :class:`manual_autograd.nn.LogSoftmax`."""
    if dim is None:
        dim = _get_softmax_dim("log_softmax", input.dim(), _stacklevel)
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
            stacklevel=2,
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
