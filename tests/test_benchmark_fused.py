"""``benchmarks.fused``'s rows run and report (timings unchecked): the library's chunked loss
beside the unfused composition, and torch's own chunked op where this torch has it."""

import pytest
import torch
import torch.nn.functional as TF

from benchmarks.common import measure_case
from benchmarks.fused import lce_case, lce_fns, torch_chunked_rows

CPU = torch.device("cpu")
SHAPE = dict(N=16, in_features=8, C=64)


def test_library_chunked_loss_row_runs_and_keeps_no_logits():
    row = measure_case(lce_case(CPU, **SHAPE), CPU, rounds=1, min_run_time=0.001)
    assert row["step"]["ratio"] > 0 and row["forward"]["ratio"] > 0
    assert row["native_live_peak"] > 0 and row["manual_live_peak"] > 0
    n, m = row["native_saved"], row["manual_saved"]
    logits = SHAPE["N"] * SHAPE["C"] * 4
    # torch keeps the (N, C) log-softmax; the library the per-row logsumexp (inputs alike)
    assert n["act"] >= logits and m["act"] == SHAPE["N"] * 4 and m["input"] == n["input"]
    assert row["saved_ratio"] < 1


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="this torch has no F.linear_cross_entropy")
def test_torch_chunked_rows_run_and_report():
    rows = torch_chunked_rows(CPU, 1, 0.001, **SHAPE)
    x = torch.zeros(1, 1)
    chunked = [name for name in lce_fns(x, x, torch.zeros(1, dtype=torch.long)) if name not in ("native", "manual")]
    assert chunked and [r["name"] for r in rows] == chunked
    assert all(r["step"]["ratio"] > 0 and r["live_peak"] > 0 and r["saved"]["act"] >= 0 for r in rows)
