"""Memory-bound cases of issue #27, CUDA only: each activation on (8192, 8192) in float32 and
bfloat16, the cross-entropy on (8192, 32000) and the MLP 4096-4096-4096 at batch 8192.

``cases(device, quick)`` returns nothing off CUDA (the shapes take gigabytes); :func:`build`
makes the same cases at any ``shapes`` on any device, so a test can run them small on the CPU.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as TF

from manual_autograd import functional as MF

from .cases import _loss, mlp
from .common import op_case, training_case

__all__ = ["SHAPES", "ACT_DTYPES", "CE_DTYPES", "build", "cases"]

SHAPES = {"act": (8192, 8192), "ce": (8192, 32000), "mlp": (4096, 4096, 4096), "mlp_batch": 8192}
ACT_DTYPES = (torch.float32, torch.bfloat16)
CE_DTYPES = (torch.float32, torch.bfloat16)

# name -> (native, manual)
_ACTS = {
    "relu": (TF.relu, MF.relu),
    "leaky_relu": (TF.leaky_relu, MF.leaky_relu),
    "gelu": (TF.gelu, MF.gelu),
    "gelu (tanh)": (functools.partial(TF.gelu, approximate="tanh"), functools.partial(MF.gelu, approximate="tanh")),
    "silu": (TF.silu, MF.silu),
}


def _dt(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def build(device: torch.device, shapes: dict = SHAPES) -> list:
    """The #27 cases at ``shapes`` on ``device``, targets (manual / native) in their meta."""
    g = torch.Generator(device="cpu").manual_seed(3)

    def randn(*shape, dtype=torch.float32, grad=False):
        return torch.randn(*shape, generator=g).to(device, dtype).requires_grad_(grad)

    out = []
    rows, cols = shapes["act"]
    for dtype in ACT_DTYPES:  # one input and grad_out per dtype, shared by the activations
        h, gh = randn(rows, cols, dtype=dtype, grad=True), randn(rows, cols, dtype=dtype)
        for name, (native, manual) in _ACTS.items():
            meta = {"batch": rows, "dtype": _dt(dtype), "step_target": 1.00, "peak_target": 1.00}
            out.append(op_case(f"{name} ({rows}, {cols}) {_dt(dtype)}", native, manual, [h], grad_out=gh, meta=meta))
    n, c = shapes["ce"]
    target = torch.randint(0, c, (n,), generator=g).to(device)
    for dtype in CE_DTYPES:
        logits = randn(n, c, dtype=dtype, grad=True)
        meta = {"batch": n, "dtype": _dt(dtype), "step_target": 0.90, "peak_target": 1.00}
        out.append(op_case(f"cross_entropy ({n}, {c}) {_dt(dtype)}", TF.cross_entropy, MF.cross_entropy,
                           [logits, target], meta=meta))
    sizes, batch = tuple(shapes["mlp"]), shapes["mlp_batch"]
    x, t = randn(batch, sizes[0]), torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    for act in ("relu", "gelu"):
        meta = {"batch": batch, "step_target": 1.00, "launch_target": 1.00}
        out.append(training_case(f"MLP {'-'.join(map(str, sizes))} {act}, b{batch}", "model",
                                 functools.partial(mlp, sizes, act), x, t, _loss, meta=meta))
    return out


def cases(device: torch.device, quick: bool = False) -> list:
    return build(device) if device.type == "cuda" else []
