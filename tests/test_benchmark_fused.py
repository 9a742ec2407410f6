"""``benchmarks.fused``'s rows for torch's own chunked op: they run and report (timings unchecked)."""

import torch

from benchmarks.fused import lce_fns, torch_chunked_rows


def test_torch_chunked_rows_run_and_report():
    rows = torch_chunked_rows(torch.device("cpu"), 1, 0.001, N=16, in_features=8, C=64)
    x = torch.zeros(1, 1)
    chunked = [name for name in lce_fns(x, x, torch.zeros(1, dtype=torch.long)) if name not in ("native", "manual")]
    assert [r["name"] for r in rows] == chunked  # none on a torch without linear_cross_entropy
    assert all(r["step"]["ratio"] > 0 and r["live_peak"] > 0 and r["saved"]["act"] >= 0 for r in rows)
