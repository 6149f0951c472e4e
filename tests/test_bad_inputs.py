"""The bad-input corpus (tests/bad_inputs/cases.yml): each broken input ends in its expected outcome.

An error case must end in one clear line from ``crm-report validate`` (exit 2, no traceback, no
customer id); a quarantine case in exactly the expected rows per reason, with every input row
either kept or quarantined.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from crm_helpers.config import load_params
from crm_helpers.data import REASONS, prepare
from crm_helpers.paths import DEFAULT_PARAMS, RunPaths

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yml").read_text("utf-8"))["cases"]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _params_file(case: dict[str, Any], folder: Path) -> Path:
    source = {"path": str(CORPUS / case["file"])} | case.get("source", {})
    raw = _merge(
        {
            "extends": str(DEFAULT_PARAMS),
            "client": "badinput",
            "data": {"source": "files", "transactions": source},
            "cleaning": {"max_valid_date": "2025-01-01"},
        },
        case.get("params", {}),
    )
    path = folder / f"{case['id']}.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_corpus_covers_every_case_of_the_issue():
    ids = {c["id"] for c in CASES}
    assert len(ids) == len(CASES)
    for needed in (
        "empty_file", "header_only", "wrong_delimiter", "latin1_read_as_utf8", "utf8_bom",
        "mixed_date_formats", "decimal_comma_default", "missing_required_column",
        "unknown_extra_columns", "duplicate_header", "nan_and_inf", "huge_values",
        "every_row_bad", "excel_sheet_chosen", "parquet_wrong_types", "params_string_for_integer",
    ):  # fmt: skip
        assert needed in ids
    for c in CASES:
        assert (CORPUS / c["file"]).is_file(), c["file"]
        assert {"error", "kept"} & set(c["expect"]), c["id"]


@pytest.mark.parametrize("case", [c for c in CASES if "kept" in c["expect"]], ids=lambda c: c["id"])
def test_quarantine_case_keeps_and_quarantines_exactly_the_expected_rows(tmp_path, case):
    expect = case["expect"]
    params = load_params(_params_file(case, tmp_path))
    run = RunPaths(tmp_path / "run")
    res = prepare(params, {"transactions": params.data.transactions}, run)
    want = {reason: len(rows) for reason, rows in expect["quarantined"].items()}
    n = expect["kept"] + sum(want.values())
    assert res.reconciliation["transactions"] == {
        "input": n,
        "kept": expect["kept"],
        "quarantined": want,
    }
    assert set(want) <= set(REASONS["transactions"])
    q = pd.read_parquet(run.quarantine / "transactions.parquet")
    got = {r: sorted(g["source_row"].tolist()) for r, g in q.groupby("reason")}
    assert got == {r: sorted(rows) for r, rows in expect["quarantined"].items()}
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert len(tx) == expect["kept"]
    assert sorted([*tx["source_row"], *q["source_row"]]) == list(range(1, n + 1))
    for column, values in expect.get("values", {}).items():
        got_values = tx[column].tolist()
        if column == "order_date":
            got_values = [str(v)[:10] for v in got_values]
        assert got_values == values, column
    if "ignored_columns" in expect:
        assert res.inputs["transactions"]["ignored_columns"] == expect["ignored_columns"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_validate_ends_in_a_clear_message_or_a_summary(tmp_path, case):
    params = _params_file(case, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "crm_helpers.cli", "validate", "--params", str(params)],
        capture_output=True,
        text=True,
        env=os.environ | {"CRM_PSEUDONYM_KEY": "test-key"},
        cwd=tmp_path,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "cust-" not in out  # no customer id in any message
    expect = case["expect"]
    if "error" not in expect:
        assert proc.returncode == 0, proc.stderr
        n = expect["kept"] + sum(len(r) for r in expect["quarantined"].values())
        q = n - expect["kept"]
        assert f"transactions: {n:,} rows = {expect['kept']:,} kept + {q:,} quarantined" in out
        return
    assert proc.returncode == 2, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for words in expect["error"]:
        words = words.replace("{params}", params.name)
        assert words in lines[0], (words, lines[0])
