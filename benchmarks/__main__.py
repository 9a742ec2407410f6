"""``python -m benchmarks``: time and saved memory of manual_autograd beside torch.nn.

Examples::

    python -m benchmarks                      # CPU, all threads, wall time: results/cpu.{md,json}
    python -m benchmarks --threads 1 --cpu-time  # CPU time of one thread: results/cpu-cputime.*
    python -m benchmarks --device cuda        # CUDA, adds peak memory of a step: results/cuda.*
    python -m benchmarks --no-extra           # built-in cases only (not benchmarks/fused.py's)
    python -m benchmarks --module transformer # one module's cases alone: results/transformer_cpu.*
    python -m benchmarks --quick --out /tmp/b # a smoke run: few short rounds, somewhere else
    python -m benchmarks --from-json benchmarks/results/cpu.json  # redraw .md and .png, measure nothing

Each run writes ``<device>.json`` (every figure), ``<device>.md`` (its tables) and ``<device>.png``
(the ratios, :mod:`benchmarks.chart`); a CPU run into ``benchmarks/results/`` then regenerates
the README's headline table (:mod:`benchmarks.headline`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path

import torch


from . import cases as builtin
from . import headline
from .chart import draw_ratios
from .common import env_info, measure_case, ratio_cell, report_header, target_mark, timer_fn, write_report

# Modules of this package that may add cases through ``cases(device, quick)``; see common.py.
EXTRA_MODULES = ("fused", "cuda_cases")

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default: {RESULTS})")
    p.add_argument("--quick", action="store_true", help="few short rounds: a smoke run, noisy figures")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per figure (default 25, quick 3)")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time: with --threads 1, robust to "
        "other processes on a shared machine (CPU only); results go to <device>-cputime.{md,json}",
    )
    p.add_argument("--only", default=None, help="run only cases whose name contains this text")
    p.add_argument("--no-extra", action="store_true", help="built-in cases only, not those of EXTRA_MODULES")
    p.add_argument("--module", default=None, metavar="NAME",
                   help="only the cases of benchmarks/NAME.py (e.g. transformer): results go to NAME_<device>.*")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="REPORT",
        help="measure nothing: rewrite REPORT's .md and .png beside it from the JSON",
    )
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds a timed block lasts at least (default 0.02, quick 0.005)")
    p.add_argument("--targets", type=Path, default=None, metavar="REPORT",
                   help="measure nothing: print REPORT's ratios that have targets, met (✓) or not (✗)")
    return p.parse_args(argv)


def module_cases(name: str, device: torch.device, quick: bool) -> list:
    """The cases of ``benchmarks/<name>.py``; ``[]`` when that module does not exist."""
    try:
        mod = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{name}":
            raise
        return []
    takes_quick = len(inspect.signature(mod.cases).parameters) > 1
    return list(mod.cases(device, quick) if takes_quick else mod.cases(device))


def all_cases(device: torch.device, quick: bool, extra: bool = True) -> list:
    found = builtin.cases(device, quick)
    for name in EXTRA_MODULES if extra else ():
        found += module_cases(name, device, quick)
    return found


def _kib(n):
    return f"{n / 1024:,.1f}"


def _ms(s):
    return f"{s * 1e3:.3f}"


def to_markdown(report: dict) -> str:
    lines = report_header(report, f"{report['rounds']} interleaved rounds per figure, {report['clock']}") + [
        "Times are medians in ms; ratios are manual / native, the median of per-round ratios "
        "(interquartile range in brackets). Saved = unique bytes kept for backward, KiB, as "
        "activations + model input (parameters excluded); the saved ratio is on activations for "
        "models and heads, on the total for an op alone.",
        "",
    ]
    cuda = any(r.get("native_peak") is not None for r in report["rows"])
    head = (
        "| case | fwd native | fwd manual | fwd ratio | step native | step manual | step ratio "
        "| saved native | saved manual | saved ratio |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if cuda:
        head += " peak native MiB | peak manual MiB | peak ratio |"
        rule += "---:|---:|---:|"
    lines += [head, rule]
    for r in report["rows"]:
        f, s = r["forward"], r["step"]
        n, m = r["native_saved"], r["manual_saved"]
        cells = [
            r["name"],
            _ms(f["native_s"]),
            _ms(f["manual_s"]),
            ratio_cell(f),
            _ms(s["native_s"]),
            _ms(s["manual_s"]),
            ratio_cell(s, bold=True) + target_mark(s["ratio"], r.get("step_target")),
            f"{_kib(n['act'])} + {_kib(n['input'])}",
            f"{_kib(m['act'])} + {_kib(m['input'])}",
            f"**{r['saved_ratio']:.2f}**{target_mark(r['saved_ratio'], r.get('saved_target'))}",
        ]
        if cuda:
            cells += [
                f"{r['native_peak'] / 2**20:.2f}",
                f"{r['manual_peak'] / 2**20:.2f}",
                f"{r['peak_ratio']:.2f}{target_mark(r['peak_ratio'], r.get('peak_target'))}"
                if r.get("peak_ratio") is not None
                else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    faulted = [r for r in report["rows"] if r["step"].get("native_faults") is not None]
    if faulted:
        lines += [
            "",
            "Minor page faults per training step, over all timed steps (a fault is a first write to a "
            "freshly mapped 4 KiB page: what a new buffer costs once the allocator has returned freed "
            "memory to the system; they come in bursts, hence a mean):",
            "",
            "| case | native | manual |",
            "|---|---:|---:|",
        ]
        for r in faulted:
            lines.append(f"| {r['name']} | {r['step']['native_faults']:,.1f} | {r['step']['manual_faults']:,.1f} |")
    counted = [r for r in report["rows"] if "native_launches" in r]
    if counted:
        lines += [
            "",
            "Kernel launches per training step (every kernel, memset and copy of one step after a "
            "warm-up, counted by `torch.profiler`; n/a where it could not trace CUDA); target for the "
            "MLPs: manual ≤ native:",
            "",
            "| case | native | manual | ratio |",
            "|---|---:|---:|---:|",
        ]
        for r in counted:
            n, m = r["native_launches"], r["manual_launches"]
            ratio = launch_ratio(r)
            cell = "n/a" if ratio is None else f"{ratio:.2f}{target_mark(ratio, r.get('launch_target'))}"
            lines.append(f"| {r['name']} | {'n/a' if n is None else n} | {'n/a' if m is None else m} | {cell} |")
    if report.get("relu_cache"):
        base = report["relu_cache"][0]["act"]
        lines += [
            "",
            "ReLU cache choice, 784-1024-1024-10 MLP at batch 256 (saved activation bytes, model input apart):",
            "",
            "| ReLU saves | saved activations KiB | vs torch.nn |",
            "|---|---:|---:|",
        ]
        for r in report["relu_cache"]:
            lines.append(f"| {r['variant']} | {_kib(r['act'])} | {r['act'] / base:.3f} |")
    lines += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def launch_ratio(row: dict):
    """Manual / native kernel launches of a row, or ``None`` where they were not counted."""
    n, m = row.get("native_launches"), row.get("manual_launches")
    return m / n if n and m is not None else None


def target_lines(report: dict) -> list:
    """One line per row with a target: each targeted ratio (manual / native), met or not."""
    figures = (
        ("step", "step_target", lambda r: r["step"]["ratio"]),
        ("peak", "peak_target", lambda r: r.get("peak_ratio")),
        ("saved", "saved_target", lambda r: r["saved_ratio"]),
        ("launches", "launch_target", launch_ratio),
    )
    lines = []
    for r in report["rows"]:
        cells = []
        for label, key, get in figures:
            if r.get(key) is None:
                continue
            v = get(r)
            cells.append(f"{label} n/a (≤{r[key]:.2f})" if v is None else f"{label} {v:.2f}{target_mark(v, r[key])}")
        if cells:
            lines.append(f"{r['name']}: " + "; ".join(cells))
    return lines


def write_outputs(report: dict, out: Path, stem: str) -> None:
    """``out/stem.{json,md,png}``, then the README's headline when ``out`` is the committed results."""
    write_report(report, out, stem, to_markdown)
    _redraw(report, out, stem)


def _redraw(report: dict, out: Path, stem: str) -> None:
    """The chart beside the report and, for the committed CPU report, the README's headline."""
    print(f"wrote {draw_ratios(report, out / f'{stem}.png')}")
    if stem == "cpu" and out.resolve() == RESULTS:
        headline.main([])


def main(argv=None) -> dict:
    args = _parse(argv)
    if args.targets is not None:
        report = json.loads(args.targets.read_text())
        print("\n".join(target_lines(report)))
        return report
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        out, stem = args.from_json.parent, args.from_json.stem
        (out / f"{stem}.md").write_text(to_markdown(report))
        _redraw(report, out, stem)
        return report
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    if args.cpu_time and device.type != "cpu":
        raise SystemExit("--cpu-time measures CPU work: use it with --device cpu")
    rounds = args.rounds or (3 if args.quick else 25)
    min_run_time = args.min_run_time or (0.005 if args.quick else 0.02)
    timer = time.process_time if args.cpu_time else timer_fn
    start = time.perf_counter()
    if args.module is not None:
        found = module_cases(args.module, device, args.quick)
        if not found:
            raise SystemExit(f"--module {args.module}: no benchmarks/{args.module}.py with cases")
    else:
        found = all_cases(device, args.quick, not args.no_extra)
    selected = [c for c in found if args.only is None or args.only in c.name]
    rows = []
    for case in selected:
        t0 = time.perf_counter()
        row = measure_case(case, device, rounds, min_run_time, timer=timer)
        rows.append(row)
        print(
            f"{case.name:48s} fwd {row['forward']['ratio']:.2f}  step {row['step']['ratio']:.2f}  "
            f"saved {row['saved_ratio']:.2f}  ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    relu_cache = builtin.relu_cache_variants(device) if args.only is None and args.module is None else []
    report = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": rounds,
        "min_run_time_s": min_run_time,
        "clock": "process CPU time" if args.cpu_time else "wall time",
        "env": env_info(device),
        "rows": rows,
        "relu_cache": relu_cache,
        "wall_s": time.perf_counter() - start,
    }
    stem = device.type + ("-cputime" if args.cpu_time else "")
    write_outputs(report, args.out, stem if args.module is None else f"{args.module}_{stem}")
    return report


if __name__ == "__main__":
    main()
