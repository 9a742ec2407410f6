"""Fused ops beside their unfused torch.nn compositions: the ActivationLinear MLP and LinearCrossEntropy.

``cases(device, quick)`` adds these rows to ``python -m benchmarks`` (see common.py). Run alone,
this module also measures the peak memory of a training step on the CPU (:class:`LiveBytes`)
and sets :func:`torch.nn.functional.linear_cross_entropy` (chunked, with its options) beside
the chunked cross-entropy, and writes ``benchmarks/results/fused_<device>.{md,json}`` (a CPU
run there also regenerates the README's headline table)::

    python -m benchmarks.fused            # CPU, all rows
    python -m benchmarks.fused --quick    # a smoke run: fewer rounds, noisy figures
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import weakref
from pathlib import Path

import torch
import torch.nn.functional as TF
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import manual_autograd as ma
from manual_autograd import functional as MF

from .cases import ACTIVATIONS, mlp, mlp_targets
from .common import (
    Case,
    Impl,
    env_info,
    measure_case,
    ratio_cell,
    report_header,
    saved_bytes,
    target_mark,
    time_ratio,
    write_report,
)

__all__ = ["LiveBytes", "peak_bytes", "mlp_case", "lce_case", "gated_mlp_case", "cases", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
LCE_SHAPE = dict(N=2048, in_features=512, C=32000)


# --------------------------------------------------------------------------------------------
# peak memory on any device


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages that ops create inside the block, and their peak.

    Every storage an op allocates (an output its schema does not mark as aliasing an input) is
    counted at its full size until it is freed (a ``weakref.finalize`` on the storage; torch
    keeps one Python object per live storage).
    Tensors that existed before the block (parameters, inputs) are not counted; gradients that
    autograd accumulates into ``.grad`` are, since an op produced them. Scratch memory inside one
    kernel is not seen; views and in-place results share a counted storage. A ``torch.library``
    custom op (as torch's chunked ``linear_cross_entropy``) reaches the mode as one op, so its
    Python body is run again inside the mode, where its own allocations are counted.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._sizes = {}

    def _free(self, key):
        self.live -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        opdef = torch._library.custom_ops._maybe_get_opdef(func)
        if opdef is not None:  # a torch.library custom op: run its Python body where the mode sees it
            with self:
                return opdef._init_fn(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # a view, an in-place or an out= result: memory that already existed
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key, n = (t.device.type, t.device.index, st.data_ptr()), st.nbytes()
                if n == 0 or key in self._sizes:
                    continue
                self._sizes[key] = n
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(st, self._free, key)
        return out


def peak_bytes(step) -> int:
    """Peak live bytes allocated during ``step()`` (above what was alive before it)."""
    step()  # warm-up: lazily built state is not the step's
    with LiveBytes() as m:
        step()
    return m.peak


# --------------------------------------------------------------------------------------------
# cases


def mlp_case(activation: str, device, batch: int = 256, sizes=(784, 1024, 1024, 10)) -> Case:
    """torch.nn ``Linear, act, …, Linear`` beside ``manual_autograd.nn.MLP`` (activations fused)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, sizes[0], generator=g).to(device)
    target = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    torch.manual_seed(0)
    native = mlp(sizes, activation, "native").to(device)
    manual = ma.nn.MLP(sizes[0], list(sizes[1:]), activation_layer=ACTIVATIONS[activation][0]).to(device)
    ours, theirs = list(manual.parameters()), list(native.parameters())
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    with torch.no_grad():  # same weights, in order
        for p, q in zip(ours, theirs):
            p.copy_(q)
    models = {"native": native, "manual": manual}
    # the same loss on both sides, so the row measures the layers (the loss has its own rows)
    losses = {"native": nn.CrossEntropyLoss(), "manual": nn.CrossEntropyLoss()}

    def build(impl: str) -> Impl:
        model, loss_fn = models[impl], losses[impl]

        def record():
            return loss_fn(model(x), target)

        def step():
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), target).backward()

        return Impl(lambda: model(x), record, step, list(model.parameters()), (x, target))

    name = f"fused MLP {'-'.join(map(str, sizes))} {activation}, b{batch}"
    saved_target = None if activation == "relu" else 0.55
    return Case(name, "fused", build, "act", {"batch": batch, **mlp_targets(torch.device(device), 1.05), "saved_target": saved_target})


def _lce_tensors(device, N, in_features, C):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, in_features, generator=g).to(device).requires_grad_()
    w = (torch.randn(C, in_features, generator=g) * in_features**-0.5).to(device).requires_grad_()
    target = torch.randint(0, C, (N,), generator=g).to(device)
    return x, w, target


def lce_fns(x, w, target) -> dict:
    """Loss closures: the unfused torch composition, ours, and torch's chunked op with its options
    (where this torch has it)."""
    fns = {
        "native": lambda: TF.cross_entropy(TF.linear(x, w), target),
        "manual": lambda: MF.linear_cross_entropy(x, w, target),
    }
    Opt = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if Opt is None:
        return fns
    return {
        **fns,
        "torch chunked, options=LinearCrossEntropyOptions()": lambda: TF.linear_cross_entropy(
            x, w, target, options=Opt()
        ),
        "torch chunked, chunking_method='aspect_ratio:4'": lambda: TF.linear_cross_entropy(
            x, w, target, options=Opt(chunking_method="aspect_ratio:4")
        ),
        "torch chunked, batch_chunk_size=256": lambda: TF.linear_cross_entropy(
            x, w, target, options=Opt(chunking_method=None, batch_chunk_size=256)
        ),
    }


def _lce_step(fn, x, w):
    def step():
        x.grad = w.grad = None
        fn().backward()

    return step


def lce_case(device, N: int, in_features: int, C: int, peak: bool = True) -> Case:
    """``cross_entropy(linear(x, W), t)``: torch's unfused composition beside ours (chunked).

    With ``peak``, the CPU-counted peak of a step (:func:`peak_bytes`) of each goes in the meta.
    """
    x, w, target = _lce_tensors(device, N, in_features, C)
    fns = lce_fns(x, w, target)
    meta = {"N": N, "in_features": in_features, "C": C, "step_target": 1.20, "peak_target": 0.10}
    if peak:
        for k in ("native", "manual"):
            meta[f"{k}_live_peak"] = peak_bytes(_lce_step(fns[k], x, w))
        meta["live_peak_ratio"] = meta["manual_live_peak"] / meta["native_live_peak"]

    def build(impl: str) -> Impl:
        fn = fns[impl]
        return Impl(fn, fn, _lce_step(fn, x, w), (w,), (x, target))

    return Case(f"linear_cross_entropy N{N} in{in_features} C{C}", "fused", build, "total", meta)


class _TorchGatedMLP(nn.Module):
    """Hugging Face's LlamaMLP in torch.nn: ``down_proj(act(gate_proj(x)) * up_proj(x))``, unfused."""

    def __init__(self, hidden, intermediate, activation):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)
        self.act = TF.silu if activation == "silu" else TF.gelu

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def gated_mlp_case(device, tokens: int = 2048, hidden: int = 1024, intermediate: int = 2816, activation: str = "silu") -> Case:
    """A Llama-style gated MLP: the unfused torch.nn chain beside ``manual_autograd.nn.GatedMLP``
    (same weights: same seed, same draws), backward from one fixed output gradient."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(tokens, hidden, generator=g).to(device)
    grad_out = torch.randn(tokens, hidden, generator=g).to(device)
    torch.manual_seed(0)
    native = _TorchGatedMLP(hidden, intermediate, activation).to(device)
    torch.manual_seed(0)
    manual = ma.nn.GatedMLP(hidden, intermediate, activation=activation).to(device)
    models = {"native": native, "manual": manual}

    def build(impl: str) -> Impl:
        model = models[impl]

        def step():
            model.zero_grad(set_to_none=True)
            model(x).backward(grad_out)

        return Impl(lambda: model(x), lambda: model(x), step, list(model.parameters()), (x,))

    name = f"gated MLP {hidden}-{intermediate} {activation}, {tokens} tokens"
    meta = {"tokens": tokens, **mlp_targets(torch.device(device), 1.5), "saved_target": 0.55}
    return Case(name, "fused", build, "act", meta)


def cases(device: torch.device, quick: bool = False) -> list:
    # the fused Llama MLP (gated_mlp_case) is measured with the transformer layers: benchmarks/transformer.py
    return [mlp_case(a, device) for a in ("gelu", "silu", "relu")] + [lce_case(device, **LCE_SHAPE)]


# --------------------------------------------------------------------------------------------
# alone: the rows above, plus torch's chunked op beside ours


def _mib(n):
    return f"{n / 2**20:,.1f}"


def torch_chunked_rows(device, rounds, min_run_time, N, in_features, C) -> list:
    """Each torch chunked option beside the unfused composition: step time ratio and peak."""
    x, w, target = _lce_tensors(device, N, in_features, C)
    fns = lce_fns(x, w, target)
    native_step = _lce_step(fns["native"], x, w)
    native_peak = peak_bytes(native_step)
    rows = []
    for name, fn in fns.items():
        if name in ("native", "manual"):  # measured as a case row
            continue
        step = _lce_step(fn, x, w)
        p = peak_bytes(step)
        rows.append(
            {
                "name": name,
                "live_peak": p,
                "native_live_peak": native_peak,
                "live_peak_ratio": p / native_peak,
                "saved": saved_bytes(fn, (w,), (x, target)),
                "step": time_ratio(native_step, step, rounds, min_run_time),
            }
        )
        print(f"  {name:55s} step {rows[-1]['step']['ratio']:.2f}  peak {p / native_peak:.3f}", flush=True)
    return rows


def to_markdown(report) -> str:
    rounds = (
        f"{report['rounds']} interleaved rounds per time ratio ({report['lce_rounds']} for the "
        f"{report['lce_shape']['C']}-class rows)"
    )
    out = report_header(report, rounds) + [
        "Ratios are manual / native (torch.nn's unfused layers), the median of per-round ratios, "
        "interquartile range in brackets. Saved = unique bytes kept for backward by the graph, KiB "
        "(activations + model input; parameters excluded). Peak = most bytes alive at once during "
        "a training step (`zero_grad(set_to_none)`, forward, loss, backward) among the storages the "
        "step's ops create, counted by `LiveBytes` (a TorchDispatchMode that sees every op's output "
        "storage and a weakref finalizer on it); the parameter gradients count, the parameters do not.",
        "",
        "| case | step native ms | step manual ms | step ratio | fwd ratio | saved native | saved manual | saved ratio | peak native MiB | peak manual MiB | peak ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        n, m, s = r["native_saved"], r["manual_saved"], r["step"]
        peak = ["", "", ""]
        if "native_live_peak" in r:
            peak = [_mib(r["native_live_peak"]), _mib(r["manual_live_peak"]),
                    f"**{r['live_peak_ratio']:.3f}**{target_mark(r['live_peak_ratio'], r.get('peak_target'))}"]
        out.append(
            "| " + " | ".join([
                r["name"],
                f"{s['native_s'] * 1e3:.1f}",
                f"{s['manual_s'] * 1e3:.1f}",
                ratio_cell(s, bold=True) + target_mark(s["ratio"], r.get("step_target")),
                ratio_cell(r["forward"]),
                f"{n['act'] / 1024:,.0f} + {n['input'] / 1024:,.0f}",
                f"{m['act'] / 1024:,.0f} + {m['input'] / 1024:,.0f}",
                f"**{r['saved_ratio']:.2f}**{target_mark(r['saved_ratio'], r.get('saved_target'))}",
                *peak,
            ]) + " |"
        )
    if report.get("torch_chunked"):
        shape = report["lce_shape"]
        out += [
            "",
            f"`torch.nn.functional.linear_cross_entropy` at N={shape['N']}, in_features={shape['in_features']}, "
            f"C={shape['C']} beside the same unfused composition. Its chunked op computes the gradients in "
            "the forward and keeps them on the autograd node, outside the saved-tensor hooks (the saved "
            "column finds them by walking the graph); the peak counts them and the op's own chunk buffers:",
            "",
            "| torch op | step ratio vs unfused | saved KiB (act + input) | peak MiB | peak ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in report["torch_chunked"]:
            sv = r["saved"]
            out.append(
                f"| {r['name']} | {ratio_cell(r['step'])} | {sv['act'] / 1024:,.0f} + {sv['input'] / 1024:,.0f} "
                f"| {_mib(r['live_peak'])} | {r['live_peak_ratio']:.3f} |"
            )
    out += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(out) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fused", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="few short rounds: a smoke run, noisy figures")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 12, quick 3)")
    p.add_argument("--lce-rounds", type=int, default=None, help="rounds for the 32000-class rows (default 4, quick 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--only", default=None, help="run only cases whose name contains this text")
    p.add_argument("--no-torch-chunked", action="store_true", help="skip torch's linear_cross_entropy rows")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 12)
    lce_rounds = args.lce_rounds or (2 if args.quick else 4)
    min_run_time = 0.01 if args.quick else 0.04
    start = time.perf_counter()
    rows = []
    for case in [c for c in cases(device, args.quick) if args.only is None or args.only in c.name]:
        t0 = time.perf_counter()
        row = measure_case(case, device, lce_rounds if "cross_entropy" in case.name else rounds, min_run_time)
        rows.append(row)
        print(f"{case.name:48s} step {row['step']['ratio']:.2f}  saved {row['saved_ratio']:.2f}  "
              f"peak {row.get('live_peak_ratio', float('nan')):.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    chunked = [] if args.no_torch_chunked else torch_chunked_rows(device, lce_rounds, min_run_time, **LCE_SHAPE)
    report = {
        "command": "python -m benchmarks.fused " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": rounds,
        "lce_rounds": lce_rounds,
        "lce_shape": LCE_SHAPE,
        "env": env_info(device),
        "rows": rows,
        "torch_chunked": chunked,
        "wall_s": time.perf_counter() - start,
    }
    write_report(report, args.out, f"fused_{device.type}", to_markdown)
    if device.type == "cpu" and args.out.resolve() == RESULTS:  # the README's headline reads this report
        from . import headline

        headline.main([])
    return report


if __name__ == "__main__":
    main()
