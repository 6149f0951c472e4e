"""The report in Chinese (report.language: zh), end to end on the small demo with pandoc + Typst.

Titles, headings, captions, table headers and the summary are Chinese in the executed notebooks,
the HTML and the PDF; the PDF draws every Chinese character of its text with an embedded CJK font
that has a glyph for it (so no missing-glyph boxes), and its pages render.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from html.parser import HTMLParser

import nbformat
import pytest
from pypdf import PdfReader

from crm_helpers import i18n
from crm_helpers.chapters import CHAPTERS
from crm_helpers.report.render import cell_options
from crm_helpers.report.runner import run_report

from .conftest import SMALL_DEMO, write

pytestmark = pytest.mark.slow

HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
#: Table headers that stay as they are in Chinese: identifiers, metric names, data values.
KEEP = re.compile(r"^([\w@ ]*_[\w@ ]*|[A-Z0-9@%(). -]+|[a-z]+@\d+|k|n|z|[\d.]+ %|.*, .*)$")


@pytest.fixture(scope="module")
def zh_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("zh")
    params = write(
        out / "zh.yml",
        SMALL_DEMO + "report:\n  renderer: pandoc\n  version: zh1\n  language: zh\n",
    )
    result = run_report(params, reports_dir=out / "reports", progress=lambda _: None)
    assert result.ok, result.manifest
    return result


class _Headings(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tag, self.found = None, defaultdict(list)

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3", "figcaption", "th", "title"):
            self.tag = tag
            self.found[tag].append("")

    def handle_endtag(self, tag):
        if tag == self.tag:
            self.tag = None

    def handle_data(self, data):
        if self.tag:
            self.found[self.tag][-1] += data


def test_chapter_titles_headings_and_captions_are_chinese_in_the_html(zh_run):
    html = (zh_run.run_dir / "report.html").read_text(encoding="utf-8")
    assert (
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="zh"' in html or 'lang="zh"' in html[:400]
    )
    p = _Headings()
    p.feed(html)
    titles = [i18n.tr(c.title, lang="zh") for c in CHAPTERS]
    h1 = [h.strip() for h in p.found["h1"]]
    for t in titles:
        assert any(t in h for h in h1), (t, h1)
    assert "关于本报告" in h1[0] or any("关于本报告" in h for h in h1)
    for level in ("h1", "h2", "h3"):
        for h in p.found[level]:
            assert HAN.search(h), (level, h)  # every heading is Chinese
    assert len(p.found["figcaption"]) >= 20
    for cap in p.found["figcaption"]:
        assert HAN.search(cap) and re.search(r"\d", cap), cap  # Chinese, with its computed takeaway
    assert "客户关系管理洞察报告" in html


def test_executed_notebooks_are_chinese_and_table_headers_come_from_the_glossary(zh_run):
    glossary = set(i18n.catalogue()["headers"].values())
    for path in sorted((zh_run.run_dir / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                assert HAN.search(cell.source), (path.name, cell.source[:80])
            elif cell.cell_type == "code":
                opts = cell_options(cell.source)
                for opt in ("fig-cap", "fig-alt"):
                    if opt in opts:
                        assert HAN.search(opts[opt]), (path.name, opt, opts[opt])
                if any("image/png" in o.get("data", {}) for o in cell.outputs):
                    assert HAN.search(cell.metadata["crm"]["takeaway"]), path.name
                    assert cell.metadata["crm"]["off_palette"] == [], path.name
                for o in cell.outputs:
                    md = str(o.get("data", {}).get("text/markdown", "")).lstrip()
                    if md.startswith("|"):
                        for h in (x.strip() for x in md.splitlines()[0].strip("|").split("|")):
                            assert not h or h in glossary or HAN.search(h) or KEEP.match(h), (
                                path.name,
                                h,
                            )


def test_the_pdf_carries_the_chinese_text_in_an_embedded_cjk_font(zh_run):
    pdf = zh_run.run_dir / "report.pdf"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = re.sub(r"\s+", "", text)
    for t in ["关于本报告", "核心指标", *(i18n.tr(c.title, lang="zh") for c in CHAPTERS)]:
        assert re.sub(r"\s+", "", t) in flat, t
    fonts = subprocess.run(
        ["pdffonts", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    cjk = [line for line in fonts.splitlines() if "NotoSansCJK" in line.replace(" ", "")]
    assert cjk and all(re.search(r"\byes\b", line) for line in cjk), fonts  # embedded: emb = yes


def test_every_chinese_character_is_drawn_with_a_cjk_font_that_has_its_glyph(zh_run):
    """A character no font covers would be drawn in a Latin font as a missing-glyph box."""
    from fontTools.ttLib import TTCollection

    path = subprocess.run(
        ["fc-match", "-f", "%{file}", "Noto Sans CJK SC"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cmap = TTCollection(path).fonts[0].getBestCmap()
    by_font: dict[str, set[str]] = defaultdict(set)

    def visit(text, cm, tm, font, size):
        name = str(font.get("/BaseFont")) if font else "?"
        by_font[name].update(HAN.findall(text))

    for page in PdfReader(zh_run.run_dir / "report.pdf").pages:
        page.extract_text(visitor_text=visit)
    han = set().union(*by_font.values())
    assert len(han) > 300  # the report's Chinese prose
    outside = {f: chars for f, chars in by_font.items() if chars and "CJK" not in f}
    assert outside == {}, outside
    assert sorted(c for c in han if ord(c) not in cmap) == []


def test_pdf_pages_render(zh_run, tmp_path):
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "40",
            "-f",
            "1",
            "-l",
            "3",
            str(zh_run.run_dir / "report.pdf"),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 3 and all(p.stat().st_size > 2000 for p in pages)


def test_artifacts_record_their_text_in_english(zh_run):
    """A Chinese run's artifacts are the same data as an English run's: the helpers' notes shown in
    Chinese are recorded in English (the run comparison and the summary read them)."""
    cjk = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
    folder = zh_run.run_dir / "artifacts"
    clv = json.loads((folder / "clv.json").read_text())
    forecast = json.loads((folder / "forecast.json").read_text())
    assert clv["status"] == "ok" and forecast["status"] == "ok"
    assert "Customers with purchases" in clv["excluded"]
    texts = [*clv["excluded"], *forecast["model_notes"]]
    texts += [
        w
        for fit in (clv["bgnbd"], clv["gamma_gamma"], *clv["refit"].values())
        for w in fit["warnings"]
    ]
    assert forecast["model_notes"], "the demo's weekly ETS drops its season: a note is expected"
    assert not [t for t in texts if cjk.search(t)], texts
    # and the report shows them in Chinese
    html = (zh_run.run_dir / "report.html").read_text()
    assert "有购买的客户" in html and "不含季节项" in html
