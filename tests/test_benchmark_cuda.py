"""The CUDA benchmark cases (#27) built small on the CPU, the kernel-launch counter and the report's
launch table and target summary. Timings are not asserted: they live in ``python -m benchmarks``."""

import json
from pathlib import Path

import pytest
import torch

from benchmarks import cuda_cases
from benchmarks.__main__ import main as bench_main, target_lines, to_markdown
from benchmarks.common import IMPLS, kernel_launches, measure_case

SINGLE_THREAD = True
CPU = torch.device("cpu")
TINY = {"act": (6, 10), "ce": (5, 7), "mlp": (12, 9, 4), "mlp_batch": 3}
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_cuda_cases_are_skipped_off_cuda():
    assert cuda_cases.cases(CPU, quick=True) == []


def test_every_cuda_case_runs_a_step_of_each_impl_on_cpu():
    built = cuda_cases.build(CPU, TINY)
    names = [c.name for c in built]
    assert len(names) == len(set(names)) == 5 * len(cuda_cases.ACT_DTYPES) + len(cuda_cases.CE_DTYPES) + 2
    for case in built:
        for impl in IMPLS:
            run = case.build(impl)
            run.step()
            grads = [t.grad for t in [*run.params, *run.inputs] if t.requires_grad]
            assert grads and all(g is not None and torch.isfinite(g.float()).all() for g in grads), case.name
        assert case.meta["step_target"] is not None


def test_cuda_cases_carry_the_issue_targets():
    meta = {c.name: c.meta for c in cuda_cases.build(CPU, TINY)}
    assert meta["silu (6, 10) bfloat16"]["peak_target"] == 1.00
    assert meta["cross_entropy (5, 7) float32"]["step_target"] == 0.90
    assert meta["MLP 12-9-4 gelu, b3"]["launch_target"] == 1.00


def test_launches_are_not_counted_off_cuda():
    ran = []
    assert kernel_launches(lambda: ran.append(1), CPU) is None
    assert ran == []
    row = measure_case(cuda_cases.build(CPU, TINY)[0], CPU, rounds=1, min_run_time=1e-4)
    assert "native_launches" not in row


def _row(name, native, manual, target):
    r = {"native_s": 1e-3, "manual_s": 1e-3, "ratio": 1.0, "ratio_q1": 1.0, "ratio_q3": 1.0, "rounds": 1}
    saved = {"act": 8, "input": 0, "tensors": 1}
    return {"name": name, "group": "model", "ratio_on": "act", "forward": r, "step": r, "native_saved": saved,
            "manual_saved": saved, "saved_ratio": 1.0, "native_peak": 100, "manual_peak": 120, "peak_ratio": 1.2,
            "step_target": 1.0, "peak_target": 1.0, "native_launches": native, "manual_launches": manual, "launch_target": target}


def test_launch_table_and_target_summary():
    env = {"device": "cuda", "device_name": "GPU", "threads": 1, "torch": "x", "python": "3", "date": "today"}
    report = {"command": "python -m benchmarks --device cuda", "rounds": 1, "clock": "wall time", "env": env,
              "rows": [_row("MLP a", 40, 30, 1.0), _row("MLP b", None, None, 1.0)], "relu_cache": [], "wall_s": 1.0}
    md = to_markdown(report)
    assert "| MLP a | 40 | 30 | 0.75 ✓ ≤1.00 |" in md
    assert "| MLP b | n/a | n/a | n/a |" in md
    assert "1.20 ✗ ≤1.00 |" in md  # the peak column carries its target
    lines = target_lines(report)
    assert lines[0] == "MLP a: step 1.00 ✓ ≤1.00; peak 1.20 ✗ ≤1.00; launches 0.75 ✓ ≤1.00"
    assert lines[1].endswith("launches n/a (≤1.00)")


def test_cpu_report_has_no_launch_table_and_targets_print(tmp_path, capsys):
    report = json.loads((RESULTS / "cpu.json").read_text())
    assert "Kernel launches" not in to_markdown(report)
    bench_main(["--targets", str(RESULTS / "cpu.json")])
    out = capsys.readouterr().out
    assert "MLP 784-1024-1024-10 relu, b256: step" in out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernel_launches_counts_each_kernel_of_a_step():
    d = torch.device("cuda")
    x = torch.randn(1024, device=d)

    def two():
        y = x * 2
        y.add_(1)

    assert kernel_launches(two, d) == 2
    assert kernel_launches(lambda: None, d) == 0
