"""``python -m benchmarks.gpt``: saved activation bytes per block, peak memory and time of a GPT training step.

The library's :class:`manual_autograd.GPT` (fused MLP, fused tied-head loss) beside its torch.nn twin
with ``F.scaled_dot_product_attention`` (``native``; on CPU its flash kernel) and with math attention
(``native-math``: ``softmax(q kᵀ/√d + causal) v`` as GPT-2's eager path), same weights, dropout off,
one batch of ``B × L`` bytes. Per block: the saved bytes of ``n_layer = 2`` minus those of
``n_layer = 1`` (everything outside the blocks cancels), parameters and the token ids excluded,
counted by the library's ledger. Peak: :class:`benchmarks.fused.LiveBytes` over one whole step
(forward, loss, backward; gradients included), above what lived before it; on CUDA also
``max_memory_allocated``. Step time: interleaved rounds (:func:`benchmarks.common.time_ratio`).
Written to ``results/gpt_<device>.{json,md}``::

    python -m benchmarks.gpt                  # L = 1024, CPU
    python -m benchmarks.gpt --quick          # fewer timing rounds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from manual_autograd import GPT, GPTConfig

from .common import env_info, peak_step_bytes, report_header, saved_bytes, target_mark, time_ratio, write_report
from .fused import peak_bytes

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"manual": ("manual", "sdpa"), "native": ("torch", "sdpa"), "native-math": ("torch", "math")}
TARGETS = {"native": 0.70, "native-math": 0.30}


def build(variant: str, n_layer: int, a, device) -> GPT:
    impl, attention = VARIANTS[variant]
    cfg = GPTConfig(block_size=a.L, n_layer=n_layer, n_head=a.heads, n_embd=a.d, dropout=0.0, fused_mlp=True)
    torch.manual_seed(0)
    return GPT(cfg, impl, attention).to(device)


def measure(a, device) -> dict:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 256, (a.B, a.L), generator=g).to(device)
    tgt = torch.randint(0, 256, (a.B, a.L), generator=g).to(device)
    rows, steps = {}, {}
    for variant in VARIANTS:
        saved = {}
        for n in (1, 2):
            model = build(variant, n, a, device)
            saved[n] = saved_bytes(lambda: model(idx, tgt)[1], exclude=list(model.parameters()), model_input=(idx, tgt))["act"]

        def step(model=model):
            model.zero_grad(set_to_none=True)
            model(idx, tgt)[1].backward()

        steps[variant] = step
        rows[variant] = {"block_saved": saved[2] - saved[1], "model_saved": saved[2], "live_peak": peak_bytes(step),
                         "cuda_peak": peak_step_bytes(step, device, list(model.parameters()))}
        print(f"{variant:12s} saved/block {rows[variant]['block_saved'] / 2**20:8.2f} MiB  "
              f"peak {rows[variant]['live_peak'] / 2**20:8.2f} MiB", flush=True)
    for variant in ("native", "native-math"):
        r = rows[variant]
        t = time_ratio(steps[variant], steps["manual"], rounds=a.rounds, min_run_time=0.05)
        r["vs_manual"] = {"block_saved": rows["manual"]["block_saved"] / r["block_saved"],
                          "live_peak": rows["manual"]["live_peak"] / r["live_peak"],
                          "step_time": t["ratio"], "native_s": t["native_s"], "manual_s": t["manual_s"]}
        print(f"manual / {variant}: saved per block {r['vs_manual']['block_saved']:.3f}, peak {r['vs_manual']['live_peak']:.3f}, "
              f"step {t['ratio']:.2f}", flush=True)
    return rows


def to_markdown(r: dict) -> str:
    s = r["shape"]
    rows = r["rows"]
    lines = [
        "# GPT training step: saved activations per block, peak memory, step time",
        "",
        *report_header(r, f"{r['rounds']} interleaved timing rounds"),
        f"GPT with n_embd {s['d']}, {s['heads']} heads, batch {s['B']} × L = {s['L']} bytes, dropout off, float32; "
        "manual = the library's layers (fused MLP, fused tied-head loss); native = the torch.nn twin with "
        "`F.scaled_dot_product_attention`; native-math = the twin with `softmax(q kᵀ/√d) v` (GPT-2's eager path). "
        "Saved per block: ledger bytes of 2 blocks minus 1 block (parameters and token ids excluded). Peak: live "
        "bytes of one whole step (`LiveBytes`). The machine is a shared 2-core box: step times are noisy.",
        "",
        "| impl | saved per block MiB | saved, whole model (2 blocks) MiB | step peak MiB | manual / it: saved per block | peak | step time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, x in rows.items():
        v = x.get("vs_manual")
        cells = [k, f"{x['block_saved'] / 2**20:.2f}", f"{x['model_saved'] / 2**20:.2f}", f"{x['live_peak'] / 2**20:.2f}"]
        cells += (["", "", ""] if v is None else
                  [f"**{v['block_saved']:.3f}**{target_mark(v['block_saved'], TARGETS[k])}", f"{v['live_peak']:.3f}", f"{v['step_time']:.2f}"])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Targets, saved per block manual / native: ≤ 0.70 against native (SDPA), ≤ 0.30 against native-math."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpt", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--L", type=int, default=1024)
    p.add_argument("--B", type=int, default=1)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    a.rounds = 3 if a.quick else 10
    device = torch.device(a.device)
    t0 = time.perf_counter()
    rows = measure(a, device)
    report = {"command": "python -m benchmarks.gpt " + " ".join(sys.argv[1:] if argv is None else argv), "rounds": a.rounds,
              "env": env_info(device), "shape": {"B": a.B, "L": a.L, "d": a.d, "heads": a.heads}, "rows": rows,
              "wall_s": time.perf_counter() - t0}
    write_report(report, a.out, f"gpt_{device.type}", to_markdown)
    return report


if __name__ == "__main__":
    main()
