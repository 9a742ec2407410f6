"""``python -m benchmarks.fits``: test accuracy and fit time of the training configs, for the README's headline table.

Each run is ``python -m train fit --config CONFIG --model.impl IMPL`` in a fresh process (progress bar
off, everything else as configured); its ``results.json`` gives the test accuracy of the best checkpoint,
the fit's wall seconds (``fit`` alone: not the process start, not the after-fit test), epochs and steps.
Written to ``results/fits_<device>.json`` (``{"env": {...}, "runs": [{"config", "impl", "test_acc",
"fit_seconds", "epochs", "steps", "device"}, ...]}``) and ``.md``.

Examples::

    python -m benchmarks.fits                                 # CPU: results/fits_cpu.{md,json}
    python -m benchmarks.fits --device cuda                   # results/fits_cuda.*
    python -m benchmarks.fits --runs configs/mnist_fast.yaml:manual --out /tmp/fits
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import env_info, report_header, write_report

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# (config, impl): the default and its torch.nn twin, and the fast recipe
RUNS = ("configs/mnist.yaml:manual", "configs/mnist.yaml:torch", "configs/mnist_fast.yaml:manual")


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.fits", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--runs", nargs="+", default=list(RUNS), help=f"CONFIG:IMPL pairs (default: {' '.join(RUNS)})")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default: {RESULTS})")
    p.add_argument("extra", nargs="*", help="more CLI arguments for every fit (after --)")
    return p.parse_args(argv)


def fit(config: str, impl: str, device: str, extra: list[str], root: Path) -> dict:
    """One ``python -m train fit`` in a subprocess; its ``results.json``."""
    cmd = [sys.executable, "-m", "train", "fit", "--config", config, "--model.impl", impl,
           "--trainer.accelerator", device, "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(root), *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(next(root.glob("version_*/results.json")).read_text())


def run(a) -> dict:
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(a.runs):
            config, _, impl = spec.partition(":")
            r = fit(config, impl or "manual", a.device, a.extra, Path(tmp) / str(i))
            runs.append({"config": config, "impl": impl or "manual", "test_acc": r["test_acc"], "fit_seconds": r["fit_seconds"],
                         "epochs": r["epochs"], "steps": r["global_step"], "device": r["device"], "precision": r["precision"]})
            print(f"{config} ({runs[-1]['impl']}): test {100 * r['test_acc']:.2f} %, fit {r['fit_seconds']:.1f} s, "
                  f"{r['epochs']} epochs, {r['global_step']} steps on {r['device']}", flush=True)
    args = shlex.join(sys.argv[1:])
    return {"env": env_info(torch.device(a.device)), "command": f"python -m benchmarks.fits {args}".strip(),
            "extra_args": a.extra, "runs": runs, "wall_s": time.perf_counter() - t0}


def to_markdown(r: dict) -> str:
    lines = [
        "# Fits: test accuracy and fit time",
        "",
        *report_header(r, "one fit per row"),
        "Test accuracy of the best checkpoint (by validation accuracy); fit seconds of `Trainer.fit` alone.",
        "",
        "| config | impl | test accuracy | fit (s) | epochs | steps | device |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [f"| `{x['config']}` | {x['impl']} | {100 * x['test_acc']:.2f} % | {x['fit_seconds']:.1f} | {x['epochs']} "
              f"| {x['steps']} | {x['device']} |" for x in r["runs"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    a = _parse(argv)
    report = run(a)
    write_report(report, a.out, f"fits_{torch.device(a.device).type}", to_markdown)
    return report


if __name__ == "__main__":
    main()
