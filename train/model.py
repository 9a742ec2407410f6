"""The MNIST classifier: an MLP built from ``manual_autograd.nn`` (or, for comparison, from ``torch.nn``)."""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

import manual_autograd.nn as mnn

__all__ = ["ACTIVATIONS", "IMPLS", "OPTIMIZERS", "SCHEDULERS", "build_mlp", "MNISTClassifier"]

ACTIVATIONS = tuple(mnn.ACTIVATIONS)
IMPLS = mnn.IMPLS
build_mlp = mnn.build_mlp  # the library's one MLP builder
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "onecycle", "cosine")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

def _check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"MNISTClassifier: expected '{name}' to be one of {', '.join(map(repr, choices))}, got {value!r}")


class MNISTClassifier(L.LightningModule):
    """An MLP on flattened 28×28 images, trained with cross-entropy; every choice comes from the config.

    Args:
        hidden_sizes: widths of the hidden layers, e.g. ``[512, 256]``
        activation: ``relu`` | ``leaky_relu`` | ``gelu`` | ``silu``
        impl: ``manual`` (``manual_autograd.nn``) | ``torch`` (``torch.nn``, the same network)
        fused: with ``impl: manual``, fuse each hidden activation into the next Linear
            (:class:`manual_autograd.nn.MLP`: half the saved activations with GELU / SiLU)
        optimizer: ``sgd`` | ``adam`` | ``adamw``
        lr: learning rate (the peak rate with ``scheduler: onecycle``)
        momentum: SGD momentum
        nesterov: SGD Nesterov momentum
        weight_decay: L2 penalty (decoupled for ``adamw``)
        scheduler: ``constant`` | ``onecycle`` (warm-up then cosine annealing, stepped every batch)
            | ``cosine`` (cosine annealing to 0 over the run, stepped every batch)
        warmup: fraction of the steps spent warming up (``onecycle`` only)
        label_smoothing: label smoothing of the cross-entropy, in ``[0, 1]``
        in_features: input size (flattened image)
        num_classes: output size
        compile: compile the network with :func:`torch.compile` (in place: the state_dict keys and
            checkpoints stay those of the eager model)
        compile_mode: ``torch.compile``'s mode; ``reduce-overhead`` captures the forward and backward in
            CUDA graphs on CUDA (one launch per step instead of one per kernel). Needs ``compile: true``

    Examples::

        >>> model = MNISTClassifier(hidden_sizes=[128], optimizer="sgd", lr=0.1)
        >>> model(torch.randn(4, 784)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        hidden_sizes: list[int] = [512, 256],  # noqa: B006 (jsonargparse reads defaults from the signature)
        activation: Literal["relu", "leaky_relu", "gelu", "silu"] = "relu",
        impl: Literal["manual", "torch"] = "manual",
        optimizer: Literal["sgd", "adam", "adamw"] = "adamw",
        lr: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        scheduler: Literal["constant", "onecycle", "cosine"] = "onecycle",
        warmup: float = 0.25,
        label_smoothing: float = 0.0,
        in_features: int = 784,
        num_classes: int = 10,
        fused: bool = False,
        compile: bool = False,
        compile_mode: Optional[Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = None,
    ):
        super().__init__()
        # every check runs before anything is built, so a bad config never starts a run
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("impl", impl, IMPLS)
        _check_choice("optimizer", optimizer, OPTIMIZERS)
        _check_choice("scheduler", scheduler, SCHEDULERS)
        sizes = [in_features, *hidden_sizes, num_classes]
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(
                f"expected 'hidden_sizes', 'in_features' and 'num_classes' to be positive integers, "
                f"got hidden_sizes={hidden_sizes!r}, in_features={in_features!r}, num_classes={num_classes!r}"
            )
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"MNISTClassifier: expected 'lr' (learning rate) to be a finite number > 0, got {lr!r}")
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"MNISTClassifier: expected '{name}' to be a finite number >= 0, got {value!r}")
        for name, value in (("warmup", warmup), ("label_smoothing", label_smoothing)):
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"MNISTClassifier: expected '{name}' to be in [0, 1], got {value!r}")
        if fused and impl != "manual":
            raise ValueError(f"MNISTClassifier: 'fused: true' needs 'impl: manual', got impl={impl!r}")
        if nesterov and (optimizer != "sgd" or momentum == 0):
            raise ValueError(f"MNISTClassifier: 'nesterov: true' needs 'optimizer: sgd' with momentum > 0, got optimizer={optimizer!r}, "
                             f"momentum={momentum!r}")
        if compile_mode is not None and (not compile or compile_mode not in COMPILE_MODES):
            raise ValueError(f"MNISTClassifier: 'compile_mode' needs 'compile: true' and one of {', '.join(map(repr, COMPILE_MODES))}, "
                             f"got compile={compile!r}, compile_mode={compile_mode!r}")
        self.save_hyperparameters()

        self.net = build_mlp(sizes, activation, impl, fused)
        if compile:  # in place (nn.Module.compile): parameters and state_dict keys stay the eager model's
            self.net.compile(mode=compile_mode)
        self.loss = (mnn.CrossEntropyLoss if impl == "manual" else nn.CrossEntropyLoss)(label_smoothing=label_smoothing)
        # validate_args=False: the argument checks read tensors back to the host (torch.unique, .any()) on every update
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._loss_sum, self._seen = None, 0  # the epoch's summed training loss, on the device

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        # Nothing here leaves the device. The loss is summed on it and logged per epoch; its step
        # value is handed to `self.log` only on the steps the loggers write (every
        # `log_every_n_steps`), since each `self.log` call costs ~2 ms of Python on this CPU. The
        # accuracy's update only adds counts; the metric is computed once an epoch.
        n = len(y)
        self._loss_sum = self._loss_sum + loss.detach() * n if self._seen else loss.detach() * n
        self._seen += n
        self.train_acc.update(logits.detach(), y)
        if (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        return loss

    def on_train_epoch_start(self):
        self._loss_sum, self._seen = None, 0

    def on_train_epoch_end(self):
        if self._seen:
            self.log("train_loss_epoch", self._loss_sum / self._seen, prog_bar=True, sync_dist=True)
        self.log("train_acc", self.train_acc.compute(), sync_dist=False)  # the metric syncs its counts itself
        self.train_acc.reset()

    def _evaluate(self, batch, stage: str, acc: MulticlassAccuracy):
        x, y = batch
        logits = self(x)
        acc.update(logits, y)
        self.log(f"{stage}_loss", self.loss(logits, y), prog_bar=True, batch_size=len(y))
        self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(1)

    def configure_optimizers(self):
        h = self.hparams
        params = self.parameters()
        if h.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=h.lr, momentum=h.momentum, nesterov=h.nesterov, weight_decay=h.weight_decay)
        elif h.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay)
        if h.scheduler == "constant":
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        if h.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=h.lr, total_steps=steps, pct_start=h.warmup)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
