"""The command line: ``python -m train {fit,validate,test,predict} --config configs/mnist.yaml``.

A :class:`lightning.pytorch.cli.LightningCLI` over :class:`MNISTClassifier` and :class:`MNISTDataModule`
that adds what a training run is expected to leave behind: CSV logs (and TensorBoard logs when
``tensorboard`` is installed) in ``<default_root_dir>/version_<n>/``, the resolved ``config.yaml``
there, best and last checkpoints, and after ``fit`` the test accuracy of the best checkpoint, a
``curves.png`` of the loss and accuracy per epoch and a ``results.json``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .data import MNISTDataModule
from .model import MNISTClassifier

__all__ = ["EpochTimer", "MNISTCLI", "default_loggers", "plot_curves", "main"]


class EpochTimer(Callback):
    """Logs ``epoch_time_s``: wall-clock seconds of each training epoch, validation excluded.

    Waits for the device before reading the clock, so queued GPU work is counted. The times are
    kept in :attr:`times`, and the process's CPU seconds of the same spans in :attr:`cpu_times`
    (on a CPU run with other jobs on the machine, the steadier of the two).
    """

    def __init__(self):
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self._start = self._val = self._val_start = (0.0, 0.0)

    @staticmethod
    def _now(pl_module: LightningModule) -> tuple[float, float]:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter(), time.process_time()

    def on_train_epoch_start(self, trainer, pl_module):
        self._val = (0.0, 0.0)
        self._start = self._now(pl_module)

    def on_validation_start(self, trainer, pl_module):
        self._val_start = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module):
        now = self._now(pl_module)
        self._val = tuple(v + n - s for v, n, s in zip(self._val, now, self._val_start))

    def on_train_epoch_end(self, trainer, pl_module):
        wall, cpu = (n - s - v for n, s, v in zip(self._now(pl_module), self._start, self._val))
        self.times.append(wall)
        self.cpu_times.append(cpu)
        pl_module.log("epoch_time_s", wall, on_step=False, on_epoch=True)


def default_loggers(root_dir: str | Path) -> list:
    """A CSV logger, plus a TensorBoard logger when ``tensorboard`` is installed, sharing ``root_dir/version_<n>``."""
    csv_logger = CSVLogger(root_dir, name="")
    loggers = [csv_logger]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        # the same version number, so both write into one run folder
        loggers.append(TensorBoardLogger(root_dir, name="", version=csv_logger.version, sub_dir="tensorboard"))
    return loggers


def plot_curves(metrics_csv: str | Path, out: str | Path) -> Optional[Path]:
    """Plot training and validation loss and accuracy per epoch from a CSVLogger ``metrics.csv``.

    Returns the path of the PNG written, or ``None`` when the file holds no epoch metrics.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[int, float]] = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"])) + 1
            for key in ("train_loss_epoch", "val_loss", "train_acc", "val_acc"):
                if row.get(key):
                    series.setdefault(key, {})[epoch] = float(row[key])
    if not series:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, keys, title in (
        (ax_loss, (("train_loss_epoch", "train"), ("val_loss", "validation")), "cross-entropy loss"),
        (ax_acc, (("train_acc", "train"), ("val_acc", "validation")), "accuracy"),
    ):
        for key, label in keys:
            if key in series:
                epochs = sorted(series[key])
                ax.plot(epochs, [series[key][e] for e in epochs], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


class MNISTCLI(LightningCLI):
    """``LightningCLI`` for MNIST with checkpoints (``checkpoint.*``), loggers and an after-fit report."""

    def __init__(self, args=None, run: bool = True, **kwargs):
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"default_root_dir": "runs/mnist", "callbacks": [EpochTimer()]})
        super().__init__(MNISTClassifier, MNISTDataModule, args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch={epoch:02d}-val_acc={val_acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(config.get("default_root_dir") or "runs/mnist")
        return super().instantiate_trainer(**kwargs)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        # `trainer.enable_checkpointing: false` also drops the `checkpoint` ModelCheckpoint
        if config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        # Every refresh of the bar reads all logged values back to the host (a device sync and the
        # whole metrics dict in Python), so it redraws when the loggers write: no extra syncs.
        chosen = config.get("callbacks") or []
        if config.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in chosen):
            callbacks = [*callbacks, TQDMProgressBar(refresh_rate=config.get("log_every_n_steps") or 50)]
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        self._fit_start = time.perf_counter()

    def after_fit(self) -> None:
        trainer = self.trainer
        fit_seconds = time.perf_counter() - self._fit_start
        if trainer.fast_dev_run or trainer.interrupted:
            return
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        metrics = results[0] if results else {}
        if not trainer.is_global_zero:
            return
        log_dir = Path(trainer.log_dir) if trainer.log_dir else None
        report = {
            "test_acc": metrics.get("test_acc"),
            "test_loss": metrics.get("test_loss"),
            "checkpoint": best or "final weights (no checkpoint)",
            "fit_seconds": round(fit_seconds, 2),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "epoch_times_s": [round(t, 3) for t in next((c.times for c in trainer.callbacks if isinstance(c, EpochTimer)), [])],
            "device": str(trainer.strategy.root_device),
            "precision": str(trainer.precision),
            "hparams": dict(self.model.hparams),
        }
        acc = report["test_acc"]
        print(f"\nTest accuracy of {report['checkpoint']}: {acc * 100:.2f} %" if acc is not None and math.isfinite(acc)
              else "\nTest accuracy: not available")
        print(f"Fit took {fit_seconds:.1f} s ({report['epochs']} epochs, {report['global_step']} steps on {report['device']})")
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
            print(f"Results: {log_dir / 'results.json'}")
        if csv_logger is not None:
            csv_logger.save()
            png = plot_curves(Path(csv_logger.log_dir) / "metrics.csv", Path(csv_logger.log_dir) / "curves.png")
            if png is not None:
                print(f"Loss and accuracy curves: {png}")


    def after_predict(self) -> None:
        # write the predicted labels of the test set, one per line, beside the run's logs
        preds = self.trainer.predict_loop.predictions
        if not preds or not self.trainer.is_global_zero:
            return
        labels = torch.cat([p.cpu() for p in preds])
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("index,label\n" + "".join(f"{i},{int(v)}\n" for i, v in enumerate(labels)))
        print(f"Predicted labels of {len(labels)} test images: {out}")


def main(args=None, run: bool = True) -> MNISTCLI:
    """Run the CLI on ``args`` (default: ``sys.argv[1:]``)."""
    return MNISTCLI(args=args, run=run)


# ------------------------------------------------------------------------------------------------
# the byte-level GPT: ``python -m train.gpt fit --config configs/gpt.yaml``


def plot_lm_curves(metrics_csv: str | Path, out: str | Path) -> Optional[Path]:
    """Training loss per logged step and validation bits per byte per epoch, from a CSVLogger ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = {}, {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train_loss"):
                train[int(row["step"])] = float(row["train_loss"]) / math.log(2)
            if row.get("val_bpb"):
                val[int(row["step"])] = float(row["val_bpb"])
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for series, label in ((train, "train (batch)"), (val, "validation")):
        if series:
            steps = sorted(series)
            ax.plot(steps, [series[s] for s in steps], marker="o" if series is val else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per byte")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


class GPTCLI(MNISTCLI):
    """``LightningCLI`` for :class:`train.lm.GPTLanguageModel` on :class:`train.text.TextDataModule`.

    After ``fit``: the validation bits per byte of the final weights, the unigram baseline of the
    corpus, tokens/s of the training steps, the peak memory (CUDA: ``max_memory_allocated``; CPU:
    the process's peak RSS, and the bytes one training step keeps for backward, by the library's
    ledger), a generated sample, ``results.json`` and ``curves.png`` in the run folder.
    """

    def __init__(self, args=None, run: bool = True, **kwargs):
        from .lm import GPTLanguageModel
        from .text import TextDataModule

        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"default_root_dir": "runs/gpt"})
        LightningCLI.__init__(self, GPTLanguageModel, TextDataModule, args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
        parser.link_arguments("model.block_size", "data.block_size")

    def before_fit(self) -> None:
        if self.trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.trainer.strategy.root_device)
        self._fit_start = time.perf_counter()

    def _step_saved_bytes(self) -> int:
        from manual_autograd.ledger import record_saved

        x, y = next(iter(self.datamodule.train_dataloader()))
        x, y = x.to(self.model.device), y.to(self.model.device)
        with record_saved(keep_tensors=False) as saved:
            loss = self.model.net(x, y)[1]
        saved.add_ctx_tensors(loss)
        return saved.unique_bytes(exclude=list(self.model.parameters()))

    def after_fit(self) -> None:
        import resource

        trainer, model, dm = self.trainer, self.model, self.datamodule
        fit_seconds = time.perf_counter() - self._fit_start
        if trainer.fast_dev_run or trainer.interrupted or not trainer.is_global_zero:
            return
        device = trainer.strategy.root_device
        val = trainer.validate(model, datamodule=dm, verbose=False)
        val_bpb = val[0].get("val_bpb") if val else None
        sample = model.sample(n=model.hparams.sample_bytes)
        report = {
            "val_bpb": val_bpb,
            **dm.unigram_bpb(),
            "tokens_per_s": round(model.tokens / model.train_seconds, 1) if model.train_seconds else None,
            "train_tokens": model.tokens,
            "fit_seconds": round(fit_seconds, 2),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "parameters": model.net.num_parameters(),
            "device": str(device),
            "precision": str(trainer.precision),
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS (ru_maxrss)",
            "step_saved_bytes": self._step_saved_bytes(),
            "corpus": {"train_bytes": len(dm.train), "val_bytes": len(dm.val), "train_files": len(dm.train_files),
                       "val_files": len(dm.val_files), "cache": str(dm.cache_file)},
            "sample": sample,
            "hparams": dict(model.hparams),
        }
        print(f"\nValidation {val_bpb:.4f} bits per byte (unigram baseline {report['unigram_val_bpb']:.4f}); "
              f"{report['tokens_per_s']} tokens/s; fit {fit_seconds:.1f} s, {trainer.global_step} steps on {device}")
        print(f"Sample:\n{sample}")
        log_dir = Path(trainer.log_dir) if trainer.log_dir else None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
            print(f"Results: {log_dir / 'results.json'}")
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_logger is not None:
            csv_logger.save()
            png = plot_lm_curves(Path(csv_logger.log_dir) / "metrics.csv", Path(csv_logger.log_dir) / "curves.png")
            if png is not None:
                print(f"Curves: {png}")


def gpt_main(args=None, run: bool = True) -> GPTCLI:
    """Run the GPT CLI on ``args`` (default: ``sys.argv[1:]``)."""
    return GPTCLI(args=args, run=run)
