"""The one switch between the Triton kernels and the torch-op reference.

``MANUAL_AUTOGRAD_BACKEND`` (read once, when this module is first imported) picks the default:

* ``auto`` (default): the kernels for CUDA tensors when ``triton`` imports, the reference otherwise;
* ``torch``: the reference everywhere;
* ``triton``: the kernels wherever Triton runs: CUDA tensors, and CPU tensors when the kernels
  were decorated under ``TRITON_INTERPRET=1`` (triton reads it when ``@triton.jit`` runs, i.e.
  when :mod:`manual_autograd.kernels` is first imported).

An op asks, then calls the launchers, the same functions in eager and under ``torch.compile``::

    if backend.kernels_for(x):                      # forward
        out = backend.kernels().relu.forward(x)
    if backend.kernels_for(out, grad_out, grad=True):  # backward
        grad_x = backend.kernels().relu.backward(out, grad_out)

From Python, :func:`use` overrides it (a context manager and decorator, nestable; the state is
process-wide, as torch's own backend flags are) and :func:`get` reads it. The ops ask
:func:`kernels_for` on every forward and backward; it costs a few attribute reads on the CPU
path under ``auto``. Triton is imported only by :func:`kernels_for`/:func:`kernels`, lazily.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["BACKENDS", "ENV", "get", "use", "kernels_for", "kernels"]

ENV = "MANUAL_AUTOGRAD_BACKEND"
BACKENDS = ("auto", "torch", "triton")

# dtypes the kernels cover, by device (the interpreter computes with numpy: no bfloat16)
_CUDA_DTYPES = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))
_CPU_DTYPES = frozenset((torch.float32, torch.float64))
# torch.compile reaches the kernels only through torch.library.triton_op (torch >= 2.6)
_HAS_TRITON_OP = hasattr(torch.library, "triton_op") and hasattr(torch.library, "wrap_triton")


def _check(value, what):
    if value not in BACKENDS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, BACKENDS))}, got {value!r}")
    return value


def _from_env(environ=os.environ):
    """The backend named by ``MANUAL_AUTOGRAD_BACKEND`` in ``environ`` (``'auto'`` when unset or empty)."""
    raw = environ.get(ENV, "")
    value = raw.strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"environment variable {ENV} must be one of {', '.join(map(repr, BACKENDS))}, got {raw!r}")
    return value


_mode = _from_env()  # a plain global, not thread-local: dynamo guards on it when tracing kernels_for
_kernels = None  # the manual_autograd.kernels package once the probe found it importable
_probed = False


def get() -> str:
    """The backend in force: the innermost :func:`use`, else ``MANUAL_AUTOGRAD_BACKEND``."""
    return _mode


@contextlib.contextmanager
def use(backend: str):
    """Run a block (or, as a decorator, a function) under ``backend``; restores the previous one on exit.

    Args:
        backend: ``'auto'`` | ``'torch'`` | ``'triton'``.

    Examples::

        >>> with use("torch"):
        ...     assert get() == "torch"
    """
    global _mode
    _check(backend, "use(): argument 'backend'")
    prev, _mode = _mode, backend
    try:
        yield
    finally:
        _mode = prev


def _probe() -> bool:
    """Whether the kernels import (triton present and working); tried once per process."""
    global _kernels, _probed
    if not _probed:
        _probed = True
        try:
            from . import kernels as k
        except Exception:  # no triton, or one that cannot initialise: the reference serves
            k = None
        _kernels = k
    return _kernels is not None


def kernels():
    """The :mod:`manual_autograd.kernels` package (imports triton); call it after :func:`kernels_for` said True."""
    if _kernels is None and not _probe():
        raise RuntimeError("manual_autograd.kernels needs triton, which did not import")
    return _kernels


def kernels_for(*tensors, grad: bool = False) -> bool:
    """Whether an op should run its Triton kernels on ``tensors`` (``None`` entries are skipped).

    True only when the backend in force picks the kernels for the first tensor's device, every
    floating tensor's dtype is covered (float16/bfloat16/float32/float64 on CUDA, float32/float64
    on CPU under the interpreter; integer tensors such as targets pass), no ``torch.func``
    transform is active, and, for a backward (``grad=True``), no graph of it is being recorded
    (double backward takes the differentiable reference). Under ``torch.compile`` the kernels are
    taken only on CUDA where torch has ``torch.library.triton_op``.
    """
    mode = _mode
    if mode == "torch":
        return False
    first = tensors[0]
    compiling = False
    if first.is_cuda:
        dtypes = _CUDA_DTYPES
        compiling = torch.compiler.is_compiling()
        if compiling and not _HAS_TRITON_OP:
            return False
    elif mode == "auto" or first.device.type != "cpu":  # auto: CPU takes the reference
        return False
    else:
        dtypes = _CPU_DTYPES
        if torch.compiler.is_compiling():  # an interpreted kernel cannot be traced
            return False
    if grad and torch.is_grad_enabled():
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    for t in tensors:
        if t is not None and t.dtype not in dtypes and (t.dtype.is_floating_point or t.dtype.is_complex):
            return False
    if not _probe():
        return False
    if first.is_cuda:
        return not (compiling and _kernels.INTERPRETED)  # wrap_triton cannot trace an interpreted kernel
    return _kernels.INTERPRETED
