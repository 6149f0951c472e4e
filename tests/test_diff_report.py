"""End to end: the second of two runs with a changed parameter has a "what changed" page.

Two runs of the small demo for one client, chapters 00, 04 (basket) and 99 only; the second
raises ``chapters.basket.min_support``, which mines fewer itemsets and rules.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from pypdf import PdfReader

from crm_helpers.report import diff
from crm_helpers.report.runner import run_report

from .conftest import SMALL_DEMO, write

pytestmark = pytest.mark.slow

TITLE = "What changed since the last report"


def _params(tmp: Path, version: str, min_support: float) -> Path:
    return write(
        tmp / f"{version}.yml",
        SMALL_DEMO
        + f"report:\n  renderer: pandoc\n  version: {version}\n"
        + "run:\n  chapters: [basket]\n"
        + f"chapters:\n  basket:\n    min_support: {min_support}\n",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    tmp = tmp_path_factory.mktemp("params")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_PSEUDONYM_KEY", "test-key")
        mp.setenv("MPLBACKEND", "Agg")
        for version, support in (("v1", 0.005), ("v2", 0.01)):
            result = run_report(
                _params(tmp, version, support), reports_dir=reports, progress=lambda _: None
            )
            assert result.ok, result.manifest["chapters"]
            out[version] = result
    return out


def _html_text(path: Path) -> str:
    html = path.read_text(encoding="utf-8")
    html = re.sub(r'src="data:[^"]*"', "", html)
    return unescape(re.sub(r"<[^>]+>", " ", html))


def _basket(run) -> dict:
    return json.loads((run.run_dir / "artifacts" / "basket.json").read_text())


def test_the_parameter_change_really_moves_the_basket_figures(runs):
    old, new = _basket(runs["v1"]), _basket(runs["v2"])
    assert (old["min_support"], new["min_support"]) == (0.005, 0.01)
    assert new["n_itemsets"] < old["n_itemsets"]


def test_the_second_run_has_the_page_naming_changed_figures_with_both_values(runs):
    old, new = _basket(runs["v1"]), _basket(runs["v2"])
    html = (runs["v2"].run_dir / "report.html").read_text(encoding="utf-8")
    assert "<li><code>chapters.basket.min_support</code>: 0.005 → 0.01</li>" in html
    assert '<h2 id="changed-basket">Basket</h2>' in html  # no clash with the chapters' anchors
    text = " ".join(_html_text(runs["v2"].run_dir / "report.html").split())
    assert f"{TITLE} (version v1)" in text
    assert re.search(
        rf"Frequent itemsets {old['n_itemsets']:,} {new['n_itemsets']:,} "
        rf"{new['n_itemsets'] - old['n_itemsets']:+,}",
        text,
    ), text[text.index(TITLE) : text.index(TITLE) + 3000]
    assert "Input data: unchanged" in text
    # The page comes right after the index, before the first chapter.
    assert text.index("About this report") < text.index(f"{TITLE} (version v1)")
    assert text.index(f"{TITLE} (version v1)") < text.rindex(
        "Data quality and unified customer view"
    )
    pdf = "\n".join(p.extract_text() for p in PdfReader(runs["v2"].run_dir / "report.pdf").pages)
    assert TITLE in pdf and "Frequent itemsets" in pdf


def test_the_first_run_has_no_page(runs):
    assert TITLE not in (runs["v1"].run_dir / "report.html").read_text(encoding="utf-8")
    assert not (runs["v1"].run_dir / diff.PAGE_FILE).exists()
    assert json.loads((runs["v1"].run_dir / "manifest.json").read_text())["compared_with"] is None


def test_the_manifest_records_the_compared_version(runs):
    m = json.loads((runs["v2"].run_dir / "manifest.json").read_text())
    cw = m["compared_with"]
    assert cw["version"] == "v1" and Path(cw["path"]).name == "v1" and cw["page"] == "diff.md"
    assert cw["changed_params"] == ["chapters.basket.min_support"]
    assert cw["inputs_changed"] is False and cw["changed_figures"] >= 1


def test_only_the_basket_figures_changed_between_the_two_runs(runs):
    """Same data and seed: every figure outside the basket chapter is equal across the runs."""
    d = diff.compare_runs(runs["v1"].run_dir, runs["v2"].run_dir)
    moved = {r.key for r in d.changed_figures}
    assert "basket.n_itemsets" in moved and "basket.min_support" in moved
    assert {r.area for r in d.changed_figures} == {"Basket"}, sorted(moved)
    assert not d.of("changed", areas=("Input data", "Chapters"))
