"""Time an analyst's rerun: the default demo from scratch, then again with one chapter's param changed.

Writes ``benchmarks/results/rerun.json``: the full run's and the rerun's wall time, their ratio
(target: under 1/4), what the rerun reused and executed (from its manifest), and the machine.

    python benchmarks/bench_rerun.py [--params params/default.yml] [--change chapters.basket.min_support=0.01]

Both runs go to a fresh reports folder; the first with ``--force`` (nothing to reuse anyway), the
second with the default reuse of unchanged prepared tables and chapters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_run import machine, timed

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "rerun.json"


def nested(dotted: str, value: str) -> str:
    """``a.b.c=v`` as YAML lines."""
    keys = dotted.split(".")
    return "".join(f"{'  ' * i}{k}:\n" for i, k in enumerate(keys[:-1])) + (
        f"{'  ' * (len(keys) - 1)}{keys[-1]}: {value}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=Path, default=ROOT / "params" / "default.yml")
    ap.add_argument("--change", default="chapters.basket.min_support=0.01")
    args = ap.parse_args()
    key, value = args.change.split("=", 1)
    env = os.environ | {"MPLBACKEND": "Agg"}
    cli = [sys.executable, "-m", "crm_helpers.cli"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports"
        base = f"extends: {args.params.resolve()}\nreport:\n  renderer: pandoc\n"
        for name, extra, flags in (("full", "", ["--force"]), ("rerun", nested(key, value), [])):
            params = Path(tmp) / f"{name}.yml"
            params.write_text(base.replace("report:\n", f"report:\n  version: {name}\n") + extra)
            wall, peak, _ = timed(
                [*cli, "run", "--params", str(params), "--reports-dir", str(reports), *flags], env
            )
            manifest = json.loads(next(reports.glob(f"*/{name}/manifest.json")).read_text())
            assert manifest["status"] == "complete", manifest.get("status")
            rows[name] = {
                "seconds": round(wall, 2),
                "peak_mb": round(peak, 1),
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                "steps": {k: v for k, v in manifest["timings"].items() if k != "prepare_steps"},
                "executed": {
                    s: r["executed"] for s, r in manifest["reuse"]["chapters"].items()
                    if "executed" in r
                },
                "reused": sorted(
                    s for s, r in manifest["reuse"]["chapters"].items() if "reused_from" in r
                ),
                "prepared": manifest["reuse"]["prepared"],
            }
            print(name, json.dumps(rows[name]), flush=True)
    ratio = rows["rerun"]["seconds"] / rows["full"]["seconds"]
    result = {
        "machine": machine(),
        "command": "crm-report run (pandoc renderer), then again with one param changed",
        "params": str(args.params.relative_to(ROOT) if args.params.is_relative_to(ROOT) else args.params),
        "change": args.change,
        "full": rows["full"],
        "rerun": rows["rerun"],
        "ratio": round(ratio, 3),
        "target_ratio": 0.25,
        "met": ratio < 0.25,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"rerun/full = {ratio:.3f} (target < 0.25)")


if __name__ == "__main__":
    main()
