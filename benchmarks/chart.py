"""The ratios of a ``python -m benchmarks`` report as a PNG: saved bytes and step time, manual / native.

Drawn from the report's JSON alone, so a committed report can be redrawn without measuring
(``python -m benchmarks --from-json benchmarks/results/cpu.json``). matplotlib is imported here
only, when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path


def draw_ratios(report: dict, path: Path) -> Path:
    """Write a horizontal bar chart of each row's step-time ratio (with its interquartile range)
    and saved-bytes ratio to ``path``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["name"] for r in rows]
    step = [r["step"]["ratio"] for r in rows]
    err = [
        [r["step"]["ratio"] - r["step"]["ratio_q1"] for r in rows],
        [r["step"]["ratio_q3"] - r["step"]["ratio"] for r in rows],
    ]
    saved = [r["saved_ratio"] for r in rows]
    y = list(range(len(rows)))
    h = 0.38
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6), dpi=100)
    ax.barh([i - h / 2 for i in y], step, h, xerr=err, capsize=2, label="training step time", color="#4c72b0")
    ax.barh([i + h / 2 for i in y], saved, h, label="bytes saved for backward", color="#55a868")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("manual_autograd / torch.nn (1 = the same; lower is better)")
    env = report["env"]
    ax.set_title(
        f"{env['device_name']}, {env['threads']} thread(s), torch {env['torch']}, {env['date']}\n"
        f"step: median of {report['rounds']} interleaved rounds, bar = interquartile range",
        fontsize=8,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
