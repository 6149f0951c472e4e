"""Time the data preparation at 1M, 10M and 100M lines; write benchmarks/results/prepare.json.

Each (engine, lines) runs in a fresh process; wall time and peak memory are those of its whole
process tree (sampled every 0.1 s with psutil; Spark's JVM is a child process and counts):

- ``duckdb``: ``crm_helpers.data.prepare`` on the size's params (the 100M params set
  ``run.duckdb_memory_limit: 4GB``, so DuckDB spills to disk beyond it);
- ``spark``: the same ``prepare`` with ``run.engine: spark`` on ``local[2]``;
- ``pandas``: ``benchmarks/pandas_prepare.py``, the same work the straightforward pandas way;
- ``bare``: DuckDB's bare RFM aggregation over the Parquet file (customer id, last date, distinct
  orders, summed amount), with the same memory limit: the floor the others are compared to
  (``ratio_to_bare``).

The file is a list of rows ``{engine, lines, seconds, peak_mb, ratio_to_bare, load_avg,
settings, machine, ...}`` (``steps``: the preparation's own per-step seconds). Each engine and
size runs ``--repeat`` times (3; Spark, and a run over two minutes, once): ``seconds`` is the
median run, ``peak_mb`` the highest peak of all runs, ``runs`` lists them. A run that cannot fit
(memory extrapolated from the largest size measured on that engine exceeds the memory available)
or that would exceed ``--max-seconds`` is recorded with ``seconds: null`` and the reason, never
left out. Inputs come from ``benchmarks/make_lines.py`` (generated first when missing). Every row
records the load average before and after it: the machine is shared.

    python benchmarks/bench_prepare.py [--lines 1000000 10000000 100000000]
        [--engines bare duckdb pandas spark] [--out benchmarks/results/prepare.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_run import machine, tree_rss  # noqa: E402
from make_lines import OUT as DATA  # noqa: E402
from make_lines import make  # noqa: E402

OUT = HERE / "results" / "prepare.json"
SPARK_MASTER = "local[2]"
#: Spark settings of the benchmark: the prepared tables are collected to the driver (README).
SPARK_CONF = {
    "spark.driver.memory": "8g",
    "spark.driver.maxResultSize": "0",
    "spark.sql.shuffle.partitions": "16",
}
ENGINES = ("bare", "duckdb", "duckdb-1.2GB", "pandas", "spark")
#: DuckDB's default memory limit is 80% of RAM (it caches freely): ``duckdb-1.2GB`` is the same
#: preparation with ``run.duckdb_memory_limit: 1.2GB``, as for a client with a small memory budget
#: (at 1GB the duplicate pass runs out of memory at 10M lines: DuckDB cannot spill all of it).
LIMITED = "1.2GB"
#: Engines run once per size whatever ``--repeat`` says (minutes per run).
ONCE = ("spark",)
#: A run longer than this is not repeated (the 100M preparation takes minutes).
REPEAT_UNDER = 120.0


def bare_sql(path: Path) -> str:
    """The bare RFM aggregation: one pass over the file, no cleaning."""
    return f"""CREATE TABLE rfm AS
    SELECT customer_id, max(TRY_CAST(order_date AS TIMESTAMP)) AS last_date,
           count(DISTINCT order_id) AS orders,
           sum(quantity * TRY_CAST(unit_price AS DOUBLE)) AS amount
    FROM read_parquet('{path}') GROUP BY customer_id"""


# ------------------------------------------------------------------------------ the workers
def work(engine: str, params_file: Path, out: Path) -> dict:
    """Run one engine's preparation in this process; return what it reports."""
    from crm_helpers.config import load_params

    params = load_params(params_file)
    if engine == "bare":
        from crm_helpers.data import connect

        con = connect(params.run.duckdb_memory_limit)
        con.execute(bare_sql(Path(params.data.transactions.path)))
        return {"customers": con.execute("SELECT count(*) FROM rfm").fetchone()[0]}
    if engine == "pandas":  # the baseline
        from pandas_prepare import prepare_pandas

        r = prepare_pandas(
            Path(params.data.transactions.path),
            Path(params.data.customers.path),
            out,
            key=os.environ["CRM_PSEUDONYM_KEY"],
            max_valid_date=params.max_valid_date(),
            cancellation_prefix=params.cleaning.cancellation_prefix,
            zero_price=params.cleaning.zero_price,
        )
        return {"steps": r["seconds"], "kept": r["reconciliation"]["transactions"]["kept"]}
    from crm_helpers.config import TABLES
    from crm_helpers.data import prepare
    from crm_helpers.paths import RunPaths

    inputs = {t: getattr(params.data, t) for t in TABLES if getattr(params.data, t) is not None}
    r = prepare(params, inputs, RunPaths(out))
    return {"steps": r.seconds, "kept": r.reconciliation["transactions"]["kept"]}


# ------------------------------------------------------------------------------- the driver
def timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, str, str]:
    """Wall seconds, peak MB of the process tree, stdout, and an error ('' when it succeeded)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(ps))
            if time.perf_counter() - t0 > timeout:
                for p in [*ps.children(recursive=True), ps]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                proc.wait()
                return time.perf_counter() - t0, peak / 2**20, "", f"stopped after {timeout:.0f} s"
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        return (
            wall,
            peak / 2**20,
            stdout,
            stderr.strip().splitlines()[-1] if stderr.strip() else "failed",
        )
    return wall, peak / 2**20, stdout, ""


def params_for(engine: str, base: Path, tmp: Path) -> Path:
    """The size's params, with the Spark engine on local[2] for ``spark``."""
    if engine == "duckdb-1.2GB":
        p = tmp / f"limited-{base.parent.name}.yml"
        p.write_text(f"extends: {base}\nrun:\n  duckdb_memory_limit: {LIMITED}\n")
        return p
    if engine != "spark":
        return base
    conf = "".join(f"\n      {k}: '{v}'" for k, v in SPARK_CONF.items())
    p = tmp / f"spark-{base.parent.name}.yml"
    p.write_text(
        f"extends: {base}\nrun:\n  engine: spark\n  spark:\n    master: '{SPARK_MASTER}'\n"
        f"    conf:{conf}\n"
    )
    return p


def settings(engine: str, lines: int) -> dict:
    """What the run was given (memory limit, threads, master)."""
    limit = "4GB" if lines >= 100_000_000 and engine in ("duckdb", "bare") else None
    s: dict = {"threads": os.cpu_count()}
    if engine in ("duckdb", "bare"):
        s["duckdb_memory_limit"] = limit or "default (80% of RAM)"
    if engine == "duckdb-1.2GB":
        s["duckdb_memory_limit"] = LIMITED
    if engine == "spark":
        s |= {"master": SPARK_MASTER, "conf": SPARK_CONF}
    return s


def too_big(engine: str, lines: int, rows: list[dict], max_seconds: float) -> str | None:
    """Why a run is not attempted: its memory or time, extrapolated linearly, would not fit."""
    done = [r for r in rows if r["engine"] == engine and r["seconds"] and r["lines"] < lines]
    if not done or engine.startswith("duckdb") or engine == "bare":  # DuckDB spills to disk
        return None
    last = max(done, key=lambda r: r["lines"])
    scale = lines / last["lines"]
    mem, secs = last["peak_mb"] * scale, last["seconds"] * scale
    avail = psutil.virtual_memory().available / 2**20
    # Spark's JVM heap is capped by spark.driver.memory (its peak does not grow with the lines
    # until the driver collects the prepared tables): only its time is extrapolated.
    if engine != "spark" and mem > 0.8 * avail:
        return (
            f"not run: peak memory extrapolated from {last['lines']:,} lines "
            f"({last['peak_mb']:,.0f} MB x {scale:g}) is {mem / 1024:,.1f} GB, over 80% of the "
            f"{avail / 1024:,.1f} GB available"
        )
    if secs > max_seconds:
        return (
            f"not run: time extrapolated from {last['lines']:,} lines ({last['seconds']:,.0f} s "
            f"x {scale:g}) is {secs:,.0f} s, over the --max-seconds budget of {max_seconds:,.0f} s"
        )
    return None


def with_ratios(rows: list[dict]) -> list[dict]:
    """Set every row's ``ratio_to_bare`` from the bare row of its size in ``rows`` (after a merge
    the rows kept may have been measured against another bare run)."""
    bare = {r["lines"]: r["seconds"] for r in rows if r["engine"] == "bare" and r["seconds"]}
    for r in rows:
        b = bare.get(r["lines"])
        r["ratio_to_bare"] = round(r["seconds"] / b, 2) if r["seconds"] and b else None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--merge", action="store_true", help="keep other rows of an existing --out")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per engine and size; the run of median time is recorded, with all runs "
        "(Spark, and any run over two minutes, runs once)",
    )
    ap.add_argument(
        "--worker", nargs=3, metavar=("ENGINE", "PARAMS", "OUT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.worker:
        engine, params_file, out = args.worker
        print(json.dumps(work(engine, Path(params_file), Path(out))))
        return

    env = os.environ | {"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    env.setdefault("CRM_PSEUDONYM_KEY", "benchmark-key")
    rows: list[dict] = []
    # With --merge, the rows already measured also inform what does not fit.
    earlier = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else []
    with tempfile.TemporaryDirectory(dir=args.data.parent if args.data.exists() else None) as tmp:
        for lines in args.lines:
            base = make(lines, args.data, seed=7) / "params.yml"
            for engine in [e for e in ENGINES if e in args.engines]:
                row = {
                    "engine": engine,
                    "lines": lines,
                    "seconds": None,
                    "peak_mb": None,
                    "ratio_to_bare": None,
                    "load_avg_before": [round(x, 2) for x in os.getloadavg()],
                }
                reason = too_big(engine, lines, earlier + rows, args.max_seconds)
                if reason is None:
                    out = Path(tmp) / f"{engine}-{lines}"
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        engine,
                        str(params_for(engine, base, Path(tmp))),
                        str(out),
                    ]
                    runs = []
                    for _ in range(1 if engine in ONCE else args.repeat):
                        wall, peak, stdout, error = timed(cmd, env, args.max_seconds)
                        subprocess.run(["rm", "-rf", str(out)], check=False)
                        if error:
                            reason = f"failed after {wall:,.0f} s (peak {peak:,.0f} MB): {error}"
                            break
                        runs.append((wall, peak, json.loads(stdout.strip().splitlines()[-1])))
                        if wall > REPEAT_UNDER:
                            break
                    if len(runs) > 1 or (runs and reason):
                        row["runs"] = [
                            {"seconds": round(w, 2), "peak_mb": round(p, 1)} for w, p, _ in runs
                        ]
                    if runs and not reason:
                        # The run of median time (the lower of two) stands for the engine, with
                        # the highest peak of all runs (the memory a client must have).
                        wall, _, reported = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]
                        peak = max(r[1] for r in runs)
                        row |= {"seconds": round(wall, 2), "peak_mb": round(peak, 1)}
                        row |= reported
                if reason:
                    row["reason"] = reason
                row["load_avg"] = [round(x, 2) for x in os.getloadavg()]
                row["settings"] = settings(engine, lines)
                rows.append(row)
                print(json.dumps(row), flush=True)
    host = machine()
    for r in rows:
        r["machine"] = host
    if args.merge and args.out.is_file():
        keep = {(r["engine"], r["lines"]) for r in rows}
        old = [
            r
            for r in json.loads(args.out.read_text())
            if (r["engine"], r["lines"]) not in keep and r["engine"] in ENGINES  # not retired ones
        ]
        rows = sorted(old + rows, key=lambda r: (r["lines"], ENGINES.index(r["engine"])))
    with_ratios(rows)
    for r in rows:  # a row not run says why from the rows as they now stand
        if r["seconds"] is None and str(r.get("reason", "")).startswith("not run:"):
            r["reason"] = too_big(r["engine"], r["lines"], rows, args.max_seconds) or r["reason"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
