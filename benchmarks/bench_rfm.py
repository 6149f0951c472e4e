"""Time the RFM feature (DuckDB SQL over the prepared Parquet) at 1M transaction lines.

Writes benchmarks/results/rfm.json: prepared lines, customers, seconds (best of 3), and the
pandas groupby of the same aggregation as a reference.

    python benchmarks/bench_rfm.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from crm_helpers import features
from crm_helpers.config import TableSource, load_params
from crm_helpers.data import prepare
from crm_helpers.demo import generate_demo
from crm_helpers.paths import RunPaths

OUT = Path(__file__).resolve().parent / "results" / "rfm.json"


def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_demo(tmp / "demo", customers=args.lines // 20, lines=args.lines)
        params = load_params()
        inputs = {"transactions": TableSource(path=tmp / "demo" / "transactions.csv")}
        res = prepare(params, inputs, RunPaths(tmp / "run"))
        tx = str(tmp / "run" / "prepared" / "transactions.parquet")
        ref = dt.date.fromisoformat(res.reference_date)
        con = duckdb.connect()
        sql_s, rfm = best_of(lambda: features.rfm(con, tx, ref))

        def pandas_rfm():
            df = pd.read_parquet(tx, columns=["customer_key", "order_id", "order_date", "amount", "is_return"])
            buy = df[~df["is_return"]]
            g = buy.groupby("customer_key")
            out = pd.DataFrame({"last": g["order_date"].max(), "frequency": g["order_id"].nunique()})
            out["monetary"] = df.groupby("customer_key")["amount"].sum()
            return out

        pd_s, _ = best_of(pandas_rfm)
    row = {
        "lines": res.reconciliation["transactions"]["input"],
        "kept_lines": res.reconciliation["transactions"]["kept"],
        "customers": len(rfm),
        "duckdb_rfm_seconds": round(sql_s, 3),
        "pandas_reference_seconds": round(pd_s, 3),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                               "results": [row]}, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
