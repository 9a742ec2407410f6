"""``python -m benchmarks --module transformer``: every row runs (timings unchecked) and the saved
bytes, which are deterministic, meet the transformer-layers issue's targets."""

import torch

from benchmarks.common import measure_case
from benchmarks.transformer import cases

CPU = torch.device("cpu")


def test_rows_run_and_meet_the_saved_targets():
    rows = [measure_case(c, CPU, rounds=1, min_run_time=0.001) for c in cases(CPU, tokens=8, d=12, width=16, vocab=20)]
    assert len(rows) == 12
    for r in rows:
        assert r["step"]["ratio"] > 0 and r["forward"]["ratio"] > 0
        target = r.get("saved_target")
        assert target is None or r["saved_ratio"] <= target, r["name"]
    saved = {r["name"].split(",")[0]: r["saved_ratio"] for r in rows}
    assert saved["dropout p=0.1"] <= 1 / 32 + 0.01  # 1 bit per element beside torch's 4-byte CPU mask
    assert saved["rms_norm 12"] < 1 and saved["swiglu"] < 1 and saved["gated MLP 12-32 silu"] < 0.55
