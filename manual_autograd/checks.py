"""Argument checks of every public function, run before anything is computed or mutated.

Each raises the exception type torch raises for the same mistake, with a message that names the
argument, what was expected and what came. Nothing here computes an op.
"""

from __future__ import annotations

import functools
import numbers
import operator

import torch
from torch import Tensor

from .ops import ACTIVATIONS, GLU_ACTIVATIONS

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
    "dropout",
    "embedding",
    "embedding_indices",
    "scaled_dot_product_attention",
    "slope",
    "gelu_approximate",
    "activation_name",
    "activation_param",
    "reduction_",
    "label_smoothing_",
    "probability_dtype",
    "class_weight_shape",
    "index_dtype",
    "glu",
    "gated_linear",
    "norm",
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


def like(fn: str, name: str, t: Tensor, like_name: str, like: Tensor, dtype=None) -> None:
    """Refuse ``t`` (argument ``name``) unless it has the dtype (or ``dtype``, where autocast
    makes it another) and device of ``like``."""
    dtype = like.dtype if dtype is None else dtype
    if t.dtype != dtype or t.device != like.device:
        raise RuntimeError(
            f"{fn}(): expected '{name}' of dtype {dtype} on {like.device} like '{like_name}', "
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


# The rules of a Linear's arguments, each written once, in the order torch checks them:
# ``(condition on input, weight, bias, exception type, message(fn, input, weight, bias))``. A
# condition may assume the ones before it hold. :func:`linear_ok` is all of them as one chain of
# tests (compiled from these conditions: every call of ``linear`` pays it); :func:`linear_error`
# raises the first that fails; :func:`weight_shape` the weight's two.
_WEIGHT_SHAPE_RULES = (
    (
        "weight.dim() == 2",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'weight' of shape (out_features, in_features), got shape {shape(w)}",
    ),
    (
        "input.shape[-1] == weight.shape[1]",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'input' with last dimension in_features={w.shape[1]} "
        f"(weight has shape {shape(w)}), got input of shape {shape(i)}",
    ),
)
_LINEAR_RULES = (
    (
        "isinstance(input, Tensor)",
        TypeError,
        lambda fn, i, w, b: f"{fn}(): argument 'input' (position 1) must be Tensor, not {type(i).__name__}",
    ),
    (
        "isinstance(weight, Tensor)",
        TypeError,
        lambda fn, i, w, b: f"{fn}(): argument 'weight' (position 2) must be Tensor, not {type(w).__name__}",
    ),
    (
        "input.dim() != 0",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor",
    ),
    *_WEIGHT_SHAPE_RULES,
    (
        "input.dtype == weight.dtype",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'input' and 'weight' of the same dtype, got {i.dtype} and {w.dtype}",
    ),
    (
        "input.device == weight.device",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'input' and 'weight' on the same device, got {i.device} and {w.device}",
    ),
    (
        "bias is None or isinstance(bias, Tensor)",
        TypeError,
        lambda fn, i, w, b: f"{fn}(): argument 'bias' (position 3) must be Tensor, not {type(b).__name__}",
    ),
    (
        "bias is None or (bias.dim() <= 1 and bias.numel() in (1, weight.shape[0]))",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'bias' of shape ({w.shape[0]},) to match out_features, got shape {shape(b)}",
    ),
    (
        "bias is None or bias.dtype == weight.dtype",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'bias' of dtype {w.dtype} like 'weight', got {b.dtype}",
    ),
    (
        "bias is None or bias.device == weight.device",
        RuntimeError,
        lambda fn, i, w, b: f"{fn}(): expected 'bias' on {w.device} like 'weight', got {b.device}",
    ),
)


def _condition(source: str):
    return eval(f"lambda input, weight, bias: {source}", {"Tensor": Tensor})  # noqa: S307 - our own constants


def _compiled(rules):
    """The rules with each condition a function, built once (a traced call must not ``eval``)."""
    return tuple((_condition(source), error, message) for source, error, message in rules)


_WEIGHT_SHAPE_CHECKS, _LINEAR_CHECKS = _compiled(_WEIGHT_SHAPE_RULES), _compiled(_LINEAR_RULES)


def _raise_first(fn: str, checks, input, weight, bias) -> None:
    for holds, error, message in checks:
        if not holds(input, weight, bias):
            raise error(message(fn, input, weight, bias))


def weight_shape(fn: str, input: Tensor, weight: Tensor) -> None:
    """A Linear's ``weight``: ``(out_features, in_features)``, ``in_features`` the input's last dim."""
    _raise_first(fn, _WEIGHT_SHAPE_CHECKS, input, weight, None)


def linear_error(input, weight, bias) -> None:
    """Raise for the first of linear's rules that fails (called once :func:`linear_ok` said one does)."""
    _raise_first("linear", _LINEAR_CHECKS, input, weight, bias)
    raise RuntimeError("linear(): invalid arguments")  # unreachable unless linear_ok and the rules disagree


#: Whether ``linear`` may apply its Function at once: every rule of ``_LINEAR_RULES``, one chain of tests.
linear_ok = _condition(" and ".join(f"({source})" for source, _, _ in _LINEAR_RULES))
linear_ok.__name__ = linear_ok.__qualname__ = "linear_ok"


def index_target(input: Tensor, target: Tensor, C: int) -> None:
    index_dtype("cross_entropy", target, tuple(input.shape))
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


def leaky_relu(input, negative_slope, inplace: bool) -> float:
    """Check ``leaky_relu``'s arguments; returns the slope as a float."""
    tensor("leaky_relu", "input", input, 1)
    floating("leaky_relu", input)
    negative_slope = slope("leaky_relu", negative_slope)
    if inplace:
        inplace_input("leaky_relu", input)
    return negative_slope


def gelu(input, approximate) -> None:
    tensor("gelu", "input", input, 1)
    gelu_approximate("gelu", approximate)
    floating("gelu", input)


def silu(input, inplace: bool) -> None:
    tensor("silu", "input", input, 1)
    floating("silu", input)
    if inplace:
        inplace_input("silu", input)


def cross_entropy(input: Tensor, target: Tensor, weight, ignore_index: int, reduction: str, label_smoothing) -> Tensor:
    """Check ``cross_entropy``'s arguments (``input`` and ``target`` already known tensors);
    returns the target. Class probabilities keep their dtype: the loss computes in the dtype of
    logits, target and class weight promoted together (:func:`probability_dtype`), as torch's."""
    reduction_("cross_entropy", reduction)
    label_smoothing_("cross_entropy", label_smoothing)
    if input.dim() == 0:
        raise RuntimeError("cross_entropy(): expected 'input' of shape (C), (N, C) or (N, C, d1, ...), got a 0-dim tensor")
    floating("cross_entropy", input)
    C = input.shape[0] if input.dim() == 1 else input.shape[1]
    if weight is not None:
        class_weight_shape("cross_entropy", weight, C, 3)
        if target.shape != input.shape:  # class indices: the weight in the logits' dtype, as nll_loss wants
            like("cross_entropy", "weight", weight, "input", input)
        elif weight.device != input.device:
            raise RuntimeError(f"cross_entropy(): expected 'weight' on {input.device} like 'input', got {weight.device}")
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
    return target


def activation_linear(input, weight, bias, activation, negative_slope, approximate, act_dtype=None):
    """Check ``activation_linear``'s arguments; returns the activation's parameter as the op takes it.
    ``act_dtype``: the dtype ``act(input)`` enters the Linear in, where it is not the input's
    (autocast casts it, as it casts the unfused chain's Linear input)."""
    fn = "activation_linear"
    tensor(fn, "input", input, 1)
    tensor(fn, "weight", weight, 2)
    activation_name(fn, activation)
    if input.dim() == 0:
        raise RuntimeError(f"{fn}(): expected 'input' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    floating(fn, input)
    weight_shape(fn, input, weight)
    like(fn, "weight", weight, "input", input, act_dtype)
    if bias is not None:
        tensor(fn, "bias", bias, 3)
        if tuple(bias.shape) != (weight.shape[0],):
            raise RuntimeError(f"{fn}(): expected 'bias' of shape ({weight.shape[0]},), got shape {shape(bias)}")
        like(fn, "bias", bias, "weight", weight)
    return activation_param(fn, activation, negative_slope, approximate)


def linear_cross_entropy(input, linear_weight, target, linear_bias, reduction, ignore_index, label_smoothing, chunk_size):
    """Check what every path of ``linear_cross_entropy`` reads; returns the logits' shape and
    whether ``target`` holds class probabilities."""
    fn = "linear_cross_entropy"
    tensor(fn, "input", input, 1)
    tensor(fn, "linear_weight", linear_weight, 2)
    tensor(fn, "target", target, 3)
    reduction_(fn, reduction)
    number(fn, "label_smoothing", label_smoothing)
    label_smoothing_(fn, label_smoothing)
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


def linear_cross_entropy_chunked(input, target, weight, C: int, ignore_index: int, logits_shape, acc=None) -> None:
    """Check what only the chunked path reads: the class weight (of dtype ``acc``, the
    cross-entropy's, when not the input's) and the class-index target (its values too: the blocks
    never index by the target, so an out-of-range class would pass silently)."""
    fn = "linear_cross_entropy"
    if weight is not None:
        class_weight_shape(fn, weight, C, 5)
        like(fn, "weight", weight, "input", input, acc)
    index_dtype(fn, target, tuple(logits_shape))
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


def dropout(input, p, inplace: bool) -> None:
    tensor("dropout", "input", input, 1)
    if isinstance(p, Tensor) and p.numel() == 1:
        p = p.item()
    number("dropout", "p", p)
    if not 0.0 <= p <= 1.0:  # ValueError, as torch
        raise ValueError(f"dropout(): argument 'p' (dropout probability) has to be between 0 and 1, but got {p}")
    if inplace:
        inplace_input("dropout", input)


def embedding(input, weight, padding_idx) -> int:
    """Check ``embedding``'s arguments; returns ``padding_idx`` normalised to ``[0, num)``, or -1 for none."""
    fn = "embedding"
    tensor(fn, "input", input, 1)
    tensor(fn, "weight", weight, 2)
    num = weight.shape[0] if weight.dim() else 0
    if padding_idx is not None:
        if not -num <= padding_idx < num:  # AssertionError, as torch's F.embedding
            raise AssertionError(
                f"{fn}(): argument 'padding_idx' must be within num_embeddings: in [{-num}, {num}), got {padding_idx}"
            )
        padding_idx = padding_idx + num if padding_idx < 0 else padding_idx
    if weight.dim() != 2:
        raise RuntimeError(f"{fn}(): expected 'weight' to be 2-D (num_embeddings, embedding_dim), got shape {shape(weight)}")
    if input.dtype not in (torch.int64, torch.int32):
        raise RuntimeError(f"{fn}(): expected 'input' of indices with dtype torch.int64 or torch.int32, got {input.dtype}")
    return -1 if padding_idx is None else int(padding_idx)


def embedding_indices(input: Tensor, num: int) -> None:
    """Refuse an index outside ``[0, num)`` (a host sync: CPU tensors, or on the paths that would not)."""
    if input.numel() == 0:
        return
    bad = (input < 0) | (input >= num)
    if bad.any():
        raise IndexError(
            f"embedding(): expected 'input' indices in [0, {num}) (num_embeddings), got {int(input[bad].reshape(-1)[0])}"
        )


# torch >= 2.5 has grouped-query attention (enable_gqa); its builtin has no inspectable signature
_TORCH_HAS_GQA = "enable_gqa" in (torch.nn.functional.scaled_dot_product_attention.__doc__ or "")


def scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa) -> None:
    """torch's checks of :func:`torch.nn.functional.scaled_dot_product_attention`, with the type it
    raises for each; the batch dims of ``query``, ``key``, ``value`` (after the grouped-query view
    with ``enable_gqa``) and ``attn_mask`` must broadcast to the output's, which the mask may not grow."""
    fn = "scaled_dot_product_attention"
    if enable_gqa and not _TORCH_HAS_GQA:
        raise TypeError(f"{fn}() got an unexpected keyword argument 'enable_gqa' (this torch, {torch.__version__}, has none)")
    for i, (name, t) in enumerate((("query", query), ("key", key), ("value", value)), 1):
        tensor(fn, name, t, i)
    if attn_mask is not None and not isinstance(attn_mask, Tensor):
        raise TypeError(f"{fn}(): argument 'attn_mask' must be Tensor, not {type(attn_mask).__name__}")
    for name, value_ in (("dropout_p", dropout_p), ("scale", scale)):
        if value_ is not None and (isinstance(value_, Tensor) or not isinstance(value_, (int, float))):
            raise TypeError(f"{fn}(): argument '{name}' must be float, not {type(value_).__name__}")
    if dropout_p is None:
        raise TypeError(f"{fn}(): argument 'dropout_p' must be float, not NoneType")
    for name, flag in (("is_causal", is_causal), ("enable_gqa", enable_gqa)):
        if not isinstance(flag, bool):
            raise TypeError(f"{fn}(): argument '{name}' must be bool, not {type(flag).__name__}")
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise RuntimeError(
            f"{fn}(): expected 'query', 'key' and 'value' of at least 2 dims, got query.dim: {query.dim()}, "
            f"key.dim: {key.dim()} and value.dim: {value.dim()}"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise RuntimeError(
            f"{fn}(): expected 'query', 'key' and 'value' of the same dtype, got query.dtype: {query.dtype}, "
            f"key.dtype: {key.dtype} and value.dtype: {value.dtype}"
        )
    if not query.is_floating_point():
        raise RuntimeError(f"{fn}(): expected 'query', 'key' and 'value' of a floating-point dtype, got {query.dtype}")
    if not (query.device == key.device == value.device):
        raise RuntimeError(
            f"{fn}(): expected 'query', 'key' and 'value' on one device, got {query.device}, {key.device} and {value.device}"
        )
    if key.shape[-1] != query.shape[-1]:
        raise RuntimeError(
            f"{fn}(): expected 'key' of shape (..., S, {query.shape[-1]}) (E like 'query'), got shape {shape(key)}"
        )
    if value.shape[-2] != key.shape[-2]:
        raise RuntimeError(
            f"{fn}(): expected 'value' of shape (..., {key.shape[-2]}, Ev) (S like 'key'), got shape {shape(value)}"
        )
    kb, vb = key.shape[:-2], value.shape[:-2]
    if enable_gqa and query.dim() >= 3 and key.dim() >= 3 and value.dim() >= 3:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hk == 0 or hv == 0 or hq % hk or hq % hv:
            raise RuntimeError(
                f"{fn}(): with enable_gqa=True the number of heads of 'key' ({hk}) and of 'value' ({hv}) must "
                f"divide the number of heads of 'query' ({hq})"
            )
        kb, vb = kb[:-1] + (hq,), vb[:-1] + (hq,)
    try:
        batch = torch.broadcast_shapes(query.shape[:-2], kb, vb)
    except RuntimeError:
        raise RuntimeError(
            f"{fn}(): expected the batch dims of 'query', 'key' and 'value' to broadcast, got shapes "
            f"{shape(query)}, {shape(key)} and {shape(value)}" + ("" if enable_gqa else " (grouped heads need enable_gqa=True)")
        ) from None
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError(f"{fn}(): an explicit 'attn_mask' should not be set when is_causal=True")
        if not (attn_mask.dtype in (torch.bool, torch.float32) or attn_mask.dtype == query.dtype):
            raise RuntimeError(
                f"{fn}(): expected 'attn_mask' of dtype bool or float or {query.dtype} like 'query', got {attn_mask.dtype}"
            )
        if attn_mask.device != query.device:
            raise RuntimeError(f"{fn}(): expected 'attn_mask' on {query.device} like 'query', got {attn_mask.device}")
        full = (*batch, query.shape[-2], key.shape[-2])
        try:
            fits = torch.broadcast_shapes(attn_mask.shape, full) == full
        except RuntimeError:
            fits = False
        if not fits:
            raise RuntimeError(f"{fn}(): expected 'attn_mask' broadcastable to shape {full}, got shape {shape(attn_mask)}")
    if dropout_p > 1:
        raise RuntimeError(f"{fn}(): dropout probability has to be between 0 and 1, but got {dropout_p}")


def slope(fn: str, value) -> float:
    """``negative_slope`` as torch's argument parser takes a Number: a real Python or NumPy
    number (bool too) or a 0-dim tensor that requires no gradient; returned as a float."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.requires_grad:
            raise TypeError(
                f"{fn}(): argument 'negative_slope' must be a number or a 0-dim tensor that requires no grad, "
                f"got a tensor of shape {shape(value)}{' requiring grad' if value.requires_grad else ''}"
            )
        value = value.item()
    elif not isinstance(value, numbers.Number):
        raise TypeError(f"{fn}(): argument 'negative_slope' must be a number, got {type(value).__name__}")
    if isinstance(value, complex):  # (what torch raises converting a complex scalar)
        raise RuntimeError(f"{fn}(): argument 'negative_slope' must be real, got {value}")
    return float(value)


def gelu_approximate(fn: str, value, error: type = RuntimeError) -> None:
    """GELU's ``approximate``: ``'none'`` or ``'tanh'`` (``error`` for another string, as torch's
    functional raises RuntimeError and a module's constructor may raise ValueError)."""
    if not isinstance(value, str):
        raise TypeError(f"{fn}(): argument 'approximate' must be str, not {type(value).__name__}")
    if value != "none" and value != "tanh":
        raise error(f"{fn}(): argument 'approximate' must be 'none' or 'tanh', got {value!r}")


def activation_name(fn: str, activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}(): argument 'activation' must be one of {tuple(ACTIVATIONS)}, got {activation!r}")


def activation_param(fn: str, activation: str, negative_slope, approximate, error: type = RuntimeError):
    """The fused activation's parameter as the op takes it: leaky_relu's slope (a float), gelu's
    approximation, else None; each checked as the activation's own functional checks it."""
    if activation == "leaky_relu":
        return slope(fn, negative_slope)
    if activation == "gelu":
        gelu_approximate(fn, approximate, error)
        return approximate
    return None


def reduction_(fn: str, reduction) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}(): argument 'reduction' must be 'none', 'mean' or 'sum', got {reduction!r}")


def label_smoothing_(fn: str, value) -> None:
    if not 0.0 <= value <= 1.0:
        raise RuntimeError(f"{fn}(): argument 'label_smoothing' must be in [0.0, 1.0], got {value}")


def probability_dtype(input: Tensor, target: Tensor, weight) -> torch.dtype:
    """The dtype torch computes a class-probability cross-entropy in: logits, target and class
    weight promoted together (bf16 logits with float32 targets give a float32 loss)."""
    dtype = torch.promote_types(input.dtype, target.dtype)
    return dtype if weight is None else torch.promote_types(dtype, weight.dtype)


def class_weight_shape(fn: str, weight, C: int, position: int) -> None:
    """A cross-entropy's class ``weight``: a tensor of shape ``(C,)``."""
    tensor(fn, "weight", weight, position)
    if tuple(weight.shape) != (C,):
        raise RuntimeError(f"{fn}(): expected 'weight' of shape ({C},), one per class, got shape {shape(weight)}")


def index_dtype(fn: str, target: Tensor, logits_shape: tuple) -> None:
    """A class-index ``target``: int64 or uint8 (else it would be class probabilities of ``logits_shape``)."""
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(
            f"{fn}(): expected 'target' of class indices with dtype torch.int64 (or torch.uint8), or class "
            f"probabilities of shape {logits_shape}; got dtype {target.dtype} and shape {shape(target)}"
        )


def _approximate(fn: str, approximate) -> None:
    if not isinstance(approximate, str):
        raise TypeError(f"{fn}(): argument 'approximate' must be str, not {type(approximate).__name__}")
    if approximate != "none" and approximate != "tanh":
        raise RuntimeError(f"{fn}(): argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")


def glu(fn: str, gate, up, approximate="none") -> None:
    """A gated unit's ``gate`` and ``up``: floating-point tensors of one shape, dtype and device."""
    tensor(fn, "gate", gate, 1)
    tensor(fn, "up", up, 2)
    _approximate(fn, approximate)
    for name, t in (("gate", gate), ("up", up)):
        if not t.is_floating_point():
            raise _torch_error_type("dtype")(f"{fn}(): expected '{name}' to be a floating-point tensor, got dtype {t.dtype}")
    if gate.shape != up.shape:
        raise RuntimeError(
            f"{fn}(): expected 'gate' and 'up' of the same shape, got gate of shape {shape(gate)} "
            f"and up of shape {shape(up)}"
        )
    like(fn, "up", up, "gate", gate)


def gated_linear(gate, up, weight, bias, activation, approximate, autocast: bool = False) -> None:
    """Check ``gated_linear``'s arguments; under ``autocast`` the weight's dtype may differ from the
    inputs' (it is the autocast dtype, theirs is kept for the elementwise product)."""
    fn = "gated_linear"
    glu(fn, gate, up, approximate)
    tensor(fn, "weight", weight, 3)
    if activation not in GLU_ACTIVATIONS:
        raise ValueError(f"{fn}(): argument 'activation' must be one of {GLU_ACTIVATIONS}, got {activation!r}")
    if gate.dim() == 0:
        raise RuntimeError(f"{fn}(): expected 'gate' of shape (*, in_features) with at least 1 dim, got a 0-dim tensor")
    if weight.dim() != 2:
        raise RuntimeError(f"{fn}(): expected 'weight' of shape (out_features, in_features), got shape {shape(weight)}")
    if gate.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"{fn}(): expected 'gate' and 'up' with last dimension in_features={weight.shape[1]} "
            f"(weight has shape {shape(weight)}), got shape {shape(gate)}"
        )
    if autocast:
        if weight.device != gate.device:
            raise RuntimeError(f"{fn}(): expected 'weight' on {gate.device} like 'gate', got {weight.device}")
    else:
        like(fn, "weight", weight, "gate", gate)
    if bias is not None:
        tensor(fn, "bias", bias, 4)
        if tuple(bias.shape) != (weight.shape[0],):
            raise RuntimeError(f"{fn}(): expected 'bias' of shape ({weight.shape[0]},), got shape {shape(bias)}")
        like(fn, "bias", bias, "weight", weight)


def _norm_shape(fn: str, normalized_shape) -> tuple:
    if not isinstance(normalized_shape, (tuple, list, torch.Size)) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in normalized_shape
    ):
        raise TypeError(
            f"{fn}(): argument 'normalized_shape' (position 2) must be tuple of ints, not {type(normalized_shape).__name__}"
        )
    if len(normalized_shape) == 0:
        raise RuntimeError(f"{fn}(): expected 'normalized_shape' with at least one dimension, got {tuple(normalized_shape)}")
    return tuple(normalized_shape)


def _norm_param(fn: str, name: str, t, position: int, input: Tensor, normalized_shape: tuple, mixed: bool) -> None:
    tensor(fn, name, t, position)
    if tuple(t.shape) != normalized_shape:
        raise RuntimeError(f"{fn}(): expected '{name}' of shape normalized_shape={normalized_shape}, got shape {shape(t)}")
    if t.device != input.device:
        raise RuntimeError(f"{fn}(): expected '{name}' on {input.device} like 'input', got {t.device}")
    # torch's kernels take a half-precision input with float32 parameters, and no other mixture
    if not mixed and t.dtype != input.dtype and not (input.dtype in (torch.float16, torch.bfloat16) and t.dtype == torch.float32):
        raise RuntimeError(
            f"{fn}(): expected '{name}' of dtype {input.dtype} like 'input' (or float32 for a half-precision "
            f"input), got {t.dtype}"
        )


def norm(fn: str, input, normalized_shape, weight, bias, eps, eps_position: int) -> tuple:
    """Check ``layer_norm``'s / ``rms_norm``'s arguments (``bias`` is ``False`` for ``rms_norm``,
    which takes none, and ``eps`` may be ``None`` there); returns ``normalized_shape`` as a tuple."""
    tensor(fn, "input", input, 1)
    normalized_shape = _norm_shape(fn, normalized_shape)
    if not (eps is None and fn == "rms_norm"):
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise TypeError(f"{fn}(): argument 'eps' (position {eps_position}) must be float, not {type(eps).__name__}")
    k = len(normalized_shape)
    if tuple(input.shape[input.dim() - k:]) != normalized_shape or input.dim() < k:
        # torch's rms_norm says ValueError for too few dims, RuntimeError for the wrong ones (as layer_norm)
        err = ValueError if fn == "rms_norm" and input.dim() < k else RuntimeError
        raise err(
            f"{fn}(): expected 'input' of shape (*, {', '.join(map(str, normalized_shape))}) for "
            f"normalized_shape={normalized_shape}, got shape {shape(input)}"
        )
    if weight is not None:
        _norm_param(fn, "weight", weight, 3, input, normalized_shape, fn == "rms_norm")
    if bias is not None and bias is not False:
        _norm_param(fn, "bias", bias, 4, input, normalized_shape, False)
    floating(fn, input)
    return normalized_shape


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
