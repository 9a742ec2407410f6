"""Lightning integration: :class:`GradientHealth` logs :mod:`manual_autograd.health` during ``fit``.

Lightning (and matplotlib, for the plot) are imported when the callback is created, not when
:mod:`manual_autograd` is, so the library itself needs torch alone.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Tuple

from .health import HealthMonitor

__all__ = ["GradientHealth"]


def _callback_base():
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("GradientHealth needs Lightning: pip install lightning") from e
    return Callback


def __getattr__(name):
    # Build the class on first access, so importing this module does not import Lightning.
    if name == "GradientHealth":
        cls = _make_gradient_health()
        globals()["GradientHealth"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_gradient_health():
    Callback = _callback_base()

    class GradientHealth(Callback):
        """Log dead and saturated units, activation statistics and gradient norms per layer.

        Every ``window`` training batches it logs, for each activation layer of the
        LightningModule, ``health/<layer>/dead_fraction``, ``.../saturated_fraction``,
        ``.../mean`` and ``.../std`` (see :class:`~manual_autograd.health.HealthMonitor`); every
        ``log_every_n_steps`` optimizer steps (the Trainer's, unless given) the gradient norm of
        each layer with parameters, ``health/<layer>/grad_norm``. It warns once per layer when
        the dead fraction passes ``dead_threshold``, and at the end of ``fit`` writes a PNG of
        all the series.

        Args:
            window: training batches per dead/saturated measurement. Default: ``100``
            threshold: a derivative below this (in absolute value) counts as saturated. Default: ``1e-2``
            dead_threshold: warn when a layer's dead fraction exceeds this. Default: ``0.5``
            unit_dim: the activation dimension that indexes units. Default: ``-1``
            stats_every: batches between samples of the saturated fraction and the activation
                statistics (dead units are tracked on every batch). Default: ``10``
            log_every_n_steps: steps between gradient-norm measurements; ``None`` takes the
                Trainer's ``log_every_n_steps``. Default: ``None``
            plot: write the PNG at the end of ``fit``. Default: ``True``
            filename: where to write it; relative paths go under the run's log directory.
                Default: ``'health.png'``

        Examples::

            >>> trainer = L.Trainer(callbacks=[GradientHealth(window=50, dead_threshold=0.3)])

        In a LightningCLI config::

            trainer:
              callbacks:
                - class_path: manual_autograd.callbacks.GradientHealth
                  init_args: {window: 100, dead_threshold: 0.5}
        """

        def __init__(
            self,
            window: int = 100,
            threshold: float = 1e-2,
            dead_threshold: float = 0.5,
            unit_dim: int = -1,
            stats_every: int = 10,
            log_every_n_steps: Optional[int] = None,
            plot: bool = True,
            filename: str = "health.png",
        ):
            super().__init__()
            if isinstance(window, bool) or not isinstance(window, int) or window < 1:
                raise ValueError(f"GradientHealth(): expected 'window' to be a positive int, got {window!r}")
            if not (isinstance(threshold, (int, float)) and threshold > 0):
                raise ValueError(f"GradientHealth(): expected 'threshold' to be a positive number, got {threshold!r}")
            if not (isinstance(dead_threshold, (int, float)) and 0 <= dead_threshold <= 1):
                raise ValueError(f"GradientHealth(): expected 'dead_threshold' to be in [0, 1], got {dead_threshold!r}")
            if log_every_n_steps is not None and (
                isinstance(log_every_n_steps, bool) or not isinstance(log_every_n_steps, int) or log_every_n_steps < 1
            ):
                raise ValueError(
                    f"GradientHealth(): expected 'log_every_n_steps' to be a positive int or None, got {log_every_n_steps!r}"
                )
            self.window = window
            self.threshold = threshold
            self.dead_threshold = dead_threshold
            self.unit_dim = unit_dim
            self.stats_every = stats_every
            self.log_every_n_steps = log_every_n_steps
            self.plot = plot
            self.filename = filename
            self.monitor: Optional[HealthMonitor] = None
            # (step, value) series per metric name, e.g. "net.1/dead_fraction"
            self.history: Dict[str, List[Tuple[int, float]]] = {}
            self.warned: set = set()
            self.units: Dict[str, int] = {}  # units per activation layer, for the plot's legend
            self.plot_path: Optional[str] = None
            # gradient norms taken but not yet read back: (step, layer names, norms on the device)
            self._pending: List[tuple] = []

        # ---- lifecycle ------------------------------------------------------------------

        def setup(self, trainer, pl_module, stage: str) -> None:
            if stage == "fit":
                self.monitor = HealthMonitor(
                    pl_module, threshold=self.threshold, unit_dim=self.unit_dim, stats_every=self.stats_every
                ).attach()
                self.history, self.warned, self.plot_path, self._pending = {}, set(), None, []

        def teardown(self, trainer, pl_module, stage: str) -> None:
            if stage == "fit" and self.monitor is not None:
                self.monitor.detach()
                self.monitor = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.monitor is not None and self.monitor.batches >= self.window:
                self._log_window(trainer)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._flush_grad_norms(trainer)

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            every = self.log_every_n_steps or trainer.log_every_n_steps or 50
            if self.monitor is None or trainer.global_step % every:
                return
            # kept on the device and read back with the next window's metrics: no sync in between
            names, norms = self.monitor.grad_norm_tensor()
            if norms is not None:
                self._pending.append((trainer.global_step, names, norms))

        def _flush_grad_norms(self, trainer) -> None:
            pending, self._pending = self._pending, []
            if not pending:
                return
            import torch

            rows = torch.cat([n.to("cpu", non_blocking=False) for _, _, n in pending]).tolist()
            i = 0
            for step, names, _ in pending:
                self._log(trainer, {f"{k}/grad_norm": v for k, v in zip(names, rows[i : i + len(names)])}, step=step)
                i += len(names)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.monitor is None:
                return
            # A last, partial window counts when it is most of one, or when nothing was logged yet.
            b = self.monitor.batches
            if b and (b >= self.window // 2 or not any(k.endswith("/dead_fraction") for k in self.history)):
                self._log_window(trainer)
            self._flush_grad_norms(trainer)
            if self.plot and trainer.is_global_zero and self.history:
                self.plot_path = self._plot_path(trainer)
                self.save_plot(self.plot_path)

        # ---- logging --------------------------------------------------------------------

        def _log_window(self, trainer) -> None:
            self.units.update({n: st.units for n, st in self.monitor.stats.items() if st.units is not None})
            metrics = self.monitor.compute()
            flat = {}
            for layer, m in metrics.items():
                for key in ("dead_fraction", "saturated_fraction", "mean", "std"):
                    flat[f"{layer}/{key}"] = m[key]
                dead = m["dead_fraction"]
                if dead > self.dead_threshold and layer not in self.warned:
                    self.warned.add(layer)
                    from lightning.pytorch.utilities import rank_zero_warn

                    rank_zero_warn(
                        f"GradientHealth: {dead:.0%} of the units of layer '{layer}' were dead (derivative "
                        f"< {self.threshold:g} on every example) over the last {m['batches']} batches, "
                        f"above dead_threshold={self.dead_threshold:g}; their incoming weights no longer learn. "
                        "Lower the learning rate, change the initialisation or use a leaky activation."
                    )
            self._log(trainer, flat)
            self._flush_grad_norms(trainer)

        def _log(self, trainer, metrics: Dict[str, float], step: Optional[int] = None) -> None:
            if not metrics:
                return
            step = trainer.global_step if step is None else step
            for k, v in metrics.items():
                self.history.setdefault(k, []).append((step, v))
            named = {f"health/{k}": v for k, v in metrics.items()}
            for logger in trainer.loggers:
                logger.log_metrics(named, step=step)

        def _plot_path(self, trainer) -> str:
            if os.path.isabs(self.filename):
                return self.filename
            root = trainer.log_dir or trainer.default_root_dir
            return os.path.join(root, self.filename)

        def save_plot(self, path: str) -> str:
            """Write the logged series as a PNG at ``path`` (four panels); returns ``path``."""
            from matplotlib.figure import Figure  # no pyplot: no global backend state

            panels = (
                ("dead_fraction", "dead units (fraction)", False),
                ("saturated_fraction", f"saturated (|f'| < {self.threshold:g})", False),
                ("std", "activation std", False),
                ("grad_norm", "gradient norm", True),
            )
            fig = Figure(figsize=(10, 6.5), dpi=80, layout="constrained")
            axes = fig.subplots(2, 2, sharex=True)
            for ax, (key, title, log) in zip(axes.flat, panels):
                for name, series in sorted(self.history.items()):
                    layer, _, metric = name.rpartition("/")
                    if metric != key or not series:
                        continue
                    steps, vals = zip(*series)
                    if all(isinstance(v, float) and math.isnan(v) for v in vals):
                        continue
                    label = f"{layer} ({self.units[layer]} units)" if layer in self.units else layer
                    ax.plot(steps, vals, marker="." if len(steps) < 30 else None, label=label)
                ax.set_title(title)
                if log:
                    ax.set_yscale("log")
                if key.endswith("fraction") and ax.lines:  # zoom on small fractions, never past [0, 1]
                    top = max(max(ln.get_ydata()) for ln in ax.lines)
                    top = min(1.0, max(0.05, 1.15 * top))
                    if key == "dead_fraction" and self.dead_threshold <= top:
                        ax.axhline(self.dead_threshold, color="grey", ls="--", lw=1, label="dead_threshold")
                    ax.set_ylim(-0.02 * top, top * 1.02)
                ax.grid(alpha=0.3)
                if ax.lines:
                    ax.legend(fontsize="small")
            for ax in axes[1]:
                ax.set_xlabel("optimizer step")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fig.savefig(path)
            return path

    GradientHealth.__module__ = __name__
    GradientHealth.__qualname__ = "GradientHealth"
    return GradientHealth
