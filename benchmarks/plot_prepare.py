"""Plot benchmarks/results/prepare.json: wall time and peak memory against lines, one curve per engine.

python benchmarks/plot_prepare.py   # writes benchmarks/results/prepare.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script, run headless: not the product's plotting code
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    rows = json.loads((RESULTS / "prepare.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        done = sorted(
            (r for r in rows if r["engine"] == engine and r["seconds"]), key=lambda r: r["lines"]
        )
        if not done:
            continue
        x = [r["lines"] for r in done]
        axes[0].plot(x, [r["seconds"] for r in done], marker="o", label=engine)
        axes[1].plot(x, [r["peak_mb"] / 1024 for r in done], marker="o", label=engine)
    for ax, label in zip(
        axes, ["wall time (s)", "peak memory of the process tree (GB)"], strict=True
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("transaction lines")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    host = rows[0]["machine"]
    fig.suptitle(
        f"Data preparation, {host['cpus']} cores, {host['memory_gb']} GiB (shared, "
        "load average in prepare.json)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "prepare.png", dpi=110)


if __name__ == "__main__":
    main()
