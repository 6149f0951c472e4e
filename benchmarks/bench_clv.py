"""Time the CLV fits: the CDNOW sample (target < 1 s) and 1M customers' summaries (target < 60 s).

The 1M summaries are drawn from the demo's planted model (its four segments' BG/NBD and
Gamma-Gamma parameters and shares, from a generated demo's ground_truth.json; first purchases over
the first 12 weeks of a 104-week period, recency and T in weeks at day resolution), so the fit
sees the same mixture the demo customers come from without generating 20M transaction lines.
Writes benchmarks/results/clv.json.

    python benchmarks/bench_clv.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crm_helpers.demo import generate_demo
from crm_helpers.models import clv

OUT = Path(__file__).resolve().parent / "results" / "clv.json"
SHARED = Path(
    os.environ.get("CRM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def cdnow_summary() -> pd.DataFrame:
    s = pd.read_csv(SHARED / "cdnow" / "cdnow_customers_summary.csv")
    return s


def planted_segments() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        generate_demo(Path(tmp), customers=500, lines=10_000)
        truth = json.loads((Path(tmp) / "ground_truth.json").read_text())
    shares = {k: v["share"] for k, v in truth["segments"]["measured"].items()}
    return {
        name: {
            **truth["bgnbd"]["params"][name],
            **truth["gamma_gamma"]["params"][name],
            "share": share,
        }
        for name, share in shares.items()
    }


def simulate(n: int, segments: dict, seed: int = 1) -> pd.DataFrame:
    """Vectorised BG/NBD + Gamma-Gamma draws: one row per customer (x, t_x, T, mean repeat value)."""
    rng = np.random.default_rng(seed)
    names = sorted(segments)
    seg = rng.choice(
        len(names),
        size=n,
        p=np.array([segments[k]["share"] for k in names])
        / sum(segments[k]["share"] for k in names),
    )
    get = lambda key: np.array([segments[k][key] for k in names])[seg]  # noqa: E731
    lam = rng.gamma(get("r"), 1 / get("alpha_effective"))
    drop = rng.beta(get("a"), get("b"))
    nu = rng.gamma(get("q"), 1 / get("gamma"))
    p = get("p")
    big_t = np.round((104 - rng.uniform(0, 12, n)) * 7) / 7
    t = np.zeros(n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    total = np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        t[active] += rng.exponential(1 / lam[active])
        active &= t <= big_t
        x[active] += 1
        t_x[active] = np.round(t[active] * 7) / 7
        total[active] += rng.gamma(p[active], 1 / nu[active])
        active &= rng.random(n) >= drop
    m = np.where(x > 0, total / np.maximum(x, 1), np.nan)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": big_t, "monetary_value": m})


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    args = ap.parse_args()
    cd = cdnow_summary()
    cd_secs = min(
        timed(lambda: clv.fit_bgnbd(cd["frequency"], cd["recency"], cd["T"]))[0] for _ in range(3)
    )
    cd_fit = clv.fit_bgnbd(cd["frequency"], cd["recency"], cd["T"])
    big = simulate(args.customers, planted_segments())
    bg_secs, bg = timed(lambda: clv.fit_bgnbd(big["frequency"], big["recency"], big["T"]))
    gg_secs, gg = timed(lambda: clv.fit_gamma_gamma(big["frequency"], big["monetary_value"]))
    result = {
        "benchmark": "CLV fits (BG/NBD + Gamma-Gamma, maximum likelihood)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cdnow": {
            "customers": len(cd),
            "bgnbd_seconds_best_of_3": round(cd_secs, 3),
            "bgnbd": {k: round(v, 4) for k, v in cd_fit.params.items()},
            "target_seconds": 1.0,
            "met": cd_secs < 1.0,
        },
        "simulated_demo": {
            "customers": args.customers,
            "repeat_buyers": int((big["frequency"] > 0).sum()),
            "distinct_bgnbd_patterns": int(
                len(big[["frequency", "recency", "T"]].drop_duplicates())
            ),
            "bgnbd_seconds": round(bg_secs, 2),
            "gamma_gamma_seconds": round(gg_secs, 2),
            "total_seconds": round(bg_secs + gg_secs, 2),
            "bgnbd": {k: round(v, 4) for k, v in bg.params.items()},
            "gamma_gamma": {k: round(v, 4) for k, v in gg.params.items()},
            "target_seconds": 60.0,
            "met": bg_secs + gg_secs < 60.0,
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
