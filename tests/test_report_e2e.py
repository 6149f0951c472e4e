"""End to end: params -> prepared data -> executed notebooks -> HTML + PDF, on a small demo."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from pypdf import PdfReader

from crm_helpers import chapters as registry
from crm_helpers.config import load_params
from crm_helpers.data import pseudonymise
from crm_helpers.paths import DEMO_DATA_DIR
from crm_helpers.report.runner import run_report

from .conftest import SMALL_DEMO, write

pytestmark = pytest.mark.slow

SMALL = SMALL_DEMO + """report:
  renderer: pandoc
privacy:
  export_real_ids: true
  restricted_dir: restricted
"""


def _params_file(tmp: Path, version: str, extra: str = "") -> Path:
    return write(
        tmp / f"{version}.yml",
        SMALL + f"report:\n  renderer: pandoc\n  version: {version}\n" + extra,
    )


@pytest.fixture(autouse=True)
def _demo_key(monkeypatch):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)  # the demo's documented default key


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def first_run(reports, tmp_path_factory):
    import os

    os.environ.pop("CRM_PSEUDONYM_KEY", None)  # the demo uses its documented default key
    tmp = tmp_path_factory.mktemp("params")
    result = run_report(_params_file(tmp, "v1"), reports_dir=reports, progress=lambda _: None)
    return result


def _truth(params_path: Path) -> dict:
    d = load_params(params_path).data.demo
    from crm_helpers.demo import GENERATOR_VERSION

    folder = next(DEMO_DATA_DIR.glob(f"v{GENERATOR_VERSION}-c{d.customers}-l{d.lines}-s{d.seed}-*"))
    return json.loads((folder / "ground_truth.json").read_text())


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    if path.suffix == ".pdf":
        return "\n".join(page.extract_text() for page in PdfReader(path).pages)
    return path.read_bytes().decode("utf-8", errors="replace")


def test_run_completes_and_becomes_latest(first_run, reports):
    assert first_run.ok, first_run.manifest["chapters"]
    latest = reports / "e2e" / "latest"
    assert latest.is_symlink() and latest.resolve() == first_run.run_dir.resolve()


def test_html_holds_every_chapter_figures_and_no_code(first_run):
    html = (first_run.run_dir / "report.html").read_text()
    for ch in registry.CHAPTERS:
        assert re.search(rf"<h1[^>]*>{re.escape(ch.title)}</h1>", html), ch.title
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(figures) >= 3
    assert 'src="http' not in html and "<script src=" not in html  # opens offline
    for code in ("import ", "artifacts.save", "plt.show()", "run_dir", "Traceback"):
        assert code not in html, code
    assert "Every row accounted for" in html and "Headline KPIs" in html
    assert "<table" in html


def test_pdf_holds_every_chapter_title_page_and_no_errors(first_run):
    pdf = first_run.run_dir / "report.pdf"
    reader = PdfReader(pdf)
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert len(reader.pages) >= 4
    first = reader.pages[0].extract_text()
    assert "CRM insight report" in first and "e2e" in first and "v1" in first
    assert re.search(r"data \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d", first)
    for ch in registry.CHAPTERS:
        assert ch.title in text, ch.title
    assert "Traceback" not in text and "Error" not in text
    images = sum(len(p.images) for p in reader.pages)
    assert images >= 3


def test_executed_notebooks_have_no_error_outputs(first_run):
    for ch in registry.CHAPTERS:
        nb = nbformat.read(first_run.run_dir / "notebooks" / ch.filename, as_version=4)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outs if o.output_type == "error"], ch.slug
        assert not [o for o in outs if o.output_type == "stream" and o.name == "stderr"], ch.slug
        assert any(o.output_type in ("display_data", "execute_result") for o in outs)


def test_manifest_is_complete_and_reconciliation_balances(first_run):
    m = json.loads((first_run.run_dir / "manifest.json").read_text())
    for key in (
        "client",
        "version",
        "params",
        "params_sha256",
        "inputs",
        "packages",
        "git",
        "chapters",
        "reconciliation",
        "timings",
        "renderer",
        "period",
    ):
        assert m.get(key) is not None, key
    assert m["status"] == "complete" and m["renderer"] == "pandoc"
    assert {"revision", "dirty"} <= set(m["git"])
    assert [c["slug"] for c in m["chapters"]] == [c.slug for c in registry.CHAPTERS]
    assert all(
        c["status"] == "ok" and c["seconds"] > 0 and c["error"] is None for c in m["chapters"]
    )
    for table, d in m["inputs"].items():
        assert re.fullmatch(r"[0-9a-f]{64}", d["sha256"]) and d["rows"] > 0, table
    for table, r in m["reconciliation"].items():
        assert r["input"] == r["kept"] + sum(r["quarantined"].values()), table
    assert m["reconciliation"]["transactions"]["input"] > 7000


def test_reconciliation_matches_the_planted_dirt_exactly(first_run):
    truth = _truth(_params_file(first_run.run_dir.parent, "check"))
    m = json.loads((first_run.run_dir / "manifest.json").read_text())
    expected = truth["dirt"]["expected_quarantine"]["transactions"]
    assert m["reconciliation"]["transactions"]["quarantined"] == expected
    assert m["reconciliation"]["transactions"]["input"] == truth["counts"]["n_lines"]
    assert m["reconciliation"]["transactions"]["kept"] == truth["counts"]["n_lines"] - sum(
        expected.values()
    )


def test_identity_resolution_recovers_the_planted_duplicates(first_run):
    truth = _truth(_params_file(first_run.run_dir.parent, "check2"))
    from crm_helpers.data import DEMO_KEY

    planted = {
        frozenset(
            (pseudonymise(p["canonical_id"], DEMO_KEY), pseudonymise(p["duplicate_id"], DEMO_KEY))
        )
        for p in truth["identity"]["pairs"]
    }
    merges = pd.read_parquet(first_run.run_dir / "prepared" / "identity_merges.parquet")
    found = {
        frozenset((m, c))
        for m, c in zip(merges["merged_key"], merges["canonical_key"], strict=True)
    }
    assert planted, "the demo plants duplicates"
    precision = len(found & planted) / len(found)
    recall = len(found & planted) / len(planted)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_planted_pii_sentinels_appear_in_no_file_of_the_run(first_run):
    truth = _truth(_params_file(first_run.run_dir.parent, "check3"))
    sentinels = list(truth["pii_sentinels"]["strings"])
    sentinels += [c["customer_id"] for c in truth["pii_sentinels"]["customers"]]  # raw ids too
    assert len(sentinels) >= 12
    files = [p for p in first_run.run_dir.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert any(p.suffix == ".pdf" for p in files) and any(p.suffix == ".parquet" for p in files)
    for path in files:
        text = _text_of(path)
        for s in sentinels:
            assert s not in text, f"{s!r} found in {path.relative_to(first_run.run_dir)}"


def _html_tables(html: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows of cell texts) of every table in the HTML report."""
    import html as H

    def text(fragment: str) -> str:
        return H.unescape(re.sub(r"<.*?>", "", fragment)).strip()

    out = []
    for tb in re.findall(r"<table.*?</table>", html, flags=re.S):
        cap = re.search(r"<caption>(.*?)</caption>", tb, flags=re.S)
        heads = [text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", tb, flags=re.S)]
        rows = [
            [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", tb, flags=re.S)
        ]
        out.append((text(cap.group(1)) if cap else "", heads, [r for r in rows if r]))
    return out


def test_no_table_cell_shows_fewer_than_k_customers(first_run):
    from crm_helpers.privacy import COUNT_COLUMNS

    k = load_params(_params_file(first_run.run_dir.parent, "check5")).privacy.min_group_size
    html = (first_run.run_dir / "report.html").read_text()
    checked = suppressed = 0
    for caption, heads, rows in _html_tables(html):
        crosstab = caption.startswith("Customers by RFM segment")
        for j, head in enumerate(heads):
            if not (crosstab and j > 0) and head.lower() not in COUNT_COLUMNS:
                continue
            for row in rows:
                cell = row[j]
                if cell in (f"< {k}", f"≥ {k}"):  # small, or hidden beside a lone small one
                    suppressed += 1
                    continue
                if re.fullmatch(r"[\d,]+", cell):
                    checked += 1
                    n = int(cell.replace(",", ""))
                    assert n == 0 or n >= k, f"{caption or heads}: {head} = {n}"
    # the 400-customer demo has small segments, merges and tags: suppression must have happened
    assert checked > 50 and suppressed >= 5
    assert f"fewer than {k} customers are suppressed" in html


def test_customer_level_rows_in_the_report_are_pseudonymised(first_run):
    html = (first_run.run_dir / "report.html").read_text()
    ids = 0
    for caption, heads, rows in _html_tables(html):
        for j, head in enumerate(heads):
            if head in ("customer_key", "merged_key", "canonical_key") or "pseudonymi" in head:
                for row in rows:
                    if row[j] == "–":  # a quarantined line without a customer id
                        continue
                    assert re.fullmatch(r"c_[0-9a-f]{16}", row[j]), (caption, head, row[j])
                    ids += 1
    assert ids >= 20  # win-back, example lists, anomalies, merges
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", html)  # embedded images
    raw = re.findall(r"C\d{6}", text)  # the demo's raw customer id format
    assert not raw, raw[:5]


def test_action_lists_carry_pseudonyms_and_real_ids_go_only_to_the_owner_only_folder(first_run):
    import stat

    from crm_helpers.data import DEMO_KEY

    run = first_run.run_dir
    m = json.loads((run / "manifest.json").read_text())
    lists = m["actions"]["lists"]
    # the small demo has segments, CLV and recommendations; churn has too few customers
    assert set(lists) == {"vip_care", "at_risk", "cross_sell"} and m["actions"]["missing"] == ["win_back"]
    clv = pd.read_parquet(run / "artifacts" / "clv.parquet")
    assert lists["vip_care"] == int((clv["clv_decile"] == 1).sum())
    book = pd.read_excel(run / "actions" / "action_lists.xlsx", sheet_name=None)
    for name, rows in lists.items():
        frame = pd.read_csv(run / "actions" / f"{name}.csv")
        assert len(frame) == rows == len(book[name]) and rows > 0
        assert "customer_id" not in frame and frame["action"].notna().all()
        assert frame["customer_key"].str.fullmatch(r"c_[0-9a-f]{16}").all()

    restricted = Path(m["params"]["privacy"]["restricted_dir"]) / "e2e" / "v1"
    assert not restricted.is_relative_to(run)
    assert stat.S_IMODE(restricted.stat().st_mode) == 0o700
    files = sorted(p.name for p in restricted.iterdir())
    assert files == sorted([f"{n}.csv" for n in lists] + ["action_lists.xlsx", "README.txt"])
    for path in restricted.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    for name, rows in lists.items():
        frame = pd.read_csv(restricted / f"{name}.csv", dtype={"customer_id": str})
        assert len(frame) == rows and frame.columns[0] == "customer_id"
        # the real id is the one whose keyed hash is the pseudonym the report uses
        assert [pseudonymise(i, DEMO_KEY) for i in frame["customer_id"]] == frame["customer_key"].tolist()


def test_html_report_in_a_real_browser_has_no_problem_and_a_screenshot_per_chapter(first_run):
    from crm_helpers.report import browser

    assert browser.available() is None, browser.available()  # make test installs Chromium
    m = json.loads((first_run.run_dir / "manifest.json").read_text())
    assert m["browser"]["problems"] == [], m["browser"]
    facts = json.loads((first_run.run_dir / "browser.json").read_text())
    # offline: no request left the page; no console or page error
    assert facts["requests"] == [] and facts["console_errors"] == [] and facts["page_errors"] == []
    # every chapter is in the contents and every contents link lands on its heading
    toc = {t["text"]: t for t in facts["toc"]}
    for ch in registry.CHAPTERS:
        assert toc[ch.title]["reached"], toc.get(ch.title)
    # every figure is drawn, visible and described, at desktop and phone width
    html = (first_run.run_dir / "report.html").read_text()
    n_img = len(re.findall(r"<img ", html))
    assert len(facts["figures"]) == len(facts["figures_narrow"]) == n_img >= 10
    for f in facts["figures"] + facts["figures_narrow"]:
        assert f["alt"] and f["width"] > 100 and f["height"] > 50 and f["natural_width"] > 0
    assert all(f["width"] <= 390 for f in facts["figures_narrow"])
    for width in (1280, 390):
        assert facts[f"overflow_{width}"]["scroll_width"] <= width
    shots = sorted((first_run.run_dir / "screenshots").glob("*.png"))
    assert len(shots) == len(registry.CHAPTERS) + 1  # the about page and every chapter
    assert all(p.stat().st_size > 10_000 for p in shots)


def test_every_pdf_page_rendered_keeps_its_margins_clear_and_carries_header_and_number(
    first_run, tmp_path
):
    import subprocess

    import numpy as np
    from PIL import Image

    pdf = first_run.run_dir / "report.pdf"
    reader = PdfReader(pdf)
    subprocess.run(["pdftoppm", "-r", "40", "-gray", "-png", str(pdf), str(tmp_path / "p")], check=True)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) == len(reader.pages) >= 10
    for i, png in enumerate(pages, start=1):
        ink = np.asarray(Image.open(png).convert("L")) < 200  # dark pixels
        h, w = ink.shape
        edge_x, edge_y = max(2, w * 6 // 100), max(2, h * 3 // 100)  # about 1.2 cm and 0.9 cm
        for name, strip in (
            ("left", ink[:, :edge_x]),
            ("right", ink[:, -edge_x:]),
            ("top", ink[:edge_y, :]),
            ("bottom", ink[-edge_y:, :]),
        ):
            assert not strip.any(), f"page {i}: something runs into the {name} edge"
        assert ink.any(), f"page {i} is blank"
        if i > 1:  # running header: client, version and the page number
            head = reader.pages[i - 1].extract_text().splitlines()[0]
            assert "e2e" in head and "v1" in head and head.rstrip().endswith(str(i)), head


def test_summary_numbers_equal_the_chapters(first_run):
    arts = first_run.run_dir / "artifacts"
    dq = json.loads((arts / "data_quality.json").read_text())
    summ = json.loads((arts / "summary.json").read_text())
    for k in ("customers", "orders", "net_revenue", "average_order_value", "repeat_rate"):
        assert summ["kpis"][k] == dq["kpis"][k], k
    table = pd.read_parquet(arts / "data_quality.parquet")
    assert summ["kpis"]["active_customers"] == int((table["recency_days"] <= 90).sum())
    assert dq["kpis"]["customers"] == int((table["orders"] > 0).sum())


def _assert_same_artifacts(a: Path, b: Path, what: str = "artifacts") -> None:
    names = sorted(p.name for p in (a / what).glob("*"))
    assert names and names == sorted(p.name for p in (b / what).glob("*"))
    for name in names:
        path = a / what / name
        if path.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(b / what / name))
        elif name == "prepare.json":  # the preparation's step timings differ, nothing else
            drop = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}  # noqa: E731
            assert drop(path) == drop(b / what / name)
        else:
            assert path.read_bytes() == (b / what / name).read_bytes(), name


def test_second_run_gives_byte_identical_notebooks_and_equal_artifacts(
    first_run, reports, tmp_path
):
    # --force: every chapter executes again (nothing reused), so this is a real rerun.
    second = run_report(
        _params_file(tmp_path, "v2"), reports_dir=reports, progress=lambda _: None, force=True
    )
    assert second.ok
    assert second.manifest["reuse"]["force"] is True
    assert all("executed" in r for r in second.manifest["reuse"]["chapters"].values())
    a, b = first_run.run_dir, second.run_dir
    _assert_same_artifacts(a, b)
    _assert_same_artifacts(a, b, "prepared")
    for ch in registry.CHAPTERS:  # the executed notebooks, byte for byte
        nb_a = (a / "notebooks" / ch.filename).read_bytes()
        assert b"injected-parameters" in nb_a and len(nb_a) > 10_000
        assert nb_a == (b / "notebooks" / ch.filename).read_bytes(), ch.slug
        assert str(a).encode() not in nb_a  # no run folder path: a rerun elsewhere diffs clean


def test_rerun_with_one_chapter_param_changed_reuses_the_rest_and_equals_a_scratch_run(
    first_run, reports, tmp_path
):
    change = "chapters:\n  basket:\n    min_support: 0.01\n"
    rerun = run_report(
        _params_file(tmp_path, "v-rerun", change), reports_dir=reports, progress=lambda _: None
    )
    assert rerun.ok
    reuse = rerun.manifest["reuse"]
    assert reuse["prepared"]["from"] in ("v1", "v2")
    assert reuse["chapters"]["basket"]["executed"].startswith("its params changed since")
    assert reuse["chapters"]["summary"]["executed"].startswith(
        "a chapter it reads was re-executed"
    )
    kept = {s for s, r in reuse["chapters"].items() if "reused_from" in r}
    assert kept == {c.slug for c in registry.CHAPTERS} - {"basket", "summary"}
    by_slug = {c["slug"]: c for c in rerun.manifest["chapters"]}
    assert by_slug["profile"]["reused"] and not by_slug["basket"].get("reused")
    # The basket really changed, and the summary took the new figures.
    old_b = json.loads((first_run.run_dir / "artifacts" / "basket.json").read_text())
    new_b = json.loads((rerun.run_dir / "artifacts" / "basket.json").read_text())
    assert (old_b["min_support"], new_b["min_support"]) == (0.005, 0.01)
    assert new_b["n_itemsets"] < old_b["n_itemsets"]
    scratch = run_report(
        _params_file(tmp_path, "v-scratch", change),
        reports_dir=reports,
        progress=lambda _: None,
        force=True,
    )
    assert scratch.ok
    _assert_same_artifacts(rerun.run_dir, scratch.run_dir)
    # The notebooks too, but for the provenance cell: a reused chapter's names the run that
    # executed it (that run's params sha256 and git revision), which is the truth.
    for ch in registry.CHAPTERS:
        a, b = (
            nbformat.reads((r.run_dir / "notebooks" / ch.filename).read_text(), as_version=4)
            for r in (rerun, scratch)
        )
        assert _without_provenance(a) == _without_provenance(b), ch.slug
        if ch.slug not in ("basket", "summary"):
            assert first_run.manifest["params_sha256"][:12] in _provenance(a), ch.slug


def _provenance(nb) -> str:
    return next(
        "".join(o["data"]["text/markdown"])
        for c in nb.cells
        for o in c.get("outputs", [])
        if "*Provenance:" in "".join(o.get("data", {}).get("text/markdown", ""))
    )


def _without_provenance(nb) -> str:
    cells = [
        c for c in nb.cells
        if not any("*Provenance:" in "".join(o.get("data", {}).get("text/markdown", ""))
                   for o in c.get("outputs", []))
    ]
    assert len(cells) == len(nb.cells) - 1  # exactly one provenance cell
    return json.dumps(cells, sort_keys=True)


def test_failing_chapter_does_not_stop_the_run_or_move_latest(
    first_run, reports, tmp_path, monkeypatch
):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for ch in registry.CHAPTERS:
        shutil.copy(ch.notebook, nbdir / ch.filename)
    broken = nbformat.read(registry.CHAPTERS[0].notebook, as_version=4)
    broken.cells = [
        broken.cells[0],
        broken.cells[1],
        nbformat.v4.new_code_cell("raise RuntimeError('planted failure')"),
    ]
    broken.cells[0].source = "# A broken chapter"
    nbformat.write(broken, nbdir / "50-broken.ipynb")
    failing = registry.Chapter("50", "broken", "A broken chapter")  # no params block of its own
    monkeypatch.setattr(registry, "NOTEBOOKS_DIR", nbdir)
    chapters = (registry.CHAPTERS[0], failing, registry.CHAPTERS[-1])
    monkeypatch.setattr(registry, "CHAPTERS", chapters)
    before = (reports / "e2e" / "latest").resolve()

    from crm_helpers import cli

    code = cli.main(
        ["run", "--params", str(_params_file(tmp_path, "broken")), "--reports-dir", str(reports)]
    )

    assert code == 1  # the command exits non-zero
    run_dir = reports / "e2e" / "broken"
    m = json.loads((run_dir / "manifest.json").read_text())
    status = {c["slug"]: c for c in m["chapters"]}
    assert status["broken"]["status"] == "failed"
    assert "planted failure" in status["broken"]["error"]
    assert status["data_quality"]["status"] == "ok" and status["summary"]["status"] == "ok"
    assert m["status"] == "failed"
    assert (reports / "e2e" / "latest").resolve() == before
    html = (run_dir / "report.html").read_text()
    assert "This chapter failed" in html and "planted failure" in html
    assert "Chapters without results in this run" in html


def test_parameter_cells_are_tagged_remove_cell_for_quarto(first_run):
    for ch in registry.CHAPTERS:
        nb = nbformat.read(first_run.run_dir / "notebooks" / ch.filename, as_version=4)
        tagged = [
            c
            for c in nb.cells
            if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))
        ]
        assert len(tagged) == 2 and all("remove-cell" in c.metadata["tags"] for c in tagged)
        assert "start_time" not in json.dumps(nb.metadata)


@pytest.mark.quarto
@pytest.mark.skipif(
    shutil.which("quarto") is None, reason="quarto is not on PATH (runs where it is)"
)
def test_quarto_path_renders_the_book(reports, tmp_path, monkeypatch):
    from crm_helpers.paths import PROJECT_ROOT

    monkeypatch.setenv("QUARTO_PYTHON", str(PROJECT_ROOT / ".venv" / "bin" / "python"))
    text = SMALL.replace("renderer: pandoc", "renderer: quarto") + "  version: quarto1\n"
    result = run_report(
        write(tmp_path / "q.yml", text), reports_dir=reports, progress=lambda _: None
    )
    assert result.ok and result.manifest["renderer"] == "quarto"
    pdf_text = "\n".join(p.extract_text() for p in PdfReader(result.run_dir / "report.pdf").pages)
    for ch in registry.CHAPTERS:
        assert ch.title in pdf_text
    assert "run_dir" not in pdf_text and "import " not in pdf_text  # code and parameters hidden
    assert (result.run_dir / "book" / "index.html").is_file()
    assert (result.run_dir / "report.html").is_file()


def test_every_figure_has_a_caption_ending_with_a_takeaway_computed_from_the_data(first_run):
    """Each drawn figure's fig-cap is its static text plus the takeaway its cell computed."""
    from crm_helpers.display import TAKEAWAY_MIME, fmt_num, fmt_pct
    from crm_helpers.report.render import cell_options

    run = first_run.run_dir
    captions: dict[str, list[str]] = {}
    for path in sorted((run / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            assert all(TAKEAWAY_MIME not in o.get("data", {}) for o in cell.outputs), path.name
            if not any("image/png" in o.get("data", {}) for o in cell.outputs):
                continue
            take = cell.metadata.get("crm", {}).get("takeaway")
            cap = cell_options(cell.source).get("fig-cap", "")
            assert take and re.search(r"\d", take), (path.name, cell.id, cap)  # computed: numbers
            assert cap.endswith(take) and len(cap) > len(take) + 10, (path.name, cap)
            assert cell.metadata["crm"]["off_palette"] == [], (path.name, cap)
            captions.setdefault(path.stem.split("-", 1)[1], []).append(cap)
    assert sum(map(len, captions.values())) >= 20, captions
    arts = {s: json.loads((run / "artifacts" / f"{s}.json").read_text()) for s in captions}
    monthly = arts["data_quality"]["monthly_net_revenue"]
    peak = max(monthly, key=monthly.get)
    assert f"peaked in {peak[:7]} at {fmt_num(monthly[peak])}" in captions["data_quality"][1]
    segs = arts["segmentation"]["segments"]
    top = max(segs, key=lambda s: segs[s]["revenue_share"])
    assert f"{top} are " in captions["segmentation"][0]
    assert f"bring {fmt_pct(segs[top]['revenue_share'])} of net revenue" in captions["segmentation"][0]
    assert f"k = {arts['segmentation']['k']} " in captions["segmentation"][1]
    assert f"hold {fmt_pct(arts['clv']['top_decile_share'])} of the total" in captions["clv"][3]
    assert f"On average {fmt_pct(arts['profile']['retention_month_1'])} of a cohort" in captions["profile"][3]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert captions["segmentation"][0].split(". ", 1)[1] in html  # the same caption in the report
