"""The byte-level language model: :class:`manual_autograd.GPT` (or its torch.nn twin) as a LightningModule."""

from __future__ import annotations

import math
import time
from typing import Literal

import lightning as L
import torch

from manual_autograd import GPT, GPTConfig

__all__ = ["GPTLanguageModel"]


class GPTLanguageModel(L.LightningModule):
    """A GPT on bytes, AdamW with linear warm-up then cosine decay; logs the validation loss in bits per byte.

    Args:
        n_layer, n_head, n_embd, block_size, dropout, bias, fused_mlp: the :class:`~manual_autograd.GPTConfig`
        impl: ``manual`` (the library's layers) | ``torch`` (torch.nn, the same network and init)
        lr: peak learning rate
        min_lr: the cosine's floor, as a fraction of ``lr``
        weight_decay: AdamW's, on the matrices and embeddings only (not biases, LayerNorms)
        warmup_steps: linear warm-up steps
        betas: AdamW's
        grad_clip: gradient-norm clip (``0``: none)
        sample_bytes: bytes generated at the end of fit
        sample_top_k: ``top_k`` of that sample
    """

    def __init__(
        self,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        block_size: int = 128,
        dropout: float = 0.0,
        bias: bool = True,
        fused_mlp: bool = True,
        impl: Literal["manual", "torch"] = "manual",
        lr: float = 2e-3,
        min_lr: float = 0.1,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        betas: tuple[float, float] = (0.9, 0.99),
        grad_clip: float = 1.0,
        sample_bytes: int = 300,
        sample_top_k: int = 20,
    ):
        super().__init__()
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"GPTLanguageModel: expected 'lr' to be a finite number > 0, got {lr!r}")
        self.save_hyperparameters()
        config = GPTConfig(vocab_size=256, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                           dropout=dropout, bias=bias, fused_mlp=fused_mlp)
        self.net = GPT(config, impl)
        self.tokens = 0
        self.train_seconds = 0.0
        self._t0 = None

    def forward(self, idx, targets=None):
        return self.net(idx, targets)

    def training_step(self, batch, batch_idx):
        x, y = batch
        _, loss = self.net(x, y)
        self.tokens += x.numel()
        if (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(x))
        return loss

    def on_train_batch_start(self, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_seconds += time.perf_counter() - self._t0

    def validation_step(self, batch, batch_idx):
        x, y = batch
        _, loss = self.net(x, y)
        self.log("val_loss", loss, prog_bar=False, batch_size=len(x))
        self.log("val_bpb", loss / math.log(2), prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        h = self.hparams
        decay = [p for p in self.parameters() if p.dim() >= 2]
        rest = [p for p in self.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                                lr=h.lr, betas=tuple(h.betas))
        total = max(int(self.trainer.estimated_stepping_batches), 1)

        def factor(step: int) -> float:
            if step < h.warmup_steps:
                return (step + 1) / h.warmup_steps
            t = min((step - h.warmup_steps) / max(total - h.warmup_steps, 1), 1.0)
            return h.min_lr + (1 - h.min_lr) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.hparams.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def sample(self, prompt: bytes = b"def ", n: int = 300, seed: int = 0) -> str:
        """``n`` bytes generated after ``prompt``, decoded as UTF-8 (``errors='replace'``)."""
        idx = torch.tensor([list(prompt)], dtype=torch.long, device=self.device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        was = self.net.training
        self.net.eval()
        out = self.net.generate(idx, n, temperature=1.0, top_k=self.hparams.sample_top_k, generator=g)
        self.net.train(was)
        return bytes(out[0].tolist()).decode("utf-8", errors="replace")
