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
    out, hidden = privacy.suppress(_segments(), complementary=False)
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
    out, hidden = privacy.suppress(df, complementary=False)  # cut-offs: rows do not add up
    assert out.loc[1, "customers"] == 150  # the big count stays
    assert out.loc[1, "churned"] == "< 5" and out.loc[1, "churn rate"] is None
    assert out.loc[0].tolist() == ["a", 200, 40, 0.2]
    assert hidden == 2


def test_cross_tabulation_is_suppressed_cell_by_cell():
    cross = pd.DataFrame({"segment": ["A", "B"], "cluster 1": [12, 4], "cluster 2": [1, 0]})
    out, hidden = privacy.suppress(cross, cells=True, complementary=False)
    assert out["cluster 1"].tolist() == [12, "< 5"]
    assert out["cluster 2"].tolist() == ["< 5", 0]
    assert hidden == 2
    # with the row and column totals known, the 1 in row A would be 13 - 12: 12 is hidden too;
    # row B and column 2 have no other non-zero cell to hide (their totals are the small counts)
    out, hidden = privacy.suppress(cross, cells=True)
    assert out["cluster 1"].tolist() == ["≥ 5", "< 5"]
    assert out["cluster 2"].tolist() == ["< 5", 0]
    assert hidden == 3


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
    assert "≥ 5" in text and "the next smallest is hidden too" in text
    assert "60" not in text  # the complement's mean CLV (its share of revenue would do too)
    two_small = _segments().assign(customers=[120, 3, 0, 4])
    text = table(two_small, complementary=True).data
    assert "≥ 5" not in text and "next smallest" not in text and "812.25" in text
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
    # a pool still under k takes the next smallest group (leaving B out would give 53 - 50 = 3)
    out = privacy.merge_small(df.iloc[[0, 1]], "value", "customers")
    assert out["value"].tolist() == ["other (2 groups, 1 under 5)"]
    assert out["customers"].tolist() == [53]
    many = pd.DataFrame({"value": list("ABCD"), "customers": [50, 9, 2, 0]})
    out = privacy.merge_small(many, "value", "customers")
    assert out["value"].tolist() == ["A", "other (3 groups, 2 under 5)"]
    assert out["customers"].tolist() == [50, 11]
    # only empty groups below k: nothing to protect, the empty pool is left out
    out = privacy.merge_small(many.assign(customers=[50, 9, 0, 0]), "value", "customers")
    assert out["value"].tolist() == ["A", "B"]
    # everything together under k: nothing can be drawn
    assert privacy.merge_small(df.iloc[[1, 3]], "value", "customers").empty  # 3 + 1


def test_k_comes_from_the_run_folder(tmp_path):
    (tmp_path / "run_info.json").write_text(json.dumps({"privacy": {"min_group_size": 11}}))
    assert privacy.configure(tmp_path) == 11
    assert privacy.suppress(_segments(), complementary=False)[0]["customers"].tolist() == [
        120,
        "< 11",
        0,
        "< 11",
    ]
    # 3 + 5 hidden customers are fewer than 11 together: 120 is hidden too
    assert privacy.suppress(_segments())[0]["customers"].tolist() == ["≥ 11", "< 11", 0, "< 11"]
    assert privacy.configure(tmp_path / "absent") == privacy.DEFAULT_K


def test_a_lone_small_count_is_protected_by_the_next_smallest():
    out, hidden = privacy.suppress(_segments())
    assert out["customers"].tolist() == [120, "< 5", 0, "≥ 5"]
    # the complement's row is blanked like the small one's: its share would give its count
    assert out.loc[3, "% revenue"] is None and out.loc[3, "mean CLV"] is None
    assert out.loc[0].tolist() == ["Champions", 120, 61.5, 812.25]
    assert hidden == 6
    # per count column: the churned column has one small count, its complement is the 40
    df = pd.DataFrame(
        {"band": ["a", "b", "c"], "customers": [200, 150, 90], "churned": [40, 2, 61]}
    )
    out, _ = privacy.suppress(df)
    assert out["churned"].tolist() == ["≥ 5", "< 5", 61]
    assert out["customers"].tolist() == [200, 150, 90]
    # two small counts that together are still under k: the next smallest is hidden as well
    small, complement = privacy.hidden_groups([120, 1, 2, 60], 5)
    assert small.tolist() == [False, True, True, False]
    assert complement.tolist() == [False, False, False, True]
    small, complement = privacy.hidden_groups([120, 3, 4, 60], 5)  # 3 + 4: protected
    assert not complement.any()
    small, complement = privacy.hidden_groups([7, 3, 0, 7], 5)
    assert small.tolist() == [False, True, False, False]
    assert complement.tolist() == [True, False, False, False]  # the first of equal counts
    # equal counts are told apart by name: two tables in different orders hide the same group
    seg = pd.DataFrame(
        {"segment": ["Lost", "At risk", "Tiny", "Loyal"], "customers": [6, 6, 2, 90]}
    )
    for df in (seg, seg.iloc[::-1], seg.sort_values("customers")):
        out, _ = privacy.suppress(df)
        assert out.set_index("segment")["customers"].to_dict() == {
            "Lost": 6,
            "At risk": "≥ 5",
            "Tiny": "< 5",
            "Loyal": 90,
        }


@pytest.mark.parametrize("seed", range(40))
def test_no_hidden_cross_tab_cell_is_a_total_minus_the_rest(seed):
    """Random cross-tabulations: every row and column with a hidden cell has two or more that
    together count at least k customers, unless nothing else in it is left to hide (the rest is
    zero: its total is then the small count, which no table here shows)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(2, 7, size=2))
    counts = rng.choice([0, 1, 2, 3, 4, 5, 8, 13, 40], size=shape)
    df = pd.DataFrame(counts, columns=[f"c{j}" for j in range(shape[1])])
    out, hidden = privacy.suppress(df, cells=True)
    shown = out.to_numpy()
    masked = np.vectorize(lambda v: isinstance(v, str))(shown)
    small = (counts > 0) & (counts < 5)
    assert (masked >= small).all() and hidden == masked.sum()
    for lines, vals in ((masked, counts), (masked.T, counts.T)):
        for m, v in zip(lines, vals, strict=True):
            if m.sum() == 1 or 0 < v[m].sum() < 5:
                assert (v[~m] == 0).all(), (counts, shown)
    # what is shown is exact, and a complement is never below k
    assert all(
        shown[i, j] == counts[i, j]
        if not masked[i, j]
        else shown[i, j] == ("< 5" if small[i, j] else "≥ 5") and (small[i, j] or counts[i, j] >= 5)
        for i in range(shape[0])
        for j in range(shape[1])
    )


def test_figures_hide_a_lone_small_group_and_the_next_smallest():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from crm_helpers.models import profile, segment

    summary = pd.DataFrame(
        {"customers": [100, 3, 40, 20], "share": [0.61, 0.02, 0.245, 0.125]},
        index=["A", "B", "C", "D"],
    ).assign(revenue_share=[0.7, 0.01, 0.19, 0.1])
    ax = segment.plot_segments(summary)
    # bars are drawn bottom-up (the table's order reversed), customers' shares first
    widths = np.nan_to_num([p.get_width() for p in ax.containers[0]][::-1])  # NaN: not drawn
    assert widths[1] == 0 and widths[3] == 0  # B (3) and D (20, the next smallest)
    assert widths[0] == pytest.approx(61) and widths[2] == pytest.approx(24.5)
    plt.close("all")

    revenue = pd.DataFrame(
        {
            "customers": [30, 2, 12, 50],
            "revenue": [900.0, 40.0, 300.0, 2000.0],
            "revenue_per_customer": [30.0, 20.0, 25.0, 40.0],
        },
        index=["2024-01", "2024-02", "2024-03", "2024-04"],
    )
    ax = profile.plot_cohort_revenue(revenue)
    heights = np.nan_to_num([p.get_height() for p in ax.containers[0]])
    assert heights[1] == 0 and heights[2] == 0  # 2 customers, and the 12 beside it
    assert heights[0] == 900.0 and heights[3] == 2000.0
    plt.close("all")
