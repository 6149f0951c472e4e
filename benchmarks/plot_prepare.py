"""Plot benchmarks/results/prepare.json: wall time and peak memory against lines, one curve per engine.

python benchmarks/plot_prepare.py           # writes benchmarks/results/prepare.png
python benchmarks/plot_prepare.py --table   # prints the README's table of prepare.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script, run headless: not the product's plotting code
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def table(rows: list[dict]) -> str:
    """prepare.json as the README's Markdown table (x pandas: pandas' time at that size / the row's;
    runs: every run's time when the row is the median of several)."""
    pandas = {r["lines"]: r["seconds"] for r in rows if r["engine"] == "pandas" and r["seconds"]}
    out = [
        "| engine | lines | wall time (s) | runs (s) | peak memory (MB) | x bare | x pandas | load avg "
        "(1 min, before / after) | note |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        s = r["seconds"]
        vs = (
            f"{pandas[r['lines']] / s:.1f}"
            if s and r["lines"] in pandas and r["engine"] not in ("pandas", "bare")
            else ""
        )
        limit = (r.get("settings") or {}).get("duckdb_memory_limit")
        note = r.get("reason") or (f"memory_limit {limit}" if limit else "")
        runs = ", ".join(f"{x['seconds']:,.1f}" for x in r.get("runs") or [])
        out.append(
            f"| {r['engine']} | {r['lines']:,} | {f'{s:,.1f}' if s else 'not run'} | {runs} | "
            f"{format(r['peak_mb'], ',.0f') if s else ''} | "
            f"{r['ratio_to_bare'] if r.get('ratio_to_bare') else ''} | {vs} | "
            f"{r['load_avg_before'][0]} / {r['load_avg'][0]} | {note} |"
        )
    return "\n".join(out)


def main() -> None:
    rows = json.loads((RESULTS / "prepare.json").read_text())
    if "--table" in sys.argv:
        print(table(rows))
        return
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
