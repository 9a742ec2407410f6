"""``benchmarks.attention`` runs in quick mode and reports what the op keeps (timings unchecked)."""

import json

import torch

from benchmarks.attention import main, saved_rows


def test_saved_rows_keep_out_and_one_lse_per_row():
    r = saved_rows(torch.device("cpu"), b=1, h=2, L=16, d=4)
    s = r["saved"]
    assert s["manual"]["act"] == 4 * 2 * 16 * (4 + 1)  # the output and the lse
    assert s["math"]["act"] >= 4 * 2 * 16 * 16  # the (L, S) probabilities
    assert s["manual"]["input"] == s["math"]["input"] == 3 * 4 * 2 * 16 * 4
    assert r["ratios"]["sdpa"]["act"] <= 1.0 and r["ratios"]["math"]["act"] < 1.0


def test_quick_run_writes_the_report(tmp_path):
    report = main(["--quick", "--out", str(tmp_path), "--threads", "1", "--rounds", "1"])
    data = json.loads((tmp_path / "attention_cpu.json").read_text())
    assert [r["L"] for r in data["peak"]] == [32, 64]
    assert all(r[name] > 0 for r in data["peak"] for name in ("manual", "math", "sdpa"))
    assert data["time"]["sdpa"]["ratio"] > 0 and data["time"]["math"]["ratio"] > 0
    md = (tmp_path / "attention_cpu.md").read_text()
    assert "Peak memory" in md and "Saved for backward" in md
    assert report["saved"]["ratios"]["sdpa"]["act"] <= 1.0
