"""Chapter 06 through the whole report: the demo's planted drivers, Online Retail, too little data."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from crm_helpers.paths import PARAMS_DIR
from crm_helpers.report.runner import run_report

from .conftest import SHARED_DATA, write

pytestmark = pytest.mark.slow


def _run(params):
    result = run_report(params, reports_dir=params.parent / "reports", progress=lambda _: None)
    assert result.ok, result.manifest["chapters"]
    arts = result.run_dir / "artifacts"
    return result, json.loads((arts / "churn.json").read_text())


def _outputs(result, name: str) -> str:
    nb = nbformat.read(result.run_dir / "notebooks" / name, as_version=4)
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("data", {}).get("text/markdown", ""))
    return "\n".join(text)


def _check_contract(result, c: dict) -> pd.DataFrame:
    metrics = pd.DataFrame(c["metrics"]).set_index("model")
    assert metrics.index[0] == "Baseline: recency"
    assert {"Logistic regression", "Gradient boosting", c["scoring_model"]} <= set(metrics.index)
    for col in ("roc_auc", "pr_auc", "brier", "top_decile_lift", "top_decile_churners"):
        assert metrics[col].notna().all(), col
    caught = metrics.loc[c["scoring_model"], "top_decile_churners"]
    base = metrics.loc["Baseline: recency", "top_decile_churners"]
    assert c["beats_baseline"] == bool(caught * 10 >= base * 11)  # at least 10 % more, in integers
    table = pd.read_parquet(result.run_dir / "artifacts" / "churn.parquet")
    assert len(table) == c["scored_customers"] and table["customer_key"].is_unique
    assert table["customer_key"].str.fullmatch(r"c_[0-9a-f]{16}").all()  # pseudonymised
    assert table["churn_probability"].between(0, 1).all()
    assert np.allclose(table["value_at_risk"], table["churn_probability"] * table["value"])
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table["value_at_risk"].is_monotonic_decreasing
    assert table["win_back"].sum() == min(100, len(table)) == len(c["win_back"])
    assert c["value_at_risk_total"] == pytest.approx(table["value_at_risk"].sum())
    return metrics


def test_demo_churn_finds_the_planted_drivers_and_feeds_the_win_back_list(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)
    params = write(
        tmp_path / "p.yml",
        "run:\n  chapters: [profile, segmentation, clv, churn]\nreport:\n  renderer: pandoc\n"
        "  formats: [html]\n  version: c1\n",
    )
    result, c = _run(params)
    metrics = _check_contract(result, c)
    assert c["status"] == "ok" and c["horizon_days"] == 90
    auc = metrics.loc[c["scoring_model"], "roc_auc"]
    assert auc >= 0.75 and c["beats_baseline"]
    assert auc > metrics.loc["Baseline: recency", "roc_auc"] + 0.1
    # the planted experience drivers: in the top five of the boosting model
    ranks = pd.DataFrame(c["planted_drivers"]["Gradient boosting"]).set_index("driver")
    assert set(ranks.index) == {"returns", "low_satisfaction"}
    assert (ranks["rank"] <= 5).all(), ranks
    # CLV ran: value at risk is churn probability x CLV, and the views are compared
    assert c["value_source"] == "clv" and c["agreement_with_clv"]["spearman"] > 0.3
    text = _outputs(result, "06-churn.ipynb")
    assert f"{auc:.3f} (the target on the demo is at least 0.75)" in text
    assert "beats the recency rule by a clear margin" in text
    summary = json.loads((result.run_dir / "artifacts" / "summary.json").read_text())
    assert summary["churn"]["win_back_customers"] == 100
    assert "Win-back list" in _outputs(result, "99-summary.ipynb")


def test_online_retail_churn_reports_honest_metrics_without_clv(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "test-key")
    src = PARAMS_DIR / "online_retail.yml"
    params = write(
        tmp_path / "or.yml",
        f"extends: {src}\nrun:\n  chapters: [churn]\nreport:\n  renderer: pandoc\n"
        "  formats: [html]\n  version: or1\n",
    )
    assert (SHARED_DATA / "online_retail" / "online_retail.csv.gz").is_file()
    result, c = _run(params)
    metrics = _check_contract(result, c)
    assert c["value_source"] == "recent spend" and c["agreement_with_clv"] is None
    assert c["planted_drivers"] is None  # real data: nothing planted
    assert metrics.loc["Logistic regression", "roc_auc"] > 0.6
    text = _outputs(result, "06-churn.ipynb")
    verdict = "beats" if c["beats_baseline"] else "does not beat"
    assert f"{c['scoring_model']} {verdict} the recency rule by a clear margin" in text


def test_too_short_a_history_gets_the_not_available_page(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)
    params = write(
        tmp_path / "p.yml",
        "data:\n  demo:\n    customers: 300\n    lines: 3000\n    years: 1\n"
        "run:\n  chapters: [churn]\nchapters:\n  churn:\n    horizon_days: 120\n"
        "report:\n  renderer: pandoc\n  formats: [html]\n  version: s1\n",
    )
    result, c = _run(params)
    assert c["status"] == "not_available"
    assert "longer history" in c["missing"][0] and "shorten horizon_days" in c["missing"][0]
    html = (result.run_dir / "report.html").read_text()
    assert "Not available" in html or "not available" in html
    summary = _outputs(result, "99-summary.ipynb")
    assert "Win-back list" not in summary and "Not available for this data" in summary
