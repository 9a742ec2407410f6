"""``python -m benchmarks.health_overhead`` runs on real MNIST and writes its report (timings unchecked)."""

import pytest
import torch

from benchmarks.health_overhead import main, to_markdown
from train import MNISTDataModule


def test_epoch_overhead_report_is_written(tmp_path):
    if MNISTDataModule(download=False).missing_files():
        pytest.skip("real MNIST missing; set MNIST_ROOT to the folder holding MNIST/raw")
    threads = torch.get_num_threads()
    try:
        report = main(["--rounds", "1", "--batches", "2", "--mode", "epoch", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # main() sets the process's thread count
    assert report["batches_per_epoch"] == 2 and report["median_cpu_ratio"] > 0 and report["median_wall_ratio"] > 0
    assert "median_step_ratio" not in report
    text = (tmp_path / "health_overhead_cpu.md").read_text()
    assert text == to_markdown(report) and "epoch of 2 batches, CPU time" in text
    assert (tmp_path / "health_overhead_cpu.json").exists()
