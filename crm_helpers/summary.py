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
from .i18n import language, tr


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
    """The headline KPIs as a two-column table (in the report's language)."""
    if kpis.get("basket_only"):
        rows = [
            (tr("Baskets (orders)"), fmt_num(kpis["orders"])),
            (tr("Distinct products"), fmt_num(kpis["products"])),
            (tr("Products per basket"), fmt_num(kpis["items_per_basket"], 2)),
            (tr("Customers, revenue"), tr("not in this data (baskets only)")),
        ]
        return pd.DataFrame(rows, columns=["KPI", "value"])
    rows = [
        (tr("Customers (at least one purchase)"), fmt_num(kpis["customers"])),
        (
            tr("Active customers (bought in the last {days} days)", days=kpis["active_days"]),
            f"{fmt_num(kpis['active_customers'])} ({fmt_pct(kpis['active_share'])})",
        ),
        (tr("Net revenue (after returns)"), fmt_num(kpis["net_revenue"])),
        (tr("Orders"), fmt_num(kpis["orders"])),
        (tr("Average order value"), fmt_num(kpis["average_order_value"], 2)),
        (tr("Repeat rate (customers with 2+ orders)"), fmt_pct(kpis["repeat_rate"])),
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
                tr(
                    "{table}: {quarantined:,} of {rows:,} rows ({share}) were set aside; main "
                    "reasons: {reasons}.",
                    table=tr(table),
                    quarantined=q,
                    rows=r["input"],
                    share=fmt_pct(q / r["input"]),
                    reasons=reasons,
                )
            )
    merged = dq.get("identity", {}).get("merged_ids", 0)
    if merged:
        out.append(
            tr(
                "{merged:,} customer ids were merged into other records (same person under "
                "several ids); chapter 00 lists each merge so that it can be checked.",
                merged=merged,
            )
        )
    share = dq["kpis"].get("return_line_share")
    if share:
        out.append(
            tr("{share} of kept transaction lines are returns or cancellations.", share=fmt_pct(share))
        )
    return out


def _dq_section(dq: dict[str, Any]) -> str:
    k = dq["kpis"]
    if k.get("basket_only"):
        return tr(
            "Every input row is accounted for: {kept:,} kept and {quarantined:,} quarantined with "
            "a reason. The data hold {orders:,} baskets over {products:,} products, without "
            "customers, dates or prices: only the market basket analysis applies.",
            kept=dq["rows_kept"],
            quarantined=dq["rows_quarantined"],
            orders=k["orders"],
            products=k["products"],
        )
    return tr(
        "Every input row is accounted for: {kept:,} kept and {quarantined:,} quarantined with a "
        "reason. The unified customer view holds {customers:,} buying customers over {start} to "
        "{end}.",
        kept=dq["rows_kept"],
        quarantined=dq["rows_quarantined"],
        customers=k["customers"],
        start=k["period"]["start"],
        end=k["period"]["end"],
    )


def _profile_section(p: dict[str, Any]) -> str:
    top = p.get("revenue_share_top", {})
    tags = ", ".join(
        f"{tr(k.replace('_', ' '))} {v:,}" for k, v in sorted(p.get("tag_counts", {}).items())
    )
    parts = [
        tr(
            "The top 10 % of customers bring {share} of revenue (Gini {gini:.2f}).",
            share=fmt_pct(top.get("10%")),
            gini=p["gini"],
        )
        if "gini" in p
        else "",
        tr(
            "{share} of a cohort buys again in its second month.",
            share=fmt_pct(p.get("retention_month_1")),
        )
        if p.get("retention_month_1") is not None
        else "",
        tr("Customer tags: {tags}.", tags=tags) if tags else "",
    ]
    return (" " if language() == "en" else "").join(x for x in parts if x)


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
        tr(
            " Against the demo's planted segments the clusters score an adjusted Rand index of "
            "{ari:.2f}.",
            ari=s["ari_planted"],
        )
        if s.get("ari_planted") is not None
        else ""
    )
    return (
        tr(
            "{customers:,} buying customers in {segments} RFM segments; the data form {k} "
            "{method} clusters.",
            customers=s["customers"],
            segments=len(segs),
            k=s["k"],
            method=s["method"],
        )
        + f"{check}\n\n"
        + md_table(shown, floatfmt=",.1f").data
    )


def _clv_section(c: dict[str, Any]) -> str:
    if c.get("status") != "ok":
        missing = "; ".join(c.get("missing") or []) or c.get("error") or "unknown reason"
        return tr("Not estimated for this data: it needs {missing}.", missing=missing)
    iv = c.get("total_clv_interval")
    interval = (
        tr(
            " ({level} interval {low} to {high})",
            level=fmt_pct(c["interval_level"], 0),
            low=fmt_num(iv[0]),
            high=fmt_num(iv[1]),
        )
        if iv
        else ""
    )
    h = c["holdout"]
    verdict = tr("beats") if h["model_beats_baseline"] else tr("does not beat")
    return tr(
        "Expected value of the {customers:,} customers over the next {months} months: "
        "{total}{interval}; the top 10 % of customers hold {top} of it. On the holdout the model "
        "predicted {predicted} repeat purchases against {actual} actual ({error:+.1f} %) and "
        "{verdict} the naive baseline.",
        customers=c["customers"],
        months=c["horizon_months"],
        total=fmt_num(c["total_clv"]),
        interval=interval,
        top=fmt_pct(c["top_decile_share"]),
        predicted=fmt_num(h["transactions_predicted"]),
        actual=fmt_num(h["transactions_actual"]),
        error=h["transactions_error_pct"],
        verdict=verdict,
    )


def _basket_section(b: dict[str, Any]) -> str:
    if b.get("status") != "ok":
        return tr(
            "Not available for this data: it needs {missing}.",
            missing="; ".join(b.get("missing") or []),
        )
    text = tr(
        "{baskets:,} baskets over {items:,} items give {rules:,} rules at support {support:g} "
        "and confidence {confidence:g} ({significant:,} significant after correction).",
        baskets=b["n_transactions"],
        items=b["n_items"],
        rules=b["n_rules"],
        support=b["min_support"],
        confidence=b["min_confidence"],
        significant=b["n_significant"],
    )
    offers = b.get("cross_sell") or []
    if not offers:
        return text + tr(" No rule is both significant and stable enough to suggest a cross-sell.")
    shown = pd.DataFrame(
        [
            {
                "customers who buy": o["customers who buy"],
                "offer": o["offer"],
                "confidence": round(o["confidence"], 2),
                "lift": round(o["lift"], 1),
            }
            for o in offers
        ]
    )
    return (
        text
        + tr(" Cross-sell suggestions (significant and stable rules):")
        + "\n\n"
        + md_table(shown, floatfmt=("", "", ".2f", ".1f")).data
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
    verdict = tr("beat") if all(r["beats_popularity"].values()) else tr("do not clearly beat")
    return tr(
        "{customers:,} customers have a list of up to {top_n} products from {model}. On the "
        "purchases after {cutoff} its lists {verdict} popularity: precision@{k} {precision}, "
        "NDCG@{k} {ndcg}, success@{k} {success} (customers with at least one hit).",
        customers=r["customers_with_lists"],
        top_n=r["top_n"],
        model=best,
        cutoff=r["cutoff"],
        verdict=verdict,
        k=k,
        precision=_signed(g.get("precision_at_k")),
        ndcg=_signed(g.get("ndcg_at_k")),
        success=_signed(g.get("success_at_k")),
    )


def _churn_section(c: dict[str, Any]) -> str:
    rows = {r["model"]: r for r in c["metrics"]}
    model, base = rows[c["scoring_model"]], rows["Baseline: recency"]
    verdict = tr("beats") if c["beats_baseline"] else tr("does not clearly beat")
    listed = sum(r["value_at_risk"] for r in c["win_back"])
    total = c["value_at_risk_total"]
    share = tr(" ({share:.0%} of it)", share=listed / total) if total else ""
    return tr(
        "{scored:,} active customers are scored for churn in the next {days} days. On the test "
        "cutoff ({cutoff}) {model} {verdict} the recency rule: ROC-AUC {auc:.3f} vs "
        "{base_auc:.3f}, {caught:,} vs {base_caught:,} churners in the top decile. Expected value "
        "at risk ({source}) is {total:,.0f}; the win-back list of {listed_customers:,} customers "
        "holds {listed:,.0f}{share}",
        scored=c["scored_customers"],
        days=c["horizon_days"],
        cutoff=c["cutoffs"]["test"],
        model=c["scoring_model"],
        verdict=verdict,
        auc=model["roc_auc"],
        base_auc=base["roc_auc"],
        caught=c["top_decile_churners"],
        base_caught=c["baseline_top_decile_churners"],
        source=tr(c["value_source"]),
        total=total,
        listed_customers=len(c["win_back"]),
        listed=listed,
        share=share,
    ) + (
        tr(", ranked by the recency rule since no model beat it.")
        if c.get("ranked_by") == "Baseline: recency"
        else tr(".")
    )


def _forecast_section(f: dict[str, Any]) -> str:
    units = tr({"D": "days", "W": "weeks", "M": "months"}[f["period"]])
    h = f["horizon"]
    parts = []
    for name in sorted(f["chosen"], key=["revenue", "orders", "customers"].index):
        v = f["chosen"][name]
        total = sum(p["mean"] for p in f["forecast"][name])
        label = tr(
            {"revenue": "Net revenue", "orders": "Orders", "customers": "Active customers"}[name]
        )
        how = (
            tr(
                "{model}, which beat {baseline} in the backtest (MASE {mase:.2f} vs "
                "{baseline_mase:.2f})",
                model=v["chosen"],
                baseline=tr(v["baseline"].lower()),
                mase=v["mase"],
                baseline_mase=v["baseline_mase"],
            )
            if v["beats_baseline"]
            else tr(
                "{model} (MASE {mase:.2f}; no statistical model beat {baseline}, MASE "
                "{baseline_mase:.2f}): a reference line",
                model=tr(v["chosen"].lower()),
                baseline=tr(v["baseline"].lower()),
                mase=v["mase"],
                baseline_mase=v["baseline_mase"],
            )
        )
        if name == "revenue":
            parts.append(
                tr(
                    "{label} over the next {h} {units}: {total:,.0f}, from {how}.",
                    label=label,
                    h=h,
                    units=units,
                    total=total,
                    how=how,
                )
            )
        else:
            parts.append(tr("{label}: from {how}.", label=label, how=how))
    return (" " if language() == "en" else "").join(parts)


def _satisfaction_section(s: dict[str, Any]) -> str:
    if s["nps"] is not None:
        head = tr("NPS {nps:+.0f} over {responses:,} responses.", nps=s["nps"], responses=s["responses"])
    else:
        head = tr(
            "CSAT {mean:.2f} on {low}-{high}, {share:.0%} satisfied, over {responses:,} responses.",
            mean=s["csat_mean"],
            low=s["scale_range"][0],
            high=s["scale_range"][1],
            share=s["csat_share_satisfied"],
            responses=s["responses"],
        )
    low = [
        f"{tr(d['factor'])} {d['level']}"
        for d in (s.get("drivers") or [])
        if d.get("p_value") is not None and d["p_value"] < 0.05 and d["coef"] < 0
    ]
    if low:
        head += tr(" Significantly lower scores: {levels}.", levels=", ".join(low))
    bands = [
        b
        for b in (s.get("churn_by_band") or [])
        if b["band"] != "no feedback" and b.get("mean_churn_probability") is not None
    ]
    if len(bands) >= 2:
        head += tr(
            " Churn probability {first:.0%} in the {first_band} band vs {last:.0%} in the "
            "{last_band} band.",
            first=bands[0]["mean_churn_probability"],
            first_band=tr(bands[0]["band"]),
            last=bands[-1]["mean_churn_probability"],
            last_band=tr(bands[-1]["band"]),
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
        return tr(
            "Not available for this data: it needs {missing}.",
            missing="; ".join(art.get("missing") or []),
        )
    return SECTIONS[slug][1](art)


def sections(arts: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, Markdown) for each chapter that produced an artifact, in chapter order."""
    return [
        (tr(SECTIONS[s][0]), _section(s, arts[s]))
        for s in artifacts.SLUGS
        if s in arts and s in SECTIONS
    ]
