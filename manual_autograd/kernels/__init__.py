"""Triton kernels of the ops, one module per op, each with plain ``forward``/``backward`` launchers.

Imports triton; imported only lazily, through :func:`manual_autograd.backend.kernels`. Each
launcher calls its kernel directly in eager (no custom-op dispatch) and, under ``torch.compile``,
the ``torch.ops.manual_autograd.*`` op registered with ``torch.library.triton_op`` (torch >= 2.6),
so a compiled graph traces it with ``fullgraph=True``.
"""

from ._util import HAS_TRITON_OP, interpreting

# triton picks the interpreter when @triton.jit runs: decided here, for every kernel below at once
INTERPRETED = interpreting()

from . import activation_linear, cross_entropy, gelu, leaky_relu, linear_cross_entropy, relu, silu  # noqa: E402
from . import dropout, embedding  # noqa: E402
from . import glu  # noqa: E402
from . import layer_norm, rms_norm  # noqa: E402
from . import attention  # noqa: E402
from . import sigmoid, softmax, tanh  # noqa: E402

__all__ = [
    "INTERPRETED",
    "HAS_TRITON_OP",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "cross_entropy",
    "activation_linear",
    "linear_cross_entropy",
    "dropout",
    "embedding",
    "glu",
    "layer_norm",
    "rms_norm",
    "attention",
    "softmax",
    "sigmoid",
    "tanh",
]
