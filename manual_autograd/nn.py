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

from . import checks
from . import functional as F
from .ops import ACTIVATIONS as _OP_ACTIVATIONS
from .ops import GLU_ACTIVATIONS as _GLU_ACTIVATIONS

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
    "Dropout",
    "Embedding",
    "GatedMLP",
    "LayerNorm",
    "RMSNorm",
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
        checks.activation_name("ActivationLinear", activation)
        checks.gelu_approximate("ActivationLinear", approximate, ValueError)
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


class Dropout(nn.Dropout):
    r"""During training, randomly zeroes some elements of the input with probability :attr:`p`.

    Same as :class:`torch.nn.Dropout`: the kept elements are scaled by :math:`\frac{1}{1-p}`, and in
    evaluation mode it is the identity. Saves a bit-packed mask for backward (1/8 byte per element,
    where torch keeps the scaled mask: 4 bytes per element in float32 on CPU). On CPU the mask is
    torch's own draw, so under the same seed the output is torch's.

    Args:
        p: probability of an element to be zeroed. Default: 0.5
        inplace: If set to ``True``, will do this operation in-place. Default: ``False``

    Shape:
        - Input: :math:`(*)`. Input can be of any shape
        - Output: :math:`(*)`. Output is of the same shape as input

    Examples::

        >>> m = manual_autograd.nn.Dropout(p=0.2)
        >>> output = m(torch.randn(20, 16))
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)


class Embedding(nn.Embedding):
    r"""A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``.

    Same as :class:`torch.nn.Embedding` (initialisation, ``padding_idx`` row zeroed, ``max_norm``,
    ``scale_grad_by_freq``, ``sparse``, :meth:`from_pretrained`); saves only the indices for backward.

    Args:
        num_embeddings: size of the dictionary of embeddings
        embedding_dim: the size of each embedding vector
        padding_idx: the entries at :attr:`padding_idx` do not contribute to the gradient
        max_norm: each embedding vector looked up with norm larger than :attr:`max_norm` is
            renormalized to norm :attr:`max_norm` (in place)
        norm_type: the p of the p-norm for :attr:`max_norm`. Default ``2``.
        scale_grad_by_freq: scale gradients by the inverse frequency of the words in the
            mini-batch. Default ``False``.
        sparse: if ``True``, the gradient w.r.t. the weight is a sparse tensor.

    Shape:
        - Input: :math:`(*)`, IntTensor or LongTensor of arbitrary shape containing the indices
        - Output: :math:`(*, H)`, where `*` is the input shape and :math:`H=\text{embedding\_dim}`

    Examples::

        >>> embedding = manual_autograd.nn.Embedding(10, 3)
        >>> embedding(torch.tensor([[1, 2, 4, 5], [4, 3, 2, 9]])).shape
        torch.Size([2, 4, 3])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(
            input, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )


def _gated_spec(activation: str, approximate: str) -> None:
    if activation not in _GLU_ACTIVATIONS:
        raise ValueError(f"GatedMLP: argument 'activation' must be one of {_GLU_ACTIVATIONS}, got {activation!r}")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"GatedMLP: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")


class GatedMLP(nn.Module):
    r"""The gated MLP of Llama-style transformers, ``down_proj(act(gate_proj(x)) · up_proj(x))``.

    The submodules are those of Hugging Face's ``LlamaMLP`` (``gate_proj``, ``up_proj``,
    ``down_proj``, each a :class:`Linear`), built in its order, so ``state_dict`` keys match and
    under the same seed the initial weights equal three ``torch.nn.Linear`` built in that order.
    The gated unit and ``down_proj`` run as one op (:func:`~manual_autograd.functional.gated_linear`)
    that keeps ``gate_proj(x)`` and ``up_proj(x)`` for backward and recomputes the product; the
    unfused chain also keeps ``act(gate)`` and the product.

    Args:
        hidden_size: size of each input and output sample
        intermediate_size: width of the gated unit
        bias: whether the three projections have a bias (``mlp_bias``). Default: ``False``
        activation: ``'silu'`` (SwiGLU) | ``'gelu'`` (GEGLU). Default: ``'silu'``
        approximate: GELU variant, ``'none'`` | ``'tanh'``. Default: ``'none'``
        device: device of the parameters. Default: ``None``
        dtype: dtype of the parameters. Default: ``None``

    Shape:
        - Input: :math:`(*, \text{hidden\_size})`.
        - Output: :math:`(*, \text{hidden\_size})`.

    Examples::

        >>> m = manual_autograd.nn.GatedMLP(64, 172)
        >>> m(torch.randn(8, 64)).size()
        torch.Size([8, 64])
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        bias: bool = False,
        activation: str = "silu",
        approximate: str = "none",
        device=None,
        dtype=None,
    ) -> None:
        _gated_spec(activation, approximate)
        super().__init__()
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.approximate = approximate
        self.gate_proj = Linear(hidden_size, intermediate_size, bias, device, dtype)
        self.up_proj = Linear(hidden_size, intermediate_size, bias, device, dtype)
        self.down_proj = Linear(intermediate_size, hidden_size, bias, device, dtype)

    @classmethod
    def from_linears(
        cls, gate_proj: nn.Linear, up_proj: nn.Linear, down_proj: nn.Linear, activation: str = "silu",
        approximate: str = "none",
    ) -> "GatedMLP":
        """A GatedMLP around three existing Linears (e.g. an HF ``LlamaMLP``'s), sharing their
        parameters; each becomes a :class:`Linear` (its class swapped, as :func:`convert` does)."""
        _gated_spec(activation, approximate)
        for name, m in (("gate_proj", gate_proj), ("up_proj", up_proj), ("down_proj", down_proj)):
            if type(m) not in (nn.Linear, Linear):
                raise TypeError(f"GatedMLP.from_linears(): argument '{name}' must be a torch.nn.Linear, not {type(m).__name__}")
        hidden, inter = gate_proj.in_features, gate_proj.out_features
        if (up_proj.in_features, up_proj.out_features) != (hidden, inter) or (
            down_proj.in_features, down_proj.out_features) != (inter, hidden):
            raise ValueError(
                f"GatedMLP.from_linears(): expected up_proj {hidden}->{inter} and down_proj {inter}->{hidden} "
                f"like gate_proj, got up_proj {up_proj.in_features}->{up_proj.out_features} and down_proj "
                f"{down_proj.in_features}->{down_proj.out_features}"
            )
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.hidden_size, self.intermediate_size = hidden, inter
        self.activation, self.approximate = activation, approximate
        for name, m in (("gate_proj", gate_proj), ("up_proj", up_proj), ("down_proj", down_proj)):
            m.__class__ = Linear
            setattr(self, name, m)
        return self

    def forward(self, x: Tensor) -> Tensor:
        down = self.down_proj
        return F.gated_linear(self.gate_proj(x), self.up_proj(x), down.weight, down.bias, self.activation, self.approximate)

    def extra_repr(self) -> str:
        s = f"activation={self.activation}"
        if self.activation == "gelu" and self.approximate != "none":
            s += f", approximate={self.approximate!r}"
        return s


class LayerNorm(nn.LayerNorm):
    r"""Applies Layer Normalization over a mini-batch of inputs.

    .. math::
        y = \frac{x - \mathrm{E}[x]}{ \sqrt{\mathrm{Var}[x] + \epsilon}} * \gamma + \beta

    Same as :class:`torch.nn.LayerNorm`; the backward is hand-written and keeps the input and the
    per-row mean and rstd, never the normalised output.

    Args:
        normalized_shape (int or list or torch.Size): input shape from an expected input of size
            :math:`[* \times \text{normalized\_shape}[0] \times \ldots \times \text{normalized\_shape}[-1]]`;
            an int normalises over the last dimension, which must be of that size
        eps: a value added to the denominator for numerical stability. Default: 1e-5
        elementwise_affine: a boolean value that when set to ``True``, this module has learnable
            per-element affine parameters initialized to ones (for weights) and zeros (for biases).
            Default: ``True``
        bias: If set to ``False``, the layer will not learn an additive bias (only relevant if
            :attr:`elementwise_affine` is ``True``). Default: ``True``
        device, dtype: of the parameters. Default: ``None``

    Shape:
        - Input: :math:`(N, *)`
        - Output: :math:`(N, *)` (same shape as input)

    Examples::

        >>> m = manual_autograd.nn.LayerNorm(10)
        >>> m(torch.randn(20, 5, 10)).size()
        torch.Size([20, 5, 10])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.RMSNorm):
    r"""Applies Root Mean Square Layer Normalization over a mini-batch of inputs.

    .. math::
        y_i = \frac{x_i}{\mathrm{RMS}(x)} * \gamma_i, \quad
        \text{where} \quad \text{RMS}(x) = \sqrt{\epsilon + \frac{1}{n} \sum_{i=1}^{n} x_i^2}

    Same as :class:`torch.nn.RMSNorm`; the backward is hand-written and keeps the input and the
    per-row rstd only.

    Args:
        normalized_shape (int or list or torch.Size): input shape from an expected input of size
            :math:`[* \times \text{normalized\_shape}[0] \times \ldots \times \text{normalized\_shape}[-1]]`;
            an int normalises over the last dimension, which must be of that size
        eps: a value added to the denominator for numerical stability. Default:
            :func:`torch.finfo(x.dtype).eps` of the compute dtype
        elementwise_affine: a boolean value that when set to ``True``, this module has learnable
            per-element affine parameters initialized to ones. Default: ``True``
        device, dtype: of the parameters. Default: ``None``

    Shape:
        - Input: :math:`(N, *)`
        - Output: :math:`(N, *)` (same shape as input)

    Examples::

        >>> m = manual_autograd.nn.RMSNorm([2, 3])
        >>> m(torch.randn(2, 2, 3)).size()
        torch.Size([2, 2, 3])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)


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
