"""The built-in cases: every op alone, the MLPs of the targets and the cross-entropy head."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as TF
from torch import nn

import manual_autograd as ma
from manual_autograd import functional as MF

from .common import op_case, training_case

__all__ = ["ACTIVATIONS", "mlp", "op_cases", "model_cases", "cases", "relu_cache_variants"]

ACTIVATIONS = ma.nn.ACTIVATIONS  # name -> (native module class, manual module class)


# On CUDA an MNIST-sized MLP is launch-bound, so its step target there is #27's, not the CPU's.
CUDA_MLP_STEP_TARGET = 1.15


def mlp_targets(device: torch.device, cpu_step_target) -> dict:
    """An MLP row's step target on ``device``; on CUDA also the launch target (manual <= native)."""
    if device.type == "cuda":
        return {"step_target": CUDA_MLP_STEP_TARGET, "launch_target": 1.00}
    return {"step_target": cpu_step_target}


def mlp(sizes, activation: str, impl: str) -> nn.Sequential:
    """``Linear, act, Linear, act, ..., Linear`` through ``sizes``, from torch.nn or manual_autograd."""
    return ma.nn.build_mlp(sizes, activation, "torch" if impl == "native" else impl)


def _loss(impl: str) -> nn.Module:
    return nn.CrossEntropyLoss() if impl == "native" else ma.nn.CrossEntropyLoss()


def op_cases(device: torch.device, batch: int = 256, width: int = 1024) -> list:
    """Each op alone, at the shapes it has in the 784-1024-1024-10 MLP."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape, grad=False):
        return torch.randn(*shape, generator=g).to(device).requires_grad_(grad)

    x_in = randn(batch, 784, grad=True)
    w, b = randn(width, 784, grad=True), randn(width, grad=True)
    h = randn(batch, width, grad=True)
    gh = randn(batch, width)
    logits = randn(batch, 10, grad=True)
    target = torch.randint(0, 10, (batch,), generator=g).to(device)
    shape = {"batch": batch}
    cases = [
        op_case(f"linear 784→{width}", TF.linear, MF.linear, [x_in], [w, b], randn(batch, width), meta=shape),
        op_case("relu", TF.relu, MF.relu, [h], grad_out=gh, meta=shape),
        op_case("leaky_relu", TF.leaky_relu, MF.leaky_relu, [h], grad_out=gh, meta=shape),
        op_case("gelu", TF.gelu, MF.gelu, [h], grad_out=gh, meta=shape),
        op_case(
            "gelu (tanh)",
            functools.partial(TF.gelu, approximate="tanh"),
            functools.partial(MF.gelu, approximate="tanh"),
            [h],
            grad_out=gh,
            meta=shape,
        ),
        op_case("silu", TF.silu, MF.silu, [h], grad_out=gh, meta=shape),
        op_case(
            "cross_entropy (10 classes)",
            TF.cross_entropy,
            MF.cross_entropy,
            [logits, target],
            meta={**shape, "saved_target": 1.00},
        ),
    ]
    for c in cases:
        c.name = f"{c.name}, b{batch}"
    return cases


def model_cases(device: torch.device) -> list:
    """The whole models of the targets and the cross-entropy head."""
    g = torch.Generator(device="cpu").manual_seed(1)

    def batch_of(n, features=784):
        x = torch.randn(n, features, generator=g).to(device)
        return x, torch.randint(0, 10, (n,), generator=g).to(device)

    cases = []
    for batch, step_target in ((256, 1.05), (32, None)):
        x, t = batch_of(batch)
        cases.append(
            training_case(
                f"MLP 784-128-10 relu, b{batch}",
                "model",
                functools.partial(mlp, (784, 128, 10), "relu"),
                x,
                t,
                _loss,
                meta={"batch": batch, **mlp_targets(device, step_target), "saved_target": 1.00},
            )
        )
    x, t = batch_of(256)
    saved_targets = {"relu": 1.00, "leaky_relu": 0.55, "gelu": 1.00, "silu": 1.00}
    for act, saved_target in saved_targets.items():
        cases.append(
            training_case(
                f"MLP 784-1024-1024-10 {act}, b256",
                "model",
                functools.partial(mlp, (784, 1024, 1024, 10), act),
                x,
                t,
                _loss,
                meta={"batch": 256, **mlp_targets(device, 1.00), "saved_target": saved_target},
            )
        )
    h, t = batch_of(256, 1024)
    cases.append(
        training_case(
            "head: linear 1024→10 + cross-entropy, b256",
            "head",
            lambda impl: mlp((1024, 10), "relu", impl),
            h,
            t,
            _loss,
            meta={"batch": 256, "saved_target": 1.00},
        )
    )
    return cases


def cases(device: torch.device, quick: bool = False) -> list:
    return op_cases(device) + model_cases(device)


# --------------------------------------------------------------------------------------------
# the ReLU cache choice: what ReLU saves for backward, measured on the MLP


class _ReLUMask(torch.autograd.Function):
    """ReLU that saves a sign mask of its input instead of its output (bool, or bit-packed)."""

    @staticmethod
    def forward(ctx, x, packed):
        mask = x > 0
        ctx.packed, ctx.shape = packed, x.shape
        if packed:  # 8 elements a byte
            mask = ma.ops.pack_bits(mask)
        ctx.save_for_backward(mask)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad_out):
        (mask,) = ctx.saved_tensors
        if ctx.packed:
            mask = ma.ops.unpack_bits(mask, ctx.shape)
        return grad_out * mask, None


class _MaskReLU(nn.ReLU):
    def __init__(self, packed):
        super().__init__()
        self.packed = packed

    def forward(self, input):
        return _ReLUMask.apply(input, self.packed)


def relu_cache_variants(device: torch.device, sizes=(784, 1024, 1024, 10), batch: int = 256) -> list:
    """Saved bytes of the ReLU MLP with ReLU saving its output (manual_autograd, torch.nn) or a
    sign mask of its input (bool or bit-packed); Linear and loss are torch.nn's in the mask variants."""
    from .common import saved_bytes

    g = torch.Generator(device="cpu").manual_seed(2)
    x = torch.randn(batch, sizes[0], generator=g).to(device)
    t = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    models = {
        "torch.nn (saves output)": (mlp(sizes, "relu", "native"), nn.CrossEntropyLoss()),
        "manual_autograd (saves output)": (mlp(sizes, "relu", "manual"), ma.nn.CrossEntropyLoss()),
    }
    for packed, label in ((False, "sign mask, bool"), (True, "sign mask, bit-packed")):
        m = mlp(sizes, "relu", "native")
        for i, layer in enumerate(m):
            if isinstance(layer, nn.ReLU):
                m[i] = _MaskReLU(packed)
        models[label] = (m, nn.CrossEntropyLoss())
    rows = []
    for label, (model, loss) in models.items():
        model.to(device)
        got = saved_bytes(lambda: loss(model(x), t), list(model.parameters()), (x, t))
        rows.append({"variant": label, **got})
    return rows
