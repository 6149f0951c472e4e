"""The benchmark compares the same work: the pandas baseline equals ``data.prepare`` on generated lines."""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
import pytest

from crm_helpers.config import TABLES, load_params
from crm_helpers.data import prepare
from crm_helpers.paths import RunPaths

from .conftest import ROOT


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """20,000 generated lines prepared by ``data.prepare`` and by the pandas baseline."""
    tmp = tmp_path_factory.mktemp("bench")
    folder = _module("make_lines").make(20_000, tmp / "data", seed=7)
    params = load_params(folder / "params.yml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_PSEUDONYM_KEY", "test-key")
        inputs = {t: getattr(params.data, t) for t in TABLES if getattr(params.data, t)}
        ours = prepare(params, inputs, RunPaths(tmp / "duckdb"))
    theirs = _module("pandas_prepare").prepare_pandas(
        folder / "transactions.parquet",
        folder / "customers.parquet",
        tmp / "pandas",
        key="test-key",
        max_valid_date=params.max_valid_date(),
    )
    return ours, theirs, tmp


def test_generated_lines_have_every_planted_kind_of_dirt(both):
    ours, _, _ = both
    q = ours.reconciliation["transactions"]["quarantined"]
    for reason in (
        "exact_duplicate",
        "missing_customer_id",
        "unparseable_date",
        "future_date",
        "unparseable_price",
        "zero_price",
        "negative_price",
    ):
        assert q.get(reason, 0) > 0, reason
    assert ours.identity["merged_ids"] > 0
    assert ours.column_issues["transactions"]["product_name_variants"] > 0


def test_baseline_keeps_and_quarantines_the_same_lines_per_reason(both):
    ours, theirs, _ = both
    for table in ("transactions", "customers"):
        assert theirs["reconciliation"][table] == ours.reconciliation[table]
    assert theirs["reference_date"] == ours.reference_date
    assert theirs["identity"]["merged_ids"] == ours.identity["merged_ids"]


@pytest.mark.parametrize(
    "name",
    [
        "prepared/customers",
        "prepared/transactions",
        "prepared/identity_merges",
        "quarantine/transactions",
        "quarantine/customers",
    ],
)
def test_baseline_tables_equal_prepare(both, name):
    """Per-customer features (the unified customer view) and every other table, value for value."""
    _, _, tmp = both
    a = pd.read_parquet(tmp / "duckdb" / f"{name}.parquet")
    b = pd.read_parquet(tmp / "pandas" / f"{name}.parquet")
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        dates = ("signup_date", "first_purchase", "last_purchase", "order_date", "order_ts")
        if name.startswith("prepared") and c in dates:
            a[c], b[c] = pd.to_datetime(a[c]), pd.to_datetime(b[c])
        elif a[c].dtype.kind in "iuf" or b[c].dtype.kind in "iuf":
            a[c], b[c] = a[c].astype("float64"), b[c].astype("float64")
        else:
            a[c], b[c] = a[c].astype("object"), b[c].astype("object")
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9)
