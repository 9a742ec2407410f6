"""Measurement utilities shared by every benchmark module.

A benchmark *case* pits a native ``torch.nn`` implementation against the ``manual_autograd``
one on the same data. :class:`Case` holds a name, a group and ``build(impl)`` which, for
``impl`` in ``("native", "manual")``, returns an :class:`Impl`: three closures over the same
tensors (``forward``, ``record``, ``step``), the parameters and the model inputs.
:func:`measure_case` then times both (interleaved, :func:`time_ratio`), counts the bytes each
keeps for backward (:func:`saved_bytes`) and, on CUDA, the peak memory of a step.

Contract for extra benchmark modules (e.g. ``benchmarks/fused.py``): a module in this package
that defines ``cases(device: torch.device, quick: bool) -> list[Case]`` and is listed in
``benchmarks.__main__.EXTRA_MODULES`` is imported by ``python -m benchmarks`` (skipped when it
does not exist) and its cases are measured and tabulated with the built-in ones. Build cases
with :func:`training_case` (a model, a loss and a batch) or by hand with :class:`Impl`.

Saved bytes are *unique* bytes, counted by the library's ledger
(:func:`manual_autograd.ledger.record_saved`): tensors kept for backward, plus any tensor a
custom Function keeps as a ``ctx`` attribute, deduplicated by storage and counted at the
storage's full size. Storages of parameters are excluded; storages of model inputs are reported
apart (``input``), because the caller holds them anyway.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as timer_fn

from manual_autograd.ledger import record_saved

try:
    import resource  # POSIX: the process's page-fault counter
except ImportError:  # pragma: no cover - Windows
    resource = None

__all__ = [
    "Impl",
    "Case",
    "saved_bytes",
    "time_ratio",
    "peak_step_bytes",
    "kernel_launches",
    "training_case",
    "report_header",
    "op_case",
    "measure_case",
    "IMPLS",
]

IMPLS = ("native", "manual")


@dataclass
class Impl:
    """One implementation of a case, closed over its tensors.

    Attributes:
        forward: the forward pass alone, recorded by autograd as in training; returns the output.
        record: forward and loss, returning the tensor ``backward`` would start from (its graph
            is what :func:`saved_bytes` counts).
        step: a training step: zero the grads, forward, loss, backward.
        params: tensors excluded from saved bytes (they live anyway).
        inputs: model inputs and targets; their saved bytes are reported apart.
    """

    forward: Callable[[], Tensor]
    record: Callable[[], Tensor]
    step: Callable[[], None]
    params: Sequence[Tensor] = ()
    inputs: Sequence[Tensor] = ()


@dataclass
class Case:
    """A native-vs-manual comparison: ``build("native")`` and ``build("manual")`` give :class:`Impl`.

    ``ratio_on`` names the saved-bytes figure the ratio is taken on: ``"act"`` (activations,
    model inputs excluded; for models) or ``"total"`` (activations plus saved inputs; for an op
    alone, whose input *is* the activation a network would keep).
    """

    name: str
    group: str
    build: Callable[[str], Impl]
    ratio_on: str = "act"
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# saved memory


def saved_bytes(record: Callable[[], Tensor], exclude: Sequence[Tensor] = (), model_input=()) -> dict:
    """Unique bytes kept for backward by the graph ``record()`` builds (counted by
    :func:`manual_autograd.ledger.record_saved`, ``ctx`` attributes included).

    Args:
        record: runs a forward (and loss) with autograd on and returns the graph's root.
        exclude: tensors whose storages are not counted (parameters).
        model_input: a tensor or tensors whose storages are counted apart, as ``input``.

    Returns:
        ``{"act": bytes, "input": bytes, "tensors": number of saved tensors seen}``.
    """
    if isinstance(model_input, Tensor):
        model_input = (model_input,)
    with record_saved(keep_tensors=False) as saved:
        root = record()
    saved.add_ctx_tensors(root)
    act = saved.unique_bytes(exclude=[*exclude, *model_input])
    inp = saved.unique_bytes(only=model_input)
    return {"act": act, "input": inp, "tensors": len(saved)}


_WARM_DEVICES: set = set()


def peak_step_bytes(step: Callable[[], None], device: torch.device, leaves: Sequence[Tensor] = ()) -> Optional[int]:
    """CUDA only: ``max_memory_allocated`` during one step, above what was allocated before it.

    The ``.grad`` of ``leaves`` is cleared first: a step that frees gradients left by an earlier
    step (the other implementation's, on shared inputs) would otherwise be credited with them.
    The process's first matrix products on ``device`` run before the first measurement: cuBLAS
    allocates its workspace once, on first use, and that would land in whichever step came first.
    """
    if device.type != "cuda":
        return None
    for t in leaves:
        t.grad = None
    if str(device) not in _WARM_DEVICES:
        w = torch.ones(8, 8, device=device, requires_grad=True)
        torch.nn.functional.linear(w, w, w[0]).sum().backward()
        (w @ w).sum().backward()
        _WARM_DEVICES.add(str(device))
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def kernel_launches(step: Callable[[], None], device: torch.device) -> Optional[int]:
    """CUDA only: operations one ``step()`` puts on the GPU (kernels, memsets, copies), counted by
    ``torch.profiler`` (``ProfilerActivity.CUDA``) after one warm-up step; ``None`` elsewhere or
    where this torch's profiler cannot trace CUDA. The step is not run off CUDA."""
    from torch.profiler import ProfilerActivity, profile, supported_activities

    if device.type != "cuda" or ProfilerActivity.CUDA not in supported_activities():
        return None
    step()  # warm-up: lazy initialisation and first-call compiles are not the step's
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize(device)
    # user annotations are mirrored on the GPU timeline; they launch nothing
    return sum(
        1 for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
    )


# --------------------------------------------------------------------------------------------
# time


def time_ratio(
    native: Callable[[], object],
    manual: Callable[[], object],
    rounds: int = 20,
    min_run_time: float = 0.02,
    num_threads: Optional[int] = None,
    timer: Callable[[], float] = timer_fn,
) -> dict:
    """Time ``native`` and ``manual`` interleaved; return medians and the median per-round ratio.

    ``Timer.blocked_autorange`` first sizes a block (how many calls take ``min_run_time``) and
    warms both up; then each round times one block of each, alternating which goes first, so that
    drift in machine load hits both alike. The ratio manual/native is taken within each round;
    its median and quartiles are reported, with the median time per call of each and, where the
    OS counts them, the minor page faults per call over all timed blocks (``native_faults``,
    ``manual_faults``: first writes to freshly mapped memory, what a new buffer costs once the
    allocator has handed freed memory back to the system; they come in bursts, so a mean, not a
    median; ``None`` elsewhere).
    """
    num_threads = torch.get_num_threads() if num_threads is None else num_threads
    fns = {"native": native, "manual": manual}
    clocks = {k: _FaultClock(timer) for k in fns}
    timers = {k: Timer("fn()", globals={"fn": fn}, num_threads=num_threads, timer=clocks[k]) for k, fn in fns.items()}
    number = {k: t.blocked_autorange(min_run_time=min_run_time).number_per_run for k, t in timers.items()}
    times = {k: [] for k in fns}
    faults = {k: [] for k in fns}
    ratios = []
    for r in range(rounds):
        order = ("native", "manual") if r % 2 == 0 else ("manual", "native")
        for k in order:
            times[k].append(timers[k].timeit(number[k]).median)
            block = clocks[k].last_block()  # the timed block's, not its warm-up calls'
            if block is not None:
                faults[k].append(block)
        ratios.append(times["manual"][-1] / times["native"][-1])
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "native_s": statistics.median(times["native"]),
        "manual_s": statistics.median(times["manual"]),
        "ratio": statistics.median(ratios),
        "ratio_q1": q[0],
        "ratio_q3": q[2],
        "rounds": rounds,
        **{f"{k}_faults": sum(v) / (number[k] * len(v)) if v else None for k, v in faults.items()},
    }


def _minor_faults() -> Optional[int]:
    """The process's minor page faults so far, or ``None`` where the OS does not count them."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _FaultClock:
    """A ``Timer`` clock that also notes the page-fault count at each reading (after it), so the
    faults of the last timed block are the difference of the last two notes."""

    def __init__(self, clock: Callable[[], float]):
        self.clock, self.notes = clock, []

    def __call__(self) -> float:
        t = self.clock()
        self.notes.append(_minor_faults())
        return t

    def last_block(self) -> Optional[int]:
        start, end = self.notes[-2:]
        self.notes.clear()
        return None if end is None else end - start


# --------------------------------------------------------------------------------------------
# cases


def training_case(
    name: str,
    group: str,
    make_model: Callable[[str], torch.nn.Module],
    x: Tensor,
    target: Tensor,
    make_loss: Callable[[str], torch.nn.Module],
    ratio_on: str = "act",
    meta: Optional[dict] = None,
) -> Case:
    """A case from a model factory and a loss factory, each given ``"native"`` or ``"manual"``.

    Both implementations get a model with the same initial parameters (the manual model loads
    the native one's ``state_dict``) and the same ``x`` and ``target``.
    """
    models = {}

    def build(impl: str) -> Impl:
        model = make_model(impl).to(x.device)
        if "native" in models:
            model.load_state_dict(models["native"].state_dict())
        models[impl] = model
        loss_fn = make_loss(impl)
        params = list(model.parameters())

        def forward():
            return model(x)

        def record():
            return loss_fn(model(x), target)

        def step():
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), target).backward()

        return Impl(forward, record, step, params, (x, target))

    return Case(name, group, build, ratio_on, dict(meta or {}))


def measure_case(case: Case, device: torch.device, rounds: int, min_run_time: float, timer=timer_fn) -> dict:
    """Time and count one case; returns a JSON-ready row."""
    impls = {k: case.build(k) for k in IMPLS}
    row = {"name": case.name, "group": case.group, "ratio_on": case.ratio_on, **case.meta}
    for k, impl in impls.items():
        row[f"{k}_saved"] = saved_bytes(impl.record, impl.params, impl.inputs)
        row[f"{k}_peak"] = peak_step_bytes(impl.step, device, [*impl.params, *impl.inputs])
        if device.type == "cuda":
            row[f"{k}_launches"] = kernel_launches(impl.step, device)
    n, m = row["native_saved"], row["manual_saved"]
    if case.ratio_on == "total":
        num, den = m["act"] + m["input"], n["act"] + n["input"]
    else:
        num, den = m["act"], n["act"]
    row["saved_ratio"] = num / den if den else (1.0 if num == 0 else math.inf)
    if row["native_peak"] is not None:
        row["peak_ratio"] = row["manual_peak"] / row["native_peak"] if row["native_peak"] else None
    row["forward"] = time_ratio(impls["native"].forward, impls["manual"].forward, rounds, min_run_time, timer=timer)
    row["step"] = time_ratio(impls["native"].step, impls["manual"].step, rounds, min_run_time, timer=timer)
    return row


def op_case(
    name: str,
    native: Callable[..., Tensor],
    manual: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    params: Sequence[Tensor] = (),
    grad_out: Optional[Tensor] = None,
    group: str = "op",
    meta: Optional[dict] = None,
) -> Case:
    """One op alone: ``fn(*inputs, *params)``, backward from ``grad_out`` (or from a scalar output).

    Saved bytes are compared on the total (``ratio_on="total"``): for an op alone its input is
    the activation a network would keep.
    """
    args = tuple(inputs) + tuple(params)
    leaves = [t for t in args if t.requires_grad]

    def build(impl: str) -> Impl:
        fn = native if impl == "native" else manual

        def forward():
            return fn(*args)

        def step():
            for t in leaves:
                t.grad = None
            fn(*args).backward(grad_out)

        return Impl(forward, forward, step, tuple(params), tuple(inputs))

    return Case(name, group, build, "total", dict(meta or {}))


def env_info(device: torch.device) -> dict:
    """The machine and versions a report was measured on."""
    import manual_autograd

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "manual_autograd": manual_autograd.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def report_header(report: dict, rounds: str) -> list:
    """The first lines of every markdown report: machine, versions, ``rounds`` (how many interleaved
    rounds, in words), date, and the command that regenerates it."""
    env = report["env"]
    return [
        f"Device: {env['device_name']}, {env['threads']} thread(s); torch {env['torch']}, Python {env['python']}; "
        f"{rounds}; {env['date']}.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]


def ratio_cell(r: dict, digits: int = 2, bold: bool = False) -> str:
    """A :func:`time_ratio` result as a table cell: ``ratio [q1–q3]``, the ratio in bold if asked."""
    ratio = f"{r['ratio']:.{digits}f}"
    return f"{f'**{ratio}**' if bold else ratio} [{r['ratio_q1']:.{digits}f}–{r['ratio_q3']:.{digits}f}]"


def target_mark(value: float, target: Optional[float]) -> str:
    """`` ✓ ≤t`` or `` ✗ ≤t`` after a ratio that has a target ``t``; nothing if it has none."""
    return "" if target is None else f" {'✓' if value <= target else '✗'} ≤{target:.2f}"


def write_report(report: dict, out: Path, stem: str, to_markdown: Callable[[dict], str]) -> None:
    """Write ``report`` as ``out/stem.json`` and its markdown table as ``out/stem.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(to_markdown(report))
    print(f"wrote {out / stem}.md and .json in {report['wall_s']:.0f} s")
