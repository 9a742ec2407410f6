"""Overhead of the ``GradientHealth`` callback over a training epoch of the MNIST MLP (target: ≤ 5 %).

    python -m benchmarks.health_overhead [--rounds 9] [--threads 1] [--batches N] [--config configs/mnist.yaml]

Writes ``benchmarks/results/health_overhead_cpu.{json,md}`` (``--out`` for elsewhere).

Each round trains one epoch with the callback and one without, in alternating order, on the same
preloaded batches, from the same initial weights; an epoch is timed from Lightning's
``on_train_epoch_start`` to ``on_train_epoch_end`` (validation off), both in wall-clock seconds
and in CPU seconds of the process. An epoch is one measurement of seconds, so this times with
``time.perf_counter`` / ``time.process_time`` rather than ``torch.utils.benchmark`` (whose
repetitions a whole ``Trainer.fit`` does not fit), and reports the medians of the per-round
ratios. On a shared, oversubscribed machine the CPU-time ratio is the reliable figure (wall time
then mostly measures the neighbours); run with ``--threads 1`` there, since oversubscribed
OpenMP threads make every step slower and noisier.

A second, finer measurement times the training step alone (forward, loss, backward, AdamW step)
with ``torch.utils.benchmark.Timer`` (on the process's CPU clock, for the same reason) with and
without the monitor's hooks (plus its per-window ``compute`` and its gradient norms every 50
steps, as the callback runs them), interleaved, and reports the median of the per-round ratios:
the callback's cost per batch without Lightning's own per-step work in the denominator (so an
upper bound on the epoch overhead).

The model and batch size come from the config (``model:`` and ``data.batch_size``) when it exists,
else 784-128-10 with batch 256. The callback runs with its defaults (a window of 100 batches,
gradient norms every ``log_every_n_steps`` = 50 steps) and writes no PNG here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _config(path: Path) -> dict:
    if not path.exists():
        return {}
    import yaml

    with open(path) as f:
        return yaml.safe_load(f) or {}


def step_overhead(model_kw, init, loader, rounds) -> dict:
    """Median per-round ratio of Timer medians of a training step with / without the monitor."""
    from torch.utils.benchmark import Timer

    from manual_autograd.health import HealthMonitor
    from train.model import MNISTClassifier

    model = MNISTClassifier(**model_kw)
    model.load_state_dict(init)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = next(iter(loader))
    monitor = HealthMonitor(model, stats_every=10)
    count, attached = [0], [False]

    def step():
        opt.zero_grad()
        model.loss(model(x), y).backward()
        if attached[0]:  # what the callback adds besides the hooks
            count[0] += 1
            if count[0] % 50 == 0:
                monitor.grad_norms()
            if monitor.batches >= 100:
                monitor.compute()
        opt.step()

    times = {True: [], False: []}
    for r in range(rounds):
        for h in ((True, False) if r % 2 == 0 else (False, True)):
            if h:
                monitor.attach()
            attached[0] = h
            timer = Timer("step()", globals={"step": step}, timer=time.process_time)
            times[h].append(timer.blocked_autorange(min_run_time=0.5).median)
            monitor.detach()
        print(f"step round {r}: {times[True][-1] * 1e3:.3f} / {times[False][-1] * 1e3:.3f} ms = "
              f"{times[True][-1] / times[False][-1]:.4f}", flush=True)
    ratio = statistics.median(a / b for a, b in zip(times[True], times[False]))

    # The hooks' own cost: each activation layer called on its real input, with / without the
    # monitor; the difference of the medians, summed over layers, as a share of a step.
    acts = list(monitor.layers.values())
    inputs = {}
    handles = [m.register_forward_hook(lambda m, a, o: inputs.__setitem__(m, a[0].detach())) for m in acts]
    model(x)
    for h in handles:
        h.remove()
    cost = []
    for r in range(rounds):
        per = {}
        for h in ((True, False) if r % 2 == 0 else (False, True)):
            if h:
                monitor.attach()
            per[h] = sum(
                Timer("m(t)", globals={"m": m, "t": inputs[m].requires_grad_()}, timer=time.process_time)
                .blocked_autorange(min_run_time=0.2).median
                for m in acts
            )
            monitor.detach()
        cost.append(per[True] - per[False])
    hook_s = statistics.median(cost)
    step_s = statistics.median(times[False])
    print(f"hooks alone: {hook_s * 1e6:.1f} µs per batch over {len(acts)} activation layers = "
          f"{100 * hook_s / step_s:.2f} % of a {step_s * 1e3:.2f} ms step", flush=True)
    print(
        f"training step alone ({rounds} rounds, CPU time): median {statistics.median(times[True]) * 1e3:.3f} ms with vs "
        f"{statistics.median(times[False]) * 1e3:.3f} ms without the monitor; median ratio {ratio:.4f} "
        f"({100 * (ratio - 1):+.2f} %)",
        flush=True,
    )
    return {
        "median_step_with_ms": statistics.median(times[True]) * 1e3,
        "median_step_without_ms": statistics.median(times[False]) * 1e3,
        "median_step_ratio": ratio,
        "median_hook_cost_us": hook_s * 1e6,
        "hook_cost_pct_of_step": 100 * hook_s / step_s,
    }


def epoch_overhead(epoch, args, n_loader, batch_size, model_kw) -> dict:
    t = {True: [], False: []}  # (wall, cpu) per round
    with tempfile.TemporaryDirectory() as root:
        epoch(True, root)  # warm-up: imports, allocator, first-call costs
        for r in range(args.rounds):
            for h in ((True, False) if r % 2 == 0 else (False, True)):
                t[h].append(epoch(h, root))
            (w1, c1), (w0, c0) = t[True][-1], t[False][-1]
            print(f"round {r}: wall {w1:.3f} / {w0:.3f} s = {w1 / w0:.4f}; cpu {c1:.3f} / {c0:.3f} s = {c1 / c0:.4f}",
                  flush=True)
    med = statistics.median
    n_batches = args.batches or n_loader
    res = {
        "batches_per_epoch": n_batches,
        "median_wall_with_s": med(w for w, _ in t[True]),
        "median_wall_without_s": med(w for w, _ in t[False]),
        "median_wall_ratio": med(a[0] / b[0] for a, b in zip(t[True], t[False])),
        "median_cpu_with_s": med(c for _, c in t[True]),
        "median_cpu_without_s": med(c for _, c in t[False]),
        "median_cpu_ratio": med(a[1] / b[1] for a, b in zip(t[True], t[False])),
    }
    print(
        f"GradientHealth overhead over a training epoch ({n_batches} batches of {batch_size}, MLP "
        f"{model_kw.get('hidden_sizes')}, {torch.get_num_threads()} thread(s), {args.rounds} rounds): "
        f"CPU time {res['median_cpu_with_s']:.3f} s with vs {res['median_cpu_without_s']:.3f} s without, "
        f"median ratio {res['median_cpu_ratio']:.4f} ({100 * (res['median_cpu_ratio'] - 1):+.2f} %); "
        f"wall time median ratio {res['median_wall_ratio']:.4f} ({100 * (res['median_wall_ratio'] - 1):+.2f} %). "
        "Target: <= 5 %."
    )
    return res


def to_markdown(report: dict) -> str:
    """The report's tables: epoch and step times with and without the callback, and the hooks' cost."""
    from .common import report_header

    lines = report_header(report, f"{report['rounds']} interleaved with/without rounds, CPU time and wall time") + [
        f"`GradientHealth` on the MLP `{report['model'].get('hidden_sizes')}` of `{report['config']}`, "
        f"batch {report['batch_size']}; ratios are the medians of per-round ratios (target: overhead ≤ 5 %).",
        "",
        "| measured | with | without | ratio | overhead |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(what, with_, without, ratio, unit):
        return f"| {what} | {with_:.3f} {unit} | {without:.3f} {unit} | {ratio:.4f} | **{100 * (ratio - 1):+.2f} %** |"

    if "median_cpu_ratio" in report:
        lines.append(row(f"epoch of {report['batches_per_epoch']} batches, CPU time", report["median_cpu_with_s"],
                         report["median_cpu_without_s"], report["median_cpu_ratio"], "s"))
        lines.append(row("same epochs, wall time", report["median_wall_with_s"], report["median_wall_without_s"],
                         report["median_wall_ratio"], "s"))
    if "median_step_ratio" in report:
        lines.append(row("training step (hooks, window statistics, gradient norms), CPU time",
                         report["median_step_with_ms"], report["median_step_without_ms"],
                         report["median_step_ratio"], "ms"))
        lines += ["", f"The hooks alone: {report['median_hook_cost_us']:.1f} µs per batch, "
                  f"{report['hook_cost_pct_of_step']:.2f} % of a step."]
    lines += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.health_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9, help="with/without pairs (default: 9)")
    p.add_argument("--mode", choices=("epoch", "step", "both"), default="both")
    p.add_argument("--batches", type=int, default=None, help="limit each epoch to N batches (default: a full epoch)")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "mnist.yaml")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default: {RESULTS})")
    args = p.parse_args(argv)
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)

    sys.path.insert(0, str(REPO))
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from manual_autograd.callbacks import GradientHealth
    from train.data import MNISTDataModule
    from train.model import MNISTClassifier

    cfg = _config(args.config)
    model_kw = dict(cfg.get("model") or {"hidden_sizes": [128], "optimizer": "sgd", "lr": 0.1, "scheduler": "constant"})
    batch_size = (cfg.get("data") or {}).get("batch_size", 256)
    dm = MNISTDataModule(batch_size=batch_size, download=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    torch.manual_seed(0)
    init = MNISTClassifier(**model_kw).state_dict()

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = (time.perf_counter(), time.process_time())

        def on_train_epoch_end(self, trainer, pl_module):
            self.wall = time.perf_counter() - self.start[0]
            self.cpu = time.process_time() - self.start[1]

    def epoch(with_health: bool, root: str) -> tuple:
        model = MNISTClassifier(**model_kw)
        model.load_state_dict(init)
        timer = Clock()
        callbacks = [timer] + ([GradientHealth(plot=False)] if with_health else [])
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=1, limit_train_batches=args.batches, limit_val_batches=0,
            callbacks=callbacks, logger=CSVLogger(root, name=""), enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, train_dataloaders=loader)
        return timer.wall, timer.cpu

    from .common import env_info, write_report

    res = {
        "command": "python -m benchmarks.health_overhead " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config),
        "model": model_kw,
        "batch_size": batch_size,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "env": env_info(torch.device("cpu")),
    }
    if args.mode in ("step", "both"):
        res.update(step_overhead(model_kw, init, loader, args.rounds))
    if args.mode in ("epoch", "both"):
        res.update(epoch_overhead(epoch, args, len(loader), batch_size, model_kw))
    res["wall_s"] = time.perf_counter() - start
    write_report(res, args.out, "health_overhead_cpu", to_markdown)
    return res


if __name__ == "__main__":
    main()
