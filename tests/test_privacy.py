"""Small-group suppression: hand-made tables with known small groups."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crm_helpers import privacy
from crm_helpers.display import table


@pytest.fixture(autouse=True)
def _k5():
    privacy.set_min_group_size(5)
    yield
    privacy._state["k"] = None


def _segments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": ["Champions", "Tiny", "Empty", "Edge"],
            "customers": [120, 3, 0, 5],
            "% revenue": [61.5, 0.4, 0.0, 2.0],
            "mean CLV": [812.25, 95.0, None, 60.0],
        }
    )


def test_small_counts_are_hidden_and_their_rows_blanked():
    out, hidden = privacy.suppress(_segments())
    assert out.loc[1, "customers"] == "< 5"
    assert out.loc[1, "% revenue"] is None and out.loc[1, "mean CLV"] is None
    # 0 customers discloses nobody; exactly k is shown; other rows are untouched
    assert out.loc[2, "customers"] == 0 and out.loc[3, "customers"] == 5
    assert out.loc[0, "mean CLV"] == 812.25 and out.loc[3, "% revenue"] == 2.0
    assert hidden == 3  # the count and the two values of the "Tiny" row


def test_every_count_column_is_checked_and_one_small_count_blanks_the_row():
    df = pd.DataFrame(
        {
            "cutoff": ["a", "b"],
            "customers": [200, 150],
            "churned": [40, 2],
            "churn rate": [0.2, 0.013],
        }
    )
    out, hidden = privacy.suppress(df)
    assert out.loc[1, "customers"] == 150  # the big count stays
    assert out.loc[1, "churned"] == "< 5" and out.loc[1, "churn rate"] is None
    assert out.loc[0].tolist() == ["a", 200, 40, 0.2]
    assert hidden == 2


def test_cross_tabulation_is_suppressed_cell_by_cell():
    cross = pd.DataFrame({"segment": ["A", "B"], "cluster 1": [12, 4], "cluster 2": [1, 0]})
    out, hidden = privacy.suppress(cross, cells=True)
    assert out["cluster 1"].tolist() == [12, "< 5"]
    assert out["cluster 2"].tolist() == ["< 5", 0]
    assert hidden == 2


def test_tables_without_customer_counts_are_left_alone():
    df = pd.DataFrame({"model": ["BG/NBD"], "parameter": ["r"], "estimate": [0.243]})
    out, hidden = privacy.suppress(df)
    assert hidden == 0 and out is df


def test_k_of_one_disables_suppression_and_k_is_a_parameter():
    out, hidden = privacy.suppress(_segments(), k=1)
    assert hidden == 0
    out, hidden = privacy.suppress(_segments(), k=200)
    assert out["customers"].tolist() == ["< 200", "< 200", 0, "< 200"]


def test_the_shown_table_carries_the_suppression_and_says_so():
    text = table(_segments(), caption="Segments").data
    assert "< 5" in text and "Tiny" in text
    assert "95" not in text  # the tiny segment's mean CLV
    assert "fewer than 5 customers are suppressed" in text
    plain = table(_segments().iloc[[0]], caption="Segments").data
    assert "suppressed" not in plain


def test_merge_small_pools_groups_for_figures():
    df = pd.DataFrame(
        {
            "value": ["A", "B", "C", "D"],
            "customers": [50, 3, 4, 1],
            "share": [0.86, 0.05, 0.07, 0.02],
        }
    )
    out = privacy.merge_small(df, "value", "customers", sums=["share"])
    assert out["value"].tolist() == ["A", "other (3 groups under 5)"]
    assert out["customers"].tolist() == [50, 8]
    assert out["share"].iloc[1] == pytest.approx(0.14)
    # a pool that is itself too small is dropped, not shown
    out = privacy.merge_small(df.iloc[[0, 1]], "value", "customers")
    assert out["value"].tolist() == ["A"]


def test_k_comes_from_the_run_folder(tmp_path):
    (tmp_path / "run_info.json").write_text(json.dumps({"privacy": {"min_group_size": 11}}))
    assert privacy.configure(tmp_path) == 11
    assert privacy.suppress(_segments())[0]["customers"].tolist() == [120, "< 11", 0, "< 11"]
    assert privacy.configure(tmp_path / "absent") == privacy.DEFAULT_K
