"""``python -m benchmarks.train_loop``: the epoch time of ``python -m train fit`` beside a bare PyTorch loop.

Both run in this process, interleaved round by round, on the same model (``manual_autograd.nn.build_mlp``
from the config's ``model`` section), optimizer, scheduler, preloaded data and number of steps. The bare
loop is what a user writes by hand: shuffled index slices of the preloaded tensors,
``opt.zero_grad(set_to_none=True)``, forward, loss, backward, step, scheduler step. The Lightning fit is
the config's as ``python -m train fit`` runs it (loggers, checkpoints, callbacks, progress bar), its epoch
time measured by ``train.EpochTimer`` (validation excluded). A third loop, Lightning's floor, is a plain
``Trainer`` around a LightningModule whose ``training_step`` is the bare loop's forward and loss, with no
logger, checkpoint, progress bar or callback: what Lightning's own loop costs, below which no fit of
``train/`` can go. The first epoch of every run is a warm-up and is dropped.

``--pieces`` adds fits with one piece of the loop turned off each (the gradient-health callback, the
loggers, the progress bar, checkpointing), so the per-step cost of every piece that stays is measured
in the same rounds.

Examples::

    python -m benchmarks.train_loop                               # CPU: results/train_loop_cpu.{md,json}
    python -m benchmarks.train_loop --device cuda                  # results/train_loop_cuda.*
    python -m benchmarks.train_loop --pieces --rounds 5            # and what each piece costs
    python -m benchmarks.train_loop --rounds 1 --epochs 2 --limit-steps 20 --out /tmp/tl   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import manual_autograd.nn as mnn

from .common import env_info, report_header, write_report

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.10  # Lightning epoch / bare epoch

# the fits of --pieces: name -> (what is off, CLI arguments that turn it off)
PIECES = {
    "no_health": ("gradient-health callback", ["--trainer.callbacks", "[]"]),
    "no_logger": ("CSV/TensorBoard loggers", ["--trainer.logger", "false"]),
    "no_progress_bar": ("progress bar", ["--trainer.enable_progress_bar", "false"]),
    "no_checkpoint": ("checkpointing", ["--trainer.enable_checkpointing", "false"]),
}
# all four off at once: what is left is Lightning's own loop around the same training_step
PIECES["core"] = ("all four pieces", [a for _, args in PIECES.values() for a in args])


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_loop", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml", help="the training config (default: configs/mnist.yaml)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first dropped (default 3)")
    p.add_argument("--limit-steps", type=int, default=None, help="steps per epoch (default: the full epoch)")
    p.add_argument("--pieces", action="store_true", help="also time fits with one piece of the loop off each")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $MNIST_ROOT, else ../shared/data)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default: {RESULTS})")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _training_setup(model_cfg: dict, in_features: int, total_steps: int, device: torch.device):
    """The config's model, loss, optimizer and scheduler (``None`` for ``constant``), built as ``train/`` builds them."""
    sizes = [in_features, *model_cfg.get("hidden_sizes", [512, 256]), 10]
    impl = model_cfg.get("impl", "manual")
    model = mnn.build_mlp(sizes, model_cfg.get("activation", "relu"), impl, model_cfg.get("fused", False)).to(device)
    loss_fn = (mnn.CrossEntropyLoss if impl == "manual" else torch.nn.CrossEntropyLoss)(
        label_smoothing=model_cfg.get("label_smoothing", 0.0))
    lr, wd, name = model_cfg.get("lr", 1e-3), model_cfg.get("weight_decay", 0.0), model_cfg.get("optimizer", "adamw")
    if name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=model_cfg.get("momentum", 0.9),
                              nesterov=model_cfg.get("nesterov", False), weight_decay=wd)
    else:
        opt = (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(model.parameters(), lr=lr, weight_decay=wd)
    sched_name = model_cfg.get("scheduler", "onecycle")
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=model_cfg.get("warmup", 0.25))
             if sched_name == "onecycle" else
             torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps) if sched_name == "cosine" else None)
    return model, loss_fn, opt, sched


def bare_loop(model_cfg: dict, batch_size: int, x: torch.Tensor, y: torch.Tensor, epochs: int, steps: int,
              seed: int) -> tuple[list[float], list[float]]:
    """Wall and process CPU seconds of each epoch of the hand-written loop (the config's model, optimizer, schedule)."""
    device = x.device
    torch.manual_seed(seed)
    model, loss_fn, opt, sched = _training_setup(model_cfg, x.shape[1], epochs * steps, device)
    times, cpu = [], []
    for epoch in range(epochs):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + epoch)).to(device)
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def lightning_floor(model_cfg: dict, batch_size: int, x: torch.Tensor, y: torch.Tensor, epochs: int, steps: int,
                    seed: int) -> tuple[list[float], list[float]]:
    """Epoch wall and CPU seconds of Lightning's own loop: a plain ``Trainer`` (no logger, checkpoint, progress
    bar or callback but the timer) around a LightningModule whose ``training_step`` is the bare loop's forward
    and loss, over the same batches. No fit of ``train/`` can be cheaper than this."""
    import lightning as L

    from train import EpochTimer, TensorBatches

    torch.manual_seed(seed)
    model, loss_fn, opt, sched = _training_setup(model_cfg, x.shape[1], epochs * steps, x.device)

    class Floor(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss_fn = model, loss_fn

        def training_step(self, batch, batch_idx):
            return self.loss_fn(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return opt if sched is None else {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    timer = EpochTimer()
    trainer = L.Trainer(accelerator=x.device.type, devices=1, max_epochs=epochs, limit_train_batches=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(Floor(), train_dataloaders=TensorBatches(x, y, batch_size, shuffle=True, seed=seed))
    return timer.times, timer.cpu_times


def lightning_fit(config: str, device: torch.device, epochs: int, limit: int | None, extra: list[str],
                  root: str) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each training epoch of ``python -m train fit --config CONFIG`` (``train.EpochTimer``)."""
    from train import EpochTimer, main

    args = ["--config", config, "--trainer.max_epochs", str(epochs), "--trainer.accelerator", device.type,
            "--trainer.default_root_dir", root, *(["--trainer.limit_train_batches", str(limit)] if limit else []), *extra]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees this command's own arguments
    try:
        cli = main(args, run=False)
    finally:
        sys.argv = argv
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar draws, but not into the report
        cli.trainer.fit(cli.model, cli.datamodule)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer))
    return timer.times, timer.cpu_times


def _data(config: str, device: torch.device, root: str | None):
    from train import MNISTDataModule

    cfg = yaml.safe_load(Path(config).read_text())
    data = {k: v for k, v in cfg.get("data", {}).items() if k not in ("download", "root")}
    dm = MNISTDataModule(**data, root=root, download=False)
    dm.setup("fit")
    x, y = (t.to(device) for t in dm.train)
    return cfg, dm.batch_size, x, y


def run(a) -> dict:
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg, batch_size, x, y = _data(a.config, device, a.data_root)
    extra = ["--data.root", a.data_root] if a.data_root else []
    steps = -(-len(y) // batch_size)
    steps = min(steps, a.limit_steps) if a.limit_steps else steps
    variants = {"lightning": [], "floor": None} | ({k: v[1] for k, v in PIECES.items()} if a.pieces else {})
    times: dict[str, list[float]] = {"bare": [], **{k: [] for k in variants}}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    per_round = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            names = ["bare", *variants]
            names = names if r % 2 == 0 else names[::-1]  # alternate the order: drift hits all alike
            got = {}
            for name in names:
                if name in ("bare", "floor"):
                    loop = bare_loop if name == "bare" else lightning_floor
                    with contextlib.redirect_stderr(io.StringIO()):  # Lightning's banner
                        t, c = loop(cfg.get("model", {}), batch_size, x, y, a.epochs, steps, seed=r)
                else:
                    t, c = lightning_fit(a.config, device, a.epochs, a.limit_steps, [*extra, *variants[name]], f"{tmp}/{name}{r}")
                skip = 1 if len(t) > 1 else 0
                got[name] = t[skip:]
                times[name] += got[name]
                cpu[name] += c[skip:]
            per_round.append({k: statistics.median(v) for k, v in got.items()})
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {v:.3f} s" for k, v in per_round[-1].items())
                  + f"; lightning/bare {per_round[-1]['lightning'] / per_round[-1]['bare']:.3f}"
                  + f" (CPU time {statistics.median(cpu['lightning'][-len(got['lightning']):]) / statistics.median(cpu['bare'][-len(got['bare']):]):.3f})",
                  flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    report = {
        "env": env_info(device),
        "command": "python -m benchmarks.train_loop " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "python -m benchmarks.train_loop",
        "config": a.config,
        "steps_per_epoch": steps,
        "batch_size": batch_size,
        "epochs_per_run": a.epochs,
        "rounds": a.rounds,
        "median_epoch_s": med,
        "ratio_lightning_over_bare": med["lightning"] / med["bare"],
        "ratio_per_round": [p["lightning"] / p["bare"] for p in per_round],
        # Lightning's loop around a training_step that is only forward + loss: the floor of any fit through a Trainer
        "ratio_floor_over_bare": med["floor"] / med["bare"],
        "floor_ratio_per_round": [p["floor"] / p["bare"] for p in per_round],
        "overhead_ms_per_step": 1e3 * (med["lightning"] - med["bare"]) / steps,
        "bare_ms_per_step": 1e3 * med["bare"] / steps,
        # what each piece that stays costs: the full fit minus the fit without it, per step
        "piece_ms_per_step": {PIECES[k][0]: 1e3 * (med["lightning"] - med[k]) / steps for k in variants if k in PIECES},
        "epoch_s": times,
        # process CPU seconds (all threads): with one thread on a shared machine, steadier than wall time
        "median_epoch_cpu_s": med_cpu,
        "cpu_ratio_lightning_over_bare": med_cpu["lightning"] / med_cpu["bare"],
        "piece_cpu_ms_per_step": {PIECES[k][0]: 1e3 * (med_cpu["lightning"] - med_cpu[k]) / steps for k in variants if k in PIECES},
        "epoch_cpu_s": cpu,
        "per_round_median_s": per_round,
        "target_ratio": TARGET,
        "wall_s": time.perf_counter() - t0,
    }
    return report


def to_markdown(r: dict) -> str:
    ratio = r["ratio_lightning_over_bare"]
    lines = [
        "# Training loop: `python -m train fit` beside a bare PyTorch loop",
        "",
        *report_header(r, f"{r['rounds']} interleaved round(s) of {r['epochs_per_run']} epochs, first epoch of each run dropped"),
        f"Config `{r['config']}`: {r['steps_per_epoch']} steps of batch {r['batch_size']} per epoch. "
        "Epoch times are medians; Lightning's exclude validation (train.EpochTimer).",
        "",
        "| loop | epoch (s) | per step (ms) | / bare | epoch CPU time (s) | / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cpu = r["median_epoch_cpu_s"]
    for k, v in r["median_epoch_s"].items():
        label = {"bare": "bare loop", "lightning": "Lightning fit (as configured)",
                 "floor": "Lightning's floor: plain Trainer, training_step = forward + loss"}.get(k) or f"Lightning fit, {PIECES[k][0]} off"
        lines.append(f"| {label} | {v:.3f} | {1e3 * v / r['steps_per_epoch']:.2f} | {v / r['median_epoch_s']['bare']:.3f} "
                     f"| {cpu[k]:.3f} | {cpu[k] / cpu['bare']:.3f} |")
    mark = "✓" if ratio <= r["target_ratio"] else "✗"
    lines += ["", f"Lightning / bare: **{ratio:.3f}** {mark} ≤{r['target_ratio']:.2f} (per round: "
              + ", ".join(f"{x:.3f}" for x in r["ratio_per_round"])
              + f"; median of the rounds' ratios {statistics.median(r['ratio_per_round']):.3f}); the loop adds {r['overhead_ms_per_step']:.2f} ms a step. "
              f"In CPU time: {r['cpu_ratio_lightning_over_bare']:.3f}.",
              "", f"Lightning's floor / bare: **{r['ratio_floor_over_bare']:.3f}** (per round: "
              + ", ".join(f"{x:.3f}" for x in r["floor_ratio_per_round"])
              + f"; median of the rounds' ratios {statistics.median(r['floor_ratio_per_round']):.3f}): what Lightning's loop costs around a "
              "training_step that does nothing but the bare loop's forward and loss, with no logger, checkpoint, "
              "progress bar or callback; no fit of `train/` can be cheaper."]
    if r["piece_ms_per_step"]:
        lines += ["", "Each piece: the fit as configured minus the fit with that piece off, per step (noisy: a difference of medians).",
                  "", "| piece of the Lightning fit | wall (ms/step) | CPU time (ms/step) |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.3f} | {r['piece_cpu_ms_per_step'][k]:.3f} |" for k, v in r["piece_ms_per_step"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    a = _parse(argv)
    report = run(a)
    print(f"median epoch: " + ", ".join(f"{k} {v:.3f} s" for k, v in report["median_epoch_s"].items())
          + f"; Lightning/bare = {report['ratio_lightning_over_bare']:.3f} (target <= {TARGET}), "
          f"Lightning's floor/bare = {report['ratio_floor_over_bare']:.3f}, "
          f"in CPU time {report['cpu_ratio_lightning_over_bare']:.3f}")
    write_report(report, a.out, f"train_loop_{torch.device(a.device).type}", to_markdown)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
