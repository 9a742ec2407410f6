"""benchmarks/train_loop.py and benchmarks/fits.py: smoke runs on configs/tiny.yaml and small synthetic MNIST."""

from __future__ import annotations

import json

from test_train import TINY, tiny_root  # noqa: F401 (a fixture)

from benchmarks import fits, train_loop


def test_train_loop_writes_its_report(tiny_root, tmp_path):
    report = train_loop.main(["--config", TINY, "--data-root", str(tiny_root), "--rounds", "1", "--epochs", "2",
                              "--pieces", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "train_loop_cpu.json").read_text())
    assert saved["steps_per_epoch"] == report["steps_per_epoch"] == 12  # 384 training images, batch 32
    assert set(saved["median_epoch_s"]) == {"bare", "lightning", "floor", *train_loop.PIECES}
    assert saved["ratio_floor_over_bare"] > 0 and len(saved["epoch_s"]["floor"]) == 1
    assert saved["ratio_lightning_over_bare"] > 0 and len(saved["epoch_s"]["bare"]) == 1  # the warm-up epoch dropped
    assert len(saved["piece_ms_per_step"]) == len(train_loop.PIECES)
    md = (tmp_path / "train_loop_cpu.md").read_text()
    assert "Lightning / bare" in md and "| bare loop |" in md and "Lightning's floor / bare" in md


def test_fits_writes_the_headline_figures(tiny_root, tmp_path):
    fits.main(["--runs", f"{TINY}:manual", "--out", str(tmp_path), "--", "--data.root", str(tiny_root)])
    saved = json.loads((tmp_path / "fits_cpu.json").read_text())
    (run,) = saved["runs"]
    assert {"config", "impl", "test_acc", "fit_seconds", "epochs", "steps", "device"} <= set(run)
    assert run["impl"] == "manual" and run["device"] == "cpu" and run["steps"] == 12 and run["epochs"] == 1
    assert 0.5 < run["test_acc"] <= 1.0 and run["fit_seconds"] > 0
    assert saved["env"]["torch"] and "| `" in (tmp_path / "fits_cpu.md").read_text()
