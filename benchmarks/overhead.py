"""Where the time of a small training step goes: the fixed cost of a Python ``autograd.Function``.

    python -m benchmarks.overhead [--rounds 21] [--threads N] [--cpu-time]

Five measurements, each interleaved against its native counterpart in one process
(:func:`benchmarks.common.time_ratio`: medians of ``torch.utils.benchmark.Timer`` blocks, ratio
taken inside each round):

1. **apply**: the forward call of a trivial op (``x.view_as(x)``) as a native op, as an old-style
   ``Function`` (``forward(ctx, x)``), as a modern one (``forward`` + ``setup_context``, what
   ``torch.func`` needs) and through :class:`manual_autograd.ops.Function` (modern, with the
   old-style eager twin it builds).
2. **apply + backward node**: the same ops, forward and ``torch.autograd.grad``: the backward
   node's fixed cost (a Python call from the engine) beside a C++ node.
3. **784-128-10 ReLU MLP, training step**: ``torch.nn`` against ``manual_autograd`` and against a
   *floor*: three minimal old-style Functions written here (Linear, ReLU, cross-entropy with the
   same kernels as the library's common path, no argument checks, no ``torch.func``/``jvp``/
   compile support). The floor is what any library of Python Functions pays for this network; the
   distance from it to ``manual_autograd`` is what the library's own code costs. Two more rows
   keep ``torch.nn.CrossEntropyLoss`` and swap only Linear and ReLU, to show the loss's share.
4. **One ReLU swapped** into the otherwise native MLP: the machinery of a Python Function against
   what its backward calls. Four Functions with the same forward (``clamp_min``, saving the output)
   and these backwards: ``return grad_out`` (no op: the machinery alone, a *wrong* gradient, timed
   only), torch's own ``threshold_backward`` called from Python (one op, torch's kernel), the
   floor's ``sign(out) * grad_out`` and ``manual_autograd``'s ReLU.
5. **The loss alone**, forward and backward on ``(batch, 10)`` logits: ``torch.nn.functional.
   cross_entropy`` against the floor's Function, ``manual_autograd``'s ``CrossEntropyFunction``
   applied directly (no argument checks) and ``manual_autograd.functional.cross_entropy`` (with
   them): what the library's loss costs beyond the floor, and how much of that is its checks.

Writes ``benchmarks/results/overhead_<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as TF
from torch import nn
from torch.utils.benchmark.utils.timer import timer as timer_fn

import manual_autograd as ma
import manual_autograd.functional as MF
from manual_autograd import CrossEntropyFunction
from manual_autograd.ops import Function as MAFunction

from .cases import mlp
from .common import env_info, ratio_cell, report_header, time_ratio, write_report

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------
# trivial ops


class OldStyle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


class _ModernBody:
    """The trivial op in the modern form, for the two modern Functions below."""

    @staticmethod
    def forward(x):
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, out):
        pass

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


class Modern(_ModernBody, torch.autograd.Function):
    pass


class Library(_ModernBody, MAFunction):
    pass


# --------------------------------------------------------------------------------------------
# the floor: minimal old-style Functions for the 784-128-10 MLP


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return TF.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        return (grad_out.mm(weight) if ctx.needs_input_grad[0] else None), grad_out.t().mm(x), grad_out.sum(0)


class _ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        return out.sign().mul_(grad_out)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target):
        logp = torch.log_softmax(x, 1)
        ctx.save_for_backward(logp, target)
        return TF.nll_loss(logp, target)

    @staticmethod
    def backward(ctx, grad_out):
        logp, target = ctx.saved_tensors
        t = target.view(-1, 1)
        if int(t.min()) >= 0:  # no row ignored (ignore_index -100): no mask, as the library does on CPU
            return logp.exp().scatter_(1, t, -1.0, reduce="add").mul_(grad_out.item() / t.shape[0]), None
        valid = t != -100
        g = torch.where(valid, grad_out / valid.sum(), 0.0)
        t = t.clamp(0, logp.shape[1] - 1)
        return logp.exp().scatter_(1, t, -1.0, reduce="add").mul_(g), None


class FloorLinear(nn.Linear):
    def forward(self, input):
        return _Linear.apply(input, self.weight, self.bias)


class FloorReLU(nn.ReLU):
    def forward(self, input):
        return _ReLU.apply(input)


class FloorCrossEntropyLoss(nn.CrossEntropyLoss):
    def forward(self, input, target):
        return _CrossEntropy.apply(input, target)


def floor_mlp(sizes=(784, 128, 10)) -> nn.Sequential:
    return ma.nn.build_mlp(sizes, FloorReLU, FloorLinear)


def _relu_probe(name, backward):
    """A ReLU module whose Function has the floor's forward and the given ``backward(out, grad_out)``."""

    class Probe(_ReLU):  # the floor's forward
        @staticmethod
        def backward(ctx, grad_out):
            (out,) = ctx.saved_tensors
            return backward(out, grad_out)

    return type(name, (nn.ReLU,), {"forward": lambda self, input: Probe.apply(input)})


RELU_PROBES = {  # backward of the one swapped ReLU: what it calls from Python
    "`return grad_out` (no op; wrong gradient, timing only)": _relu_probe("NoOpReLU", lambda out, g: g),
    "torch's `threshold_backward` (one op)": _relu_probe(
        "TorchKernelReLU", lambda out, g: torch.ops.aten.threshold_backward(g, out, 0)
    ),
    "floor: `out.sign().mul_(grad_out)` (two ops)": FloorReLU,
    "manual_autograd `ReLU`": ma.nn.ReLU,
}


# --------------------------------------------------------------------------------------------


def _step(model, loss_fn, x, t):
    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), t).backward()

    return step


def measure(rounds: int, min_run_time: float, timer=timer_fn, batch: int = 256) -> dict:
    x = torch.randn(64, 64, requires_grad=True)
    ops = {"old-style Function": OldStyle, "modern Function (setup_context)": Modern, "manual_autograd Function": Library}
    native = lambda: x.view_as(x)  # noqa: E731
    apply_rows, node_rows = [], []
    for name, fn in ops.items():
        r = time_ratio(native, lambda fn=fn: fn.apply(x), rounds, min_run_time, timer=timer)
        apply_rows.append({"op": name, **r})
        r = time_ratio(
            lambda: torch.autograd.grad(native(), x, x),
            lambda fn=fn: torch.autograd.grad(fn.apply(x), x, x),
            rounds,
            min_run_time,
            timer=timer,
        )
        node_rows.append({"op": name, **r})

    g = torch.Generator().manual_seed(0)
    xb = torch.randn(batch, 784, generator=g)
    tb = torch.randint(0, 10, (batch,), generator=g)
    native_model = mlp((784, 128, 10), "relu", "native")
    models = {
        "manual_autograd": (mlp((784, 128, 10), "relu", "manual"), ma.nn.CrossEntropyLoss()),
        "manual_autograd Linear, ReLU + torch.nn CrossEntropyLoss": (
            mlp((784, 128, 10), "relu", "manual"),
            nn.CrossEntropyLoss(),
        ),
        "floor (minimal Functions)": (floor_mlp(), FloorCrossEntropyLoss()),
        "floor Linear, ReLU + torch.nn CrossEntropyLoss": (floor_mlp(), nn.CrossEntropyLoss()),
    }
    native_step = _step(native_model, nn.CrossEntropyLoss(), xb, tb)
    step_rows = []
    for name, (model, loss_fn) in models.items():
        model.load_state_dict(native_model.state_dict())
        r = time_ratio(native_step, _step(model, loss_fn, xb, tb), rounds, min_run_time, timer=timer)
        step_rows.append({"impl": name, **r})
    probe_rows = []
    for name, relu in RELU_PROBES.items():
        model = ma.nn.build_mlp((784, 128, 10), relu, nn.Linear)
        model.load_state_dict(native_model.state_dict())
        r = time_ratio(native_step, _step(model, nn.CrossEntropyLoss(), xb, tb), rounds, min_run_time, timer=timer)
        probe_rows.append({"relu_backward": name, **r})
    logits = torch.randn(batch, 10, generator=g).requires_grad_()
    losses = {  # each returns the loss; the timed call also runs its backward
        "floor (minimal Function)": lambda: _CrossEntropy.apply(logits, tb),
        "manual_autograd `CrossEntropyFunction.apply` (no argument checks)": lambda: CrossEntropyFunction.apply(
            logits, tb, None, -100, "mean", 0.0
        )[0],
        "manual_autograd `functional.cross_entropy`": lambda: MF.cross_entropy(logits, tb),
    }
    loss_rows = []
    for name, loss in losses.items():
        r = time_ratio(
            lambda: TF.cross_entropy(logits, tb).backward(),
            lambda loss=loss: loss().backward(),
            rounds,
            min_run_time,
            timer=timer,
        )
        loss_rows.append({"loss": name, **r})
    return {
        "apply": apply_rows,
        "apply_backward": node_rows,
        "step": step_rows,
        "relu_probe": probe_rows,
        "loss": loss_rows,
        "batch": batch,
    }


def _us(s):
    return f"{s * 1e6:.1f}"


def to_markdown(report: dict) -> str:
    lines = report_header(report, f"{report['rounds']} interleaved rounds per figure, {report['clock']}") + [
        "Ratios are the median of per-round ratios (interquartile range in brackets).",
        "",
        "| trivial op (`x.view_as(x)`) | forward native µs | forward µs | ratio | fwd + `autograd.grad` native µs | fwd + grad µs | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(report["apply"], report["apply_backward"]):
        lines.append(
            f"| {a['op']} | {_us(a['native_s'])} | {_us(a['manual_s'])} | {ratio_cell(a)} "
            f"| {_us(b['native_s'])} | {_us(b['manual_s'])} | {ratio_cell(b)} |"
        )
    lines += [
        "",
        f"| 784-128-10 ReLU MLP, batch {report['batch']}, training step | native ms | this ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    for r in report["step"]:
        lines.append(
            f"| {r['impl']} | {r['native_s'] * 1e3:.3f} | {r['manual_s'] * 1e3:.3f} | "
            f"{ratio_cell(r, bold=True)} |"
        )
    lines += [
        "",
        f"| 784-128-10 MLP, batch {report['batch']}, all `torch.nn` but one ReLU, a Python Function whose backward is | native ms | this ms | ratio | extra µs, (ratio − 1) × native |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["relu_probe"]:
        lines.append(
            f"| {r['relu_backward']} | {r['native_s'] * 1e3:.3f} | {r['manual_s'] * 1e3:.3f} | "
            f"{ratio_cell(r, digits=3)} | {(r['ratio'] - 1) * r['native_s'] * 1e6:.0f} |"
        )
    lines += [
        "",
        f"| cross-entropy alone, ({report['batch']}, 10) logits, forward + backward, against `torch.nn.functional` "
        "| native µs | this µs | ratio |",
        "|---|---:|---:|---:|",
    ]
    for r in report["loss"]:
        lines.append(f"| {r['loss']} | {_us(r['native_s'])} | {_us(r['manual_s'])} | {ratio_cell(r)} |")
    lines += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--cpu-time", action="store_true", help="time with the process's CPU time instead of wall time")
    p.add_argument("--quick", action="store_true", help="few short rounds: a smoke run, noisy figures")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    start = time.perf_counter()
    report = measure(rounds, 0.005 if args.quick else 0.02, timer=time.process_time if args.cpu_time else timer_fn)
    report.update(
        command="python -m benchmarks.overhead " + " ".join(sys.argv[1:] if argv is None else argv),
        rounds=rounds,
        clock="process CPU time" if args.cpu_time else "wall time",
        env=env_info(torch.device("cpu")),
        wall_s=time.perf_counter() - start,
    )
    write_report(report, args.out, "overhead_cpu" + ("-cputime" if args.cpu_time else ""), to_markdown)
    print(to_markdown(report))
    return report


if __name__ == "__main__":
    main()
