"""The README's headline table, generated from the committed results files (nothing is measured).

    python -m benchmarks.headline           # rewrite README.md between the headline markers
    python -m benchmarks.headline --check   # exit 1 if README.md's block is not what the files give

Sources, each figure linking the file it comes from:

* ``benchmarks/results/fits_cpu.json`` (written by the training fits; skipped while absent):
  test accuracy and fit time per config, ``manual`` beside ``torch`` where both ran;
* ``benchmarks/results/cpu.json`` (``python -m benchmarks``): training-step time and bytes
  saved for backward, manual / native, for the cases in :data:`CASES`;
* ``benchmarks/results/fused_cpu.json`` (``python -m benchmarks.fused``; skipped while absent):
  the fused MLPs' saved bytes and the chunked loss's peak memory;
* ``benchmarks/results/attention_cpu.json`` (``python -m benchmarks.attention``; skipped while
  absent): attention's saved bytes and step peak beside the math attention;
* ``benchmarks/results/gpt_fit_cpu.json`` and ``gpt_cpu.json`` (``python -m benchmarks.gpt_fit``,
  ``python -m benchmarks.gpt``; skipped while absent): the GPT's validation bits per byte beside
  its torch.nn twin's, and what one block keeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"

# cpu.json cases in the headline: step time of the target's small MLP and of the big MLP per
# activation; saved bytes where they differ in kind (ReLU's shared output, LeakyReLU's half).
CASES = (
    "MLP 784-128-10 relu, b256",
    "MLP 784-1024-1024-10 relu, b256",
    "MLP 784-1024-1024-10 leaky_relu, b256",
    "MLP 784-1024-1024-10 gelu, b256",
    "MLP 784-1024-1024-10 silu, b256",
)
SAVED_CASES = (
    "MLP 784-128-10 relu, b256",
    "MLP 784-1024-1024-10 relu, b256",
    "MLP 784-1024-1024-10 leaky_relu, b256",
)
# fused_cpu.json: the fused MLP whose saved bytes halve, and the chunked loss's peak.
FUSED_CASES = ("fused MLP 784-1024-1024-10 gelu, b256", "linear_cross_entropy N2048 in512 C32000")
IMPL_NAMES = {"manual": "manual_autograd", "torch": "torch.nn"}


def _link(text: str, path: Path, root: Path) -> str:
    """``text`` linked to ``path``'s markdown twin when one was written beside it, else to ``path``."""
    target = path.with_suffix(".md") if path.with_suffix(".md").exists() else path
    return f"[{text}]({target.relative_to(root).as_posix()})"


def fit_rows(path: Path, root: Path) -> list:
    """Rows ``[what, manual, torch, ratio]`` from a fits file (medians where a config ran twice)."""
    if not path.exists():
        return []
    runs = json.loads(path.read_text())["runs"]
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["config"], r.get("device", "cpu")), {}).setdefault(r["impl"], []).append(r)
    rows = []
    for (config, device), by_impl in groups.items():
        med = {k: {f: statistics.median(r[f] for r in v) for f in ("test_acc", "fit_seconds")} for k, v in by_impl.items()}
        first = next(iter(by_impl.values()))[0]
        where = f"`{config}`, {first.get('epochs', '?')} epochs, {device}"

        def cells(field, fmt):
            return [_link(fmt(med[k][field]), path, root) if k in med else "" for k in IMPL_NAMES]

        acc = cells("test_acc", lambda v: f"{100 * v:.2f} %")
        fit = cells("fit_seconds", lambda v: f"{v:.1f} s")
        # no ratio of fit times: one fit each, one after the other, is not an interleaved comparison
        rows += [[f"test accuracy, {where}", *acc, ""], [f"fit time, {where}", *fit, ""]]
    return rows


def bench_rows(path: Path, root: Path, cases=CASES, saved_cases=SAVED_CASES) -> list:
    """Rows ``[what, manual, native, ratio]``: step time of ``cases`` and saved bytes of
    ``saved_cases`` in a report (cases it lacks are left out)."""
    report = json.loads(path.read_text())
    by_name = {r["name"]: r for r in report["rows"]}
    step, saved = [], []
    for name in cases:
        r = by_name.get(name)
        if r is None:
            continue
        s = r["step"]
        step.append([
            f"training step, {name}",
            _link(f"{s['manual_s'] * 1e3:.2f} ms", path, root),
            _link(f"{s['native_s'] * 1e3:.2f} ms", path, root),
            _link(f"{s['ratio']:.2f}", path, root),
        ])
    for name in saved_cases:
        r = by_name.get(name)
        if r is None:
            continue
        m, n = r["manual_saved"], r["native_saved"]
        on_act = r["ratio_on"] == "act"  # the saved ratio's basis: activations, or all for an op alone
        mb, nb = (m["act"], n["act"]) if on_act else (m["act"] + m["input"], n["act"] + n["input"])
        saved.append([
            f"saved for backward{' (activations)' if on_act else ''}, {name}",
            _link(f"{mb / 1024:,.0f} KiB", path, root),
            _link(f"{nb / 1024:,.0f} KiB", path, root),
            _link(f"{r['saved_ratio']:.2f}", path, root),
        ])
    return step + saved


def fused_rows(path: Path, root: Path) -> list:
    """Rows from ``python -m benchmarks.fused``'s report (skipped while absent): what the fused
    layers save, and the peak memory of the chunked loss's step."""
    if not path.exists():
        return []
    rows = []
    for r in json.loads(path.read_text())["rows"]:
        if r["name"] not in FUSED_CASES:
            continue
        m, n = r["manual_saved"], r["native_saved"]
        if r["name"].startswith("fused MLP"):
            rows.append([
                f"saved for backward (activations), {r['name']}",
                _link(f"{m['act'] / 1024:,.0f} KiB", path, root),
                _link(f"{n['act'] / 1024:,.0f} KiB", path, root),
                _link(f"{r['saved_ratio']:.2f}", path, root),
            ])
        if "manual_live_peak" in r:
            rows.append([
                f"peak memory of a training step, {r['name']}",
                _link(f"{r['manual_live_peak'] / 2**20:,.1f} MiB", path, root),
                _link(f"{r['native_live_peak'] / 2**20:,.1f} MiB", path, root),
                _link(f"{r['live_peak_ratio']:.3f}", path, root),
            ])
    return rows


def attention_rows(path: Path, root: Path) -> list:
    """Rows from ``python -m benchmarks.attention``'s report (skipped while absent): what attention
    keeps for backward, and the peak of a step at the longest L, beside the math attention a user
    writes (``softmax(q kᵀ/√d) v``: the (L, S) probabilities kept)."""
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    sh, saved, peak = r["saved"]["shape"], r["saved"]["saved"], r["peak"][-1]
    shape = f"b{sh['b']} h{sh['heads']} L{sh['L']} d{sh['d']}"
    return [
        [
            f"saved for backward beyond q, k, v, attention {shape}, vs math attention",
            _link(f"{saved['manual']['act'] / 2**20:,.1f} MiB", path, root),
            _link(f"{saved['math']['act'] / 2**20:,.1f} MiB", path, root),
            _link(f"{r['saved']['ratios']['math']['act']:.3f}", path, root),
        ],
        [
            f"peak memory of a training step, attention L{peak['L']}, vs math attention",
            _link(f"{peak['manual'] / 2**20:,.1f} MiB", path, root),
            _link(f"{peak['math'] / 2**20:,.1f} MiB", path, root),
            _link(f"{peak['manual'] / peak['math']:.3f}", path, root),
        ],
    ]


def gpt_rows(fit_path: Path, mem_path: Path, root: Path) -> list:
    """Rows from ``python -m benchmarks.gpt_fit`` (the GPT's validation bits per byte, manual and
    its torch.nn twin) and ``python -m benchmarks.gpt`` (what a block keeps), each skipped while absent."""
    rows = []
    if fit_path.exists():
        runs = {r["impl"]: r for r in json.loads(fit_path.read_text())["runs"]}
        if {"manual", "torch"} <= set(runs):
            m, t = runs["manual"], runs["torch"]
            rows.append([
                f"validation bits per byte, `configs/gpt.yaml` ({m['global_step']} steps; unigram "
                f"{m['unigram_val_bpb']:.2f}), {m['device']}",
                _link(f"{m['val_bpb']:.4f}", fit_path, root),
                _link(f"{t['val_bpb']:.4f}", fit_path, root),
                _link(f"{m['val_bpb'] / t['val_bpb']:.4f}", fit_path, root),
            ])
    if mem_path.exists():
        r = json.loads(mem_path.read_text())
        sh, runs = r["shape"], r["rows"]
        for native, label in (("native", "SDPA"), ("native-math", "math attention")):
            m, n = runs["manual"]["block_saved"], runs[native]["block_saved"]
            rows.append([
                f"saved for backward per GPT block, L{sh['L']} d{sh['d']}, vs torch.nn with {label}",
                _link(f"{m / 2**20:,.2f} MiB", mem_path, root),
                _link(f"{n / 2**20:,.2f} MiB", mem_path, root),
                _link(f"{m / n:.2f}", mem_path, root),
            ])
    return rows


def render(results: Path = RESULTS, root: Path = ROOT) -> str:
    """The markdown between the markers: one table, then where its figures come from."""
    rows = (
        fit_rows(results / "fits_cpu.json", root)
        + bench_rows(results / "cpu.json", root)
        + fused_rows(results / "fused_cpu.json", root)
        + attention_rows(results / "attention_cpu.json", root)
        + gpt_rows(results / "gpt_fit_cpu.json", results / "gpt_cpu.json", root)
    )
    env = json.loads((results / "cpu.json").read_text())["env"]
    lines = [
        "| measured | manual_autograd | torch.nn | manual / torch.nn |",
        "|---|---:|---:|---:|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"Generated by `python -m benchmarks.headline` from the results files each figure links "
        f"(`cpu.json`: {env['device_name']}, {env['threads']} thread(s), torch {env['torch']}, "
        f"{env['date']}; step times are medians of interleaved rounds, fused rows against "
        f"`torch.nn`'s unfused layers).",
    ]
    return "\n".join(lines) + "\n"


def splice(text: str, block: str) -> str:
    """``text`` with everything between the headline markers replaced by ``block``."""
    try:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"README: expected the markers {START} and {END}, in that order") from None
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.headline", description=__doc__.splitlines()[0])
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--check", action="store_true", help="exit 1 if the README's block is stale; write nothing")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    new = splice(text, render(args.results, args.readme.resolve().parent))
    if args.check:
        if new != text:
            print(f"{args.readme}: the headline table is stale; run python -m benchmarks.headline", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
        print(f"rewrote the headline table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
