"""manual_autograd: PyTorch layers with hand-written, minimal-memory, gradchecked backward passes.

* :mod:`manual_autograd.function` — the ``torch.autograd.Function`` op set;
* :mod:`manual_autograd.functional` — ``torch.nn.functional``-compatible functions;
* :mod:`manual_autograd.nn` — drop-in ``torch.nn`` modules;
* :func:`manual_autograd.ledger` — what a forward pass keeps for backward, per module;
* :mod:`manual_autograd.health` — dead / saturated units and gradient norms, by hooks
  (:mod:`manual_autograd.callbacks` has the Lightning callback, imported on demand);
* :mod:`manual_autograd.testing` — ``check_function``, a diagnosing gradient check.
"""

from . import function, functional, health, nn, testing
from .function import (
    CrossEntropyFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearFunction,
    ReLUFunction,
    SiLUFunction,
)
from .health import HealthMonitor
from .ledger import Ledger, ledger  # `ledger` is the function; `from manual_autograd.ledger import ...` still works
from .testing import check_function

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
    "health",
    "testing",
    "ledger",
    "Ledger",
    "HealthMonitor",
    "check_function",
    "__version__",
]

# fused ops: activation -> Linear with recompute, chunked Linear -> cross-entropy
from . import fused  # noqa: E402
from .fused import ActivationLinearFunction, LinearCrossEntropyFunction  # noqa: E402

__all__ += ["fused", "ActivationLinearFunction", "LinearCrossEntropyFunction"]

# torch.nn layers <-> the library's, in a whole model (`convert` is the function)
from .convert import convert, revert  # noqa: E402

__all__ += ["convert", "revert"]
