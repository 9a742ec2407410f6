"""Functional interface, signature for signature the same as ``torch.nn.functional``.

Each function checks its arguments (cheaply, before anything is computed or mutated), raises
the exception type torch raises for the same mistake with a message that names the argument,
what was expected and what came, and then applies the hand-written Function.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor
from torch.nn import _reduction

from .function import (
    CrossEntropyFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearFunction,
    ReLUFunction,
    SiLUFunction,
)

__all__ = ["linear", "relu", "relu_", "leaky_relu", "leaky_relu_", "gelu", "silu", "cross_entropy"]


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _check_tensor(fn: str, name: str, t, position: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): argument '{name}' (position {position}) must be Tensor, not {type(t).__name__}")


# Mistakes whose exception type changed across torch releases, each shown by a tiny call that
# makes it, with the type torch 2.11 and later raise: torch 2.4 raises RuntimeError for both.
_PROBES = {
    "dtype": (lambda: torch.nn.functional.gelu(torch.zeros(1, dtype=torch.long)), NotImplementedError),
    "unbatched target": (
        lambda: torch.nn.functional.cross_entropy(torch.zeros(3), torch.zeros(2, dtype=torch.long)),
        ValueError,
    ),
}


@functools.lru_cache(maxsize=None)
def _torch_error_type(mistake: str) -> type:
    """The exception type the running torch raises for ``mistake`` (asked once, on the first error);
    the 2.11 one should a later torch accept the probe."""
    probe, recent = _PROBES[mistake]
    try:
        probe()
    except Exception as e:  # noqa: BLE001 - whatever torch raises is the answer
        return type(e)
    return recent


def _check_floating(fn: str, x: Tensor) -> None:
    if not (x.is_floating_point() or x.is_complex()):
        raise _torch_error_type("dtype")(f"{fn}(): expected 'input' to be a floating-point tensor, got dtype {x.dtype}")


def _check_like(fn: str, name: str, t: Tensor, like_name: str, like: Tensor) -> None:
    """Refuse ``t`` (argument ``name``) unless it has the dtype and device of ``like``."""
    if t.dtype != like.dtype or t.device != like.device:
        raise RuntimeError(
            f"{fn}(): expected '{name}' of dtype {like.dtype} on {like.device} like '{like_name}', "
            f"got {t.dtype} on {t.device}"
        )


def _check_inplace(fn: str, x: Tensor) -> None:
    """Refuse what autograd would refuse, but before the input is overwritten."""
    if x.requires_grad and torch.is_grad_enabled():
        if x.is_leaf:
            raise RuntimeError(
                f"{fn}(): 'input' is a leaf tensor that requires grad; it cannot be modified in place "
                "(inplace=True). Pass inplace=False or a non-leaf tensor."
            )
        base = x._base
        if base is not None and base.is_leaf and base.requires_grad:
            raise RuntimeError(
                f"{fn}(): 'input' is a view of a leaf tensor that requires grad; it cannot be modified "
                "in place (inplace=True). Pass inplace=False."
            )


def _grad_view(x: Tensor) -> bool:
    """Whether ``x`` is a view that autograd will track an in-place change of."""
    # (x._base, not x._is_view(): the latter breaks a torch.compile graph)
    return x.requires_grad and torch.is_grad_enabled() and x._base is not None


# --------------------------------------------------------------------------------------------
# autocast: the native ops' cast policy. Under torch.autocast, linear runs in the autocast dtype,
# cross_entropy in float32, and the activations in their input's dtype (no cast).


def _autocast(dtype: torch.dtype, device: torch.device, *tensors):
    """Cast what autocast casts: floating-point tensors on its device, float64 excepted."""
    return tuple(
        t.to(dtype)
        if isinstance(t, Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device == device
        else t
        for t in tensors
    )


# --------------------------------------------------------------------------------------------
# linear


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
    if (
        not isinstance(input, Tensor)
        or not isinstance(weight, Tensor)
        or input.dim() == 0
        or weight.dim() != 2
        or input.shape[-1] != weight.shape[1]
        or input.dtype != weight.dtype
        or input.device != weight.device
        or (bias is not None and _bad_bias(bias, weight))
    ):
        if isinstance(weight, Tensor) and weight.dim() == 1 and isinstance(input, Tensor):
            # a 1-D weight is one output feature whose dim is dropped, as torch does
            b = None if bias is None else bias.reshape(1)
            return linear(input, weight.unsqueeze(0), b).squeeze(-1)
        _linear_error(input, weight, bias)
    return LinearFunction.apply(input, weight, bias)


def _bad_bias(bias, weight) -> bool:
    return (
        not isinstance(bias, Tensor)
        or bias.dim() > 1
        or bias.numel() not in (1, weight.shape[0])
        or bias.dtype != weight.dtype
        or bias.device != weight.device
    )


def _linear_error(input, weight, bias) -> None:
    _check_tensor("linear", "input", input, 1)
    _check_tensor("linear", "weight", weight, 2)
    if input.dim() == 0:
        raise RuntimeError("linear(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    if weight.dim() != 2:
        raise RuntimeError(
            f"linear(): expected 'weight' of shape (out_features, in_features), got shape {_shape(weight)}"
        )
    if input.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"linear(): expected 'input' with last dimension in_features={weight.shape[1]} "
            f"(weight has shape {_shape(weight)}), got input of shape {_shape(input)}"
        )
    if input.dtype != weight.dtype:
        raise RuntimeError(f"linear(): expected 'input' and 'weight' of the same dtype, got {input.dtype} and {weight.dtype}")
    if input.device != weight.device:
        raise RuntimeError(
            f"linear(): expected 'input' and 'weight' on the same device, got {input.device} and {weight.device}"
        )
    if bias is not None:
        _check_tensor("linear", "bias", bias, 3)
        if bias.dim() > 1 or bias.numel() not in (1, weight.shape[0]):
            raise RuntimeError(
                f"linear(): expected 'bias' of shape ({weight.shape[0]},) to match out_features, "
                f"got shape {_shape(bias)}"
            )
        if bias.dtype != weight.dtype:
            raise RuntimeError(f"linear(): expected 'bias' of dtype {weight.dtype} like 'weight', got {bias.dtype}")
        if bias.device != weight.device:
            raise RuntimeError(f"linear(): expected 'bias' on {weight.device} like 'weight', got {bias.device}")
    raise RuntimeError("linear(): invalid arguments")  # unreachable unless a check above is missing


# --------------------------------------------------------------------------------------------
# activations


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""Apply ``max(x, 0)`` elementwise. See :class:`manual_autograd.nn.ReLU`."""
    if not isinstance(input, Tensor):
        _check_tensor("relu", "input", input, 1)
    if inplace:
        _check_inplace("relu", input)
    return ReLUFunction.apply(input, bool(inplace))


def relu_(input: Tensor) -> Tensor:
    r"""In-place :func:`relu`."""
    return relu(input, inplace=True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    r"""Apply ``x if x > 0 else negative_slope * x``. See :class:`manual_autograd.nn.LeakyReLU`."""
    _check_tensor("leaky_relu", "input", input, 1)
    _check_floating("leaky_relu", input)
    if isinstance(negative_slope, Tensor) or not isinstance(negative_slope, (int, float)):
        raise TypeError(
            f"leaky_relu(): argument 'negative_slope' must be a number, got {type(negative_slope).__name__}"
        )
    if inplace:
        _check_inplace("leaky_relu", input)
    negative_slope = float(negative_slope)
    if inplace and negative_slope < 0 and _grad_view(input):
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
    _check_tensor("gelu", "input", input, 1)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu(): argument 'approximate' must be str, not {type(approximate).__name__}")
    if approximate != "none" and approximate != "tanh":
        raise RuntimeError(f"gelu(): argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    _check_floating("gelu", input)
    return GELUFunction.apply(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""Apply ``x σ(x)`` elementwise. See :class:`manual_autograd.nn.SiLU`."""
    _check_tensor("silu", "input", input, 1)
    _check_floating("silu", input)
    if inplace:
        _check_inplace("silu", input)
        if input.requires_grad and torch.is_grad_enabled():
            # The old input must be kept; a differentiable copy (what torch's silu_ keeps too) lets
            # double backward flow through it and works on views, then the result is copied back.
            return input.copy_(SiLUFunction.apply(input.clone(), False))
        return SiLUFunction.apply(input, True)[0]
    return SiLUFunction.apply(input, False)


# --------------------------------------------------------------------------------------------
# cross-entropy


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
    _check_tensor("cross_entropy", "input", input, 1)
    _check_tensor("cross_entropy", "target", target, 2)
    if torch._C._is_any_autocast_enabled() and torch.is_autocast_enabled(input.device.type):
        # float32 under autocast, as torch's own; autocast stays off inside (no lower-precision matmul)
        input, target, weight = _autocast(torch.float32, input.device, input, target, weight)
        with torch.autocast(input.device.type, enabled=False):
            return cross_entropy(input, target, weight, None, ignore_index, None, reduction, label_smoothing)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"cross_entropy(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"cross_entropy(): argument 'label_smoothing' must be in [0.0, 1.0], got {label_smoothing}")
    if input.dim() == 0:
        raise RuntimeError("cross_entropy(): expected 'input' of shape (C), (N, C) or (N, C, d1, ...), got a 0-dim tensor")
    _check_floating("cross_entropy", input)
    C = input.shape[0] if input.dim() == 1 else input.shape[1]
    if weight is not None:
        _check_tensor("cross_entropy", "weight", weight, 3)
        if weight.dim() != 1 or weight.shape[0] != C:
            raise RuntimeError(
                f"cross_entropy(): expected 'weight' of shape ({C},), one per class, got shape {_shape(weight)}"
            )
        _check_like("cross_entropy", "weight", weight, "input", input)
    if target.device != input.device:
        raise RuntimeError(
            f"cross_entropy(): expected 'target' on {input.device} like 'input', got {target.device}"
        )

    if target.shape == input.shape:  # class probabilities
        if not target.is_floating_point():
            raise RuntimeError(
                "cross_entropy(): 'target' has the shape of 'input', so it is read as class probabilities and "
                f"must be floating point, got dtype {target.dtype}"
            )
        if ignore_index >= 0:
            raise RuntimeError(
                f"cross_entropy(): argument 'ignore_index' ({ignore_index}) is not supported with "
                "class-probability targets"
            )
        target = target.to(input.dtype)
    else:  # class indices
        _check_index_target(input, target, C)
    try:
        return CrossEntropyFunction.apply(input, target, weight, int(ignore_index), reduction, float(label_smoothing))[0]
    except (RuntimeError, IndexError):  # an out-of-range class index: name it clearly
        if not target.is_floating_point() and target.device.type == "cpu":
            _check_target_values(target, C, ignore_index)
        raise


def _check_index_target(input: Tensor, target: Tensor, C: int) -> None:
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(
            "cross_entropy(): expected 'target' of class indices with dtype torch.int64 (or torch.uint8), "
            f"or class probabilities of shape {_shape(input)}; got dtype {target.dtype} and shape {_shape(target)}"
        )
    if input.dim() == 1:
        if target.dim() > 1 or target.numel() != 1:
            raise _torch_error_type("unbatched target")(
                f"cross_entropy(): for 'input' of shape ({C},), expected 'target' of shape () or (1,), "
                f"got shape {_shape(target)}"
            )
        return
    if input.dim() == 2 and target.dim() == 1:
        if target.shape[0] != input.shape[0]:
            raise ValueError(
                f"cross_entropy(): expected 'target' batch size {input.shape[0]} to match 'input' batch size, "
                f"got target of shape {_shape(target)} for input of shape {_shape(input)}"
            )
        return
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise RuntimeError(
            f"cross_entropy(): expected 'target' of shape {tuple(expected)} (class indices) or "
            f"{_shape(input)} (class probabilities), got shape {_shape(target)}"
        )


def _check_target_values(target: Tensor, C: int, ignore_index: int) -> None:
    target = target.long()  # a uint8 target would wrap a negative ignore_index
    bad = ((target < 0) | (target >= C)) & (target != ignore_index)
    if bad.any():
        value = target[bad].reshape(-1)[0]
        raise IndexError(
            f"cross_entropy(): expected 'target' class indices in [0, {C}) or ignore_index={ignore_index}, "
            f"got {int(value)}"
        )


# --------------------------------------------------------------------------------------------
# fused ops (defined in manual_autograd.fused, which builds on the functions above)

from .fused import activation_linear, linear_cross_entropy  # noqa: E402

__all__ += ["activation_linear", "linear_cross_entropy"]
