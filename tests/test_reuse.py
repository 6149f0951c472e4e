"""Fingerprints and the reuse of earlier runs' results (fast reruns), without running notebooks."""

from __future__ import annotations

import json
from pathlib import Path

from crm_helpers import chapters as registry
from crm_helpers.config import load_params
from crm_helpers.paths import RunPaths
from crm_helpers.report import reuse
from crm_helpers.report.runner import _chapter_fingerprints

from .conftest import SMALL_DEMO, write

PKGS = {"pandas": "2.2.3"}


def _params(tmp: Path, extra: str = "", name: str = "p"):
    return load_params(write(tmp / f"{name}.yml", SMALL_DEMO + extra))


def _prep_fp(params, inputs=None, key="k"):
    return reuse.prepared_fingerprint(params, inputs or {"transactions": "aa"}, key, "code")


def test_prepared_fingerprint_follows_inputs_key_and_preparation_params(tmp_path):
    base = _params(tmp_path)
    fp = _prep_fp(base)
    assert fp == _prep_fp(_params(tmp_path, name="again"))  # stable
    assert fp != _prep_fp(base, {"transactions": "ab"})  # input file changed
    assert fp != _prep_fp(base, key="other")  # another pseudonym key: other customer keys
    assert fp != reuse.prepared_fingerprint(base, {"transactions": "aa"}, "k", "code2")
    changed = _params(tmp_path, "cleaning:\n  zero_price: keep\n", "clean")
    assert fp != _prep_fp(changed)
    # What only the chapters, the renderer or the run's layout read leaves it alone.
    for extra in (
        "chapters:\n  basket:\n    min_support: 0.02\n",
        "report:\n  title: Another title\n  renderer: pandoc\n",
        "run:\n  workers: 1\n  chapter_timeout_seconds: 99\n",
        "privacy:\n  min_group_size: 7\n",
    ):
        assert fp == _prep_fp(_params(tmp_path, extra, "x")), extra


def test_one_chapter_param_changes_that_chapter_and_its_readers_only(tmp_path):
    chapters = list(registry.CHAPTERS)
    a = _chapter_fingerprints(chapters, _params(tmp_path), "prep", "code")
    b = _chapter_fingerprints(
        chapters,
        _params(tmp_path, "chapters:\n  clv:\n    monthly_discount_rate: 0.02\n", "b"),
        "prep",
        "code",
    )
    changed = {s for s in a if a[s]["total"] != b[s]["total"]}
    # clv is read by churn, churn by satisfaction, and the summary reads everything.
    assert changed == {"clv", "churn", "satisfaction", "summary"}
    assert a["clv"]["params"] != b["clv"]["params"] and a["churn"]["params"] == b["churn"]["params"]
    assert a["churn"]["reads"] != b["churn"]["reads"]
    # A shared key (the privacy threshold) reaches every chapter; a renderer key none.
    k7 = _chapter_fingerprints(
        chapters, _params(tmp_path, "privacy:\n  min_group_size: 7\n", "c"), "prep", "code"
    )
    assert all(a[s]["total"] != k7[s]["total"] for s in a)
    title = _chapter_fingerprints(
        chapters, _params(tmp_path, "report:\n  title: T\n", "d"), "prep", "code"
    )
    assert all(a[s]["total"] == title[s]["total"] for s in a)
    other = _chapter_fingerprints(chapters, _params(tmp_path), "prep2", "code")
    assert all(a[s]["total"] != other[s]["total"] for s in a)


def test_code_fingerprint_changes_with_package_versions():
    assert reuse.code_fingerprint(PKGS) == reuse.code_fingerprint(dict(PKGS))
    assert reuse.code_fingerprint(PKGS) != reuse.code_fingerprint({"pandas": "2.2.4"})


def _fake_run(client: Path, version: str, created: str, fps: dict, chapters: list[dict]) -> Path:
    run = RunPaths(client / version).make()
    (run.prepared / "prepare.json").write_text("{}")
    (run.prepared / "transactions.parquet").write_bytes(b"PAR1 " + version.encode())
    (run.quarantine / "transactions.parquet").write_bytes(b"Q " + version.encode())
    for c in chapters:
        ch = registry.by_slug(c["slug"])
        (run.notebooks / ch.filename).write_text(version)
        (run.artifacts / f"{ch.slug}.json").write_text(json.dumps({"v": version}))
        (run.artifacts / f"{ch.slug}_extra.parquet").write_text(version)
    manifest = {
        "created_utc": created,
        "fingerprints": fps,
        "chapters": chapters,
        "reconciliation": {"transactions": {}},
    }
    run.manifest.write_text(json.dumps(manifest))
    return run.root


def test_newest_matching_run_is_found_and_copied_and_reasons_name_what_changed(tmp_path):
    client = tmp_path / "client"
    parts = {"prepared": "P", "params": "A", "notebook": "N", "code": "C", "reads": "R"}
    ok = [{"slug": "profile", "status": "ok", "seconds": 3.0}]
    fps = {"prepared": "P", "chapters": {"profile": parts | {"total": "T1"}}}
    _fake_run(client, "old", "2026-01-01T00:00:00", fps, ok)
    _fake_run(client, "new", "2026-02-01T00:00:00", fps, ok)
    failed = [{"slug": "profile", "status": "failed"}]
    _fake_run(client, "newest-failed", "2026-03-01T00:00:00", fps, failed)
    current = RunPaths(client / "current").make()
    runs = reuse.earlier_runs(client, current.root)
    assert [r[0].name for r in runs] == ["newest-failed", "new", "old"]
    assert reuse.find_prepared(runs, "P")[0].name == "newest-failed"
    assert reuse.find_prepared(runs, "other") is None
    profile = registry.by_slug("profile")
    src, result = reuse.find_chapter(runs, profile, "T1")  # the failed one is skipped
    assert src.name == "new" and result["seconds"] == 3.0
    assert reuse.find_chapter(runs, profile, "T2") is None

    reuse.copy_chapter(src, current, profile)
    reuse.copy_prepared(src, current)
    assert (current.notebooks / profile.filename).read_text() == "new"
    assert json.loads((current.artifacts / "profile.json").read_text()) == {"v": "new"}
    assert (current.artifacts / "profile_extra.parquet").read_text() == "new"
    assert not (current.artifacts / "segmentation.json").exists()
    assert (current.prepared / "transactions.parquet").read_bytes() == b"PAR1 new"
    assert (current.quarantine / "transactions.parquet").read_bytes() == b"Q new"

    why = reuse.why_rerun(runs, "profile", parts | {"params": "B", "code": "C2"})
    assert why == (
        "its params changed; the crm_helpers code or package versions changed since newest-failed"
    )
    assert reuse.why_rerun(runs, "profile", parts).startswith("same inputs as newest-failed")
    assert reuse.why_rerun(runs, "basket", parts) == "no earlier run has it"


def test_a_remote_input_is_never_fingerprinted(tmp_path):
    from crm_helpers.config import RemotePath, TableSource

    local = write(tmp_path / "t.csv", "a\n1\n")
    assert reuse.input_fingerprints({"transactions": TableSource(path=local)})["transactions"]
    remote = TableSource.model_construct(path=RemotePath("s3a://bucket/t.parquet"))
    assert reuse.input_fingerprints({"transactions": remote}) is None
