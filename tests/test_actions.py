"""Action lists from hand-made chapter artifacts."""

from __future__ import annotations

import json

import pandas as pd

from crm_helpers import actions


def _run(tmp_path):
    art = tmp_path / "artifacts"
    art.mkdir()
    seg = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            "segment": ["Champions", "At risk", "At risk", "Hibernating"],
            "recency_days": [5, 300, 250, 500],
            "frequency": [9, 3, 2, 1],
            "monetary": [900.0, 100.0, 300.0, 20.0],
        }
    )
    seg.to_parquet(art / "segmentation.parquet")
    (art / "segmentation.json").write_text(
        json.dumps(
            {
                "segments": {
                    "At risk": {"action": "Win them back"},
                    "Hibernating": {"action": "Reactivate"},
                }
            }
        )
    )
    (art / "churn.json").write_text(
        json.dumps(
            {
                "win_back": [
                    {
                        "rank": 2,
                        "customer_key": "b",
                        "churn_probability": 0.5,
                        "value": 10.0,
                        "value_at_risk": 5.0,
                        "reason_1": None,
                    },
                    {
                        "rank": 1,
                        "customer_key": "c",
                        "churn_probability": 0.4,
                        "value": 50.0,
                        "value_at_risk": 20.0,
                        "reason_1": "complained lately",
                    },
                ],
                # chapter 06 lists every segment and flags the at-risk ones
                "at_risk_segments": [
                    {"segment": "At risk", "at_risk_segment": False},
                    {"segment": "Hibernating", "at_risk_segment": True},
                ],
            }
        )
    )
    pd.DataFrame(
        {
            "customer_key": list("abcd"),
            "clv": [500.0, 10.0, 90.0, 1.0],
            "p_alive": [0.9] * 4,
            "clv_decile": [1, 3, 1, 9],
        }
    ).to_parquet(art / "clv.parquet")
    pd.DataFrame(
        {
            "customer_key": ["a", "a", "a", "a", "b"],
            "rank": [1, 2, 3, 4, 1],
            "item": ["x", "y", "z", "w", "y"],
            "score": [1.0] * 5,
            "source": ["svd"] * 5,
        }
    ).to_parquet(art / "recommendations.parquet")
    return tmp_path


def test_each_list_has_its_customers_order_and_action(tmp_path):
    lists = actions.action_lists(_run(tmp_path))
    wb = lists["win_back"]
    assert wb["customer_key"].tolist() == ["c", "b"]  # by rank
    assert wb["action"].tolist()[0].endswith("complained lately")
    assert wb["action"].tolist()[1].endswith("no single reason")
    vip = lists["vip_care"]
    assert vip["customer_key"].tolist() == ["a", "c"] and vip["segment"].tolist() == [
        "Champions",
        "At risk",
    ]
    risk = lists["at_risk"]  # the segment chapter 06 flags, with chapter 02's action for it
    assert risk["customer_key"].tolist() == ["d"] and risk["action"].tolist() == ["Reactivate"]
    cross = lists["cross_sell"]
    assert cross.columns[:4].tolist() == ["customer_key", "offer_1", "offer_2", "offer_3"]
    assert cross["customer_key"].tolist() == ["a", "b"]  # by spend
    assert cross.loc[0, ["offer_1", "offer_2", "offer_3"]].tolist() == ["x", "y", "z"]
    assert cross["action"].tolist() == ["Cross-sell: offer x", "Cross-sell: offer y"]


def test_export_writes_csv_and_one_workbook_and_names_what_is_missing(tmp_path):
    run = _run(tmp_path)
    (run / "artifacts" / "churn.json").unlink()
    out = actions.export(run)
    assert out["lists"] == {"vip_care": 2, "at_risk": 2, "cross_sell": 2} and out["missing"] == [
        "win_back"
    ]
    book = pd.read_excel(run / "actions" / "action_lists.xlsx", sheet_name=None)
    assert list(book) == ["vip_care", "at_risk", "cross_sell"]
    for name, rows in out["lists"].items():
        assert len(pd.read_csv(run / "actions" / f"{name}.csv")) == rows == len(book[name])
    # without chapter 06 the at-risk list falls back to chapter 02's at-risk segment names
    assert sorted(pd.read_csv(run / "actions" / "at_risk.csv")["customer_key"]) == ["b", "c"]
