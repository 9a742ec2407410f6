"""Argument checks of every public function, run before anything is computed or mutated.

Each raises the exception type torch raises for the same mistake, with a message that names the
argument, what was expected and what came. Nothing here computes an op.
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import Tensor

from .ops import ACTIVATIONS

__all__ = [
    "shape",
    "tensor",
    "floating",
    "like",
    "inplace_input",
    "grad_view",
    "number",
    "weight_shape",
    "linear_ok",
    "linear_error",
    "leaky_relu",
    "gelu",
    "silu",
    "cross_entropy",
    "index_target",
    "target_values",
    "activation_linear",
    "linear_cross_entropy",
    "linear_cross_entropy_chunked",
    "real_floating",
    "softmax",
    "activation_input",
    "mse_loss",
]


def shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def tensor(fn: str, name: str, t, position: int) -> None:
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


def floating(fn: str, x: Tensor) -> None:
    if not (x.is_floating_point() or x.is_complex()):
        raise _torch_error_type("dtype")(f"{fn}(): expected 'input' to be a floating-point tensor, got dtype {x.dtype}")


def like(fn: str, name: str, t: Tensor, like_name: str, like: Tensor) -> None:
    """Refuse ``t`` (argument ``name``) unless it has the dtype and device of ``like``."""
    if t.dtype != like.dtype or t.device != like.device:
        raise RuntimeError(
            f"{fn}(): expected '{name}' of dtype {like.dtype} on {like.device} like '{like_name}', "
            f"got {t.dtype} on {t.device}"
        )


def inplace_input(fn: str, x: Tensor) -> None:
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


def grad_view(x: Tensor) -> bool:
    """Whether ``x`` is a view that autograd will track an in-place change of."""
    # (x._base, not x._is_view(): the latter breaks a torch.compile graph)
    return x.requires_grad and torch.is_grad_enabled() and x._base is not None


def weight_shape(fn: str, input: Tensor, weight: Tensor) -> None:
    """A Linear's ``weight``: ``(out_features, in_features)``, ``in_features`` the input's last dim."""
    if weight.dim() != 2:
        raise RuntimeError(f"{fn}(): expected 'weight' of shape (out_features, in_features), got shape {shape(weight)}")
    if input.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"{fn}(): expected 'input' with last dimension in_features={weight.shape[1]} "
            f"(weight has shape {shape(weight)}), got input of shape {shape(input)}"
        )


def _bad_bias(bias, weight) -> bool:
    return (
        not isinstance(bias, Tensor)
        or bias.dim() > 1
        or bias.numel() not in (1, weight.shape[0])
        or bias.dtype != weight.dtype
        or bias.device != weight.device
    )


def linear_error(input, weight, bias) -> None:
    tensor("linear", "input", input, 1)
    tensor("linear", "weight", weight, 2)
    if input.dim() == 0:
        raise RuntimeError("linear(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    weight_shape("linear", input, weight)
    if input.dtype != weight.dtype:
        raise RuntimeError(f"linear(): expected 'input' and 'weight' of the same dtype, got {input.dtype} and {weight.dtype}")
    if input.device != weight.device:
        raise RuntimeError(
            f"linear(): expected 'input' and 'weight' on the same device, got {input.device} and {weight.device}"
        )
    if bias is not None:
        tensor("linear", "bias", bias, 3)
        if bias.dim() > 1 or bias.numel() not in (1, weight.shape[0]):
            raise RuntimeError(
                f"linear(): expected 'bias' of shape ({weight.shape[0]},) to match out_features, "
                f"got shape {shape(bias)}"
            )
        if bias.dtype != weight.dtype:
            raise RuntimeError(f"linear(): expected 'bias' of dtype {weight.dtype} like 'weight', got {bias.dtype}")
        if bias.device != weight.device:
            raise RuntimeError(f"linear(): expected 'bias' on {weight.device} like 'weight', got {bias.device}")
    raise RuntimeError("linear(): invalid arguments")  # unreachable unless a check above is missing


def index_target(input: Tensor, target: Tensor, C: int) -> None:
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(
            "cross_entropy(): expected 'target' of class indices with dtype torch.int64 (or torch.uint8), "
            f"or class probabilities of shape {shape(input)}; got dtype {target.dtype} and shape {shape(target)}"
        )
    if input.dim() == 1:
        if target.dim() > 1 or target.numel() != 1:
            raise _torch_error_type("unbatched target")(
                f"cross_entropy(): for 'input' of shape ({C},), expected 'target' of shape () or (1,), "
                f"got shape {shape(target)}"
            )
        return
    if input.dim() == 2 and target.dim() == 1:
        if target.shape[0] != input.shape[0]:
            raise ValueError(
                f"cross_entropy(): expected 'target' batch size {input.shape[0]} to match 'input' batch size, "
                f"got target of shape {shape(target)} for input of shape {shape(input)}"
            )
        return
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise RuntimeError(
            f"cross_entropy(): expected 'target' of shape {tuple(expected)} (class indices) or "
            f"{shape(input)} (class probabilities), got shape {shape(target)}"
        )


def target_values(target: Tensor, C: int, ignore_index: int) -> None:
    target = target.long()  # a uint8 target would wrap a negative ignore_index
    bad = ((target < 0) | (target >= C)) & (target != ignore_index)
    if bad.any():
        value = target[bad].reshape(-1)[0]
        raise IndexError(
            f"cross_entropy(): expected 'target' class indices in [0, {C}) or ignore_index={ignore_index}, "
            f"got {int(value)}"
        )




def number(fn: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}(): argument '{name}' must be a number, got {type(value).__name__}")


def linear_ok(input, weight, bias) -> bool:
    """Whether ``linear`` may apply its Function at once: one cheap chain of tests (every call pays it)."""
    return (
        isinstance(input, Tensor)
        and isinstance(weight, Tensor)
        and input.dim() != 0
        and weight.dim() == 2
        and input.shape[-1] == weight.shape[1]
        and input.dtype == weight.dtype
        and input.device == weight.device
        and (bias is None or not _bad_bias(bias, weight))
    )


def leaky_relu(input, negative_slope, inplace: bool) -> None:
    tensor("leaky_relu", "input", input, 1)
    floating("leaky_relu", input)
    if isinstance(negative_slope, Tensor) or not isinstance(negative_slope, (int, float)):
        raise TypeError(
            f"leaky_relu(): argument 'negative_slope' must be a number, got {type(negative_slope).__name__}"
        )
    if inplace:
        inplace_input("leaky_relu", input)


def gelu(input, approximate) -> None:
    tensor("gelu", "input", input, 1)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu(): argument 'approximate' must be str, not {type(approximate).__name__}")
    if approximate != "none" and approximate != "tanh":
        raise RuntimeError(f"gelu(): argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    floating("gelu", input)


def silu(input, inplace: bool) -> None:
    tensor("silu", "input", input, 1)
    floating("silu", input)
    if inplace:
        inplace_input("silu", input)


def cross_entropy(input: Tensor, target: Tensor, weight, ignore_index: int, reduction: str, label_smoothing) -> Tensor:
    """Check ``cross_entropy``'s arguments (``input`` and ``target`` already known tensors);
    returns the target as the op reads it (class probabilities in the input's dtype)."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"cross_entropy(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"cross_entropy(): argument 'label_smoothing' must be in [0.0, 1.0], got {label_smoothing}")
    if input.dim() == 0:
        raise RuntimeError("cross_entropy(): expected 'input' of shape (C), (N, C) or (N, C, d1, ...), got a 0-dim tensor")
    floating("cross_entropy", input)
    C = input.shape[0] if input.dim() == 1 else input.shape[1]
    if weight is not None:
        tensor("cross_entropy", "weight", weight, 3)
        if weight.dim() != 1 or weight.shape[0] != C:
            raise RuntimeError(
                f"cross_entropy(): expected 'weight' of shape ({C},), one per class, got shape {shape(weight)}"
            )
        like("cross_entropy", "weight", weight, "input", input)
    if target.device != input.device:
        raise RuntimeError(f"cross_entropy(): expected 'target' on {input.device} like 'input', got {target.device}")
    if target.shape != input.shape:  # class indices
        index_target(input, target, C)
        return target
    if not target.is_floating_point():
        raise RuntimeError(
            "cross_entropy(): 'target' has the shape of 'input', so it is read as class probabilities and "
            f"must be floating point, got dtype {target.dtype}"
        )
    if ignore_index >= 0:
        raise RuntimeError(
            f"cross_entropy(): argument 'ignore_index' ({ignore_index}) is not supported with class-probability targets"
        )
    return target.to(input.dtype)


def activation_linear(input, weight, bias, activation, negative_slope, approximate):
    """Check ``activation_linear``'s arguments; returns the activation's parameter as the op takes it."""
    fn = "activation_linear"
    tensor(fn, "input", input, 1)
    tensor(fn, "weight", weight, 2)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}(): argument 'activation' must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if input.dim() == 0:
        raise RuntimeError(f"{fn}(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    floating(fn, input)
    weight_shape(fn, input, weight)
    like(fn, "weight", weight, "input", input)
    if bias is not None:
        tensor(fn, "bias", bias, 3)
        if tuple(bias.shape) != (weight.shape[0],):
            raise RuntimeError(f"{fn}(): expected 'bias' of shape ({weight.shape[0]},), got shape {shape(bias)}")
        like(fn, "bias", bias, "weight", weight)
    if activation == "leaky_relu":
        number(fn, "negative_slope", negative_slope)
        return float(negative_slope)
    if activation == "gelu":
        if approximate != "none" and approximate != "tanh":
            raise RuntimeError(f"{fn}(): argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
        return approximate
    return None


def linear_cross_entropy(input, linear_weight, target, linear_bias, reduction, ignore_index, label_smoothing, chunk_size):
    """Check what every path of ``linear_cross_entropy`` reads; returns the logits' shape and
    whether ``target`` holds class probabilities."""
    fn = "linear_cross_entropy"
    tensor(fn, "input", input, 1)
    tensor(fn, "linear_weight", linear_weight, 2)
    tensor(fn, "target", target, 3)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")
    number(fn, "label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"{fn}(): argument 'label_smoothing' must be in [0.0, 1.0], got {label_smoothing}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)):
        raise TypeError(f"{fn}(): argument 'chunk_size' must be an int or None, got {type(chunk_size).__name__}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"{fn}(): argument 'chunk_size' must be >= 1, got {chunk_size}")
    if input.dim() not in (1, 2):
        raise RuntimeError(f"{fn}(): expected 'input' of shape (in_features) or (N, in_features), got shape {shape(input)}")
    floating(fn, input)
    if linear_weight.dim() < 2:
        raise RuntimeError(
            f"{fn}(): expected 'linear_weight' of shape (C, in_features) or (C, d1, ..., in_features), "
            f"got shape {shape(linear_weight)}"
        )
    in_features, C = input.shape[-1], linear_weight.shape[0]
    out_features = tuple(linear_weight.shape[1:-1])
    if linear_weight.shape[-1] != in_features:
        raise RuntimeError(
            f"{fn}(): expected 'linear_weight' with last dimension in_features={in_features} like 'input' "
            f"(shape {shape(input)}), got shape {shape(linear_weight)}"
        )
    like(fn, "linear_weight", linear_weight, "input", input)
    if linear_bias is not None:
        tensor(fn, "linear_bias", linear_bias, 4)
        if tuple(linear_bias.shape) != (C, *out_features):
            raise RuntimeError(
                f"{fn}(): expected 'linear_bias' of shape {(C, *out_features)}, got shape {shape(linear_bias)}"
            )
        like(fn, "linear_bias", linear_bias, "input", input)
    if out_features and input.dim() == 1:
        raise RuntimeError(
            f"{fn}(): a K-dimensional loss (linear_weight of shape {shape(linear_weight)}) needs batched "
            f"input (N, {in_features}), got shape {shape(input)}"
        )
    logits_shape = (*input.shape[:-1], C, *out_features)
    probabilities = tuple(target.shape) == logits_shape
    if probabilities and ignore_index is not None:
        raise RuntimeError(f"{fn}(): argument 'ignore_index' cannot be given when 'target' holds class probabilities")
    return logits_shape, probabilities


def linear_cross_entropy_chunked(input, target, weight, C: int, ignore_index: int, logits_shape) -> None:
    """Check what only the chunked path reads: the class weight and the class-index target (its
    values too: the blocks never index by the target, so an out-of-range class would pass silently)."""
    fn = "linear_cross_entropy"
    if weight is not None:
        tensor(fn, "weight", weight, 5)
        if tuple(weight.shape) != (C,):
            raise RuntimeError(f"{fn}(): expected 'weight' of shape ({C},), one per class, got shape {shape(weight)}")
        like(fn, "weight", weight, "input", input)
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(
            f"{fn}(): expected 'target' of class indices with dtype torch.int64 (or torch.uint8), or class "
            f"probabilities of shape {logits_shape}; got dtype {target.dtype} and shape {shape(target)}"
        )
    expected = tuple(input.shape[:-1])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{fn}(): expected 'target' of shape {expected} to match 'input' of shape {shape(input)}, "
            f"got shape {shape(target)}"
        )
    if target.device != input.device:
        raise RuntimeError(f"{fn}(): expected 'target' on {input.device} like 'input', got {target.device}")
    t = target.reshape(-1)
    if t.device.type == "cpu":
        target_values(t, C, ignore_index)
    else:  # no host sync: fails at the next sync point; int64, as a uint8 target would wrap ignore_index
        t = t.long()
        torch._assert_async(~(((t < 0) | (t >= C)) & (t != ignore_index)).any())


def _tensor_attr(fn: str, name: str, t) -> None:
    """A non-tensor where torch's Python wrapper calls a Tensor method: AttributeError, as there."""
    if not isinstance(t, Tensor):
        raise AttributeError(f"{fn}(): argument '{name}' must be Tensor, not {type(t).__name__}")


def real_floating(fn: str, name: str, dtype: torch.dtype) -> None:
    if not dtype.is_floating_point:
        raise _torch_error_type("dtype")(f"{fn}(): expected '{name}' of a floating-point dtype, got {dtype}")


def softmax(fn: str, input, dim, dtype) -> int:
    """Check ``softmax``/``log_softmax``'s arguments (``dim`` already chosen when it was None);
    returns ``dim`` as an int in ``[0, ndim)``."""
    _tensor_attr(fn, "input", input)
    if isinstance(dim, bool):
        raise TypeError(f"{fn}(): argument 'dim' (position 2) must be int, not bool")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{fn}(): argument 'dim' (position 2) must be int, not {type(dim).__name__}") from None
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"{fn}(): argument 'dtype' must be torch.dtype, not {type(dtype).__name__}")
    n = max(input.dim(), 1)
    if not -n <= dim < n:
        raise IndexError(f"{fn}(): argument 'dim' must be in range [{-n}, {n - 1}] for 'input' of shape {shape(input)}, got {dim}")
    real_floating(fn, "dtype" if dtype is not None else "input", dtype or input.dtype)
    return dim % n


def activation_input(fn: str, input) -> None:
    """``sigmoid``/``tanh``: a tensor (any dtype: torch computes integers in the default float dtype)."""
    _tensor_attr(fn, "input", input)


def mse_loss(input, target, weight, reduction) -> torch.dtype:
    """Check ``mse_loss``'s arguments (legacy ``size_average``/``reduce`` already folded into
    ``reduction``); returns the dtype the loss computes in (torch's type promotion)."""
    fn = "mse_loss"
    _tensor_attr(fn, "input", input)
    _tensor_attr(fn, "target", target)
    try:
        torch.broadcast_shapes(input.shape, target.shape)
    except RuntimeError:
        raise RuntimeError(
            f"{fn}(): expected 'target' broadcastable to 'input' of shape {shape(input)}, got shape {shape(target)}"
        ) from None
    if weight is not None:
        _tensor_attr(fn, "weight", weight)
        if weight.shape != input.shape:
            raise ValueError(f"{fn}(): expected 'weight' of the shape of 'input' {shape(input)}, got shape {shape(weight)}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")
    for name, t in (("target", target), ("weight", weight)):
        if t is not None and t.device != input.device and t.dim() > 0:
            raise RuntimeError(f"{fn}(): expected '{name}' on {input.device} like 'input', got {t.device}")
    # (equal dtypes asked first: dynamo cannot trace result_type, which returns a dtype)
    dtype = input.dtype if input.dtype == target.dtype else torch.result_type(input, target)
    real_floating(fn, "input", dtype)
    if weight is not None and weight.dtype != dtype:
        dtype = torch.promote_types(dtype, weight.dtype)
    return dtype
