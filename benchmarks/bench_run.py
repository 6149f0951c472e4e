"""Time `crm-report run` on the demo at several sizes; write benchmarks/results/run.json.

Each size runs in a fresh process: wall time, peak memory of the whole process tree (the runner
and its notebook kernels, sampled every 0.1 s with psutil) and the per-step times that the run's
manifest records. The demo data is generated first (cached) and timed separately.

    python benchmarks/bench_run.py [--lines 10000 100000 1000000]
    python benchmarks/bench_run.py --report-only   # report.json from the run.json measured

Also writes benchmarks/results/report.json: one row per size ``{lines, seconds, chapters: {slug:
seconds}}`` with the slowest chapter named.
    python benchmarks/bench_run.py --client params/online_retail.yml   # a real client's data

With ``--client`` the whole report runs on that params file's own data (the key in
``CRM_PSEUDONYM_KEY``, a benchmark key when unset) and the result, with its reconciliation, goes to
``benchmarks/results/<client>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "run.json"
REPORT = ROOT / "benchmarks" / "results" / "report.json"


def report_rows(run: dict) -> list[dict]:
    """run.json's results as report.json rows: ``{lines, seconds, chapters: {slug: seconds}}``.

    Per-chapter seconds are those of the run's manifest.json; each row names its slowest chapter
    and carries the machine it ran on (and the load average when it was recorded).
    """
    rows = []
    for r in run["results"]:
        slowest = max(r["chapters"], key=r["chapters"].get)
        rows.append({
            "lines": r["lines"],
            "seconds": r["seconds"],
            "chapters": r["chapters"],
            "slowest_chapter": slowest,
            "slowest_seconds": r["chapters"][slowest],
            "peak_mb": r["peak_mb"],
            "prepare_seconds": r["steps"].get("prepare"),
            "load_avg": r.get("load_avg"),
            "command": run["command"],
            "machine": r.get("machine", run["machine"]),
        })
    return rows


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return time.perf_counter() - t0, peak / 2**20, proc.returncode


def machine() -> dict:
    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def client_run(params_file: Path) -> None:
    """The whole report on a client's own data: wall time, peak memory, per-chapter times."""
    env = os.environ | {"MPLBACKEND": "Agg"}
    env.setdefault("CRM_PSEUDONYM_KEY", "benchmark-key")
    cli = [sys.executable, "-m", "crm_helpers.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "bench.yml"
        params.write_text(f"extends: {params_file.resolve()}\nreport:\n  version: bench\n  renderer: pandoc\n")
        reports = Path(tmp) / "reports"
        wall, peak, _ = timed([*cli, "run", "--params", str(params), "--reports-dir", str(reports)], env)
        run_dir = next(reports.glob("*/bench"))
        manifest = json.loads((run_dir / "manifest.json").read_text())
    recon = manifest["reconciliation"]
    row = {
        "params": str(params_file),
        "seconds": round(wall, 2),
        "peak_mb": round(peak, 1),
        "steps": {k: v for k, v in manifest["timings"].items() if k != "prepare_steps"},
        "prepare_steps": manifest["timings"]["prepare_steps"],
        "chapters": {c["slug"]: {"seconds": c["seconds"], "status": c["status"]} for c in manifest["chapters"]},
        "reconciliation": recon,
        "balanced": all(r["input"] == r["kept"] + sum(r["quarantined"].values()) for r in recon.values()),
        "status": manifest["status"],
    }
    print(json.dumps(row), flush=True)
    out = OUT.parent / f"{manifest['client']}.json"
    out.write_text(json.dumps({"machine": machine(), "command": "crm-report run (pandoc renderer)",
                               "results": [row]}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--client", type=Path, help="time the report on this params file's own data")
    ap.add_argument("--report-only", action="store_true",
                    help="write report.json from the run.json already measured, run nothing")
    args = ap.parse_args()
    if args.report_only:
        REPORT.write_text(json.dumps(report_rows(json.loads(OUT.read_text())), indent=1) + "\n")
        return
    if args.client:
        client_run(args.client)
        return
    rows = []
    env = os.environ | {"MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            customers = max(100, lines // 20)
            params = Path(tmp) / f"bench{lines}.yml"
            params.write_text(
                f"extends: {ROOT / 'params' / 'default.yml'}\nclient: bench\n"
                f"data:\n  demo:\n    customers: {customers}\n    lines: {lines}\n"
                f"report:\n  version: l{lines}\n  renderer: pandoc\n"
            )
            cli = [sys.executable, "-m", "crm_helpers.cli"]
            gen_s, gen_mb, _ = timed([*cli, "demo-data", "--params", str(params), "--out",
                                      str(Path(tmp) / f"demo{lines}")], env)
            subprocess.run([*cli, "validate", "--params", str(params)], env=env, check=True,
                           capture_output=True)  # generates the cached demo data used by run
            reports = Path(tmp) / "reports"
            wall, peak, _ = timed([*cli, "run", "--params", str(params), "--reports-dir", str(reports)], env)
            manifest = json.loads((reports / "bench" / f"l{lines}" / "manifest.json").read_text())
            rows.append({
                "lines": lines,
                "customers": customers,
                "input_lines": manifest["reconciliation"]["transactions"]["input"],
                "seconds": round(wall, 2),
                "peak_mb": round(peak, 1),
                "steps": {k: v for k, v in manifest["timings"].items() if k != "prepare_steps"},
                "prepare_steps": manifest["timings"]["prepare_steps"],
                "chapters": {c["slug"]: c["seconds"] for c in manifest["chapters"]},
                "demo_generation_seconds": round(gen_s, 2),
                "load_avg": [round(x, 2) for x in os.getloadavg()],
                "machine": machine(),
            })
            print(json.dumps(rows[-1]), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if OUT.is_file():  # sizes not measured this time keep their earlier rows (and machine)
        done = {r["lines"] for r in rows}
        old = json.loads(OUT.read_text())
        earlier = [
            r | {"machine": r.get("machine", old.get("machine"))}
            for r in old["results"]
            if r["lines"] not in done
        ]
        rows = sorted(earlier + rows, key=lambda r: r["lines"])
    run = {"machine": machine(), "command": "crm-report run (demo, pandoc renderer)", "results": rows}
    OUT.write_text(json.dumps(run, indent=2) + "\n")
    REPORT.write_text(json.dumps(report_rows(run), indent=1) + "\n")


if __name__ == "__main__":
    main()
