"""check_function on correct Functions and on planted bugs of each kind it diagnoses."""

import pytest
import torch

import manual_autograd as ma
from manual_autograd.testing import CheckResult, check_function


def function(forward, backward, name):
    """A one-input Function ``forward(x)`` whose backward is ``backward(x, grad_out)``."""

    def fwd(ctx, x):
        ctx.save_for_backward(x)
        return forward(x)

    def bwd(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return backward(x, grad_out)

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})


relu = lambda x: x.clamp_min(0)  # noqa: E731
square = lambda x: x * x  # noqa: E731

CORRECT = function(square, lambda x, g: 2 * x * g, "Square")
PLANTED = {
    # bug name: (Function, expected diagnosis kind, words the report must contain)
    "twice (missing 1/2)": (function(square, lambda x, g: 4 * x * g, "Square"), "missing_factor", "missing factor"),
    "missing factor 2": (function(square, lambda x, g: x * g, "Square"), "half_gradient", "half the gradient"),
    "cos for sin": (function(torch.sin, lambda x, g: -torch.sin(x) * g, "Sin"), "wrong_op", "wrong operation"),
    "zeros": (function(torch.sin, lambda x, g: torch.zeros_like(g), "Sin"), "no_gradient", "no gradient arriving"),
    "None": (function(torch.sin, lambda x, g: None, "Sin"), "no_gradient", "no gradient arriving"),
    "boundary": (function(relu, lambda x, g: g * (x > -0.5), "ReLU"), "boundary", "conditional logic at a boundary"),
    "summed shape": (function(square, lambda x, g: (2 * x * g).sum(0), "Square"), "shape", "wrong gradient shape"),
    "broadcast shape": (
        function(square, lambda x, g: (2 * x * g).expand(2, *x.shape), "Square"), "shape", "(2, 4, 6)"),
}

X = torch.linspace(-2.0, 2.0, 24).reshape(4, 6)  # entries on both sides of 0, away from it


def test_correct_function_passes():
    res = check_function(CORRECT, X, gradgrad=True)
    assert isinstance(res, CheckResult) and res.ok and bool(res)
    assert res.gradcheck is True and res.gradgradcheck is True
    (r,) = res.inputs
    assert (r.name, r.kind, r.checked, r.wrong, r.grad_shape) == ("x", "ok", 24, 0, (4, 6))
    assert r.rel_error < 1e-6 and r.ratio == pytest.approx(1.0, abs=1e-6)
    assert str(res).startswith("check_function(Square): passed")


@pytest.mark.parametrize("bug", PLANTED)
def test_planted_bug_is_diagnosed(bug):
    fn, kind, words = PLANTED[bug]
    res = check_function(fn, X)  # does not raise
    assert not res.ok and res.gradcheck is False
    (r,) = res.inputs
    assert r.kind == kind, str(res)
    assert words in str(res)
    if kind == "missing_factor":
        assert r.ratio == pytest.approx(2.0, rel=1e-6) and r.rel_error == pytest.approx(1.0, rel=1e-6)
    if kind == "half_gradient":
        assert r.ratio == pytest.approx(0.5, rel=1e-6) and r.rel_error == pytest.approx(0.5, rel=1e-6)
    if kind == "no_gradient":
        assert r.rel_error == pytest.approx(1.0) and r.ratio == 0
    if kind == "boundary":  # the wrong entries are exactly those in (-0.5, 0]
        wrong = [i for i in range(24) if -0.5 < X.view(-1)[i] <= 0]
        assert r.wrong_entries == wrong and 0 < r.wrong < 24


def test_raise_exception():
    fn = PLANTED["missing factor 2"][0]
    with pytest.raises(AssertionError, match="half the gradient"):
        check_function(fn, X, raise_exception=True)
    check_function(CORRECT, X, raise_exception=True)


def test_boundary_outside_the_sample_is_caught_by_gradcheck():
    # wrong only on the one entry in [-0.3, 0.3] with x near 0: the sample of 4 entries misses it
    fn = function(relu, lambda x, g: g * (x > -0.1), "ReLU")
    x = torch.full((40,), -1.0)
    x[17] = -0.05
    res = check_function(fn, x, entries=4, seed=1)
    (r,) = res.inputs
    assert 17 not in r.wrong_entries and res.gradcheck is False
    assert r.kind == "boundary" and "the sample missed" in r.diagnosis
    full = check_function(fn, x, entries=40).inputs[0]
    assert full.wrong_entries == [17] and full.kind == "boundary"


def test_library_functions_and_names():
    res = check_function(
        ma.LinearFunction, torch.randn(3, 4), torch.randn(5, 4, requires_grad=True), torch.randn(5, requires_grad=True)
    )
    assert res.ok and [r.name for r in res.inputs] == ["weight", "bias"]  # only the inputs that need grad
    res = check_function(ma.GELUFunction.apply, torch.randn(6), "tanh", gradgrad=True)
    assert res.ok and res.gradgradcheck is True
    # the negative-slope LeakyReLU returns a second, non-differentiable uint8 output
    assert check_function(ma.LeakyReLUFunction, torch.randn(3, 5), -0.1, False).ok
    # any callable of tensors
    assert check_function(lambda a, b: a * b.exp(), torch.randn(3), torch.randn(3)).ok


def test_multiple_inputs_each_reported():
    def bwd(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * a * 3  # the second is 3 × too big

    def fwd(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    Mul = type("Mul", (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})
    res = check_function(Mul, torch.randn(5), torch.randn(5))
    assert [r.kind for r in res.inputs] == ["ok", "missing_factor"]
    assert [r.name for r in res.inputs] == ["a", "b"] and res.inputs[1].ratio == pytest.approx(3.0)


def test_bad_arguments():
    with pytest.raises(TypeError, match="'fn' must be a callable or an autograd.Function, not int"):
        check_function(3, X)
    with pytest.raises(ValueError, match="'eps' to be a positive number, got 0"):
        check_function(CORRECT, X, eps=0)
    with pytest.raises(ValueError, match="'entries' to be a positive int, got 0"):
        check_function(CORRECT, X, entries=0)
    res = check_function(CORRECT, torch.arange(3))
    assert not res.ok and "nothing to check" in str(res)
    res = check_function(lambda x: x.detach() * 2, X)
    assert not res.ok and res.inputs[0].kind == "no_gradient"
