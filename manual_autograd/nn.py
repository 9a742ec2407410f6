"""Drop-in modules: thin ``torch.nn`` subclasses whose ``forward`` runs the hand-written Functions.

Each class subclasses its ``torch.nn`` twin, so constructor signatures and defaults,
parameter initialisation (same RNG draws in the same order), ``state_dict`` keys, ``repr``,
``extra_repr`` and ``isinstance(m, torch.nn.Linear)``-style checks are torch's own. Only
``forward`` differs.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Union

from torch import Tensor, nn

from . import functional as F

__all__ = ["Linear", "ReLU", "LeakyReLU", "GELU", "SiLU", "CrossEntropyLoss", "ACTIVATIONS", "IMPLS", "build_mlp"]


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


# fused modules (defined in manual_autograd.fused_nn)
from .fused_nn import MLP, ActivationLinear, LinearCrossEntropyLoss  # noqa: E402

__all__ += ["ActivationLinear", "MLP", "LinearCrossEntropyLoss"]

#: The one activation registry of the module API: name -> (torch.nn twin, the library's module).
ACTIVATIONS = {
    "relu": (nn.ReLU, ReLU),
    "leaky_relu": (nn.LeakyReLU, LeakyReLU),
    "gelu": (nn.GELU, GELU),
    "silu": (nn.SiLU, SiLU),
}
#: Which modules :func:`build_mlp` builds from: the library's (``'manual'``) or torch.nn's (``'torch'``).
IMPLS = ("manual", "torch")


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
