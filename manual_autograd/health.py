"""Gradient health: where the backward pass stops carrying signal, read off the forward pass.

A unit whose activation derivative is (almost) zero passes (almost) no gradient: a ReLU unit
that is never active over many batches is dead and its incoming weights stop learning; a
sigmoid pushed to its tails is saturated. Both are visible in the pre-activations the
activation layers already see, so :class:`HealthMonitor` reads them with forward hooks (no extra
forward or backward pass) and keeps a few running sums per layer on the device:

* ``dead_fraction``: the fraction of units whose derivative was below ``threshold`` on every
  example of the window (for ReLU: never active; for LeakyReLU with a slope above the threshold
  this is never the case);
* ``saturated_fraction``: the fraction of pre-activation entries whose derivative is below
  ``threshold``;
* ``mean`` and ``std`` of the activation's output;

for every activation module, and for every fused :class:`~manual_autograd.nn.ActivationLinear`
(its input is the activation's input ``z``; the statistics are those of ``act(z)``, the unfused
pair's, under the fused layer's name);

and, from the parameters' ``.grad`` after backward, the gradient norm of each layer.

To stay cheap, each batch costs one per-unit maximum of a "margin" (a float tensor that is
``<= 0`` exactly where the derivative is below the threshold; for ReLU it is the input itself),
which is all the dead fraction needs; the counts behind the saturated fraction and the output
statistics are taken on every ``stats_every``-th batch. Nothing here waits on the device until
:meth:`HealthMonitor.compute` or :meth:`HealthMonitor.grad_norms` is called (the gradient norms can
also be kept on the device with :meth:`HealthMonitor.grad_norm_tensor` and read back later).
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .nn import ACTIVATIONS as _FUSABLE
from .nn import ActivationLinear
from .ops.gelu import gelu_derivative
from .ops.silu import silu_derivative

__all__ = ["HealthMonitor", "ACTIVATIONS"]

# Modules the monitor understands (this library's modules subclass these, so they count too).
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)


def _activation_of(m: nn.Module) -> nn.Module:
    """The activation module whose statistics a watched layer gives: the layer itself, or for a
    fused :class:`ActivationLinear` the torch.nn twin of the activation inside it."""
    if not isinstance(m, ActivationLinear):
        return m
    twin = _FUSABLE[m.activation][0]
    if m.activation == "leaky_relu":
        return twin(m.negative_slope)
    return twin(approximate=m.approximate) if m.activation == "gelu" else twin()


def _margin(m: nn.Module, x: Tensor, y: Optional[Tensor], thr: float) -> Optional[Tensor]:
    """A float tensor ``z`` with ``z <= 0`` exactly where ``|f'(x)| < thr``; ``None`` when nowhere.

    A margin rather than a bool mask: per-unit maxima and counts of a float tensor are the cheap
    reductions. For the piecewise-linear activations it is ``x`` itself (no new tensor).
    """
    if isinstance(m, nn.ReLU):
        return x  # NOTE: f'(0) is taken as 0, as torch's backward does: saturated iff x <= 0
    if isinstance(m, nn.LeakyReLU):
        return x if abs(m.negative_slope) < thr else None
    if isinstance(m, nn.Hardtanh):  # ReLU6 too: f' = 0 outside (min_val, max_val)
        return torch.minimum(x - m.min_val, m.max_val - x)
    if isinstance(m, nn.ELU):  # f'(x) = alpha e^x for x <= 0, 1 above
        return x if m.alpha < thr else x - math.log(thr / m.alpha)
    if isinstance(m, nn.GELU):  # the op's own derivative, exact or tanh as the module computes
        return gelu_derivative(x, m.approximate).abs_() - thr
    if isinstance(m, nn.SiLU):
        return silu_derivative(x).abs_() - thr
    if isinstance(m, nn.Sigmoid):  # σ(1 − σ), from the output
        return y * (1.0 - y) - thr
    if isinstance(m, nn.Tanh):  # 1 − tanh², from the output
        return (1.0 - thr) - y * y
    raise TypeError(f"HealthMonitor: no derivative rule for {type(m).__name__}")


class _LayerStats:
    """Running sums of one activation layer over the current window, kept on its device."""

    __slots__ = ("batches", "units", "zmax", "sampled", "sample_now", "elems", "positive", "out_sum", "out_sq", "out_n")

    def __init__(self):
        self.reset()

    def reset(self):
        self.batches = 0
        self.units = None
        self.zmax = None  # per unit: the largest margin seen (<= 0: saturated on every example)
        self.sampled = 0  # batches whose counts and statistics were taken
        self.sample_now = False
        self.elems = 0  # entries counted in those batches
        self.positive = None  # how many of them were not saturated
        self.out_sum = self.out_sq = None
        self.out_n = 0


class HealthMonitor:
    """Per-layer dead and saturated units, activation statistics and gradient norms, by hooks.

    Args:
        model: the module to watch; every submodule that is one of :data:`ACTIVATIONS` or an
            :class:`~manual_autograd.nn.ActivationLinear` is hooked (a warning says so when none is).
        threshold: a derivative of absolute value below this counts as saturated. Default: ``1e-2``
        unit_dim: the dimension of the activations that indexes units (the features of a Linear
            layer: ``-1``; the channels of a convolution: ``1``). Default: ``-1``
        stats_every: take the saturated fraction and the activation statistics on every
            ``stats_every``-th batch (dead units are tracked on every batch). Default: ``1``

    Only forward passes with gradients enabled are counted, so validation does not dilute them.

    Examples::

        >>> monitor = HealthMonitor(model).attach()
        >>> for x, y in batches:  # training as usual
        ...     loss_fn(model(x), y).backward()
        ...     norms = monitor.grad_norms()   # before zero_grad
        ...     opt.step(); opt.zero_grad()
        >>> monitor.compute()  # {'1': {'dead_fraction': 0.03, 'saturated_fraction': 0.51, ...}}
        >>> monitor.detach()
    """

    def __init__(self, model: nn.Module, threshold: float = 1e-2, unit_dim: int = -1, stats_every: int = 1):
        if not isinstance(model, nn.Module):
            raise TypeError(f"HealthMonitor(): argument 'model' must be an nn.Module, not {type(model).__name__}")
        if not (isinstance(threshold, (int, float)) and threshold > 0):
            raise ValueError(f"HealthMonitor(): expected 'threshold' to be a positive number, got {threshold!r}")
        if not isinstance(unit_dim, int):
            raise TypeError(f"HealthMonitor(): argument 'unit_dim' must be int, not {type(unit_dim).__name__}")
        if isinstance(stats_every, bool) or not isinstance(stats_every, int) or stats_every < 1:
            raise ValueError(f"HealthMonitor(): expected 'stats_every' to be a positive int, got {stats_every!r}")
        self.model = model
        self.stats_every = stats_every
        self.threshold = float(threshold)
        self.unit_dim = unit_dim
        self.layers: Dict[str, nn.Module] = {
            n: m for n, m in model.named_modules() if isinstance(m, ACTIVATIONS + (ActivationLinear,))
        }
        if not self.layers:
            warnings.warn(
                f"HealthMonitor: {type(model).__name__} has no activation layer to watch (none of "
                f"{', '.join(t.__name__ for t in ACTIVATIONS)}, ActivationLinear): no dead or saturated "
                "units will be reported, only gradient norms",
                stacklevel=2,
            )
        self.stats: Dict[str, _LayerStats] = {n: _LayerStats() for n in self.layers}
        # Layers with parameters of their own, for the gradient norms.
        self.param_layers: Dict[str, List[nn.Parameter]] = {}
        for n, m in model.named_modules():
            ps = [p for p in m.parameters(recurse=False) if p.requires_grad]
            if ps:
                self.param_layers[n] = ps
        self._handles: list = []

    # ---- hooks --------------------------------------------------------------------------

    def attach(self) -> "HealthMonitor":
        """Register the forward hooks; returns ``self``."""
        if self._handles:
            return self
        for name, m in self.layers.items():
            st = self.stats[name]
            if isinstance(m, ActivationLinear):  # the activation is inside: its input is the layer's
                self._handles.append(m.register_forward_pre_hook(self._fused_hook(_activation_of(m), st)))
            elif getattr(m, "inplace", False):  # the input is overwritten: read it before
                self._handles.append(m.register_forward_pre_hook(self._pre_hook(m, st)))
                self._handles.append(m.register_forward_hook(self._out_hook(st)))
            else:
                self._handles.append(m.register_forward_hook(self._hook(m, st)))
        return self

    def detach(self) -> None:
        """Remove the hooks (the statistics gathered so far stay)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "HealthMonitor":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _counted(self, m: nn.Module) -> bool:
        return m.training and torch.is_grad_enabled()

    def _add_in(self, m: nn.Module, st: _LayerStats, x: Tensor, y: Optional[Tensor]) -> None:
        if x.dim() == 0:
            return
        with torch.no_grad():
            ud = self.unit_dim % x.dim()
            units = x.shape[ud]
            if st.units is None:
                st.units = units
                st.zmax = torch.full((units,), -math.inf, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
                st.positive = torch.zeros((), dtype=torch.int64, device=x.device)
            elif st.units != units:
                raise RuntimeError(
                    f"HealthMonitor: layer saw {units} units along unit_dim={self.unit_dim} after {st.units}; "
                    "pass the unit_dim that indexes features"
                )
            st.sample_now = st.batches % self.stats_every == 0
            st.batches += 1
            z = _margin(m, x, y, self.threshold)
            if z is None:  # never saturated
                st.zmax.fill_(math.inf)
                if st.sample_now:
                    st.positive += x.numel()
            else:
                others = [d for d in range(z.dim()) if d != ud]
                torch.maximum(st.zmax, z.amax(others) if others else z, out=st.zmax)
                if st.sample_now:
                    st.positive += torch.count_nonzero(z > 0)
            if st.sample_now:
                st.sampled += 1
                st.elems += x.numel()

    def _add_out(self, st: _LayerStats, y: Tensor) -> None:
        if not st.sample_now:
            return
        with torch.no_grad():
            flat = y.detach().reshape(-1)
            acc = torch.promote_types(flat.dtype, torch.float32)  # half sums overflow (fp16) or round (bf16)
            s, sq = flat.sum(dtype=acc), torch.linalg.vector_norm(flat, dtype=acc).square()
            if st.out_sum is None:
                st.out_sum, st.out_sq = s.double(), sq.double()
            else:
                st.out_sum += s
                st.out_sq += sq
            st.out_n += flat.numel()

    # The hooks keep Python counters: under torch.compile they run eagerly (a graph break each),
    # since traced, every change of a counter would fail a guard and recompile the model.
    def _hook(self, m, st):
        @torch.compiler.disable
        def hook(mod, args, out):
            if not self._counted(mod) or not args or not isinstance(args[0], Tensor):
                return
            y = out[0] if isinstance(out, tuple) else out
            self._add_in(mod, st, args[0].detach(), y.detach())
            self._add_out(st, y)

        return hook

    def _pre_hook(self, m, st):
        @torch.compiler.disable
        def hook(mod, args):
            if self._counted(mod) and args and isinstance(args[0], Tensor):
                self._add_in(mod, st, args[0].detach(), None)

        return hook

    def _fused_hook(self, act, st):
        @torch.compiler.disable
        def hook(mod, args):
            if self._counted(mod) and args and isinstance(args[0], Tensor):
                z = args[0].detach()
                self._add_in(act, st, z, None)
                if st.sample_now:  # act(z) is never a tensor of the fused layer: computed for the sample only
                    with torch.no_grad():
                        self._add_out(st, act(z))

        return hook

    def _out_hook(self, st):
        @torch.compiler.disable
        def hook(mod, args, out):
            if self._counted(mod):
                self._add_out(st, out[0] if isinstance(out, tuple) else out)

        return hook

    # ---- results ------------------------------------------------------------------------

    @property
    def batches(self) -> int:
        """Forward passes counted in the current window (the most any layer saw)."""
        return max((st.batches for st in self.stats.values()), default=0)

    def compute(self, reset: bool = True) -> Dict[str, Dict[str, float]]:
        """The metrics of each activation layer over the current window (one device sync).

        Returns ``{layer: {'dead_fraction', 'saturated_fraction', 'mean', 'std', 'batches', 'sampled'}}`` for
        every layer that ran in the window; with ``reset`` a new window starts.
        """
        names, vals = [], []
        for name, st in self.stats.items():
            if st.batches == 0:
                continue
            names.append(name)
            dev = st.zmax.device
            dead = (st.zmax <= 0).double().mean()
            satf = 1.0 - st.positive.double() / max(st.elems, 1)
            if st.out_n:
                mean = st.out_sum / st.out_n
                var = (st.out_sq / st.out_n - mean * mean).clamp_min(0.0)
                std = var.sqrt()
            else:
                mean = std = torch.tensor(float("nan"), dtype=torch.float64, device=dev)
            vals.append(torch.stack([dead, satf, mean.to(dev), std.to(dev)]))
        out: Dict[str, Dict[str, float]] = {}
        if vals:
            rows = torch.stack([v.cpu() for v in vals]).tolist()
            for name, (dead, satf, mean, std) in zip(names, rows):
                out[name] = {
                    "dead_fraction": dead,
                    "saturated_fraction": satf,
                    "mean": mean,
                    "std": std,
                    "batches": self.stats[name].batches,
                    "sampled": self.stats[name].sampled,
                }
        if reset:
            for st in self.stats.values():
                st.reset()
        return out

    def grad_norm_tensor(self) -> tuple[List[str], Optional[Tensor]]:
        """The layers' names and a float64 tensor of their gradient 2-norms, ``'total'`` last, left on the device.

        Nothing here waits on the device, so a training loop can take the norms every few steps and
        read them back (``.tolist()``) only when it logs. ``([], None)`` when no parameter has a gradient.
        """
        names, per_layer = [], []
        for name, ps in self.param_layers.items():
            gs = [p.grad.detach() for p in ps if p.grad is not None]
            if gs:
                names.append(name)
                per_layer.append(torch.stack([n.to(torch.float64) for n in torch._foreach_norm(gs)]))
        if not names:
            return [], None
        dev = per_layer[0].device
        sq = torch.stack([(v.to(dev) ** 2).sum() for v in per_layer])
        return [*names, "total"], torch.cat([sq, sq.sum().unsqueeze(0)]).sqrt()

    def grad_norms(self) -> Dict[str, float]:
        """The 2-norm of each layer's parameter gradients (``.grad`` as it is now), and ``'total'`` (one device sync)."""
        names, norms = self.grad_norm_tensor()
        return {} if norms is None else dict(zip(names, norms.tolist()))
