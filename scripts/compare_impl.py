"""Epoch time of ``impl: manual`` over ``impl: torch``: the same config, fits interleaved, medians compared.

Each round fits the config once with each implementation (the order alternates between rounds, so
drift in the machine's load hits both alike), with validation, checkpoints and logging off. The
first epoch of every fit is a warm-up and is dropped; the rest are pooled per implementation.

Examples::

    python scripts/compare_impl.py --config configs/mnist.yaml
    python scripts/compare_impl.py --config configs/seed.yaml --rounds 5 --epochs 3 --out ratio.json
    python scripts/compare_impl.py --config configs/mnist.yaml -- --trainer.precision bf16-mixed
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train import EpochTimer, main  # noqa: E402


def fit_epoch_times(config: str, impl: str, epochs: int, extra: list[str]) -> tuple[list[float], list[float], str]:
    """Wall and CPU seconds of each epoch after the first, and the device, of one fit."""
    args = [
        "--config", config, "--model.impl", impl, "--trainer.max_epochs", str(epochs),
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra,
    ]
    cli = main(args, run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer))
    skip = 1 if len(timer.times) > 1 else 0
    return timer.times[skip:], timer.cpu_times[skip:], str(cli.trainer.strategy.root_device)


def main_(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per fit, the first dropped (default 3)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("extra", nargs="*", help="more CLI arguments for every fit (after --)")
    a = p.parse_args(argv)

    times: dict[str, list[float]] = {"manual": [], "torch": []}
    cpu: dict[str, list[float]] = {"manual": [], "torch": []}
    rounds, device = [], None
    t0 = time.perf_counter()
    for r in range(a.rounds):
        order = ("manual", "torch") if r % 2 == 0 else ("torch", "manual")
        got = {}
        for impl in order:
            got[impl], got_cpu, device = fit_epoch_times(a.config, impl, a.epochs, a.extra)
            times[impl] += got[impl]
            cpu[impl] += got_cpu
        rounds.append(statistics.median(got["manual"]) / statistics.median(got["torch"]))
        print(f"round {r + 1}/{a.rounds}: manual {statistics.median(got['manual']):.3f} s, "
              f"torch {statistics.median(got['torch']):.3f} s, ratio {rounds[-1]:.3f}", flush=True)
    result = {
        "config": a.config,
        "extra_args": a.extra,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "epochs_timed_per_impl": len(times["manual"]),
        "median_epoch_s": {k: statistics.median(v) for k, v in times.items()},
        "epoch_s": times,
        "ratio_manual_over_torch": statistics.median(times["manual"]) / statistics.median(times["torch"]),
        "ratio_per_round": rounds,
        # process CPU seconds: on a CPU run sharing the machine, steadier than wall-clock
        "median_epoch_cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
        "epoch_cpu_s": cpu,
        "cpu_ratio_manual_over_torch": statistics.median(cpu["manual"]) / statistics.median(cpu["torch"]),
        "wall_s": time.perf_counter() - t0,
    }
    print(f"median epoch time: manual {result['median_epoch_s']['manual']:.3f} s, torch "
          f"{result['median_epoch_s']['torch']:.3f} s; ratio manual/torch = {result['ratio_manual_over_torch']:.3f} "
          f"(per-round ratios {', '.join(f'{x:.3f}' for x in rounds)}); CPU-time ratio "
          f"{result['cpu_ratio_manual_over_torch']:.3f}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main_()
