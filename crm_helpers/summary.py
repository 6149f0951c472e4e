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

from . import artifacts, privacy
from .display import fmt_num, fmt_pct
from .display import table as md_table


def load_all(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every chapter artifact present in the run, by slug (the summary's only input).

    Also puts the run's ``privacy.min_group_size`` in force for the summary's tables.
    """
    privacy.configure(run_dir)
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
    if k.get("basket_only"):
        return {key: k[key] for key in ("basket_only", "orders", "products", "items_per_basket")}
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
    if kpis.get("basket_only"):
        rows = [
            ("Baskets (orders)", fmt_num(kpis["orders"])),
            ("Distinct products", fmt_num(kpis["products"])),
            ("Products per basket", fmt_num(kpis["items_per_basket"], 2)),
            ("Customers, revenue", "not in this data (baskets only)"),
        ]
        return pd.DataFrame(rows, columns=["KPI", "value"])
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
    if k.get("basket_only"):
        return (
            f"Every input row is accounted for: {dq['rows_kept']:,} kept and "
            f"{dq['rows_quarantined']:,} quarantined with a reason. The data hold "
            f"{k['orders']:,} baskets over {k['products']:,} products, without customers, dates "
            "or prices: only the market basket analysis applies."
        )
    return (
        f"Every input row is accounted for: {dq['rows_kept']:,} kept and "
        f"{dq['rows_quarantined']:,} quarantined with a reason. The unified customer view holds "
        f"{k['customers']:,} buying customers over {k['period']['start']} to {k['period']['end']}."
    )


def _profile_section(p: dict[str, Any]) -> str:
    top = p.get("revenue_share_top", {})
    tags = ", ".join(
        f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(p.get("tag_counts", {}).items())
    )
    parts = [
        f"The top 10 % of customers bring {fmt_pct(top.get('10%'))} of revenue (Gini "
        f"{p['gini']:.2f})."
        if "gini" in p
        else "",
        f"{fmt_pct(p.get('retention_month_1'))} of a cohort buys again in its second month."
        if p.get("retention_month_1") is not None
        else "",
        f"Customer tags: {tags}." if tags else "",
    ]
    return " ".join(x for x in parts if x)


def _segmentation_section(s: dict[str, Any]) -> str:
    segs = sorted(s["segments"].items(), key=lambda kv: -kv[1]["revenue_share"])
    shown = pd.DataFrame(
        [
            {
                "segment": name,
                "customers": v["customers"],
                "% revenue": 100 * v["revenue_share"],
                "recommended action": v["action"],
            }
            for name, v in segs
        ]
    )
    check = (
        f" Against the demo's planted segments the clusters score an adjusted Rand index of "
        f"{s['ari_planted']:.2f}."
        if s.get("ari_planted") is not None
        else ""
    )
    return (
        f"{s['customers']:,} buying customers in {len(segs)} RFM segments; the data form "
        f"{s['k']} {s['method']} clusters.{check}\n\n" + md_table(shown, floatfmt=",.1f").data
    )


def _clv_section(c: dict[str, Any]) -> str:
    if c.get("status") != "ok":
        missing = "; ".join(c.get("missing") or []) or c.get("error") or "unknown reason"
        return f"Not estimated for this data: it needs {missing}."
    iv = c.get("total_clv_interval")
    interval = (
        f" ({fmt_pct(c['interval_level'], 0)} interval {fmt_num(iv[0])} to {fmt_num(iv[1])})"
        if iv
        else ""
    )
    h = c["holdout"]
    verdict = "beats" if h["model_beats_baseline"] else "does not beat"
    return (
        f"Expected value of the {c['customers']:,} customers over the next {c['horizon_months']} "
        f"months: {fmt_num(c['total_clv'])}{interval}; the top 10 % of customers hold "
        f"{fmt_pct(c['top_decile_share'])} of it. On the holdout the model predicted "
        f"{fmt_num(h['transactions_predicted'])} repeat purchases against "
        f"{fmt_num(h['transactions_actual'])} actual ({h['transactions_error_pct']:+.1f} %) and "
        f"{verdict} the naive baseline."
    )


def _basket_section(b: dict[str, Any]) -> str:
    if b.get("status") != "ok":
        return f"Not available for this data: it needs {'; '.join(b.get('missing') or [])}."
    text = (
        f"{b['n_transactions']:,} baskets over {b['n_items']:,} items give {b['n_rules']:,} rules "
        f"at support {b['min_support']:g} and confidence {b['min_confidence']:g} "
        f"({b['n_significant']:,} significant after correction)."
    )
    offers = b.get("cross_sell") or []
    if not offers:
        return text + " No rule is both significant and stable enough to suggest a cross-sell."
    rows = "\n".join(
        f"| {o['customers who buy']} | {o['offer']} | {o['confidence']:.2f} | {o['lift']:.1f} |"
        for o in offers
    )
    return (
        text
        + " Cross-sell suggestions (significant and stable rules):\n\n"
        + "| customers who buy | offer | confidence | lift |\n|---|---|--:|--:|\n"
        + rows
    )


def clv_by_segment(run_dir: str | Path) -> pd.DataFrame | None:
    """Total and mean CLV per RFM segment: chapter 03's table joined with chapter 02's.

    None when either artifact table is missing.
    """
    values = artifacts.load_table(run_dir, "clv")
    segments = artifacts.load_table(run_dir, "segmentation")
    if values is None or segments is None:
        return None
    joined = values[["customer_key", "clv", "p_alive"]].merge(
        segments[["customer_key", "segment"]], on="customer_key", how="left"
    )
    joined["segment"] = joined["segment"].fillna("(no RFM segment)")
    out = joined.groupby("segment").agg(
        customers=("clv", "size"),
        total_clv=("clv", "sum"),
        mean_clv=("clv", "mean"),
        mean_p_alive=("p_alive", "mean"),
    )
    out["clv_share"] = out["total_clv"] / out["total_clv"].sum()
    return out.sort_values(["total_clv", "customers"], ascending=False).reset_index()


def _signed(value: float | None) -> str:
    """A relative change in per cent (``+12.3 %``); n/a when the baseline was 0."""
    return "n/a" if value is None else f"{value:+.1f} %"


def _recommendations_section(r: dict[str, Any]) -> str:
    k, best = r["k"], r["chosen_model"]
    g = r["gain_vs_popularity_pct"][best]
    verdict = "beat" if all(r["beats_popularity"].values()) else "do not clearly beat"
    return (
        f"{r['customers_with_lists']:,} customers have a list of up to {r['top_n']} products "
        f"from {best}. On the purchases after {r['cutoff']} its lists {verdict} popularity: "
        f"precision@{k} {_signed(g.get('precision_at_k'))}, NDCG@{k} {_signed(g.get('ndcg_at_k'))}, "
        f"success@{k} {_signed(g.get('success_at_k'))} (customers with at least one hit)."
    )


def _churn_section(c: dict[str, Any]) -> str:
    rows = {r["model"]: r for r in c["metrics"]}
    model, base = rows[c["scoring_model"]], rows["Baseline: recency"]
    verdict = "beats" if c["beats_baseline"] else "does not clearly beat"
    listed = sum(r["value_at_risk"] for r in c["win_back"])
    total = c["value_at_risk_total"]
    share = f" ({listed / total:.0%} of it)" if total else ""
    return (
        f"{c['scored_customers']:,} active customers are scored for churn in the next "
        f"{c['horizon_days']} days. On the test cutoff ({c['cutoffs']['test']}) "
        f"{c['scoring_model']} {verdict} the recency rule: ROC-AUC {model['roc_auc']:.3f} vs "
        f"{base['roc_auc']:.3f}, {c['top_decile_churners']:,} vs "
        f"{c['baseline_top_decile_churners']:,} churners in the top decile. Expected value at risk "
        f"({c['value_source']}) is {total:,.0f}; the win-back list of {len(c['win_back']):,} "
        f"customers holds {listed:,.0f}{share}"
        + (
            ", ranked by the recency rule since no model beat it."
            if c.get("ranked_by") == "Baseline: recency"
            else "."
        )
    )


def _forecast_section(f: dict[str, Any]) -> str:
    units = {"D": "days", "W": "weeks", "M": "months"}[f["period"]]
    h = f["horizon"]
    parts = []
    for name in sorted(f["chosen"], key=["revenue", "orders", "customers"].index):
        v = f["chosen"][name]
        total = sum(p["mean"] for p in f["forecast"][name])
        label = {"revenue": "Net revenue", "orders": "Orders", "customers": "Active customers"}[
            name
        ]
        how = (
            f"{v['chosen']}, which beat {v['baseline'].lower()} in the backtest (MASE "
            f"{v['mase']:.2f} vs {v['baseline_mase']:.2f})"
            if v["beats_baseline"]
            else f"{v['chosen'].lower()} (MASE {v['mase']:.2f}; no statistical model beat "
            f"{v['baseline'].lower()}, MASE {v['baseline_mase']:.2f}): a reference line"
        )
        if name == "revenue":
            parts.append(f"{label} over the next {h} {units}: {total:,.0f}, from {how}.")
        else:
            parts.append(f"{label}: from {how}.")
    return " ".join(parts)


def _satisfaction_section(s: dict[str, Any]) -> str:
    if s["nps"] is not None:
        head = f"NPS {s['nps']:+.0f} over {s['responses']:,} responses."
    else:
        head = (
            f"CSAT {s['csat_mean']:.2f} on {s['scale_range'][0]}-{s['scale_range'][1]}, "
            f"{s['csat_share_satisfied']:.0%} satisfied, over {s['responses']:,} responses."
        )
    low = [
        f"{d['factor']} {d['level']}"
        for d in (s.get("drivers") or [])
        if d.get("p_value") is not None and d["p_value"] < 0.05 and d["coef"] < 0
    ]
    if low:
        head += f" Significantly lower scores: {', '.join(low)}."
    bands = [
        b
        for b in (s.get("churn_by_band") or [])
        if b["band"] != "no feedback" and b.get("mean_churn_probability") is not None
    ]
    if len(bands) >= 2:
        head += (
            f" Churn probability {bands[0]['mean_churn_probability']:.0%} in the "
            f"{bands[0]['band']} band vs {bands[-1]['mean_churn_probability']:.0%} in the "
            f"{bands[-1]['band']} band."
        )
    return head


#: slug -> (section title, Markdown from that chapter's artifact). Chapters add their entry.
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "data_quality": ("Data quality", _dq_section),
    "profile": ("Customer profile", _profile_section),
    "segmentation": ("Segments and actions", _segmentation_section),
    "clv": ("Customer lifetime value", _clv_section),
    "basket": ("Cross-selling", _basket_section),
    "recommendations": ("Personalised recommendations", _recommendations_section),
    "churn": ("Churn and win-back", _churn_section),
    "forecast": ("Sales forecast", _forecast_section),
    "satisfaction": ("Satisfaction", _satisfaction_section),
}


def _section(slug: str, art: dict[str, Any]) -> str:
    """One chapter's Markdown; a chapter that found its inputs lacking says what it needs."""
    if art.get("status") == "not_available":
        return f"Not available for this data: it needs {'; '.join(art.get('missing') or [])}."
    return SECTIONS[slug][1](art)


def sections(arts: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, Markdown) for each chapter that produced an artifact, in chapter order."""
    return [
        (SECTIONS[s][0], _section(s, arts[s]))
        for s in artifacts.SLUGS
        if s in arts and s in SECTIONS
    ]
