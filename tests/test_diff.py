"""`crm-report diff` and the "what changed" page, on hand-made run folders (fast, no kernels)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crm_helpers import privacy
from crm_helpers.config import load_params
from crm_helpers.errors import CRMError
from crm_helpers.paths import RunPaths
from crm_helpers.report import diff, render

CLI = [sys.executable, "-m", "crm_helpers.cli"]

PARAMS = {
    "client": "acme",
    "report": {"version": None, "title": "CRM insight report"},
    "privacy": {"min_group_size": 5},
    "chapters": {
        "basket": {"min_support": 0.005, "min_confidence": 0.2},
        "segmentation": {"k_max": 8},
    },
}
CHAPTERS = [
    {"slug": "data_quality", "number": "00", "title": "Data quality", "status": "ok"},
    {"slug": "segmentation", "number": "02", "title": "Segmentation", "status": "ok"},
    {"slug": "basket", "number": "04", "title": "Market basket", "status": "ok"},
    {"slug": "summary", "number": "99", "title": "Executive summary", "status": "ok"},
]
ARTIFACTS = {
    "summary": {"kpis": {"customers": 400, "net_revenue": 1221415.89, "repeat_rate": 0.69}},
    "data_quality": {"kpis": {"customers": 400, "return_line_share": 0.036}, "rows_input": 1000},
    "segmentation": {
        "k": 4,
        "segments": {
            "Champions": {"customers": 139, "revenue_share": 0.97, "action": "Reward"},
            "Lost": {"customers": 79, "revenue_share": 0.001, "action": "Ignore"},
            "Promising": {"customers": 3, "revenue_share": 0.0002, "action": "Trial"},
        },
        "clusters": {"Top value": {"customers": 29, "revenue_share": 0.82}},
    },
    "basket": {
        "status": "ok",
        "n_transactions": 4443,
        "min_support": 0.005,
        "n_itemsets": 114,
        "n_rules": 8,
    },
    "recommendations": {
        "status": "ok",
        "metrics": [
            {"model": "popularity", "customers": 155, "precision_at_k": 0.0839},
            {"model": "item-based CF", "customers": 155, "precision_at_k": 0.1129},
        ],
    },
    "forecast": {
        "status": "ok",
        "metrics": [
            {"series": "revenue", "model": "ETS", "mase": 0.45, "rank": 1},
            {"series": "orders", "model": "ETS", "mase": 1.19, "rank": 2},
        ],
    },
    "satisfaction": {"status": "ok", "csat_mean": 2.8997669, "nps": None},
}
INPUTS = {"transactions": {"sha256": "a" * 64, "rows": 1000}}
RECONCILIATION = {
    "transactions": {"input": 1000, "kept": 990, "quarantined": {"exact_duplicate": 10}}
}


def make_run(
    root: Path,
    version: str,
    *,
    client: str = "acme",
    params: dict | None = None,
    artifacts: dict | None = None,
    chapters: list | None = None,
    inputs: dict | None = None,
    reconciliation: dict | None = None,
    status: str = "complete",
) -> Path:
    """A run folder as the runner leaves it: manifest, run_info and artifact JSONs."""
    run = root / client / version
    (run / "artifacts").mkdir(parents=True)
    manifest = {
        "client": client,
        "version": version,
        "status": status,
        "params": copy.deepcopy(params or PARAMS) | {"client": client},
        "inputs": inputs or INPUTS,
        "chapters": chapters or CHAPTERS,
        "reconciliation": reconciliation or RECONCILIATION,
    }
    manifest["params"]["report"]["version"] = version
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "run_info.json").write_text(json.dumps({"privacy": {"min_group_size": 5}}))
    for slug, data in (artifacts or ARTIFACTS).items():
        (run / "artifacts" / f"{slug}.json").write_text(json.dumps(data))
    return run


def changed(**edits) -> dict:
    """ARTIFACTS with ``slug={key: value}`` merged in (a deep copy)."""
    arts = copy.deepcopy(ARTIFACTS)
    for slug, upd in edits.items():
        arts[slug].update(upd)
    return arts


def by_key(d: diff.RunDiff) -> dict[str, diff.FigureChange]:
    return {r.key: r for r in d.rows}


def cells(markdown: str, figure: str) -> list[str]:
    """The stripped cells of the Markdown table row whose cell is ``figure``."""
    for line in markdown.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if figure in row:
            return row
    raise AssertionError(f"no table row for {figure!r} in:\n{markdown}")


# ------------------------------------------------------------------------------ comparison
def test_identical_runs_have_only_unchanged_rows(tmp_path):
    a, b = make_run(tmp_path, "v1"), make_run(tmp_path, "v2")
    d = diff.compare_runs(a, b)
    assert d.rows and {r.status for r in d.rows} == {"unchanged"}
    assert d.old_version == "v1" and d.new_version == "v2" and d.client == "acme"
    assert "params.report.version" not in by_key(d)  # differs by design: not a change


def test_changed_unchanged_added_and_removed_rows(tmp_path):
    segs = copy.deepcopy(ARTIFACTS["segmentation"]["segments"])
    del segs["Lost"]
    segs["New"] = {"customers": 12, "revenue_share": 0.004, "action": "Onboard"}
    a = make_run(tmp_path, "v1")
    b = make_run(
        tmp_path, "v2", artifacts=changed(basket={"n_rules": 5}, segmentation={"segments": segs})
    )
    rows = by_key(diff.compare_runs(a, b))
    r = rows["basket.n_rules"]
    assert (r.status, r.area, r.figure, r.old, r.new) == ("changed", "Basket", "Rules", 8, 5)
    assert r.abs_change == -3 and r.rel_change == pytest.approx(-3 / 8)
    assert rows["basket.n_itemsets"].status == "unchanged"
    assert rows["segmentation.segments.Champions.customers"].status == "unchanged"
    lost = rows["segmentation.segments.Lost.customers"]
    assert (lost.status, lost.old, lost.new) == ("removed", 79, None)
    new = rows["segmentation.segments.New.revenue_share"]
    assert (new.status, new.old, new.new, new.area) == ("added", None, 0.004, "Segments")
    assert "segmentation.segments.Champions.action" not in rows  # advice text is not a figure


def test_float_noise_is_unchanged_and_a_real_move_is_changed(tmp_path):
    csat = ARTIFACTS["satisfaction"]["csat_mean"]
    a = make_run(tmp_path, "v1")
    noise = make_run(
        tmp_path, "v2", artifacts=changed(satisfaction={"csat_mean": csat * (1 + 1e-9)})
    )
    real = make_run(
        tmp_path, "v3", artifacts=changed(satisfaction={"csat_mean": csat * (1 + 1e-5)})
    )
    assert by_key(diff.compare_runs(a, noise))["satisfaction.csat_mean"].status == "unchanged"
    r = by_key(diff.compare_runs(a, real))["satisfaction.csat_mean"]
    assert r.status == "changed" and r.rel_change == pytest.approx(1e-5)
    assert diff.same(0.0, 1e-12) and not diff.same(0.0, 1e-6)  # absolute tolerance at zero
    assert not diff.same(1000, 1001)  # counts: any difference counts
    assert not diff.same(None, 0) and diff.same("ETS", "ETS") and not diff.same(True, 1.0 + 1e-3)


def test_params_diff_names_the_key_path_with_old_and_new_values(tmp_path):
    p2 = copy.deepcopy(PARAMS)
    p2["chapters"]["basket"]["min_support"] = 0.01
    p2["privacy"]["pii_columns"] = ["name", "email"]  # a list: compared as a whole
    a, b = make_run(tmp_path, "v1"), make_run(tmp_path, "v2", params=p2)
    d = diff.compare_runs(a, b)
    params = d.of("changed", "added", "removed", areas=("Parameters",))
    assert sorted((r.figure, r.status) for r in params) == [
        ("chapters.basket.min_support", "changed"),
        ("privacy.pii_columns", "added"),
    ]
    ms = by_key(d)["params.chapters.basket.min_support"]
    assert (ms.old, ms.new, ms.status) == (0.005, 0.01, "changed")
    assert not d.changed_figures  # params moved, no result did


def test_metric_rows_are_matched_by_model_name_not_by_position(tmp_path):
    rec = list(reversed(ARTIFACTS["recommendations"]["metrics"]))  # same rows, other order
    rec = [dict(r) for r in rec]
    rec[0]["precision_at_k"] = 0.15  # item-based CF moved; popularity did not
    fc = [dict(r) for r in reversed(ARTIFACTS["forecast"]["metrics"])]
    a = make_run(tmp_path, "v1")
    b = make_run(
        tmp_path,
        "v2",
        artifacts=changed(recommendations={"metrics": rec}, forecast={"metrics": fc}),
    )
    rows = by_key(diff.compare_runs(a, b))
    cf = rows["recommendations.metrics.item-based CF.precision_at_k"]
    assert (cf.status, cf.old, cf.new, cf.area) == ("changed", 0.1129, 0.15, "Models")
    assert cf.figure == "Recommendations item-based CF: precision@k"
    assert rows["recommendations.metrics.popularity.precision_at_k"].status == "unchanged"
    assert rows["forecast.metrics.revenue · ETS.mase"].old == 0.45  # series + model identify a row
    assert rows["forecast.metrics.orders · ETS.mase"].status == "unchanged"


def test_input_fingerprints_reconciliation_and_chapters_are_compared(tmp_path):
    chapters = [dict(c) for c in CHAPTERS if c["slug"] != "segmentation"]
    chapters[1]["status"] = "failed"  # basket
    chapters.append({"slug": "churn", "number": "06", "title": "Churn", "status": "ok"})
    a = make_run(tmp_path, "v1")
    b = make_run(
        tmp_path,
        "v2",
        inputs={"transactions": {"sha256": "b" * 64, "rows": 1001}},
        reconciliation={
            "transactions": {
                "input": 1001,
                "kept": 990,
                "quarantined": {"exact_duplicate": 10, "future_date": 1},
            }
        },
        chapters=chapters,
    )
    rows = by_key(diff.compare_runs(a, b))
    assert rows["inputs.transactions.sha256"].status == "changed"
    assert rows["inputs.transactions.rows"].abs_change == 1
    assert rows["reconciliation.transactions.quarantined.future_date"].status == "added"
    assert rows["reconciliation.transactions.quarantined"].new == 11
    assert rows["reconciliation.transactions.kept"].status == "unchanged"
    assert (rows["chapter.basket"].old, rows["chapter.basket"].new) == ("ok", "failed")
    assert rows["chapter.segmentation"].status == "removed"
    assert rows["chapter.churn"].status == "added"


def test_a_chapter_that_became_not_available_is_a_change(tmp_path):
    a = make_run(tmp_path, "v1")
    b = make_run(tmp_path, "v2", artifacts=changed(basket={"status": "not_available"}))
    r = by_key(diff.compare_runs(a, b))["chapter.basket"]
    assert (r.old, r.new, r.status) == ("ok", "not_available", "changed")


def test_runs_of_two_clients_or_a_folder_that_is_no_run_are_refused(tmp_path):
    a, b = make_run(tmp_path, "v1"), make_run(tmp_path, "v1", client="other")
    with pytest.raises(CRMError, match="client 'other'.*client 'acme'"):
        diff.compare_runs(a, b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CRMError, match=r"empty: not a run folder \(no manifest.json\)"):
        diff.compare_runs(a, tmp_path / "empty")
    with pytest.raises(CRMError, match="nothere: no such run folder"):
        diff.compare_runs(tmp_path / "nothere", a)


# ------------------------------------------------------------------------------------ page
def test_page_names_changed_figures_with_both_values_and_the_changed_params(tmp_path):
    p2 = copy.deepcopy(PARAMS)
    p2["chapters"]["basket"]["min_support"] = 0.01
    a = make_run(tmp_path, "v1")
    b = make_run(tmp_path, "v2", params=p2, artifacts=changed(basket={"n_itemsets": 50}))
    page = diff.page_markdown(diff.compare_runs(a, b))
    assert page.startswith("# What changed since the last report (version v1) {.unnumbered}")
    assert "`chapters.basket.min_support`: 0.005 → 0.01" in page
    assert cells(page, "Frequent itemsets") == ["Frequent itemsets", "114", "50", "-64", "-56.1 %"]
    assert "## Basket {#changed-basket}" in page
    assert "Input data:** unchanged" in page and "No figure changed" not in page
    assert "Rules" not in page  # unchanged figures are not listed


def test_page_says_no_figure_changed(tmp_path):
    d = diff.compare_runs(make_run(tmp_path, "v1"), make_run(tmp_path, "v2"))
    page = diff.page_markdown(d)
    assert "**No figure changed** since version v1." in page
    assert "no parameter changed" in page and "|" not in page


def test_small_customer_counts_are_suppressed_on_the_page_and_in_the_table(tmp_path):
    segs = copy.deepcopy(ARTIFACTS["segmentation"]["segments"])
    segs["Promising"].update(customers=4, revenue_share=0.0009)  # 3 -> 4: both below k = 5
    segs["Champions"]["customers"] = 140
    a = make_run(tmp_path, "v1")
    b = make_run(tmp_path, "v2", artifacts=changed(segmentation={"segments": segs}))
    d = diff.compare_runs(a, b)
    page = diff.page_markdown(d)
    assert cells(page, "Segment Promising: customers") == [
        "Segment Promising: customers",
        "< 5",
        "< 5",
        "",
        "",
    ]
    # A small group's other figures are blank, and so is their change.
    assert cells(page, "Segment Promising: revenue share")[1:] == ["–", "–", "", ""]
    assert cells(page, "Segment Champions: customers")[1:4] == ["139", "140", "+1"]
    table = diff.cli_text(d)
    assert cells(table, "Segment Promising: customers")[2:4] == ["< 5", "< 5"]
    assert "Groups of fewer than 5 customers are suppressed" in page
    assert by_key(d)["segmentation.segments.Promising.customers"].new == 4  # JSON keeps exact


def test_write_page_compares_with_the_latest_complete_run_and_records_it(tmp_path):
    client_dir = tmp_path / "acme"
    make_run(tmp_path, "v1")
    (client_dir / "latest").symlink_to("v1", target_is_directory=True)
    new = make_run(tmp_path, "v2", artifacts=changed(basket={"n_rules": 5}))
    manifest = json.loads((new / "manifest.json").read_text())
    record = diff.write_page(new, manifest, client_dir)
    assert record["version"] == "v1" and record["page"] == "diff.md"
    assert record["changed_figures"] == 1 and record["changed_params"] == []
    assert "Rules" in (new / "diff.md").read_text()
    assert diff.page_of(new, manifest | {"compared_with": record}) == new / "diff.md"
    assert diff.page_of(new, manifest | {"compared_with": None}) is None


def test_a_chinese_report_gets_the_page_in_chinese(tmp_path):
    client_dir = tmp_path / "acme"
    make_run(tmp_path, "v1")
    (client_dir / "latest").symlink_to("v1", target_is_directory=True)
    p2 = copy.deepcopy(PARAMS)
    p2["chapters"]["basket"]["min_support"] = 0.01
    new = make_run(tmp_path, "v2", params=p2, artifacts=changed(basket={"n_itemsets": 50}))
    info = {"privacy": {"min_group_size": 5}, "report": {"language": "zh"}}
    (new / "run_info.json").write_text(json.dumps(info))
    manifest = json.loads((new / "manifest.json").read_text())
    assert diff.write_page(new, manifest, client_dir)["changed_figures"] == 1
    page = (new / "diff.md").read_text(encoding="utf-8")
    assert page.startswith("# 自上次报告以来的变化（版本 v1） {.unnumbered}")
    assert "**已变更的参数：**" in page and "`chapters.basket.min_support`: 0.005 → 0.01" in page
    assert "**输入数据：**未变化" in page and "## 购物篮 {#changed-basket}" in page
    header = next(line for line in page.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "指标",
        "旧值",
        "新值",
        "变化",
        "变化 %",
    ]
    assert cells(page, "Frequent itemsets")[1:3] == ["114", "50"]  # values as recorded
    for english in ("What changed", "Parameters changed", "Input data", "compared with", "Figure"):
        assert english not in page, english
    # Every area heading the page can show has its Chinese name.
    assert all(diff.i18n.tr(a, lang="zh") != a for a in diff.AREAS)


def test_no_page_without_a_previous_complete_run(tmp_path):
    client_dir = tmp_path / "acme"
    new = make_run(tmp_path, "v2")
    manifest = json.loads((new / "manifest.json").read_text())
    assert diff.write_page(new, manifest, client_dir) is None  # first run of the client
    make_run(tmp_path, "v1", status="failed")
    (client_dir / "latest").symlink_to("v1", target_is_directory=True)
    assert diff.write_page(new, manifest, client_dir) is None  # latest is not complete
    assert not (new / "diff.md").exists()


def test_both_renderers_put_the_page_right_after_the_index(tmp_path):
    client_dir = tmp_path / "acme"
    make_run(tmp_path, "v1")
    (client_dir / "latest").symlink_to("v1", target_is_directory=True)
    new = make_run(tmp_path, "v2", artifacts=changed(basket={"n_rules": 5}))
    manifest = json.loads((new / "manifest.json").read_text())
    manifest["compared_with"] = diff.write_page(new, manifest, client_dir)
    run = RunPaths(new)
    (new / "notebooks").mkdir()
    params = load_params()
    md = render.build_markdown(run, params, manifest, new / "_render").read_text()
    about = md.index("# About this report")
    page = md.index("# What changed since the last report (version v1)")
    first_chapter = md.index("# Data quality")  # no notebook here: the failed-chapter page
    assert about < page < first_chapter
    chapters = render.quarto_chapters(run, manifest)
    cfg = render.quarto_config(params, manifest, chapters)
    assert cfg["book"]["chapters"][:3] == ["index.md", "diff.md", "failed-data_quality.md"]
    assert yaml.safe_load(yaml.safe_dump(cfg))["book"]["chapters"][1] == "diff.md"


# ------------------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_cli_table_names_the_changed_figure_and_counts_the_unchanged(tmp_path):
    make_run(tmp_path, "v1")
    make_run(tmp_path, "v2", artifacts=changed(basket={"n_rules": 5}))
    proc = _cli("diff", "v1", "v2", "--client", "acme", "--reports-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert cells(out, "Rules") == ["Basket", "Rules", "8", "5", "-3", "-37.5 %"]
    assert "Frequent itemsets" not in out
    n = len(diff.compare_runs(tmp_path / "acme" / "v1", tmp_path / "acme" / "v2").of("unchanged"))
    assert f"1 changed, added or removed; {n} unchanged (--all shows them)" in out
    every = _cli("diff", str(tmp_path / "acme" / "v1"), str(tmp_path / "acme" / "v2"), "--all")
    assert cells(every.stdout, "Frequent itemsets")[-1] == "unchanged"
    assert cells(every.stdout, "Rules")[-1] == "changed"


def test_cli_json_has_every_row_with_exact_values(tmp_path):
    a = make_run(tmp_path, "v1")
    b = make_run(tmp_path, "v2", artifacts=changed(basket={"n_rules": 5}))
    (tmp_path / "acme" / "latest").symlink_to("v2", target_is_directory=True)
    proc = _cli(
        "diff", "v1", "latest", "--client", "acme", "--reports-dir", str(tmp_path), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["old"]["version"] == "v1" and data["new"]["version"] == "v2"
    assert json.loads(_cli("diff", str(a), str(b), "--json").stdout)["rows"] == data["rows"]
    assert data["counts"]["changed"] == 1 and data["tolerance"]["rel_tol"] == diff.REL_TOL
    row = next(r for r in data["rows"] if r["key"] == "basket.n_rules")
    assert (row["old"], row["new"], row["status"], row["abs_change"]) == (8, 5, "changed", -3)


def test_cli_bad_paths_are_one_line_errors_with_exit_2(tmp_path):
    a = make_run(tmp_path, "v1")
    missing = tmp_path / "acme" / "v9"
    proc = _cli("diff", str(a), str(missing))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {missing}: no such run folder"
    proc = _cli("diff", str(a), str(tmp_path))
    assert proc.returncode == 2 and f"{tmp_path}: not a run folder" in proc.stderr
    other = make_run(tmp_path, "v1", client="other")
    proc = _cli("diff", str(a), str(other))
    assert proc.returncode == 2 and "same client" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_group_hidden_beside_a_small_one_is_hidden_on_the_page_too(tmp_path):
    """The report hides Lost beside Promising (3): the comparison must not show Lost's size."""
    segs = copy.deepcopy(ARTIFACTS["segmentation"]["segments"])
    segs["Lost"].update(customers=80, revenue_share=0.0012)  # changed: on the page
    a = make_run(tmp_path, "v1")
    b = make_run(tmp_path, "v2", artifacts=changed(segmentation={"segments": segs}))
    d = diff.compare_runs(a, b)
    page = diff.page_markdown(d)
    assert cells(page, "Segment Lost: customers")[1:] == ["≥ 5", "≥ 5", "", ""]
    assert cells(page, "Segment Lost: revenue share")[1:] == ["–", "–", "", ""]
    assert "the next smallest is hidden too" in page
    assert cells(diff.cli_text(d), "Segment Lost: customers")[2:4] == ["≥ 5", "≥ 5"]
    # in the new run two small segments (3 + 4) protect each other: Lost is shown there
    segs["Tiny"] = {"customers": 4, "revenue_share": 0.0001, "action": "Trial"}
    c = make_run(tmp_path, "v3", artifacts=changed(segmentation={"segments": segs}))
    page = diff.page_markdown(diff.compare_runs(a, c))
    assert cells(page, "Segment Lost: customers")[1:3] == ["≥ 5", "80"]
    assert cells(page, "Segment Tiny: customers")[1:3] == ["–", "< 5"]
    # the same choice as the report's table of these segments
    shown, _ = privacy.suppress(
        pd.DataFrame({"segment": list(segs), "customers": [s["customers"] for s in segs.values()]})
    )
    assert "≥ 5" not in shown["customers"].tolist()
