"""manual_autograd: PyTorch layers with hand-written, minimal-memory, gradchecked backward passes.

* :mod:`manual_autograd.function` — the ``torch.autograd.Function`` op set;
* :mod:`manual_autograd.functional` — ``torch.nn.functional``-compatible functions;
* :mod:`manual_autograd.nn` — drop-in ``torch.nn`` modules.
"""

from . import function, functional, nn
from .function import (
    CrossEntropyFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearFunction,
    ReLUFunction,
    SiLUFunction,
)

__version__ = "0.1.0"

__all__ = [
    "function",
    "functional",
    "nn",
    "LinearFunction",
    "ReLUFunction",
    "LeakyReLUFunction",
    "GELUFunction",
    "SiLUFunction",
    "CrossEntropyFunction",
    "__version__",
]
