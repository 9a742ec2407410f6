"""Hugging Face ``transformers`` support for :func:`manual_autograd.convert`.

Imported by :mod:`manual_autograd.convert` only when a model holds a ``transformers`` module
(``transformers`` is an optional dependency: ``pip install manual-autograd[hf]``). Importing it
registers one attention implementation, ``"manual_autograd"``, in transformers'
``AttentionInterface`` (the library's :func:`~manual_autograd.functional.scaled_dot_product_attention`,
with the semantics of transformers' ``sdpa`` integration) and in its ``AttentionMaskInterface``
(the ``sdpa`` masks: boolean, or none when the causal flag suffices).

As in :mod:`manual_autograd.convert`, each module here subclasses its transformers twin, adds no
state and changes only ``forward``; a layer is converted by changing its class:

* ``pytorch_utils.Conv1D`` (GPT-2's projections, weight stored ``(in, out)``): :class:`Conv1D`,
  ``linear(x, Wᵀ, b)`` with ``Wᵀ`` a view of the parameter;
* ``NewGELUActivation``, ``GELUTanh`` (tanh GELU), ``GELUActivation`` (erf GELU),
  ``SiLUActivation``: the library's activations;
* ``GPT2MLP`` with one of those activations: :class:`GPT2MLP`, the activation and ``c_proj`` as
  one op (:func:`~manual_autograd.functional.activation_linear`);
* ``LlamaRMSNorm``: :class:`LlamaRMSNorm`, the library's ``rms_norm`` with Llama's numerics;
* ``LlamaMLP`` with a SiLU ``act_fn``: :class:`LlamaMLP`, a :class:`manual_autograd.nn.GatedMLP`
  (SwiGLU and ``down_proj`` as one op), same submodules and ``state_dict`` keys.

A ``PreTrainedModel`` whose attention goes through the interface (GPT-2, Llama, ...) and runs
``"sdpa"`` or ``"eager"`` is set to ``"manual_autograd"``; :func:`manual_autograd.revert` sets
it back (the previous name is kept on the model as ``_manual_autograd_attn_implementation``).
"""

from __future__ import annotations

import torch
from transformers import activations
from transformers.integrations.sdpa_attention import create_position_bias_mask
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface, PreTrainedModel
from transformers.models.gpt2 import modeling_gpt2
from transformers.models.llama import modeling_llama
from transformers.pytorch_utils import Conv1D as _Conv1D

from . import functional as F
from . import nn

__all__ = [
    "ATTENTION",
    "Conv1D",
    "NewGELUActivation",
    "GELUTanh",
    "GELUActivation",
    "SiLUActivation",
    "LlamaRMSNorm",
    "LlamaMLP",
    "GPT2MLP",
    "attention_forward",
    "library_class",
    "TO_TRANSFORMERS",
    "set_attention",
    "restore_attention",
]

ATTENTION = "manual_autograd"  # the attention implementation's name in transformers' interfaces
_NATIVE_ATTENTION = ("sdpa", "eager")  # the implementations convert replaces
_MARK = "_manual_autograd_attn_implementation"


class Conv1D(_Conv1D):
    """GPT-2's ``Conv1D``, ``y = x W + b`` with ``W`` stored ``(in, out)``, as the library's linear
    of ``Wᵀ`` (a view of the parameter: nothing copied, nothing more saved)."""

    def forward(self, x):
        return F.linear(x, self.weight.t(), self.bias)


class NewGELUActivation(activations.NewGELUActivation):
    """GPT-2's ``gelu_new``: the tanh GELU, as the library's (keeps only its input)."""

    def forward(self, input):
        return F.gelu(input, approximate="tanh")


class GELUTanh(activations.GELUTanh):
    """``gelu_pytorch_tanh``: the tanh GELU, as the library's."""

    def forward(self, input):
        return F.gelu(input, approximate="tanh")


class GELUActivation(activations.GELUActivation):
    """``gelu``: the erf GELU, as the library's."""

    def forward(self, input):
        return F.gelu(input)


class SiLUActivation(activations.SiLUActivation):
    """``silu``: as the library's."""

    def forward(self, input):
        return F.silu(input)


class LlamaRMSNorm(modeling_llama.LlamaRMSNorm):
    """``LlamaRMSNorm`` as the library's ``rms_norm``, with Llama's numerics: the norm in float32,
    cast back to the input's dtype, then scaled by the weight. For float32 input and weight (the
    casts are no-ops) the weight goes into the one op; otherwise the op normalises the float32
    copy and the weight multiplies after the cast, as Llama does."""

    def forward(self, hidden_states):
        dtype, w = hidden_states.dtype, self.weight
        shape = (hidden_states.shape[-1],)
        if dtype == torch.float32 and w.dtype == torch.float32:
            return F.rms_norm(hidden_states, shape, w, self.variance_epsilon)
        return w * F.rms_norm(hidden_states.to(torch.float32), shape, None, self.variance_epsilon).to(dtype)


class LlamaMLP(modeling_llama.LlamaMLP, nn.GatedMLP):
    """``LlamaMLP`` with a SiLU ``act_fn`` as :class:`manual_autograd.nn.GatedMLP`: SwiGLU and
    ``down_proj`` in one op that keeps ``gate_proj(x)`` and ``up_proj(x)`` only."""

    activation, approximate = "silu", "none"  # what GatedMLP.forward reads; no instance state
    forward = nn.GatedMLP.forward
    extra_repr = nn.GatedMLP.extra_repr


_ACT = {  # a GPT-2 MLP's act -> activation_linear's (activation, approximate)
    activations.NewGELUActivation: ("gelu", "tanh"),
    NewGELUActivation: ("gelu", "tanh"),
    activations.GELUTanh: ("gelu", "tanh"),
    GELUTanh: ("gelu", "tanh"),
    activations.GELUActivation: ("gelu", "none"),
    GELUActivation: ("gelu", "none"),
    activations.SiLUActivation: ("silu", "none"),
    SiLUActivation: ("silu", "none"),
}


class GPT2MLP(modeling_gpt2.GPT2MLP):
    """GPT-2's MLP with its activation and ``c_proj`` as one op
    (:func:`~manual_autograd.functional.activation_linear`), keeping ``c_fc(x)`` only, where the
    unfused pair also keeps ``act(c_fc(x))``."""

    def forward(self, hidden_states):
        activation, approximate = _ACT[type(self.act)]
        proj = self.c_proj
        out = F.activation_linear(self.c_fc(hidden_states), proj.weight.t(), proj.bias, activation, approximate=approximate)
        return self.dropout(out)


_SWAPS = {
    _Conv1D: Conv1D,
    activations.NewGELUActivation: NewGELUActivation,
    activations.GELUTanh: GELUTanh,
    activations.GELUActivation: GELUActivation,
    activations.SiLUActivation: SiLUActivation,
    modeling_llama.LlamaRMSNorm: LlamaRMSNorm,
    modeling_llama.LlamaMLP: LlamaMLP,
    modeling_gpt2.GPT2MLP: GPT2MLP,
}
TO_TRANSFORMERS = {ours: theirs for theirs, ours in _SWAPS.items()}
_SILU = (torch.nn.SiLU, nn.SiLU, activations.SiLUActivation, SiLUActivation)
_LINEAR = (torch.nn.Linear, nn.Linear)


def library_class(m: torch.nn.Module):
    """The library's class for the transformers module ``m``, or ``None`` when it stays as it is."""
    cls = _SWAPS.get(type(m))
    if cls is LlamaMLP:  # fused only when it is SwiGLU over three plain Linears
        ok = type(m.act_fn) in _SILU and all(type(getattr(m, n)) in _LINEAR for n in ("gate_proj", "up_proj", "down_proj"))
        return cls if ok else None
    if cls is GPT2MLP:  # fused when its act is one activation_linear has and c_proj a Conv1D
        return cls if type(m.act) in _ACT and type(m.c_proj) in (_Conv1D, Conv1D) else None
    return cls


def attention_forward(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
    position_bias=None, **kwargs,
):
    """transformers' attention-interface signature around the library's
    :func:`~manual_autograd.functional.scaled_dot_product_attention`; the mask, causal flag,
    scale and dropout as transformers' ``sdpa`` integration passes them. Grouped-query attention
    runs as a view (``enable_gqa``), never a ``repeat_kv`` copy. Returns ``(output, None)``."""
    if kwargs.get("softcap") is not None:
        raise ValueError("the manual_autograd attention does not support `softcap`; use `eager`")
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    q_len, kv_len = query.shape[2], key.shape[2]
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = q_len > 1 and attention_mask is None and is_causal
    if is_causal and kv_len > q_len:  # an empty static cache's prefill: the keys past the queries are masked
        key, value = key[:, :, :q_len], value[:, :, :q_len]
        if position_bias is not None:
            position_bias = position_bias[..., :q_len]
    if position_bias is not None:
        attention_mask = create_position_bias_mask(position_bias, attention_mask, is_causal, query, key)
        is_causal = False
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=is_causal, scale=scaling,
        enable_gqa=gqa,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, attention_forward)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _models(module: torch.nn.Module):
    return [m for m in module.modules() if isinstance(m, PreTrainedModel)]


def set_attention(module: torch.nn.Module) -> None:
    """Route the attention of every ``PreTrainedModel`` in ``module`` that runs ``sdpa`` or
    ``eager`` through the interface to :data:`ATTENTION`, marking each with its previous name."""
    for m in _models(module):
        prev = m.config._attn_implementation
        if hasattr(m, _MARK):
            continue
        if prev in _NATIVE_ATTENTION and type(m)._can_set_attn_implementation():
            setattr(m, _MARK, prev)
    for m in _models(module):
        if hasattr(m, _MARK):
            m.config._attn_implementation = ATTENTION


def restore_attention(module: torch.nn.Module) -> None:
    """The reverse of :func:`set_attention`: each marked model's attention implementation back."""
    for m in _models(module):
        prev = m.__dict__.pop(_MARK, None)
        if prev is not None and m.config._attn_implementation == ATTENTION:
            m.config._attn_implementation = prev

