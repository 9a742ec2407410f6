"""scaled_dot_product_attention: the library's blockwise op beside the math attention a user writes
(``softmax(q kᵀ/√d) v`` in torch ops) and beside :func:`torch.nn.functional.scaled_dot_product_attention`.

Writes ``benchmarks/results/attention_<device>.{md,json}``::

    python -m benchmarks.attention            # CPU: saved bytes, peak of a step at L = 1024, 2048, 4096, step time
    python -m benchmarks.attention --quick    # a smoke run: small shapes, few rounds, noisy figures

1. saved bytes at ``(b=4, heads=8, L=S=1024, d=64)`` float32, manual / native, for each native;
2. the peak of a training step (forward + backward) at ``L = S`` in ``--lengths`` (``b=1, heads=8,
   d=64``), counted by :class:`benchmarks.fused.LiveBytes`;
3. the step-time ratio manual / native (median of interleaved rounds, ``torch.utils.benchmark``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as TF

from manual_autograd import functional as MF

from .common import env_info, ratio_cell, report_header, saved_bytes, target_mark, time_ratio, write_report
from .fused import peak_bytes

__all__ = ["IMPLS", "saved_rows", "peak_rows", "time_rows", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
SAVED_TARGETS = {"math": 0.10, "sdpa": 1.00}


def _math(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v


IMPLS = {
    "manual": lambda q, k, v: MF.scaled_dot_product_attention(q, k, v),
    "math": _math,  # what a user writes with torch ops
    "sdpa": lambda q, k, v: TF.scaled_dot_product_attention(q, k, v),  # torch's fused op
}
NAMES = {"manual": "manual_autograd", "math": "native math `softmax(q kᵀ/√d) v`", "sdpa": "native `F.scaled_dot_product_attention`"}


def _qkv(b, h, L, d, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, L, d, generator=g).to(device).requires_grad_() for _ in range(3)]


def _step(fn, q, k, v, g):
    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(g)

    return step


def saved_rows(device, b, h, L, d) -> dict:
    """Saved bytes of each implementation: ``act`` (what it keeps beyond q, k, v) and ``input``
    (of q, k, v), and manual / native on ``act`` and on the total."""
    q, k, v = _qkv(b, h, L, d, device)
    saved = {name: saved_bytes(lambda: fn(q, k, v), (), (q, k, v)) for name, fn in IMPLS.items()}
    m = saved["manual"]
    ratios = {}
    for native in ("math", "sdpa"):
        n = saved[native]
        ratios[native] = {"act": m["act"] / n["act"], "total": (m["act"] + m["input"]) / (n["act"] + n["input"])}
    return {"shape": dict(b=b, heads=h, L=L, S=L, d=d), "saved": saved, "ratios": ratios, "targets": SAVED_TARGETS}


def peak_rows(device, lengths, b, h, d) -> list:
    """Peak live bytes of a step of each implementation at each length (``LiveBytes``)."""
    rows = []
    for L in lengths:
        q, k, v = _qkv(b, h, L, d, device)
        g = torch.randn(b, h, L, d).to(device)
        row = {"L": L}
        for name, fn in IMPLS.items():
            t0 = time.perf_counter()
            row[name] = peak_bytes(_step(fn, q, k, v, g))
            print(f"  peak L={L:5d} {name:7s} {row[name] / 2**20:9.1f} MiB  ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append(row)
    return rows


def time_rows(device, b, h, L, d, rounds, min_run_time) -> dict:
    """Step-time ratios manual / each native at one shape."""
    q, k, v = _qkv(b, h, L, d, device)
    g = torch.randn(b, h, L, d).to(device)
    manual = _step(IMPLS["manual"], q, k, v, g)
    out = {"shape": dict(b=b, heads=h, L=L, S=L, d=d)}
    for native in ("sdpa", "math"):
        out[native] = time_ratio(_step(IMPLS[native], q, k, v, g), manual, rounds, min_run_time)
        print(f"  step manual / {native}: {out[native]['ratio']:.2f}", flush=True)
    return out


def _mib(n):
    return f"{n / 2**20:,.1f}"


def to_markdown(report) -> str:
    s = report["saved"]
    sh = s["shape"]
    out = report_header(report, f"{report['rounds']} interleaved rounds per time ratio") + [
        "Figures measured on a shared 2-core machine beside other jobs: the times are noisy.",
        "",
        f"### Saved for backward, float32, b={sh['b']}, heads={sh['heads']}, L=S={sh['L']}, d={sh['d']}",
        "",
        "Unique bytes kept for backward (`record_saved`), MiB: `act` beyond q, k, v (the output, the "
        "log-sum-exp, the probabilities), `input` of q, k, v themselves (kept by all three).",
        "",
        "| implementation | act MiB | q, k, v MiB | manual / it, act | manual / it, total |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in IMPLS:
        sv = s["saved"][name]
        r = s["ratios"].get(name)
        cells = ["", ""] if r is None else [
            f"**{r['act']:.3f}**{target_mark(r['act'], s['targets'][name])}", f"{r['total']:.3f}",
        ]
        out.append(f"| {NAMES[name]} | {_mib(sv['act'])} | {_mib(sv['input'])} | " + " | ".join(cells) + " |")
    p = report["peak"]
    out += [
        "",
        f"### Peak memory of a training step (forward + backward), float32, b={report['peak_shape']['b']}, "
        f"heads={report['peak_shape']['heads']}, d={report['peak_shape']['d']}",
        "",
        "Most bytes alive at once among the storages the step's ops create (`benchmarks.fused.LiveBytes`; "
        "q, k, v and the upstream gradient existed before and are not counted; their gradients are), MiB. "
        "Growth: the peak at this L over the peak at the previous one (L doubles: linear growth is 2×, "
        "quadratic 4×).",
        "",
        "| L = S | manual MiB | growth | native math MiB | growth | native SDPA MiB | growth | manual / math | manual / SDPA |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(p):
        cells = [str(r["L"])]
        for name in ("manual", "math", "sdpa"):
            cells += [_mib(r[name]), "" if i == 0 else f"{r[name] / p[i - 1][name]:.2f}×"]
        cells += [f"{r['manual'] / r['math']:.3f}", f"{r['manual'] / r['sdpa']:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    t = report["time"]
    ts = t["shape"]
    out += [
        "",
        f"### Step time (forward + backward), float32, b={ts['b']}, heads={ts['heads']}, L=S={ts['L']}, d={ts['d']}",
        "",
        "Manual / native, median of per-round ratios [interquartile range].",
        "",
        "| native | native ms | manual ms | manual / native |",
        "|---|---:|---:|---:|",
    ]
    for name in ("sdpa", "math"):
        r = t[name]
        out.append(f"| {NAMES[name]} | {r['native_s'] * 1e3:.1f} | {r['manual_s'] * 1e3:.1f} | {ratio_cell(r, bold=True)} |")
    out += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(out) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="small shapes, few short rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8, quick 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--lengths", default=None, help="comma-separated L of the peak rows (default 1024,2048,4096)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    quick = args.quick
    rounds = args.rounds or (2 if quick else 8)
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else ([32, 64] if quick else [1024, 2048, 4096])
    saved_shape = dict(b=1, h=2, L=64, d=8) if quick else dict(b=4, h=8, L=1024, d=64)
    peak_shape = dict(b=1, h=2, d=8) if quick else dict(b=1, h=8, d=64)
    time_shape = dict(b=1, h=2, L=64, d=8) if quick else dict(b=2, h=8, L=512, d=64)
    start = time.perf_counter()
    saved = saved_rows(device, **saved_shape)
    print(f"saved manual / math {saved['ratios']['math']['act']:.3f}, manual / sdpa {saved['ratios']['sdpa']['act']:.3f}", flush=True)
    peak = peak_rows(device, lengths, **peak_shape)
    timed = time_rows(device, **time_shape, rounds=rounds, min_run_time=0.01 if quick else 0.05)
    report = {
        "command": "python -m benchmarks.attention " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": rounds,
        "env": env_info(device),
        "saved": saved,
        "peak_shape": dict(b=peak_shape["b"], heads=peak_shape["h"], d=peak_shape["d"]),
        "peak": peak,
        "time": timed,
        "wall_s": time.perf_counter() - start,
    }
    write_report(report, args.out, f"attention_{device.type}", to_markdown)
    return report


if __name__ == "__main__":
    main()
