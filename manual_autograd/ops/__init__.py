"""The op set: one ``torch.autograd.Function`` per file, each forward beside its backward.

Each op file opens with its math (forward, backward, what is saved, bytes per element), then
the Function (``forward``, ``setup_context``, ``backward``, ``forward_ad``), then its own helpers.
The shared machinery (the :class:`Function` base, layout helpers, the class-index target
preparation, bit packing) is in :mod:`manual_autograd.ops.base`. The ops assume well-formed
inputs: :mod:`manual_autograd.checks` checks arguments before the public functions apply them.
"""

from .activation_linear import ACTIVATIONS, ActivationLinearFunction
from .attention import AttentionFunction
from .base import Function, pack_bits, unpack_bits
from .cross_entropy import CrossEntropyFunction
from .dropout import DropoutFunction
from .embedding import EmbeddingFunction
from .gelu import GELUFunction
from .layer_norm import LayerNormFunction
from .leaky_relu import LeakyReLUFunction
from .linear import LinearFunction
from .linear_cross_entropy import LinearCrossEntropyFunction, default_chunk_size
from .relu import ReLUFunction
from .rms_norm import RMSNormFunction
from .silu import SiLUFunction
from .glu import GLU_ACTIVATIONS, GLUFunction
from .gated_linear import GatedLinearFunction
from .softmax import SoftmaxFunction
from .sigmoid import SigmoidFunction
from .tanh import TanhFunction
from .mse_loss import MSELossFunction

__all__ = [
    "Function",
    "LinearFunction",
    "ReLUFunction",
    "LeakyReLUFunction",
    "GELUFunction",
    "SiLUFunction",
    "CrossEntropyFunction",
    "ActivationLinearFunction",
    "LinearCrossEntropyFunction",
    "AttentionFunction",
    "LayerNormFunction",
    "RMSNormFunction",
    "ACTIVATIONS",
    "default_chunk_size",
    "pack_bits",
    "unpack_bits",
    "DropoutFunction",
    "EmbeddingFunction",
    "GLUFunction",
    "GatedLinearFunction",
    "GLU_ACTIVATIONS",
    "SoftmaxFunction",
    "SigmoidFunction",
    "TanhFunction",
    "MSELossFunction",
]
