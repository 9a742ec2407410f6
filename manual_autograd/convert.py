"""Swap a model's ``torch.nn`` layers for the library's, and back.

The library's modules subclass their ``torch.nn`` twins and add no state, only a ``forward``,
so a layer is converted by changing its class: the object, its parameters and buffers, its
hooks (and the handles that remove them), its training mode, device and dtype all stay as they
are, and so do other references to the layer (an optimizer's parameter groups, a shared layer
used twice). Only layers whose type is exactly one of the six classes are converted; a
subclass (``torch.nn.modules.linear.NonDynamicallyQuantizableLinear`` inside
``torch.nn.MultiheadAttention``, say) may rely on more than ``forward`` and is left alone.
"""

from __future__ import annotations

import copy

import torch

from . import nn

__all__ = ["convert", "revert"]

TO_LIBRARY = {
    torch.nn.Linear: nn.Linear,
    **dict(nn.ACTIVATIONS.values()),  # the activations: twin -> the library's module
    torch.nn.CrossEntropyLoss: nn.CrossEntropyLoss,
    torch.nn.Dropout: nn.Dropout,
    torch.nn.Embedding: nn.Embedding,
    torch.nn.LayerNorm: nn.LayerNorm,
    torch.nn.RMSNorm: nn.RMSNorm,
    torch.nn.Softmax: nn.Softmax,
    torch.nn.LogSoftmax: nn.LogSoftmax,
    torch.nn.Sigmoid: nn.Sigmoid,
    torch.nn.Tanh: nn.Tanh,
    torch.nn.MSELoss: nn.MSELoss,
}
TO_TORCH = {ours: theirs for theirs, ours in TO_LIBRARY.items()}


def _swap(fn: str, module: torch.nn.Module, inplace: bool, mapping: dict) -> torch.nn.Module:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{fn}(): argument 'module' must be a torch.nn.Module, not {type(module).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"{fn}(): argument 'inplace' must be bool, not {type(inplace).__name__}")
    if not inplace:
        module = copy.deepcopy(module)
    for m in module.modules():  # the module itself, every descendant, each shared one once
        cls = mapping.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module


def convert(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    r"""Replace ``torch.nn`` Linear, ReLU, LeakyReLU, GELU, SiLU and CrossEntropyLoss layers with
    :mod:`manual_autograd.nn`'s, anywhere inside ``module``.

    Args:
        module: the model (or a single layer) to convert.
        inplace: convert ``module`` itself, keeping every layer object and so its parameters
            (shared, not copied), hooks and handles. Otherwise a deep copy is converted and
            ``module`` is left untouched. Default: ``False``

    Returns:
        The converted module: ``module`` itself when ``inplace``, else the copy.

    Examples::

        >>> model = torchvision.ops.MLP(784, [256, 10], activation_layer=torch.nn.GELU)
        >>> fast = manual_autograd.convert(model)
        >>> type(fast[0]), type(fast[1])
        (<class 'manual_autograd.nn.Linear'>, <class 'manual_autograd.nn.GELU'>)
        >>> manual_autograd.revert(fast, inplace=True) is fast
        True
    """
    return _swap("convert", module, inplace, TO_LIBRARY)


def revert(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    r"""The reverse of :func:`convert`: the library's six layers back to their ``torch.nn`` twins.

    Args:
        module: the model (or a single layer) to revert.
        inplace: revert ``module`` itself rather than a deep copy. Default: ``False``

    Returns:
        The reverted module: ``module`` itself when ``inplace``, else the copy.
    """
    return _swap("revert", module, inplace, TO_TORCH)
