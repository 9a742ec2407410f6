"""The package's layout: one file per op, dependencies one way (no import cycle), the public API,
and the Function base's visible forward-mode hook."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import manual_autograd as ma

PKG = Path(ma.__file__).parent
OPS = ["linear", "relu", "leaky_relu", "gelu", "silu", "cross_entropy", "activation_linear", "linear_cross_entropy", "softmax", "sigmoid", "tanh", "mse_loss"]
FUNCTIONS = [
    "LinearFunction", "ReLUFunction", "LeakyReLUFunction", "GELUFunction", "SiLUFunction",
    "CrossEntropyFunction", "ActivationLinearFunction", "LinearCrossEntropyFunction",
    "SoftmaxFunction", "SigmoidFunction", "TanhFunction", "MSELossFunction",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """The package's modules that ``path`` imports when it is imported (module level, not in functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:  # top-level statements only: lazy imports do not cycle
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (PKG.parent / sub.replace(".", "/") / "__init__.py").exists() else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("manual_autograd"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("manual_autograd"))
    found.discard(name)
    return found


def test_no_module_imports_itself_through_a_cycle():
    # (a submodule's own package is not an edge: it is in sys.modules, initialising, before the submodule runs)
    graph = {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    return path + [dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, path + [dep]))
        return None

    cycles = [c for c in (cycle_from(m) for m in graph) if c]
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_imports_first_in_a_fresh_interpreter():
    # a cycle shows up as an ImportError (partially initialised module) when its far end is imported first
    mods = sorted(_module_name(p) for p in PKG.rglob("*.py") if p.name != "__init__.py")
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    [sys.modules.pop(k) for k in list(sys.modules) if k.startswith('manual_autograd')]\n    importlib.import_module(m)\n"
    subprocess.run([sys.executable, "-c", code, *mods], check=True, cwd=PKG.parent, timeout=300)


def test_one_file_per_op_and_no_old_modules():
    assert sorted(p.stem for p in (PKG / "ops").glob("*.py")) == sorted(["__init__", "base", *OPS])
    for gone in ("function", "fused", "fused_nn"):
        assert not (PKG / f"{gone}.py").exists()


def test_public_api():
    for name in FUNCTIONS + ["Function"]:
        assert getattr(ma.ops, name) is getattr(ma, name, getattr(ma.ops, name))
    for name in ("functional", "nn", "convert", "revert", "ledger", "Ledger", "testing", "check_function", "health",
                 "HealthMonitor"):
        assert hasattr(ma, name)
    mask = torch.rand(3, 11) > 0.5
    packed = ma.ops.pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 5
    assert torch.equal(ma.ops.unpack_bits(packed, mask.shape), mask)


def test_one_activation_registry():
    assert list(ma.nn.ACTIVATIONS) == list(ma.ops.ACTIVATIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_forward_ad_hook_is_the_twins_jvp_and_no_op_defines_jvp(name):
    cls = getattr(ma.ops, name)
    assert "jvp" not in cls.__dict__  # torch.compile refuses a Function that defines jvp
    hook = cls.__dict__.get("forward_ad")
    for twin in (cls._eager, cls._func):
        assert twin.backward is cls.backward
        if hook is not None:
            assert twin.jvp is hook.__func__
        else:
            assert "jvp" not in twin.__dict__


def test_a_subclass_that_defines_jvp_is_refused():
    with pytest.raises(TypeError, match="forward_ad"):

        class Bad(ma.ops.Function):  # noqa: F841
            @staticmethod
            def forward(x):
                return x * 2

            @staticmethod
            def setup_context(ctx, inputs, out):
                pass

            @staticmethod
            def backward(ctx, grad_out):
                return grad_out * 2

            @staticmethod
            def jvp(ctx, x_t):
                return x_t * 2


def test_every_public_function_checks_through_checks_module():
    # functional.py is thin: each public function calls manual_autograd.checks (or a public one that does)
    import inspect

    import manual_autograd.functional as F

    public = set(F.__all__)
    for name in F.__all__:
        src = inspect.getsource(getattr(F, name))
        calls = {n.func.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "checks." in src or calls & (public - {name}), f"{name} runs no check from manual_autograd.checks"
    assert "def _check" not in inspect.getsource(F)
