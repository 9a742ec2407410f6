"""``python -m benchmarks.gpt_fit``: the fit of ``configs/gpt.yaml`` with ``impl: manual`` and ``impl: torch``, same seed.

Each run is ``python -m train.gpt fit --config configs/gpt.yaml --model.impl IMPL`` in a fresh
process, one after the other; from its ``results.json``: validation bits per byte of the final
weights, the corpus's unigram baseline, tokens/s of the training steps, the fit's wall seconds,
the peak memory. Written to ``results/gpt_fit_<device>.{json,md}``.

Examples::

    python -m benchmarks.gpt_fit
    python -m benchmarks.gpt_fit --device cuda
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
KEYS = ("val_bpb", "unigram_train_bpb", "unigram_val_bpb", "tokens_per_s", "fit_seconds", "global_step", "parameters",
        "peak_memory_bytes", "peak_memory_kind", "step_saved_bytes", "device", "sample")


def fit(config: str, impl: str, device: str, extra: list[str], root: Path) -> dict:
    cmd = [sys.executable, "-m", "train.gpt", "fit", "--config", config, "--model.impl", impl,
           "--trainer.accelerator", device, "--trainer.default_root_dir", str(root), *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(next(root.glob("version_*/results.json")).read_text())


def to_markdown(r: dict) -> str:
    m, t = (next(x for x in r["runs"] if x["impl"] == k) for k in ("manual", "torch"))
    lines = [
        "# GPT fit: byte-level, the standard library's source",
        "",
        *report_header(r, "one fit per row, one after the other"),
        f"`{r['config']}`; validation bits per byte of the final weights on the held-out files; tokens/s of the "
        "training steps (forward, backward, optimizer); fit seconds of `Trainer.fit`. The machine is a shared "
        "2-core box with other jobs running: wall times and tokens/s are inflated / deflated by them.",
        "",
        f"Unigram baseline: {m['unigram_train_bpb']:.4f} bits per byte (entropy of the training bytes); the "
        f"validation bytes under it: {m['unigram_val_bpb']:.4f}.",
        "",
        "| impl | val bits/byte | tokens/s | fit (s) | steps | parameters | peak RSS MiB | saved per step MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {x['impl']} | {x['val_bpb']:.4f} | {x['tokens_per_s']:,.0f} | {x['fit_seconds']:.1f} | {x['global_step']} "
              f"| {x['parameters']:,} | {x['peak_memory_bytes'] / 2**20:.0f} | {x['step_saved_bytes'] / 2**20:.1f} |" for x in r["runs"]]
    lines += ["", f"manual / torch validation bits per byte: **{m['val_bpb'] / t['val_bpb']:.4f}** (target: within 1 %).",
              "", "Sample of the manual run (after `def `, top-k 20):", "", "```", m["sample"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpt_fit", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="configs/gpt.yaml")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("extra", nargs="*", help="more CLI arguments for both fits (after --)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for impl in ("manual", "torch"):
            r = fit(a.config, impl, a.device, a.extra, Path(tmp) / impl)
            runs.append({"impl": impl, **{k: r[k] for k in KEYS}})
            print(f"{impl}: val {r['val_bpb']:.4f} bpb, {r['tokens_per_s']} tokens/s, fit {r['fit_seconds']:.1f} s", flush=True)
    report = {"env": env_info(torch.device(a.device)), "command": f"python -m benchmarks.gpt_fit {shlex.join(sys.argv[1:] if argv is None else argv)}".strip(),
              "config": a.config, "extra_args": a.extra, "runs": runs, "wall_s": time.perf_counter() - t0}
    write_report(report, a.out, f"gpt_fit_{torch.device(a.device).type}", to_markdown)
    return report


if __name__ == "__main__":
    main()
