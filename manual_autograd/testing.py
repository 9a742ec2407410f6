"""Gradient checking for your own ``torch.autograd.Function``: is the backward the forward's derivative?

:func:`check_function` runs what a hand-written backward should pass before it trains anything:

* ``torch.autograd.gradcheck`` (and ``gradgradcheck`` when asked) on the whole Jacobian;
* a shape check: each gradient ``backward`` returns has its input's shape (the engine would
  otherwise sum a broadcastable one away silently, or fail with a message about "index 0");
* a centred finite-difference check ``(L(x + h) − L(x − h)) / 2h`` of ``L = Σ v·fn(x)`` (random
  ``v``) on a random subset of each input's entries, compared with the analytic gradient;

and reports, per input, the relative error ``‖analytic − numeric‖ / ‖numeric‖`` and the
best-fit ratio ``analytic / numeric`` with a diagnosis of the usual mistakes: a ratio of about
2 (relative error about 1) or any other constant is a missing factor; about 0.5 is half the
gradient; a gradient that is zero or ``None`` is no gradient arriving; one not proportional to the
true one (often a huge error) is the wrong operation; one right on some entries and wrong on the
others is conditional logic at a boundary.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["check_function", "CheckResult", "InputReport"]


@dataclass
class InputReport:
    """What the checks found for one differentiable input.

    Attributes:
        index: position among the arguments of ``fn``.
        name: the argument's name where ``fn``'s signature gives one, else ``'input{index}'``.
        shape: the input's shape.
        grad_shape: the shape of the gradient ``backward`` returned (``None``: no gradient).
        checked: entries compared with finite differences.
        wrong: how many of them are outside ``atol + rtol·|numeric|``.
        rel_error: ``‖analytic − numeric‖ / ‖numeric‖`` over the checked entries.
        ratio: best-fit ``analytic / numeric`` (``⟨a, n⟩ / ⟨n, n⟩``) over the checked entries.
        kind: ``'ok'``, ``'shape'``, ``'no_gradient'``, ``'missing_factor'``, ``'half_gradient'``,
            ``'wrong_op'``, ``'boundary'`` or ``'error'``.
        diagnosis: a sentence saying what is wrong and what usually causes it.
        wrong_entries: flat indices of the entries found wrong (at most 10).
    """

    index: int
    name: str
    shape: Tuple[int, ...]
    grad_shape: Optional[Tuple[int, ...]] = None
    checked: int = 0
    wrong: int = 0
    rel_error: float = float("nan")
    ratio: float = float("nan")
    kind: str = "ok"
    diagnosis: str = "ok"
    wrong_entries: List[int] = field(default_factory=list)


@dataclass
class CheckResult:
    """The outcome of :func:`check_function`; true when every check passed. ``str()`` reads as a report."""

    name: str
    inputs: List[InputReport]
    gradcheck: Optional[bool] = None
    gradcheck_message: str = ""
    gradgradcheck: Optional[bool] = None
    gradgradcheck_message: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.gradcheck is not False
            and self.gradgradcheck is not False
            and all(r.kind == "ok" for r in self.inputs)
        )

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"check_function({self.name}): {'passed' if self.ok else 'FAILED'}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for label, ok, msg in (
            ("gradcheck", self.gradcheck, self.gradcheck_message),
            ("gradgradcheck", self.gradgradcheck, self.gradgradcheck_message),
        ):
            if ok is not None:
                first = msg.strip().splitlines()[0].rstrip(",") if msg.strip() else ""
                lines.append(f"  {label}: {'passed' if ok else 'failed'}" + (f" ({first})" if first and not ok else ""))
        if self.inputs:
            head = ("input", "shape", "grad shape", "wrong/checked", "rel. error", "ratio", "diagnosis")
            rows = [
                (
                    r.name,
                    str(tuple(r.shape)),
                    "None" if r.grad_shape is None else str(tuple(r.grad_shape)),
                    f"{r.wrong}/{r.checked}",
                    f"{r.rel_error:.3g}",
                    f"{r.ratio:.3g}",
                    r.diagnosis,
                )
                for r in self.inputs
            ]
            widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
            for row in (head, *rows):
                lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        return "\n".join(lines)


def _resolve(fn) -> Tuple[Callable, Optional[type], str, List[str]]:
    """The callable to run, the Function class behind it (if any), a display name, arg names."""
    cls = None
    if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
        cls = fn
    elif getattr(fn, "__name__", None) == "apply" and isinstance(getattr(fn, "__self__", None), type):
        if issubclass(fn.__self__, torch.autograd.Function):
            cls = fn.__self__
    if cls is not None:
        try:
            params = list(inspect.signature(cls.forward).parameters)
        except (TypeError, ValueError):
            params = []
        if params and params[0] == "ctx":  # old style forward(ctx, ...)
            params = params[1:]
        return cls.apply, cls, cls.__name__, params
    if not callable(fn):
        raise TypeError(f"check_function(): argument 'fn' must be a callable or an autograd.Function, not {type(fn).__name__}")
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return fn, None, getattr(fn, "__qualname__", type(fn).__name__), params


def _outputs(out) -> List[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _objective(outs: Sequence[Any], vs: Sequence[Optional[Tensor]]) -> Tensor:
    """``L = Σ_k ⟨v_k, out_k⟩`` over the differentiable outputs."""
    total = None
    for o, v in zip(outs, vs):
        if v is not None:
            term = (o.to(v.dtype) * v).sum()
            total = term if total is None else total + term
    return total


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _diagnose(a: Tensor, n: Tensor, x: Tensor, idx: Tensor, atol: float, rtol: float, rep: InputReport) -> None:
    """Fill ``rep``'s error figures and diagnosis from analytic ``a`` and numeric ``n`` entries."""
    nn_ = torch.linalg.vector_norm(n).item()
    na = torch.linalg.vector_norm(a).item()
    diff = torch.linalg.vector_norm(a - n).item()
    rep.rel_error = diff / nn_ if nn_ > 0 else (0.0 if na == 0 else float("inf"))
    rep.ratio = (torch.dot(a, n) / torch.dot(n, n)).item() if nn_ > 0 else float("nan")
    wrong = (a - n).abs() > atol + rtol * n.abs()
    zero = n.abs() <= atol  # entries where the true gradient is 0
    rep.wrong = int(wrong.sum())
    rep.wrong_entries = idx[wrong][:10].tolist()
    err = f"relative error {rep.rel_error:.3g}"
    if rep.wrong == 0:
        return
    if na <= atol * max(1, a.numel()) ** 0.5 and nn_ > 0:
        rep.kind = "no_gradient"
        rep.diagnosis = f"no gradient arriving: backward returns zeros where the true gradient is not ({err})"
        return
    # Some entries right and others wrong: right where the true gradient is nonzero, or a
    # gradient where it is 0 beside entries correctly 0 (a mask or branch in the wrong place).
    right = ~wrong
    if (right & ~zero).any() or ((wrong & zero).any() and (right & zero).any()):
        xs = x[wrong]
        ra = a[wrong & (n.abs() > atol)]
        rn = n[wrong & (n.abs() > atol)]
        where = f"inputs in [{xs.min().item():.3g}, {xs.max().item():.3g}]"
        detail = f", ratio there {(torch.dot(ra, rn) / torch.dot(rn, rn)).item():.3g}" if rn.numel() else ", true gradient 0 there"
        rep.kind = "boundary"
        rep.diagnosis = (
            f"only some entries wrong ({rep.wrong} of {rep.checked}, {where}{detail}): "
            f"conditional logic at a boundary ({err})"
        )
        return
    # All informative entries wrong: a constant factor, or not proportional at all?
    r = rep.ratio
    resid = torch.linalg.vector_norm(a - r * n).item() / max(na, 1e-300)
    if resid < 0.05 and abs(r) > 1e-3:
        if abs(r - 0.5) < 0.05:
            rep.kind = "half_gradient"
            rep.diagnosis = f"half the gradient: analytic = 0.5 × true, a factor 2 dropped, e.g. d(x²) = x ({err})"
        else:
            rep.kind = "missing_factor"
            rep.diagnosis = (
                f"a missing factor: analytic = {r:.3g} × true, e.g. a constant, 1/2, 1/n or a sign "
                f"applied wrongly ({err})"
            )
        return
    rep.kind = "wrong_op"
    size = "huge " if rep.rel_error > 10 else ""
    rep.diagnosis = (
        f"wrong operation: analytic not proportional to true ({size}{err}); check the derivative "
        f"formula, or whether the gradient arrives from the right output"
    )


def check_function(
    fn,
    *inputs,
    gradgrad: bool = False,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    entries: int = 32,
    seed: int = 0,
    double: bool = True,
    raise_exception: bool = False,
    **gradcheck_kwargs,
) -> CheckResult:
    """Check a hand-written backward against finite differences and say what is wrong with it.

    Args:
        fn: a ``torch.autograd.Function`` subclass, its ``apply``, or any callable of tensors.
        *inputs: the arguments of ``fn``. Tensors with ``requires_grad`` are checked (all
            floating-point tensors when none has it); other arguments pass through unchanged.
        gradgrad: also run ``torch.autograd.gradgradcheck``. Default: ``False``
        eps: finite-difference step. Default: ``1e-6``
        atol: absolute tolerance, for gradcheck and per checked entry. Default: ``1e-5``
        rtol: relative tolerance, likewise. Default: ``1e-3``
        entries: how many entries of each input the finite-difference check samples (all when the
            input has fewer). Default: ``32``
        seed: seed of the sampled entries and of the output weights ``v``. Default: ``0``
        double: check on float64 copies of floating-point inputs (finite differences in float32
            are too coarse to tell a bug from rounding). Default: ``True``
        raise_exception: raise ``AssertionError`` with the report when a check fails. Default: ``False``
        **gradcheck_kwargs: passed on to ``gradcheck`` / ``gradgradcheck`` (e.g. ``fast_mode``).

    Returns:
        A :class:`CheckResult`: true when every check passed; ``print`` it for the report.

    Examples::

        >>> class Square(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         ctx.save_for_backward(x)
        ...         return x * x
        ...     @staticmethod
        ...     def backward(ctx, grad_out):
        ...         (x,) = ctx.saved_tensors
        ...         return grad_out * x  # bug: should be 2 x
        >>> print(check_function(Square, torch.randn(5)))
        check_function(Square): FAILED
          gradcheck: failed (GradcheckError: Jacobian mismatch for output 0 with respect to input 0)
          input  shape  grad shape  wrong/checked  rel. error  ratio  diagnosis
          x      (5,)   (5,)        5/5            0.5         0.5    half the gradient: analytic = 0.5 × true, ...
    """
    call, cls, name, params = _resolve(fn)
    for arg, val in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if not (isinstance(val, (int, float)) and val >= 0) or (arg == "eps" and val == 0):
            raise ValueError(f"check_function(): expected '{arg}' to be a {'positive' if arg == 'eps' else 'non-negative'} number, got {val!r}")
    if not (isinstance(entries, int) and entries > 0):
        raise ValueError(f"check_function(): expected 'entries' to be a positive int, got {entries!r}")

    # float64 leaf copies; which inputs are checked
    any_grad = any(isinstance(x, Tensor) and x.requires_grad for x in inputs)
    xs, checked = [], []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor):
            floating = x.is_floating_point() or x.is_complex()
            req = x.requires_grad if any_grad else floating
            y = x.detach()
            if double and x.is_floating_point():
                y = y.to(torch.float64)
            y = y.clone().requires_grad_(req)
            if req:
                checked.append(i)
            xs.append(y)
        else:
            xs.append(x)
    names = [params[i] if i < len(params) else f"input{i}" for i in range(len(xs))]
    reports = {i: InputReport(index=i, name=names[i], shape=tuple(xs[i].shape)) for i in checked}
    result = CheckResult(name=name, inputs=list(reports.values()))
    if not checked:
        result.error = "no input is a floating-point tensor; nothing to check"
        return _finish(result, raise_exception)

    gen = torch.Generator().manual_seed(seed)

    def fresh():  # clones, so an in-place fn cannot corrupt the point of evaluation
        return [x.detach().clone() if isinstance(x, Tensor) else x for x in xs]

    # ---- analytic gradients --------------------------------------------------------------
    try:
        outs = _outputs(call(*xs))
    except Exception as e:  # the user's forward: report, do not crash
        result.error = f"forward raised {_first_line(e)}"
        return _finish(result, raise_exception)
    vs = [
        torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)
        if isinstance(o, Tensor) and o.requires_grad and (o.is_floating_point() or o.is_complex())
        else None
        for o in outs
    ]
    if all(v is None for v in vs):
        result.error = "no output requires grad: the forward detached its result (no gradient can arrive)"
        for r in reports.values():
            r.kind, r.diagnosis = "no_gradient", "no gradient arriving: no output requires grad"
        return _finish(result, raise_exception)

    # Shape check on backward's raw return, before the engine sums or rejects a wrong shape.
    raw = None
    node = next(o.grad_fn for o, v in zip(outs, vs) if v is not None)
    if cls is not None and hasattr(node, "_forward_cls"):
        try:
            grads_in = [
                v if v is not None else (torch.zeros_like(o) if isinstance(o, Tensor) else None)
                for o, v in zip(outs, vs)
                if isinstance(o, Tensor)
            ]
            raw = _outputs(node.apply(*grads_in))
        except Exception:  # fall back on the engine's view below
            raw = None
    if raw is not None:
        for i, r in reports.items():
            g = raw[i] if i < len(raw) else None
            if isinstance(g, Tensor):
                r.grad_shape = tuple(g.shape)
                if g.shape != xs[i].shape:
                    r.kind = "shape"
                    r.diagnosis = f"wrong gradient shape: backward returns {r.grad_shape} for an input of shape {r.shape}"

    analytic: List[Optional[Tensor]] = [None] * len(xs)
    try:
        gs = torch.autograd.grad(
            [o for o, v in zip(outs, vs) if v is not None],
            [xs[i] for i in checked],
            [v for v in vs if v is not None],
            allow_unused=True,
        )
        for i, g in zip(checked, gs):
            analytic[i] = g
            if raw is None and g is not None:
                reports[i].grad_shape = tuple(g.shape)
    except RuntimeError as e:
        msg = _first_line(e)
        if "invalid gradient" in msg or "incorrect number of gradients" in msg:
            for r in reports.values():
                if r.kind == "ok" and ("invalid gradient" not in msg or f"index {r.index}" in msg or len(reports) == 1):
                    r.kind, r.diagnosis = "shape", f"wrong gradient shape: {msg}"
        else:
            result.error = f"backward raised {msg}"
        for r in reports.values():
            if r.kind == "ok":
                r.kind, r.diagnosis = "error", f"backward raised {msg}"

    # ---- finite differences on a sample of entries ----------------------------------------
    with torch.no_grad():
        for i, rep in reports.items():
            if rep.kind in ("shape", "error"):
                continue
            x = xs[i]
            numel = x.numel()
            idx = torch.arange(numel) if numel <= entries else torch.randperm(numel, generator=gen)[:entries].sort().values
            num = torch.empty(len(idx), dtype=torch.float64)
            for k, j in enumerate(idx.tolist()):
                vals = []
                for step in (eps, -eps):
                    args = fresh()
                    args[i].view(-1)[j] += step
                    vals.append(_objective(_outputs(call(*args)), vs))
                num[k] = float((vals[0] - vals[1]) / (2 * eps))
            rep.checked = len(idx)
            g = analytic[i]
            if g is None:
                rep.rel_error, rep.ratio = (1.0 if num.abs().max() > 0 else 0.0), 0.0
                bad = num.abs() > atol
                rep.wrong = int(bad.sum())
                rep.wrong_entries = idx[bad][:10].tolist()
                if rep.wrong:
                    rep.kind = "no_gradient"
                    rep.diagnosis = "no gradient arriving: backward returns None for an input the output depends on"
                continue
            a = g.detach().reshape(-1)[idx].to(torch.float64).cpu()
            _diagnose(a, num, x.detach().reshape(-1)[idx].to(torch.float64).cpu(), idx, atol, rtol, rep)

    # ---- torch's own checks ------------------------------------------------------------------
    kw = dict(eps=eps, atol=atol, rtol=rtol, **gradcheck_kwargs)
    result.gradcheck, result.gradcheck_message = _run_check(torch.autograd.gradcheck, call, fresh, checked, kw)
    if gradgrad:
        result.gradgradcheck, result.gradgradcheck_message = _run_check(
            torch.autograd.gradgradcheck, call, fresh, checked, kw
        )
    if result.gradcheck is False:  # the sample may have missed what the full Jacobian caught
        for r in reports.values():
            if r.kind == "ok" and f"input {checked.index(r.index)}" in result.gradcheck_message:
                r.kind = "boundary"
                r.diagnosis = (
                    "gradcheck finds wrong entries the sample missed: conditional logic at a "
                    "boundary (raise 'entries' to locate them)"
                )
    return _finish(result, raise_exception)


def _run_check(check, call, fresh, checked, kw) -> Tuple[bool, str]:
    args = fresh()
    for i in checked:
        args[i].requires_grad_(True)
    try:
        check(call, tuple(args), raise_exception=True, **kw)
        return True, ""
    except Exception as e:  # GradcheckError, or the user's backward raising
        return False, f"{type(e).__name__}: {e}".strip()


def _finish(result: CheckResult, raise_exception: bool) -> CheckResult:
    if raise_exception and not result.ok:
        raise AssertionError(str(result))
    return result
