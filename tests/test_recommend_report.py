"""Chapter 05 through the whole report: the demo's planted taste and the real Online Retail file."""

from __future__ import annotations

import json

import duckdb
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
    return result, json.loads((arts / "recommendations.json").read_text())


def _check_scorecard(r: dict) -> None:
    card = pd.DataFrame(r["metrics"]).set_index("model")
    assert card.index[0] == "popularity" and len(card) >= 3  # baseline + item-based CF + SVD
    best = card.loc[r["chosen_model"]]
    pop = card.loc["popularity"]
    # the product's bar: beats popularity on precision@10 and NDCG@10, success@10 >= +10 %
    assert best["precision_at_k"] > pop["precision_at_k"], card
    assert best["ndcg_at_k"] > pop["ndcg_at_k"], card
    assert best["success_at_k"] >= 1.10 * pop["success_at_k"], card
    assert r["beats_popularity"] == {
        "precision_at_k": True,
        "ndcg_at_k": True,
        "success_at_k": True,
    }
    # the reported gains are the scorecard's own ratios
    gain = r["gain_vs_popularity_pct"][r["chosen_model"]]
    assert gain["success_at_k"] == pytest.approx(
        100 * (best["success_at_k"] / pop["success_at_k"] - 1)
    )
    assert r["k"] == 10 and card["customers"].nunique() == 1 and card["customers"].iloc[0] > 500


def test_demo_recommender_beats_popularity_and_lists_only_new_products(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)
    params = write(
        tmp_path / "p.yml",
        "run:\n  chapters: [recommendations]\nreport:\n  renderer: pandoc\n  formats: [html]\n"
        "  version: r1\n",
    )
    result, r = _run(params)
    _check_scorecard(r)
    lists = pd.read_parquet(result.run_dir / "artifacts" / "recommendations.parquet")
    assert lists["customer_key"].str.fullmatch(r"c_[0-9a-f]{16}").all()  # pseudonymised
    assert (
        lists.groupby("customer_key")["rank"]
        .apply(list)
        .map(lambda ranks: ranks == list(range(1, len(ranks) + 1)) and len(ranks) <= 10)
        .all()
    )
    assert lists["customer_key"].nunique() == r["customers_with_lists"]
    # repeat purchases are not wanted by default: no list holds a product its customer bought
    tx = str(result.run_dir / "prepared" / "transactions.parquet")
    bought = (
        duckdb.connect()
        .execute(
            f"SELECT DISTINCT customer_key, product_name AS item FROM read_parquet('{tx}') "
            "WHERE NOT is_return AND is_product"
        )
        .df()
    )
    overlap = lists.merge(bought, on=["customer_key", "item"])
    assert overlap.empty, overlap.head()
    # every buyer gets a list
    assert set(lists["customer_key"]) == set(bought["customer_key"])
    html = (result.run_dir / "report.html").read_text()
    assert "Personalised recommendations" in html and "beats the popularity baseline" in html


def test_online_retail_recommender_beats_popularity_on_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "test-key")
    src = PARAMS_DIR / "online_retail.yml"
    params = write(
        tmp_path / "or.yml",
        f"extends: {src}\nrun:\n  chapters: [recommendations]\nreport:\n  renderer: pandoc\n"
        "  formats: [html]\n  version: or1\n",
    )
    assert (SHARED_DATA / "online_retail" / "online_retail.csv.gz").is_file()
    _, r = _run(params)
    _check_scorecard(r)
    assert r["item_column"] == "product_name" and r["cutoff"] == "2011-09-07"
    assert r["fallback_group"] == "country"  # no customer table: the first purchase's country
