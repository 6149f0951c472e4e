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
