"""A GPT (GPT-2's architecture, nanoGPT's layout) built from the library's layers, with a torch.nn twin.

* token embedding + learned positional embedding, dropout;
* ``n_layer`` pre-norm blocks: ``x + drop(proj(attn(ln_1(x))))`` with one ``qkv`` Linear and causal
  :func:`~manual_autograd.functional.scaled_dot_product_attention`, then
  ``x + drop(c_proj(gelu_tanh(c_fc(ln_2(x)))))`` (or ``c_proj`` as an
  :class:`~manual_autograd.nn.ActivationLinear` taking ``c_fc``'s output: ``fused_mlp``);
* final LayerNorm, head tied to the token embedding; the training loss is
  :func:`~manual_autograd.functional.linear_cross_entropy`, so the ``(tokens, vocab)`` logits are
  never held.

``impl='torch'`` builds the same network from ``torch.nn`` (``F.scaled_dot_product_attention``, or
``attention='math'``: ``softmax(q kᵀ/√d + causal) v`` as GPT-2's eager path), loss
``F.cross_entropy`` on the full logits. Modules are created in the same order with the same
default initialisers, then GPT-2's init (``normal(0, 0.02)``, zero biases, residual projections
``normal(0, 0.02/√(2·n_layer))``) is drawn in the same order: under the same seed both impls hold
identical weights, and their ``state_dict`` keys are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from . import functional as MF
from . import nn as mnn

__all__ = ["GPTConfig", "GPT"]

IMPLS = ("manual", "torch")
ATTENTIONS = ("sdpa", "math")


@dataclass
class GPTConfig:
    """Sizes of a :class:`GPT`.

    Args:
        vocab_size: tokens (256 for bytes)
        block_size: the longest context (positions of the positional embedding)
        n_layer: blocks
        n_head: attention heads (divides ``n_embd``)
        n_embd: model width
        dropout: probability of the embedding, attention and residual dropouts
        bias: biases in the Linears and LayerNorms
        fused_mlp: ``impl='manual'`` only: the MLP's GELU fused into its second Linear
            (:class:`~manual_autograd.nn.ActivationLinear`; same parameters); the torch twin is
            the unfused network either way
        loss_chunk_size: classes per block of the fused loss; ``None``: the library's choice
    """

    vocab_size: int = 256
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    fused_mlp: bool = False
    loss_chunk_size: Optional[int] = None

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GPTConfig: expected '{name}' to be a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: expected 'n_head' to divide 'n_embd', got n_head={self.n_head}, n_embd={self.n_embd}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"GPTConfig: expected 'dropout' in [0, 1), got {self.dropout!r}")


def _layers(impl: str):
    return mnn if impl == "manual" else nn


def _math_attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
    # GPT-2's eager attention: the (L, L) probabilities are formed (and kept for backward)
    L = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~causal, float("-inf")).softmax(-1)
    if dropout_p > 0:
        att = TF.dropout(att, dropout_p)
    return att @ v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, impl: str, attention: str):
        super().__init__()
        L = _layers(impl)
        self.c_attn = L.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = L.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = L.Dropout(config.dropout)
        self.n_head, self.dropout, self.attention = config.n_head, config.dropout, attention
        self.sdpa = MF.scaled_dot_product_attention if impl == "manual" else TF.scaled_dot_product_attention

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        # (B, T, H, E) views of the one qkv output, heads moved to dim 1 without a copy
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        p = self.dropout if self.training else 0.0
        if self.attention == "math":
            y = _math_attention(q, k, v, p)
        else:
            y = self.sdpa(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig, impl: str):
        super().__init__()
        L, d = _layers(impl), config.n_embd
        self.fused = impl == "manual" and config.fused_mlp
        self.c_fc = L.Linear(d, 4 * d, bias=config.bias)
        if self.fused:  # GELU inside c_proj: it keeps c_fc's output only, not GELU's too
            self.gelu = nn.Identity()
            self.c_proj = mnn.ActivationLinear(4 * d, d, bias=config.bias, activation="gelu", approximate="tanh")
        else:
            self.gelu = L.GELU(approximate="tanh")
            self.c_proj = L.Linear(4 * d, d, bias=config.bias)
        self.dropout = L.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, impl: str, attention: str):
        super().__init__()
        L = _layers(impl)
        self.ln_1 = L.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, impl, attention)
        self.ln_2 = L.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, impl)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A decoder-only transformer on token ids; ``forward(idx, targets)`` gives ``(logits, loss)``.

    Args:
        config: a :class:`GPTConfig`
        impl: ``'manual'`` (the library's layers, fused loss) | ``'torch'`` (``torch.nn``, the same network)
        attention: ``impl='torch'`` only: ``'sdpa'`` (``F.scaled_dot_product_attention``) | ``'math'``
            (the probabilities formed, as GPT-2's eager path)

    Shape:
        - idx, targets: :math:`(B, T)` token ids, :math:`T \\le` ``block_size``
        - logits: :math:`(B, T, V)`; ``None`` when ``targets`` are given with ``impl='manual'``
          (the fused loss never forms them)
        - loss: scalar mean cross-entropy in nats, or ``None`` without ``targets``

    Examples::

        >>> model = GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=32))
        >>> idx = torch.randint(0, 256, (2, 16))
        >>> logits, loss = model(idx, idx)
        >>> loss.backward()
        >>> model.generate(idx[:, :4], 8).shape
        torch.Size([2, 12])
    """

    def __init__(self, config: GPTConfig, impl: str = "manual", attention: str = "sdpa"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"GPT: expected 'impl' to be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
        if attention not in ATTENTIONS or (attention == "math" and impl != "torch"):
            raise ValueError(f"GPT: expected 'attention' 'sdpa', or 'math' with impl='torch', got attention={attention!r}, impl={impl!r}")
        self.config, self.impl = config, impl
        L = _layers(impl)
        self.transformer = nn.ModuleDict(
            dict(
                wte=L.Embedding(config.vocab_size, config.n_embd),
                wpe=L.Embedding(config.block_size, config.n_embd),
                drop=L.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, impl, attention) for _ in range(config.n_layer)]),
                ln_f=L.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = L.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied
        self.apply(self._init_weights)
        std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # the residual projections, GPT-2's scaled init
                nn.init.normal_(p, mean=0.0, std=std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Parameters, the tied head counted once."""
        return sum(p.numel() for p in self.parameters())

    def hidden(self, idx: Tensor) -> Tensor:
        """The final LayerNorm's output, ``(B, T, n_embd)``."""
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"GPT: expected at most block_size={self.config.block_size} tokens, got {T}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(self, idx: Tensor, targets: Optional[Tensor] = None):
        x = self.hidden(idx)
        if targets is None:
            return self.lm_head(x), None
        if self.impl == "manual":
            # the tied head's weight, blocks of classes at a time: no (B·T, V) logits kept
            chunk = self.config.loss_chunk_size or self.config.vocab_size
            loss = MF.linear_cross_entropy(x.reshape(-1, x.shape[-1]), self.lm_head.weight, targets.reshape(-1), chunk_size=chunk)
            return None, loss
        logits = self.lm_head(x)
        return logits, TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """Append ``max_new_tokens`` tokens sampled one at a time (context cropped to ``block_size``).

        ``temperature`` divides the logits (``0``: greedy); ``top_k`` keeps the ``k`` likeliest;
        ``generator`` draws the samples. Dropout follows the module's mode: call ``eval()`` first.
        """
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.config.block_size :]
            logits = self.lm_head(self.hidden(ctx)[:, -1, :]).float()
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            idx = torch.cat((idx, nxt.to(idx.dtype)), dim=1)
        return idx
