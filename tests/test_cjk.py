"""Non-Latin data end to end: Chinese product names, regions and feedback text in every output.

The demo's tables are rewritten with Chinese regions, product names and feedback texts, loaded as
a client's files, and run through the profile, basket and satisfaction chapters. The text must
reach the HTML and the PDF (as text, in an embedded CJK font, so no missing-glyph boxes) and the
figures must draw it without matplotlib's missing-glyph warning.
"""

from __future__ import annotations

import re

import nbformat
import pandas as pd
import pytest
from pypdf import PdfReader

from crm_helpers.demo import generate_demo
from crm_helpers.paths import DEFAULT_PARAMS
from crm_helpers.report.runner import run_report

from .conftest import write

pytestmark = pytest.mark.slow

REGIONS = {
    "London": "北京",
    "Midlands": "上海",
    "North West": "广州",
    "Scotland": "深圳",
    "South East": "杭州",
    "South West": "成都",
    "Wales": "西安",
}
WORDS = ["茶杯", "笔记本", "背包", "台灯", "围巾", "咖啡豆", "蜡烛", "拼图", "雨伞", "毛巾", "水壶"]
KINDS = ["经典款", "豪华版", "迷你装", "礼盒装", "家庭装", "旅行款", "限量版"]
TEXTS = ["质量很好，物流很快。", "包装可以更好。", "价格有点贵。", "客服态度很好。", "退货流程太慢了。"]


@pytest.fixture(scope="module")
def cjk_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("demo")
    generate_demo(src, customers=300, lines=4000, seed=42)
    out = tmp_path_factory.mktemp("cjk")
    cust = pd.read_csv(src / "customers.csv", dtype=str, keep_default_na=False)
    cust["region"] = cust["region"].map(REGIONS).fillna(cust["region"])
    cust.to_csv(out / "customers.csv", index=False)
    tx = pd.read_csv(src / "transactions.csv", dtype=str, keep_default_na=False)
    names = sorted(n for n in tx["product_name"].unique() if n)
    chinese = {
        n: f"{WORDS[i % len(WORDS)]}{KINDS[(i // len(WORDS)) % len(KINDS)]}{i // 77 or ''}"
        for i, n in enumerate(names)
    }
    tx["product_name"] = tx["product_name"].map(chinese).fillna("")
    tx.to_csv(out / "transactions.csv", index=False)
    fb = pd.read_csv(src / "feedback.csv", dtype=str, keep_default_na=False)
    texts = sorted(t for t in fb["text"].unique() if t)
    fb["text"] = fb["text"].map({t: TEXTS[i % len(TEXTS)] for i, t in enumerate(texts)}).fillna("")
    fb.to_csv(out / "feedback.csv", index=False)
    params = write(
        out / "cjk.yml",
        f"""extends: {DEFAULT_PARAMS}
client: cjk
data:
  source: files
  transactions: {{path: transactions.csv}}
  customers: {{path: customers.csv}}
  feedback: {{path: feedback.csv}}
cleaning:
  max_valid_date: 2030-12-31
run:
  chapters: [profile, basket, satisfaction]
report:
  title: 客户洞察报告
  renderer: pandoc
  version: zh1
""",
    )
    import os

    os.environ["CRM_PSEUDONYM_KEY"] = "cjk-test-key"
    result = run_report(params, reports_dir=out / "reports", progress=lambda _: None)
    return result, set(chinese.values())


def test_chinese_text_reaches_html_and_pdf_in_an_embedded_cjk_font(cjk_run):
    result, products = cjk_run
    assert result.ok
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    reader = PdfReader(result.run_dir / "report.pdf")
    # table cells wrap Chinese text onto several lines: compare without whitespace
    pdf = re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))
    for text in ("客户洞察报告", "北京"):
        assert text in html, text
        assert text in pdf, text
    shown = [p for p in products if p in html]  # product names in the basket chapter's tables
    assert shown and all(p in pdf for p in shown), shown
    fonts = set()
    for page in reader.pages:
        for font in (page.get("/Resources") or {}).get("/Font", {}).values():
            fonts.add(str(font.get_object().get("/BaseFont")))
    cjk = [f for f in fonts if re.search(r"CJK|Han|SourceHan", f)]
    assert cjk, fonts  # the Chinese glyphs come from a CJK font embedded in the PDF


def test_figures_draw_chinese_labels_without_missing_glyphs(cjk_run):
    result, _ = cjk_run
    for name in ("01-profile.ipynb", "04-basket.ipynb", "08-satisfaction.ipynb"):
        nb = nbformat.read(result.run_dir / "notebooks" / name, as_version=4)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert any("image/png" in o.get("data", {}) for o in outs), name
        text = " ".join(o.get("text", "") for o in outs if o.output_type == "stream")
        assert "missing from font" not in text and "Glyph" not in text, name
    prof = nbformat.read(result.run_dir / "notebooks" / "01-profile.ipynb", as_version=4)
    shown = " ".join(
        str(o.get("data", {}).get("text/markdown", ""))
        for c in prof.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "北京" in shown or "上海" in shown  # the regions are in the chapter's own tables
