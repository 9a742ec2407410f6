"""manual_autograd: PyTorch layers with hand-written, minimal-memory, gradchecked backward passes.

* :mod:`manual_autograd.ops` — the ``torch.autograd.Function`` op set, one file per op;
* :mod:`manual_autograd.functional` — ``torch.nn.functional``-compatible functions
  (arguments checked by :mod:`manual_autograd.checks`);
* :mod:`manual_autograd.nn` — drop-in ``torch.nn`` modules;
* :func:`manual_autograd.ledger` — what a forward pass keeps for backward, per module;
* :mod:`manual_autograd.health` — dead / saturated units and gradient norms, by hooks
  (:mod:`manual_autograd.callbacks` has the Lightning callback, imported on demand);
* :mod:`manual_autograd.testing` — ``check_function``, a diagnosing gradient check.
"""

from . import functional, health, nn, ops, testing
from .convert import convert, revert
from .health import HealthMonitor
from .ledger import Ledger, ledger  # `ledger` is the function; `from manual_autograd.ledger import ...` still works
from .ops import (
    ActivationLinearFunction,
    AttentionFunction,
    CrossEntropyFunction,
    DropoutFunction,
    EmbeddingFunction,
    GatedLinearFunction,
    GELUFunction,
    GLUFunction,
    LayerNormFunction,
    LeakyReLUFunction,
    LinearCrossEntropyFunction,
    LinearFunction,
    MSELossFunction,
    ReLUFunction,
    RMSNormFunction,
    SigmoidFunction,
    SiLUFunction,
    SoftmaxFunction,
    TanhFunction,
)
from .testing import check_function
from .gpt import GPT, GPTConfig

__version__ = "0.1.0"

__all__ = [
    "ops",
    "functional",
    "nn",
    *(name for name in ops.__all__ if name.endswith("Function") and name != "Function"),  # the op classes
    "health",
    "testing",
    "ledger",
    "Ledger",
    "HealthMonitor",
    "check_function",
    "convert",
    "revert",
    "__version__",
    "GPT",
    "GPTConfig",
]
