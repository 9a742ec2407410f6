"""Swap a model's ``torch.nn`` layers for the library's, and back.

The library's modules subclass their ``torch.nn`` twins and add no state, only a ``forward``,
so a layer is converted by changing its class: the object, its parameters and buffers, its
hooks (and the handles that remove them), its training mode, device and dtype all stay as they
are, and so do other references to the layer (an optimizer's parameter groups, a shared layer
used twice). Only layers whose type is exactly one of the classes of :data:`TO_LIBRARY` are
converted (Linear, the activations ReLU, LeakyReLU, GELU, SiLU, CrossEntropyLoss, Dropout,
Embedding, LayerNorm, RMSNorm); a subclass (``torch.nn.modules.linear.NonDynamicallyQuantizableLinear``
inside ``torch.nn.MultiheadAttention``, say) may rely on more than ``forward`` and is left alone.

Hugging Face ``transformers`` models (an optional dependency, imported only when the model holds
one of its modules) get more, from :mod:`manual_autograd.hf`: GPT-2's ``Conv1D``, GELUs and
``GPT2MLP`` (activation and ``c_proj`` fused),
``LlamaRMSNorm``, ``LlamaMLP`` as the fused :class:`~manual_autograd.nn.GatedMLP`, and the
attention of each ``PreTrainedModel`` routed through the library's
:func:`~manual_autograd.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import copy
import sys

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


def _transformers(module: torch.nn.Module):
    """:mod:`manual_autograd.hf` when ``module`` holds a ``transformers`` module, else ``None``;
    transformers is never imported here: a model holding its modules has imported it."""
    if "transformers" not in sys.modules:
        return None
    if not any(type(m).__module__.startswith("transformers.") for m in module.modules()):
        if not any(type(m).__module__ == "manual_autograd.hf" for m in module.modules()):
            return None
    from . import hf

    return hf


def _swap(fn: str, module: torch.nn.Module, inplace: bool, mapping: dict) -> torch.nn.Module:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{fn}(): argument 'module' must be a torch.nn.Module, not {type(module).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"{fn}(): argument 'inplace' must be bool, not {type(inplace).__name__}")
    if not inplace:
        module = copy.deepcopy(module)
    hf = _transformers(module)
    for m in module.modules():  # the module itself, every descendant, each shared one once
        cls = mapping.get(type(m))
        if cls is None and hf is not None:
            cls = hf.library_class(m) if mapping is TO_LIBRARY else hf.TO_TRANSFORMERS.get(type(m))
        if cls is not None:
            m.__class__ = cls
    if hf is not None:
        (hf.set_attention if mapping is TO_LIBRARY else hf.restore_attention)(module)
    return module


def convert(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    r"""Replace ``torch.nn`` Linear, ReLU, LeakyReLU, GELU, SiLU, CrossEntropyLoss, Dropout,
    Embedding, LayerNorm and RMSNorm layers with :mod:`manual_autograd.nn`'s, anywhere inside
    ``module``; in a Hugging Face ``transformers`` model also ``Conv1D``, the GELU/SiLU
    activations, ``GPT2MLP`` (activation and ``c_proj`` fused), ``LlamaRMSNorm``, ``LlamaMLP`` (SiLU: the fused ``GatedMLP``) and, for each
    ``PreTrainedModel`` running ``"sdpa"`` or ``"eager"`` attention, its attention implementation
    (set to ``"manual_autograd"``, the library's attention). See :mod:`manual_autograd.hf`.

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
    r"""The reverse of :func:`convert`: the library's layers back to their ``torch.nn`` (and
    ``transformers``) twins, and a converted ``PreTrainedModel``'s attention implementation back
    to the one it had.

    Args:
        module: the model (or a single layer) to revert.
        inplace: revert ``module`` itself rather than a deep copy. Default: ``False``

    Returns:
        The reverted module: ``module`` itself when ``inplace``, else the copy.
    """
    return _swap("revert", module, inplace, TO_TORCH)
