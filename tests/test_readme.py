"""The README is a front door (size, links), and its headline table is what the generator writes
from the committed results files, so it cannot go stale; the benchmark's chart is drawn."""

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import headline
from benchmarks.__main__ import main as bench_main
from benchmarks.chart import draw_ratios

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def test_readme_is_at_most_16000_characters():
    assert len(README.read_text()) <= 16_000


def test_readme_headline_is_what_the_committed_results_give():
    text = README.read_text()
    assert headline.splice(text, headline.render()) == text, "run: python -m benchmarks.headline"
    assert headline.main(["--check"]) == 0


def test_readme_links_resolve():
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.exists(), f"{path.name}: broken link {target}"


def _fake_results(tmp_path, fits=None):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    shutil.copy(RESULTS / "cpu.json", results / "cpu.json")
    if fits is not None:
        (results / "fits_cpu.json").write_text(json.dumps(fits))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{headline.START}\nold\n{headline.END}\n\nafter\n")
    return results, readme


def test_headline_without_fits_file_has_only_benchmark_rows(tmp_path):
    results, readme = _fake_results(tmp_path)
    assert headline.main(["--readme", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{headline.END}\n\nafter\n")
    assert "accuracy" not in text and "fits_cpu" not in text
    cpu = json.loads((results / "cpu.json").read_text())
    leaky = next(r for r in cpu["rows"] if r["name"] == "MLP 784-1024-1024-10 leaky_relu, b256")
    assert f"[{leaky['saved_ratio']:.2f}](benchmarks/results/cpu.json)" in text
    assert f"[{leaky['step']['ratio']:.2f}](benchmarks/results/cpu.json)" in text
    assert headline.main(["--readme", str(readme), "--results", str(results), "--check"]) == 0
    readme.write_text(text.replace("KiB", "kB", 1))
    assert headline.main(["--readme", str(readme), "--results", str(results), "--check"]) == 1


def test_headline_reads_the_fits_file(tmp_path):
    run = {"config": "configs/mnist.yaml", "epochs": 8, "steps": 1720, "device": "cpu"}
    fits = {"env": {}, "runs": [
        {**run, "impl": "manual", "test_acc": 0.9857, "fit_seconds": 24.1},
        {**run, "impl": "torch", "test_acc": 0.9851, "fit_seconds": 22.0},
        {**run, "config": "configs/seed.yaml", "epochs": 20, "impl": "manual", "test_acc": 0.9818, "fit_seconds": 26.5},
    ]}
    results, readme = _fake_results(tmp_path, fits)
    block = headline.render(results, tmp_path)
    link = "(benchmarks/results/fits_cpu.json)"
    assert f"| test accuracy, `configs/mnist.yaml`, 8 epochs, cpu | [98.57 %]{link} | [98.51 %]{link} |  |" in block
    assert f"| fit time, `configs/mnist.yaml`, 8 epochs, cpu | [24.1 s]{link} | [22.0 s]{link} |  |" in block
    assert f"| test accuracy, `configs/seed.yaml`, 20 epochs, cpu | [98.18 %]{link} |  |  |" in block
    assert block.index("accuracy") < block.index("training step")


def test_headline_needs_the_markers(tmp_path):
    with pytest.raises(ValueError, match="headline:start"):
        headline.splice("no markers here", "x")


def _tiny_report():
    def ratio(r):
        return {"native_s": 1e-3, "manual_s": r * 1e-3, "ratio": r, "ratio_q1": r - 0.05, "ratio_q3": r + 0.05, "rounds": 3}

    rows = [
        {"name": "relu, b8", "group": "op", "ratio_on": "total", "step": ratio(1.4), "forward": ratio(1.2),
         "native_saved": {"act": 64, "input": 0, "tensors": 1}, "manual_saved": {"act": 64, "input": 0, "tensors": 1},
         "saved_ratio": 1.0, "native_peak": None, "manual_peak": None},
        {"name": "MLP, b8", "group": "model", "ratio_on": "act", "step": ratio(1.05), "forward": ratio(1.0),
         "native_saved": {"act": 128, "input": 32, "tensors": 3}, "manual_saved": {"act": 64, "input": 32, "tensors": 2},
         "saved_ratio": 0.5, "native_peak": None, "manual_peak": None},
    ]
    env = {"device": "cpu", "device_name": "test", "threads": 1, "torch": "x", "python": "3", "date": "today"}
    return {"command": "python -m benchmarks", "rounds": 3, "clock": "wall time", "env": env, "rows": rows,
            "relu_cache": [], "wall_s": 1.0}


def test_chart_is_a_png(tmp_path):
    path = draw_ratios(_tiny_report(), tmp_path / "sub" / "cpu.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_from_json_redraws_markdown_and_chart_without_measuring(tmp_path):
    report = _tiny_report()
    src = tmp_path / "cpu.json"
    src.write_text(json.dumps(report))
    assert bench_main(["--from-json", str(src)]) == report
    assert "| MLP, b8 |" in (tmp_path / "cpu.md").read_text()
    assert (tmp_path / "cpu.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(src.read_text()) == report  # the measurements are not rewritten
