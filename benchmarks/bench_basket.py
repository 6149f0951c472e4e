"""Time chapter 04's rule mining and its peak memory (Online Retail, demo); write basket.json.

The inputs are prepared by the repo's own data layer (``crm_helpers.data.prepare``), so the baskets
are exactly those chapter 04 reads from ``prepared/transactions.parquet``: the UCI Online Retail
file through ``params/online_retail.yml`` (``CRM_PSEUDONYM_KEY`` is set to a throwaway key when
unset) and the demo at each ``--lines`` (customers = lines / 20, as bench_run.py; the other demo
settings from ``params/default.yml``). Demo generation and preparation are timed separately.

Mining then runs ``--repeat`` times per dataset, each in a fresh Python process, as the chapter
runs it with its parameters (``chapters.basket`` of the params file): basket SQL over the Parquet
(DuckDB), the list of baskets, ``encode``, ``frequent_itemsets`` (FP-growth),
``association_rules``, ``fisher_test`` and ``bootstrap_stability`` of the ``top_rules`` best
rules. Recorded: wall time per stage and in total, the process's RSS after its imports (baseline),
its RSS after each stage and the peak during each stage (a thread sampling every 0.02 s), the
exact peak (``VmHWM``) and the peak sampled from outside every 0.1 s with psutil (bench_run.timed);
plus baskets, items (distinct / kept after pruning), itemsets by size and rules. Times are the
best of the runs (the machine may be shared: the 1-minute load average before and after is
recorded), memory the largest.

    python benchmarks/bench_basket.py [--lines 100000 1000000] [--repeat 3] [--no-online-retail]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bench_run import timed  # benchmarks/ is the script folder, so on sys.path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "basket.json"
MB = 2**20


# ----------------------------------------------------------------------------- mining (child)
class _Sampler(threading.Thread):
    """Peak RSS of this process since the last ``reset``, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._halt = threading.Event()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def reset(self) -> None:
        self.peak = self.rss()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, which exec resets (ru_maxrss does not on Linux: a
    child started by fork + exec reports the parent's RSS at the fork when that was larger)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def mine_child(tx: str, chapter: dict, out: str) -> None:
    """Chapter 04's mining steps on ``tx`` (as notebooks/04-basket.ipynb runs them), by stage."""
    t_start = time.perf_counter()
    import duckdb
    import mlxtend.frequent_patterns  # noqa: F401  (the chapter imports it lazily; here: baseline)
    import numpy as np
    import pandas as pd  # noqa: F401
    import statsmodels.stats.multitest  # noqa: F401

    from crm_helpers.models import basket

    import_s = time.perf_counter() - t_start
    sampler = _Sampler()
    baseline = sampler.rss()
    sampler.reset()
    sampler.start()
    stages: dict[str, dict[str, float]] = {}
    c = chapter

    def stage(name, fn):
        sampler.reset()
        t0 = time.perf_counter()
        result = fn()
        secs = time.perf_counter() - t0
        peak = max(sampler.peak, sampler.rss())
        stages[name] = {
            "seconds": round(secs, 3),
            "peak_mb": round(peak / MB, 1),
            "rss_after_mb": round(sampler.rss() / MB, 1),
        }
        print(f"  {name}: {secs:.2f} s, peak {peak / MB:.0f} MB", file=sys.stderr, flush=True)
        return result

    con = duckdb.connect()

    def orders_sql():
        cols = [
            r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{tx}')").fetchall()
        ]
        item = basket.item_column(cols, c["item_column"])
        return item, con.execute(basket.baskets_sql(tx, item)).df()

    item, orders = stage("baskets_sql", orders_sql)
    baskets = stage("to_list", lambda: orders["items"].tolist())
    onehot, counts, n = stage("encode", lambda: basket.encode(baskets, c["min_support"]))
    itemsets = stage(
        "frequent_itemsets",
        lambda: basket.frequent_itemsets(onehot, n, c["min_support"], c["max_len"], c["algorithm"]),
    )
    rules = stage(
        "association_rules",
        lambda: basket.association_rules(
            itemsets, n, c["min_confidence"], c["max_consequent"], c["empty_antecedent"]
        ),
    )
    baskets = None  # the chapter's list lives only for the basket.mine call (encode .. rules)
    rules = stage("fisher_test", lambda: basket.fisher_test(rules, n, method=c["correction"]))
    top = rules.head(c["top_rules"])
    top = stage(
        "bootstrap_stability",
        lambda: basket.bootstrap_stability(
            onehot,
            top,
            min_support=c["min_support"],
            min_confidence=c["min_confidence"],
            rounds=c["bootstrap_rounds"],
            seed=c["seed"],
        ),
    )
    sampler.stop()
    maxrss = peak_rss()
    sizes = itemsets["itemset"].map(len).value_counts().sort_index()
    result = {
        "item_column": item,
        "import_seconds": round(import_s, 3),
        "mining_seconds": round(sum(s["seconds"] for s in stages.values()), 3),
        "baseline_rss_mb": round(baseline / MB, 1),
        "peak_rss_mb": round(maxrss / MB, 1),
        "peak_increment_mb": round((maxrss - baseline) / MB, 1),
        "stages": stages,
        "sizes": {
            "baskets": int(n),
            "distinct_items": int(len(counts)),
            "item_occurrences": int(counts.sum()),
            "min_count": basket.min_count(c["min_support"], n),
            "items_kept": int(onehot.shape[1]),
            "onehot_nonzeros": int(counts[list(onehot.columns)].sum()),
            "itemsets": int(len(itemsets)),
            "itemsets_by_size": {str(k): int(v) for k, v in sizes.items()},
            "rules": int(len(rules)),
            "rules_with_antecedent": int(rules["p_adjusted"].notna().sum()),
            "rules_significant": int((rules["p_adjusted"] < c["alpha"]).sum()),
            "rules_bootstrapped": int(len(top)),
            "top_rule_stability_min": float(np.nanmin(top["stability"])) if len(top) else None,
        },
    }
    Path(out).write_text(json.dumps(result, indent=2))


# --------------------------------------------------------------------------- driver (parent)
def run_mining(tx: Path, chapter: dict, tmp: Path) -> dict:
    """Mine in a fresh process; its sampled peak (bench_run.timed) and its own JSON."""
    out = tmp / "mining.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(tx),
        json.dumps(chapter),
        str(out),
    ]
    seconds, peak_mb, _ = timed(cmd, dict(os.environ))
    res = json.loads(out.read_text())
    res["process_seconds"] = round(seconds, 2)
    res["sampled_peak_rss_mb"] = round(peak_mb, 1)
    return res


def best_of(runs: list[dict]) -> dict:
    """Repeated mining runs in one record: fastest time per stage and in total, largest memory."""
    out = runs[0] | {
        "runs": len(runs),
        "mining_seconds": min(r["mining_seconds"] for r in runs),
        "mining_seconds_each_run": [r["mining_seconds"] for r in runs],
        "process_seconds": min(r["process_seconds"] for r in runs),
    }
    for key in ("baseline_rss_mb", "peak_rss_mb", "peak_increment_mb", "sampled_peak_rss_mb"):
        out[key] = max(r[key] for r in runs)
    out["stages"] = {
        name: {
            "seconds": min(r["stages"][name]["seconds"] for r in runs),
            "peak_mb": max(r["stages"][name]["peak_mb"] for r in runs),
            "rss_after_mb": max(r["stages"][name]["rss_after_mb"] for r in runs),
        }
        for name in runs[0]["stages"]
    }
    return out


def prepared(params, inputs: dict, run_root: Path) -> tuple[Path, dict]:
    """The data layer's prepare step, timed; the path of prepared/transactions.parquet."""
    from crm_helpers.data import connect, prepare
    from crm_helpers.paths import RunPaths

    t0 = time.perf_counter()
    res = prepare(params, inputs, RunPaths(run_root), connect(params.run.duckdb_memory_limit))
    rec = res.reconciliation["transactions"]
    info = {
        "input_lines": rec["input"],
        "kept_lines": rec["kept"],
        "prepare_seconds": round(time.perf_counter() - t0, 2),
        "prepare_steps": res.seconds,
    }
    return RunPaths(run_root).prepared / "transactions.parquet", info


def chapter_of(params) -> dict:
    from crm_helpers.config import chapter_parameters

    return {"seed": params.seed} | chapter_parameters(params, "basket")


def online_retail(tmp: Path) -> dict:
    from crm_helpers.config import load_params
    from crm_helpers.paths import PARAMS_DIR
    from crm_helpers.report.runner import input_sources

    os.environ.setdefault("CRM_PSEUDONYM_KEY", "bench-basket")  # any key: ids are not looked at
    params = load_params(PARAMS_DIR / "online_retail.yml")
    tx, info = prepared(params, input_sources(params, lambda _: None), tmp / "run")
    return {
        "dataset": "online_retail",
        "params": "params/online_retail.yml",
        **info,
        "chapter": chapter_of(params),
        "tx": tx,
    }


def demo(lines: int, tmp: Path) -> dict:
    """The demo as the runner makes it (runner.demo_inputs), in a temp folder, not demo_data/."""
    from crm_helpers.config import TABLES, TableSource, load_params
    from crm_helpers.demo import generate_demo

    customers = max(100, lines // 20)
    pfile = tmp / "params.yml"
    pfile.write_text(
        f"extends: {ROOT / 'params' / 'default.yml'}\nclient: bench\n"
        f"data:\n  demo:\n    customers: {customers}\n    lines: {lines}\n"
    )
    params = load_params(pfile)
    d = params.data.demo
    t0 = time.perf_counter()
    generate_demo(tmp / "demo", **d.generator_kwargs())
    gen_s = time.perf_counter() - t0
    inputs = {
        t: TableSource(path=tmp / "demo" / f"{t}.csv")
        for t in TABLES
        if (tmp / "demo" / f"{t}.csv").is_file()
    }
    tx, info = prepared(params, inputs, tmp / "run")
    return {
        "dataset": f"demo_{lines}",
        "params": "params/default.yml",
        "lines": lines,
        "customers": customers,
        "demo_generation_seconds": round(gen_s, 2),
        **info,
        "chapter": chapter_of(params),
        "tx": tx,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        mine_child(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--lines",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="demo sizes in transaction lines (none: only Online Retail)",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="mining runs per dataset (best time, largest memory)"
    )
    ap.add_argument("--no-online-retail", action="store_true", help="skip the Online Retail data")
    args = ap.parse_args()
    jobs = ([] if args.no_online_retail else [online_retail]) + [
        (lambda tmp, n=n: demo(n, tmp)) for n in args.lines
    ]
    rows = []
    for job in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            row = job(Path(tmp))
            print(
                f"{row['dataset']}: prepared {row['kept_lines']:,} lines in "
                f"{row['prepare_seconds']} s; mining ...",
                file=sys.stderr,
                flush=True,
            )
            tx = row.pop("tx")
            load = os.getloadavg()[0]
            runs = [run_mining(tx, row["chapter"], Path(tmp)) for _ in range(args.repeat)]
            row["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            row["mining"] = best_of(runs)
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "chapter 04 rule mining, stage by stage",
                "machine": {
                    "cpus": os.cpu_count(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "command": " ".join(["python benchmarks/bench_basket.py", *sys.argv[1:]]),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
