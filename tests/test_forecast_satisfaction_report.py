"""Chapters 07 and 08 through the whole report: the demo's planted season and drivers, and the
"not available" pages when the data lack the history or the feedback."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from crm_helpers.paths import PARAMS_DIR
from crm_helpers.report.runner import run_report

from .conftest import write

pytestmark = pytest.mark.slow


def _run(params):
    result = run_report(params, reports_dir=params.parent / "reports", progress=lambda _: None)
    assert result.ok, result.manifest["chapters"]
    return result


def _art(result, slug: str) -> dict:
    return json.loads((result.run_dir / "artifacts" / f"{slug}.json").read_text())


def _outputs(result, name: str) -> str:
    nb = nbformat.read(result.run_dir / "notebooks" / name, as_version=4)
    return "\n".join(
        out.get("data", {}).get("text/markdown", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CRM_PSEUDONYM_KEY", raising=False)
        tmp = tmp_path_factory.mktemp("ch0708")
        params = write(
            tmp / "p.yml",
            "run:\n  chapters: [profile, segmentation, churn, forecast, satisfaction]\n"
            "report:\n  renderer: pandoc\n  formats: [html]\n  version: f1\n",
        )
        return _run(params)


def test_demo_forecast_recovers_the_planted_season_and_beats_seasonal_naive(demo):
    f = _art(demo, "forecast")
    assert f["status"] == "ok" and f["period"] == "W" and f["periods"] == 104
    metrics = pd.DataFrame(f["metrics"])
    rev = metrics[metrics["series"] == "revenue"].set_index("model")
    assert {"Naive", "Seasonal naive", "ETS", "SARIMAX"} <= set(rev.index)
    chosen = f["chosen"]["revenue"]
    assert chosen["beats_baseline"] and chosen["chosen"] not in ("Naive", "Seasonal naive")
    assert rev.loc[chosen["chosen"], "mase"] < rev.loc["Seasonal naive", "mase"]
    assert rev.loc[chosen["chosen"], "mase"] == pytest.approx(chosen["mase"])
    # every series is scored on every origin, and its forecast has ordered intervals
    assert set(metrics["series"]) == {"revenue", "orders", "customers"}
    assert (metrics["origins"] == f["origins"]).all()
    for rows in f["forecast"].values():
        assert len(rows) == f["horizon"]
        assert all(
            r["lower_95"] < r["lower_80"] < r["mean"] < r["upper_80"] < r["upper_95"] for r in rows
        )
    # the decomposition finds what the demo plants: late November, Saturdays, growth
    season = f["season"]
    assert abs(season["yearly_peak_day"] - season["planted"]["yearly_peak_day"]) <= 21
    assert season["weekday_peak"] == season["planted"]["weekday_peak"] == "Sat"
    assert season["trend_ratio"] > 1.2
    assert "the decomposition recovers them" in _outputs(demo, "07-forecast.ipynb")


def test_demo_satisfaction_matches_the_feedback_and_finds_the_planted_drivers(demo):
    s = _art(demo, "satisfaction")
    fb = pd.read_parquet(demo.run_dir / "prepared" / "feedback.parquet").dropna(subset=["score"])
    assert s["scale"] == "csat" and s["nps"] is None and s["responses"] == len(fb)
    assert s["csat_mean"] == pytest.approx(fb["score"].mean())
    assert s["csat_share_satisfied"] == pytest.approx((fb["score"] >= 4).mean())
    drivers = pd.DataFrame(s["drivers"]).set_index(["factor", "level"])
    assert drivers.loc[("type", "complaint"), "coef"] < 0
    assert drivers.loc[("channel", "app"), "coef"] < 0 < drivers.loc[("channel", "store"), "coef"]
    assert s["planted_check"]["all_found"]
    bands = pd.DataFrame(s["churn_by_band"]).set_index("band")
    assert bands.loc["low", "mean_churn_probability"] > bands.loc["high", "mean_churn_probability"]
    low_terms = {t["term"] for t in s["terms"] if t["band"] == "low"}
    assert {"late delivery", "rude staff"} <= low_terms
    # a small group keeps its counts but not its scores
    seg = pd.DataFrame(s["by_group"]["segment"])
    small = seg[seg["customers"] < 5]
    assert len(small) and small["suppressed"].all() and small["mean_score"].isna().all()
    summary = _outputs(demo, "99-summary.ipynb")
    assert "**Sales forecast.**" in summary and "**Satisfaction.** CSAT" in summary


def test_without_feedback_or_history_both_chapters_say_what_they_need(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "test-key")
    params = write(
        tmp_path / "c.yml",
        f"extends: {PARAMS_DIR / 'cdnow.yml'}\nrun:\n  chapters: [forecast, satisfaction]\n"
        "chapters:\n  forecast:\n    period: M\nreport:\n  renderer: pandoc\n  formats: [html]\n"
        "  version: n1\n",
    )
    result = _run(params)
    f, s = _art(result, "forecast"), _art(result, "satisfaction")
    assert f["status"] == s["status"] == "not_available"
    assert "complete months of sales" in f["missing"][0] and "(found 18)" in f["missing"][0]
    assert s["missing"] == [
        "a feedback table (customer_id, date, score; channel, type and text where available)"
    ]
    assert "The sales forecast is not available for this data" in _outputs(
        result, "07-forecast.ipynb"
    )


def test_online_retail_backtest_is_reported_whichever_model_wins(tmp_path, monkeypatch):
    """A year of real sales: no yearly season can be measured (52 weeks), so seasonal naive is
    left out and MASE is scaled by the naive forecast; the table and the verdict say so."""
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "test-key")
    params = write(
        tmp_path / "or.yml",
        f"extends: {PARAMS_DIR / 'online_retail.yml'}\nrun:\n  chapters: [forecast, satisfaction]\n"
        "report:\n  renderer: pandoc\n  formats: [html]\n  version: or1\n",
    )
    result = _run(params)
    f = _art(result, "forecast")
    assert f["status"] == "ok" and f["periods"] == 52
    metrics = pd.DataFrame(f["metrics"])
    rev = metrics[metrics["series"] == "revenue"].set_index("model")
    assert "Seasonal naive" not in rev.index and {"Naive", "ETS", "SARIMAX"} <= set(rev.index)
    assert rev["scaled_by"].str.startswith("naive").all() and rev["mase"].notna().all()
    chosen = f["chosen"]["revenue"]
    assert chosen["chosen"] == rev["mase"].idxmin() and chosen["baseline"] == "Naive"
    text = _outputs(result, "07-forecast.ipynb")
    assert "ETS without season" in text and "SARIMAX" in text
    verdict = "forecast best" if chosen["beats_baseline"] else "no model beat naive"
    assert verdict in text
    assert _art(result, "satisfaction")["status"] == "not_available"  # no feedback table
