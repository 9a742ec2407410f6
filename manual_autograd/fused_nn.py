"""Modules built on the fused ops: ``ActivationLinear``, an ``MLP`` made of them, ``LinearCrossEntropyLoss``."""

from __future__ import annotations

import math
from typing import Callable, List, Optional

from torch import Tensor, nn

from . import fused

__all__ = ["ActivationLinear", "MLP", "LinearCrossEntropyLoss"]


class ActivationLinear(nn.Linear):
    r"""Applies an activation and then an affine map, as one op: :math:`y = \text{act}(z) A^T + b`.

    Equal to ``act`` followed by :class:`torch.nn.Linear`, but keeps for backward only the input
    ``z`` (and the weight), recomputing ``act(z)`` for the weight gradient; the unfused pair keeps
    ``z`` and ``act(z)``. A subclass of :class:`torch.nn.Linear`: same parameters, initialisation
    and ``state_dict`` keys.

    Args:
        in_features: size of each input sample
        out_features: size of each output sample
        bias: If set to ``False``, the layer will not learn an additive bias. Default: ``True``
        activation: ``'relu'`` | ``'leaky_relu'`` | ``'gelu'`` | ``'silu'``. Default: ``'relu'``
        negative_slope: slope for negative inputs of ``'leaky_relu'``. Default: 1e-2
        approximate: GELU variant, ``'none'`` | ``'tanh'``. Default: ``'none'``
        device: device of the parameters. Default: ``None``
        dtype: dtype of the parameters. Default: ``None``

    Shape:
        - Input: :math:`(*, H_{in})`, the activation's input, :math:`H_{in} = \text{in\_features}`.
        - Output: :math:`(*, H_{out})` where :math:`H_{out} = \text{out\_features}`.

    Examples::

        >>> m = manual_autograd.nn.ActivationLinear(20, 30, activation="gelu")
        >>> m(torch.randn(128, 20)).size()
        torch.Size([128, 30])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "relu",
        negative_slope: float = 0.01,
        approximate: str = "none",
        device=None,
        dtype=None,
    ) -> None:
        if activation not in fused.ACTIVATIONS:
            raise ValueError(f"ActivationLinear: argument 'activation' must be one of {fused.ACTIVATIONS}, got {activation!r}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"ActivationLinear: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = activation
        self.negative_slope = negative_slope
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return fused.activation_linear(
            input, self.weight, self.bias, self.activation, self.negative_slope, self.approximate
        )

    def extra_repr(self) -> str:
        s = f"activation={self.activation}"
        if self.activation == "leaky_relu":
            s += f", negative_slope={self.negative_slope}"
        elif self.activation == "gelu" and self.approximate != "none":
            s += f", approximate={self.approximate!r}"
        return f"{super().extra_repr()}, {s}"


def _activation_spec(layer: nn.Module):
    """``(activation, negative_slope, approximate)`` of a ReLU / LeakyReLU / GELU / SiLU module."""
    if isinstance(layer, nn.ReLU):
        return "relu", 0.01, "none"
    if isinstance(layer, nn.LeakyReLU):
        return "leaky_relu", layer.negative_slope, "none"
    if isinstance(layer, nn.GELU):
        return "gelu", 0.01, layer.approximate
    if isinstance(layer, nn.SiLU):
        return "silu", 0.01, "none"
    raise ValueError(
        "MLP: argument 'activation_layer' must build a ReLU, LeakyReLU, GELU or SiLU module "
        f"(torch.nn or manual_autograd.nn) to be fused, got {type(layer).__name__}"
    )


class MLP(nn.Sequential):
    r"""The multi-layer perceptron of :class:`torchvision.ops.MLP`, built from fused layers.

    ``Linear(in, h0)``, then for each next width ``ActivationLinear(h_i, h_{i+1})``: every hidden
    activation is fused into the Linear after it, so per hidden layer only the pre-activation is
    kept for backward (the unfused network keeps it and the activation's output). No activation
    follows the last layer, as in torchvision. Parameters are drawn in torchvision's order, so
    under the same seed both models start from the same weights.

    Args:
        in_channels: number of channels of the input
        hidden_channels: the width of each layer; the last is the output width
        norm_layer: optional ``norm_layer(width)`` placed after each hidden Linear, before the
            activation (as in torchvision). Default: ``None``
        activation_layer: builds the activation: ReLU, LeakyReLU, GELU or SiLU, from ``torch.nn``
            or ``manual_autograd.nn`` (e.g. ``functools.partial(nn.GELU, approximate="tanh")``).
            Default: :class:`torch.nn.ReLU`
        inplace: passed to ``activation_layer`` as in torchvision when not ``None``; it changes
            nothing here, since the fused layers never write the activation as a tensor.
            Default: ``None``
        bias: whether the Linear layers have a bias. Default: ``True``
        dropout: must be 0: dropout sits between an activation and the next Linear, where the
            fused layer has no tensor to drop. Default: 0.0

    Shape:
        - Input: :math:`(*, \text{in\_channels})`.
        - Output: :math:`(*, \text{hidden\_channels[-1]})`.

    Examples::

        >>> m = manual_autograd.nn.MLP(784, [1024, 1024, 10], activation_layer=torch.nn.GELU)
        >>> m(torch.randn(32, 784)).size()
        torch.Size([32, 10])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: List[int],
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        inplace: Optional[bool] = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        if isinstance(hidden_channels, int) or len(hidden_channels) == 0:
            raise ValueError(f"MLP: argument 'hidden_channels' must be a non-empty list of widths, got {hidden_channels!r}")
        if dropout != 0.0:
            raise ValueError(
                f"MLP: argument 'dropout' must be 0.0 for fused layers (the activation is never a tensor "
                f"to drop out), got {dropout}; use torchvision.ops.MLP for dropout"
            )
        if activation_layer is None:
            raise ValueError("MLP: argument 'activation_layer' must be given: fused layers need an activation")
        spec = _activation_spec(activation_layer(**({} if inplace is None else {"inplace": inplace})))
        act, slope, approximate = spec
        layers: List[nn.Module] = [nn.Linear(in_channels, hidden_channels[0], bias=bias)]
        for a, b in zip(hidden_channels[:-1], hidden_channels[1:]):
            if norm_layer is not None:
                layers.append(norm_layer(a))
            layers.append(ActivationLinear(a, b, bias, act, slope, approximate))
        super().__init__(*layers)


# torch.nn.LinearCrossEntropyLoss is the twin where this torch has it (a subclass, for isinstance);
# older torch has none, and the module stands on the twin's own base with the same attributes.
_LinearCrossEntropyBase = getattr(nn, "LinearCrossEntropyLoss", nn.modules.loss._WeightedLoss)


class LinearCrossEntropyLoss(_LinearCrossEntropyBase):
    r"""Cross-entropy of linearly projected input, without ever holding the whole logits.

    Same as :class:`torch.nn.LinearCrossEntropyLoss` (its own Linear in ``self.linear``), with
    ``chunk_size`` in place of ``options``: see
    :func:`manual_autograd.functional.linear_cross_entropy`. Also on a torch without that class.

    Args:
        in_features: size of each input sample
        num_classes: number of classes :math:`C`
        out_features: dimensions :math:`(d_1, ..., d_K)` of a K-dimensional loss. Default: ``()``
        bias: whether the projection has a bias. Default: ``False``
        device, dtype: of the projection's parameters
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``
        weight: rescaling weight per class, of size :math:`C`. Default: ``None``
        ignore_index: ignored target value; ``None`` means -100. Default: ``None``
        label_smoothing: in [0.0, 1.0]. Default: 0.0
        chunk_size: classes per block; ``None`` picks it, and picks the unfused path when
            :math:`C` is not above ``in_features``. Default: ``None``

    Shape:
        - Input: :math:`(in\_features)` or :math:`(N, in\_features)`.
        - Target: class indices :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)`, or class
          probabilities of the logits' shape.
        - Output: scalar, or with ``reduction='none'`` the target's shape.

    Examples::

        >>> loss = manual_autograd.nn.LinearCrossEntropyLoss(64, 32000)
        >>> loss(torch.randn(8, 64, requires_grad=True), torch.randint(0, 32000, (8,))).backward()
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple = (),
        bias: bool = False,
        device=None,
        dtype=None,
        reduction: str = "mean",
        weight: Optional[Tensor] = None,
        ignore_index: Optional[int] = None,
        label_smoothing: float = 0.0,
        chunk_size: Optional[int] = None,
    ) -> None:
        if weight is not None and weight.shape != (num_classes,):
            raise RuntimeError(f"expected weight shape to be {(num_classes,)}, got {tuple(weight.shape)}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise RuntimeError(f"expected label_smoothing to be in range [0, 1], got {label_smoothing}")
        # the twin's __init__ would take `options`; its base's sets reduction and the weight buffer
        nn.modules.loss._WeightedLoss.__init__(self, weight=weight, reduction=reduction)
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        # flat (C·prod(out_features), in_features) weight, as the twin keeps it
        self.linear = nn.Linear(in_features, math.prod(out_features) * num_classes, bias, device, dtype)
        self.options = None  # the twin's attribute; chunking is chunk_size here
        self.chunk_size = chunk_size

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        weight = self.linear.weight.reshape((self.num_classes, *self.out_features, self.linear.in_features))
        bias = self.linear.bias
        if bias is not None:
            bias = bias.reshape((self.num_classes, *self.out_features))
        return fused.linear_cross_entropy(
            input,
            weight,
            target,
            linear_bias=bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"out_features={self.out_features}, bias={self.linear.bias is not None}, "
            f"reduction={self.reduction}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, chunk_size={self.chunk_size}"
        )
