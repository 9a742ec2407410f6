"""Drop-in modules: thin ``torch.nn`` subclasses whose ``forward`` runs the hand-written Functions.

Each class subclasses its ``torch.nn`` twin, so constructor signatures and defaults,
parameter initialisation (same RNG draws in the same order), ``state_dict`` keys, ``repr``,
``extra_repr`` and ``isinstance(m, torch.nn.Linear)``-style checks are torch's own. Only
``forward`` differs.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Union

from torch import Tensor, nn

from . import functional as F
from .ops import ACTIVATIONS as _OP_ACTIVATIONS

__all__ = [
    "Linear",
    "ReLU",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "CrossEntropyLoss",
    "ActivationLinear",
    "MLP",
    "LinearCrossEntropyLoss",
    "ACTIVATIONS",
    "IMPLS",
    "build_mlp",
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "Tanh",
    "MSELoss",
]


class Linear(nn.Linear):
    r"""Applies an affine linear transformation to the incoming data: :math:`y = xA^T + b`.

    Same as :class:`torch.nn.Linear`; the backward is hand-written and saves the input only when
    the weight needs a gradient and the weight only when the input needs one.

    Args:
        in_features: size of each input sample
        out_features: size of each output sample
        bias: If set to ``False``, the layer will not learn an additive bias. Default: ``True``
        device: device of the parameters. Default: ``None``
        dtype: dtype of the parameters. Default: ``None``

    Shape:
        - Input: :math:`(*, H_{in})` where :math:`*` means any number of dimensions including
          none and :math:`H_{in} = \text{in\_features}`.
        - Output: :math:`(*, H_{out})` where :math:`H_{out} = \text{out\_features}`.

    Attributes:
        weight: learnable weights of shape :math:`(\text{out\_features}, \text{in\_features})`,
            initialised from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, :math:`k = 1/\text{in\_features}`
        bias: learnable bias of shape :math:`(\text{out\_features})`, initialised likewise

    Examples::

        >>> m = manual_autograd.nn.Linear(20, 30)
        >>> m(torch.randn(128, 20)).size()
        torch.Size([128, 30])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)


class ReLU(nn.ReLU):
    r"""Applies the rectified linear unit function element-wise: :math:`\text{ReLU}(x) = \max(0, x)`.

    Same as :class:`torch.nn.ReLU`; saves its output for backward (which a following Linear keeps
    anyway, so it costs no extra memory).

    Args:
        inplace: can optionally do the operation in-place. Default: ``False``

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.ReLU()
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(nn.LeakyReLU):
    r"""Applies :math:`\text{LeakyReLU}(x) = \max(0, x) + \text{negative\_slope} \min(0, x)` element-wise.

    Same as :class:`torch.nn.LeakyReLU`; saves its output when ``negative_slope >= 0`` and a
    bit-packed sign mask (1/8 byte per element) otherwise, never the input.

    Args:
        negative_slope: Controls the angle of the negative slope (which is used for negative input
            values). Default: 1e-2
        inplace: can optionally do the operation in-place. Default: ``False``

    Shape:
        - Input: :math:`(*)` where `*` means, any number of additional dimensions
        - Output: :math:`(*)`, same shape as the input

    Examples::

        >>> m = manual_autograd.nn.LeakyReLU(0.1)
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class GELU(nn.GELU):
    r"""Applies the Gaussian Error Linear Units function :math:`\text{GELU}(x) = x \Phi(x)`.

    Same as :class:`torch.nn.GELU`; with ``approximate='tanh'`` uses
    :math:`0.5x(1 + \tanh(\sqrt{2/\pi}(x + 0.044715x^3)))`. Saves the input only.

    Args:
        approximate (str, optional): the gelu approximation algorithm to use:
            ``'none'`` | ``'tanh'``. Default: ``'none'``

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.GELU()
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)


class SiLU(nn.SiLU):
    r"""Applies the Sigmoid Linear Unit (SiLU) function, element-wise: :math:`x \sigma(x)`.

    Same as :class:`torch.nn.SiLU`; saves the input only.

    Args:
        inplace: can optionally do the operation in-place. Default: ``False``

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.SiLU()
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input, inplace=self.inplace)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    r"""Cross-entropy between input logits and target, with the softmax fused in.

    Same as :class:`torch.nn.CrossEntropyLoss`; the backward is ``softmax − target distribution``
    scaled once, and only the log-probabilities (as torch keeps), the target and the class weight
    are kept for it.

    Args:
        weight (Tensor, optional): a manual rescaling weight given to each class, of size `C`.
        size_average (bool, optional): Deprecated (see :attr:`reduction`).
        ignore_index (int, optional): a target value that is ignored and does not contribute to
            the input gradient. Only for class-index targets. Default: -100
        reduce (bool, optional): Deprecated (see :attr:`reduction`).
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``
        label_smoothing (float, optional): in [0.0, 1.0], the amount of smoothing. Default: 0.0

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: class indices of shape :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)`,
          or class probabilities of the input's shape.
        - Output: scalar, or with ``reduction='none'`` the target's shape (class indices) or
          :math:`(N, d_1, ..., d_K)` (probabilities).

    Examples::

        >>> loss = manual_autograd.nn.CrossEntropyLoss()
        >>> input = torch.randn(3, 5, requires_grad=True)
        >>> target = torch.empty(3, dtype=torch.long).random_(5)
        >>> loss(input, target).backward()
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


#: The module view of the one activation registry, :data:`manual_autograd.ops.ACTIVATIONS` (whose
#: names the functional ``activation_linear`` takes): name -> (torch.nn twin, the library's module).
ACTIVATIONS = {
    name: {"relu": (nn.ReLU, ReLU), "leaky_relu": (nn.LeakyReLU, LeakyReLU), "gelu": (nn.GELU, GELU), "silu": (nn.SiLU, SiLU)}[name]
    for name in _OP_ACTIVATIONS
}
#: Which modules :func:`build_mlp` builds from: the library's (``'manual'``) or torch.nn's (``'torch'``).
IMPLS = ("manual", "torch")



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
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"ActivationLinear: argument 'activation' must be one of {tuple(ACTIVATIONS)}, got {activation!r}"
            )
        if approximate not in ("none", "tanh"):
            raise ValueError(f"ActivationLinear: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = activation
        self.negative_slope = negative_slope
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.activation_linear(
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
    for name, (twin, _) in ACTIVATIONS.items():
        if isinstance(layer, twin):
            slope = layer.negative_slope if name == "leaky_relu" else 0.01
            return name, slope, layer.approximate if name == "gelu" else "none"
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
        return F.linear_cross_entropy(
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


def build_mlp(
    sizes: Sequence[int],
    activation: Union[str, Callable[[], nn.Module]] = "relu",
    impl: Union[str, Callable[[int, int], nn.Module]] = "manual",
    fused: bool = False,
) -> nn.Sequential:
    """``Linear → activation → … → Linear`` for layer widths ``sizes`` (input first, output last).

    The one MLP builder of the project (``train/`` and ``benchmarks/`` build theirs here).
    ``impl='manual'`` uses this module's layers, ``impl='torch'`` their :mod:`torch.nn` twins:
    the library's modules subclass torch's, so under the same seed both draw the same initial
    weights and have the same ``state_dict`` keys.

    Args:
        sizes: ``[in_features, hidden_1, ..., out_features]``, at least two entries
        activation: a key of :data:`ACTIVATIONS` (``'relu'`` | ``'leaky_relu'`` | ``'gelu'`` |
            ``'silu'``), or a zero-argument factory of the activation module
        impl: ``'manual'`` | ``'torch'``, or a factory ``linear(in_features, out_features)`` of the
            Linear layers (with a factory ``activation``: a network of one's own layers)
        fused: build :class:`MLP` (each hidden activation fused into the next Linear, keeping one
            tensor per hidden layer for backward); ``impl='manual'`` only. Same initial weights;
            ``state_dict`` keys ``0, 1, 2, …`` instead of ``0, 2, 4, …``.

    Examples::

        >>> manual_autograd.nn.build_mlp([784, 128, 10], "relu")
        Sequential(
          (0): Linear(in_features=784, out_features=128, bias=True)
          (1): ReLU()
          (2): Linear(in_features=128, out_features=10, bias=True)
        )
    """
    if isinstance(activation, str) and activation not in ACTIVATIONS:
        raise ValueError(f"build_mlp(): argument 'activation' must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if isinstance(impl, str) and impl not in IMPLS:
        raise ValueError(f"build_mlp(): argument 'impl' must be one of {IMPLS}, got {impl!r}")
    if isinstance(sizes, (str, bytes)) or len(sizes) < 2:
        raise ValueError(f"build_mlp(): argument 'sizes' must hold at least two widths, got {sizes!r}")
    act = activation
    if isinstance(activation, str):
        act = ACTIVATIONS[activation][0 if impl == "torch" else 1]
    if fused:
        if impl != "manual":
            raise ValueError(f"build_mlp(): 'fused=True' needs impl='manual', got impl={impl!r}")
        return MLP(sizes[0], list(sizes[1:]), activation_layer=act)
    linear = {"manual": Linear, "torch": nn.Linear}.get(impl, impl) if isinstance(impl, str) else impl
    modules: List[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            modules.append(act())
        modules.append(linear(n_in, n_out))
    return nn.Sequential(*modules)


class Softmax(nn.Softmax):
    r"""Applies the Softmax function along ``dim``: :math:`\text{Softmax}(x_{i}) = \frac{\exp(x_i)}{\sum_j \exp(x_j)}`.

    Same as :class:`torch.nn.Softmax` (``dim=None`` picks a dim as torch does, with its warning);
    saves only its output for backward.

    Args:
        dim (int): A dimension along which Softmax will be computed (so every slice along dim
            will sum to 1).

    Shape:
        - Input: :math:`(*)` where `*` means any number of additional dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.Softmax(dim=1)
        >>> output = m(torch.randn(2, 3))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(nn.LogSoftmax):
    r"""Applies :math:`\log(\text{Softmax}(x))` along ``dim``.

    Same as :class:`torch.nn.LogSoftmax`; saves only its output for backward.

    Args:
        dim (int): A dimension along which LogSoftmax will be computed.

    Shape:
        - Input: :math:`(*)` where `*` means any number of additional dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.LogSoftmax(dim=1)
        >>> output = m(torch.randn(2, 3))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim, _stacklevel=5)


class Sigmoid(nn.Sigmoid):
    r"""Applies the Sigmoid function element-wise: :math:`\sigma(x) = \frac{1}{1 + \exp(-x)}`.

    Same as :class:`torch.nn.Sigmoid`; saves its output for backward.

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.Sigmoid()
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(nn.Tanh):
    r"""Applies the Hyperbolic Tangent (Tanh) function element-wise: :math:`\tanh(x)`.

    Same as :class:`torch.nn.Tanh`; saves its output for backward.

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Output: :math:`(*)`, same shape as the input.

    Examples::

        >>> m = manual_autograd.nn.Tanh()
        >>> output = m(torch.randn(2))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class MSELoss(nn.MSELoss):
    r"""The mean squared error between each element of the input :math:`x` and target :math:`y`.

    Same as :class:`torch.nn.MSELoss`; keeps only references to the input and target for
    backward (the difference is recomputed).

    Args:
        size_average (bool, optional): Deprecated (see :attr:`reduction`).
        reduce (bool, optional): Deprecated (see :attr:`reduction`).
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``

    Shape:
        - Input: :math:`(*)`, where :math:`*` means any number of dimensions.
        - Target: :math:`(*)`, same shape as the input (or broadcastable to it, with a warning).
        - Output: scalar; with ``reduction='none'``, the broadcast shape of input and target.

    Examples::

        >>> loss = manual_autograd.nn.MSELoss()
        >>> input = torch.randn(3, 5, requires_grad=True)
        >>> loss(input, torch.randn(3, 5)).backward()
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
