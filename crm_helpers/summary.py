"""Chapter 99's computations: built only from the other chapters' artifacts.

Each chapter that exists contributes a section through :data:`SECTIONS` (slug -> function that
turns its artifact into Markdown); later chapters add one entry each.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from . import artifacts
from .display import fmt_num, fmt_pct


def load_all(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every chapter artifact present in the run, by slug (the summary's only input)."""
    out = {}
    for slug in artifacts.SLUGS:
        data = artifacts.load(run_dir, slug)
        if data is not None and slug != "summary":
            out[slug] = data
    return out


def chapter_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """Status of the chapters that ran before the summary (written by the runner)."""
    path = Path(run_dir) / "artifacts" / "_status.json"
    return json.loads(path.read_text())["chapters"] if path.is_file() else []


def headline_kpis(dq: dict[str, Any], customers: pd.DataFrame, active_days: int) -> dict[str, Any]:
    """Customers, active customers, revenue, orders, average order value, repeat rate."""
    k = dq["kpis"]
    active = int((customers["recency_days"] <= active_days).sum())
    return {
        "customers": k["customers"],
        "active_customers": active,
        "active_days": active_days,
        "active_share": active / k["customers"] if k["customers"] else None,
        "net_revenue": k["net_revenue"],
        "gross_revenue": k["gross_revenue"],
        "orders": k["orders"],
        "average_order_value": k["average_order_value"],
        "repeat_rate": k["repeat_rate"],
    }


def kpi_table(kpis: dict[str, Any]) -> pd.DataFrame:
    """The headline KPIs as a two-column table."""
    rows = [
        ("Customers (at least one purchase)", fmt_num(kpis["customers"])),
        (
            f"Active customers (bought in the last {kpis['active_days']} days)",
            f"{fmt_num(kpis['active_customers'])} ({fmt_pct(kpis['active_share'])})",
        ),
        ("Net revenue (after returns)", fmt_num(kpis["net_revenue"])),
        ("Orders", fmt_num(kpis["orders"])),
        ("Average order value", fmt_num(kpis["average_order_value"], 2)),
        ("Repeat rate (customers with 2+ orders)", fmt_pct(kpis["repeat_rate"])),
    ]
    return pd.DataFrame(rows, columns=["KPI", "value"])


def quality_caveats(dq: dict[str, Any]) -> list[str]:
    """Data-quality caveats a manager should know before trusting the figures."""
    out = []
    for table, r in dq["reconciliation"].items():
        q = sum(r["quarantined"].values())
        if q:
            top = sorted(r["quarantined"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            reasons = ", ".join(f"{reason.replace('_', ' ')} ({n:,})" for reason, n in top)
            out.append(
                f"{table}: {q:,} of {r['input']:,} rows ({fmt_pct(q / r['input'])}) were set aside; "
                f"main reasons: {reasons}."
            )
    merged = dq.get("identity", {}).get("merged_ids", 0)
    if merged:
        out.append(
            f"{merged:,} customer ids were merged into other records (same person under several "
            "ids); chapter 00 lists each merge so that it can be checked."
        )
    share = dq["kpis"].get("return_line_share")
    if share:
        out.append(f"{fmt_pct(share)} of kept transaction lines are returns or cancellations.")
    return out


def _dq_section(dq: dict[str, Any]) -> str:
    k = dq["kpis"]
    return (
        f"Every input row is accounted for: {dq['rows_kept']:,} kept and "
        f"{dq['rows_quarantined']:,} quarantined with a reason. The unified customer view holds "
        f"{k['customers']:,} buying customers over {k['period']['start']} to {k['period']['end']}."
    )


#: slug -> (section title, Markdown from that chapter's artifact). Chapters add their entry.
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "data_quality": ("Data quality", _dq_section),
}


def sections(arts: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, Markdown) for each chapter that produced an artifact, in chapter order."""
    return [
        (SECTIONS[s][0], SECTIONS[s][1](arts[s]))
        for s in artifacts.SLUGS
        if s in arts and s in SECTIONS
    ]
