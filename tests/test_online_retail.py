"""Chapters on the real Online Retail data (a sample here; the full file runs through the same params)."""

from __future__ import annotations

import gzip
import json

import pytest

from crm_helpers.config import load_params
from crm_helpers.paths import PARAMS_DIR
from crm_helpers.report.runner import run_report

from .conftest import SHARED_DATA, write

pytestmark = pytest.mark.slow
SOURCE = SHARED_DATA / "online_retail" / "online_retail.csv.gz"


def test_online_retail_params_map_the_published_columns():
    p = load_params(PARAMS_DIR / "online_retail.yml")
    assert p.data.transactions.path == SOURCE.resolve()
    assert p.data.transactions.columns["order_id"] == "InvoiceNo"


def test_profile_and_segmentation_run_on_a_sample_of_online_retail(tmp_path):
    with gzip.open(SOURCE, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(30_001)]  # header + the first 30,000 lines (Dec 2010 - Jan 2011)
    sample = write(tmp_path / "sample.csv", "".join(lines))
    params = write(tmp_path / "or.yml", f"""extends: {PARAMS_DIR / 'online_retail.yml'}
client: or-sample
data:
  transactions:
    path: {sample}
report:
  renderer: pandoc
  version: s1
""")
    result = run_report(params, reports_dir=tmp_path / "reports", progress=lambda _: None)
    assert result.ok, result.manifest["chapters"]
    r = result.manifest["reconciliation"]["transactions"]
    assert r["input"] == 30_000 == r["kept"] + sum(r["quarantined"].values())
    arts = result.run_dir / "artifacts"
    seg = json.loads((arts / "segmentation.json").read_text())
    assert sum(v["customers"] for v in seg["segments"].values()) == seg["customers"]
    assert sum(v["customers"] for v in seg["clusters"].values()) == seg["customers"]
    assert abs(sum(v["revenue_share"] for v in seg["segments"].values()) - 1) < 1e-6
    assert seg["k_scores"] and seg["ari_planted"] is None  # real data: no planted truth
    dq = json.loads((arts / "data_quality.json").read_text())
    assert seg["customers"] == dq["kpis"]["customers"]
    prof = json.loads((arts / "profile.json").read_text())
    assert prof["customers"] == dq["kpis"]["customers"]
    assert 0 < prof["revenue_share_top"]["10%"] <= 1


@pytest.fixture(scope="module")
def or_prepared(tmp_path_factory):
    import os

    from crm_helpers.data import prepare
    from crm_helpers.paths import RunPaths
    from crm_helpers.report.runner import input_sources

    os.environ.setdefault("CRM_PSEUDONYM_KEY", "or-test-key")
    params = load_params(PARAMS_DIR / "online_retail.yml")
    run = RunPaths(tmp_path_factory.mktemp("or-full"))
    result = prepare(params, input_sources(params, lambda _: None), run)
    return result, run


def test_every_online_retail_line_is_accounted_for_as_provenance_counts_them(or_prepared):
    """PROVENANCE.md's checked figures, rebuilt from our kept and quarantined rows."""
    import pandas as pd

    result, run = or_prepared
    r = result.reconciliation["transactions"]
    kept = pd.read_parquet(run.prepared / "transactions.parquet")
    quar = pd.read_parquet(run.quarantine / "transactions.parquet")
    # every line once: 541,909 = kept + quarantined, and the files hold exactly those rows
    assert r["input"] == 541_909 == len(kept) + len(quar) == r["kept"] + sum(r["quarantined"].values())
    rows = pd.concat([kept["source_row"], quar["source_row"]])
    assert rows.is_unique and rows.min() == 1 and rows.max() == 541_909
    assert r["quarantined"]["exact_duplicate"] == 5_268  # PROVENANCE: 5,268 exact duplicate lines

    # the same figures computed independently from the raw file with pandas
    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    dup = raw.duplicated()
    no_id = raw["CustomerID"].str.strip() == ""
    price = raw["UnitPrice"].astype(float)
    assert no_id.sum() == 135_080 and (price <= 0).sum() == 2_517
    assert r["quarantined"]["missing_customer_id"] == int((~dup & no_id).sum())
    assert r["quarantined"].get("zero_price", 0) == int((~dup & ~no_id & (price == 0)).sum())
    assert r["quarantined"].get("negative_price", 0) == int((~dup & ~no_id & (price < 0)).sum())

    # 9,288 lines on cancellation invoices: kept and flagged, or quarantined for another reason
    cancels = kept["is_cancellation"].sum() + quar["order_id"].str.startswith("C").sum()
    assert cancels == 9_288 == raw["InvoiceNo"].str.startswith("C").sum()
    assert kept.loc[kept["is_cancellation"], "quantity"].lt(0).all()

    # the common cleaning (id present, no cancellation, quantity > 0, price > 0, duplicates kept):
    # 397,884 lines, 4,338 customers, revenue 8,911,407.90 = our kept purchases + their duplicates
    buys = kept.loc[~kept["is_cancellation"] & (kept["quantity"] > 0) & (kept["unit_price"] > 0)]
    qd = quar.loc[quar["reason"] == "exact_duplicate"]
    qd = qd.loc[
        qd["customer_key"].notna()
        & ~qd["order_id"].str.startswith("C")
        & (qd["quantity"].astype(float) > 0)
        & (qd["unit_price"].astype(float) > 0)
    ]
    assert len(buys) + len(qd) == 397_884
    assert buys["customer_key"].nunique() == 4_338
    revenue = buys["amount"].sum() + (qd["quantity"].astype(float) * qd["unit_price"].astype(float)).sum()
    assert revenue == pytest.approx(8_911_407.90, abs=0.005)
