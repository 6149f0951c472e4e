"""Report language: the catalogue, the notebook translations and the caption takeaways."""

from __future__ import annotations

import ast
import base64
import json
import re
import string

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from crm_helpers import i18n, plots  # noqa: E402
from crm_helpers.chapters import CHAPTERS  # noqa: E402
from crm_helpers.display import TAKEAWAY_MIME  # noqa: E402
from crm_helpers.paths import PACKAGE_DIR  # noqa: E402
from crm_helpers.report import localize  # noqa: E402
from crm_helpers.report.render import cell_options, notebook_to_markdown  # noqa: E402

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)).decode()


def _fields(template: str) -> set[tuple[str, str]]:
    return {(f, spec or "") for _, f, spec, _ in string.Formatter().parse(template) if f is not None}


def _tr_literals(source: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tr":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append(node.args[0].value)
    return out


# --------------------------------------------------------------------------- i18n module
def test_tr_fills_named_fields_in_either_language():
    t = "{segment} are {customers} of customers and bring {revenue} of net revenue."
    en = i18n.tr(t, lang="en", segment="Champions", customers="12.0 %", revenue="41.0 %")
    zh = i18n.tr(t, lang="zh", segment="Champions", customers="12.0 %", revenue="41.0 %")
    assert en == "Champions are 12.0 % of customers and bring 41.0 % of net revenue."
    assert zh == "Champions占客户的 12.0 %，贡献了 41.0 % 的净收入。"
    assert i18n.tr("{n:,} rows unknown to the catalogue", lang="zh", n=1234) == "1,234 rows unknown to the catalogue"


def test_language_comes_from_the_run_folder(tmp_path):
    try:
        assert i18n.configure(tmp_path) == "en"  # no run_info.json: English
        (tmp_path / "run_info.json").write_text(json.dumps({"report": {"language": "zh"}}))
        assert i18n.configure(tmp_path) == "zh"
        assert i18n.tr("Headline KPIs") == "核心指标"
        assert i18n.header("customers") == "客户数" and i18n.header(3) == 3
        with pytest.raises(ValueError, match="report.language"):
            i18n.set_language("fr")
    finally:
        i18n.set_language("en")


def test_every_chinese_phrase_keeps_the_english_fields():
    cat = i18n.catalogue()
    for en, zh in cat["phrases"].items():
        assert zh and zh.strip(), en
        assert _fields(en) == _fields(zh), en
    assert all(v.strip() for v in cat["headers"].values())


def test_every_phrase_used_in_code_and_notebooks_is_translated():
    used = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        used += _tr_literals(path.read_text(encoding="utf-8"))
    for ch in CHAPTERS:
        nb = nbformat.read(ch.notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                used += _tr_literals("\n".join(line for line in cell.source.splitlines() if not line.startswith("#|")))
    used += [ch.title for ch in CHAPTERS]  # the registry's titles (index page, failed pages)
    assert len(set(used)) > 100
    assert i18n.missing(used) == []


#: Calls and keywords whose text is drawn on a figure: axis labels, titles, legend entries.
_FIGURE_TEXT_CALLS = ("set_xlabel", "set_ylabel", "set_title", "suptitle")
_FIGURE_TEXT_KEYWORDS = ("label", "title", "xlabel", "ylabel")


def _untranslated_figure_text(source: str, where: str) -> list[str]:
    """Figure text given as an English literal (not through ``tr``) in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        args = list(node.args[:1]) if name in _FIGURE_TEXT_CALLS else []
        args += [k.value for k in node.keywords if k.arg in _FIGURE_TEXT_KEYWORDS]
        for a in args:
            if isinstance(a, ast.JoinedStr):  # the literal parts of an f-string
                text = "".join(v.value for v in a.values if isinstance(v, ast.Constant))
            else:
                text = a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else ""
            # Words in a literal (symbols and names such as '%' or 'BG/NBD' may stay).
            if re.search(r"[a-z]{2,}", text):
                found.append(f"{where}:{node.lineno}: {ast.unparse(a)}")
    return found


def test_chapter_sentences_go_through_the_catalogue():
    # What a chapter says (say, takeaway) is built from translated templates: an f-string or a
    # literal with English words in it would stay English in a Chinese report.
    found = []
    for ch in CHAPTERS:
        nb = nbformat.read(ch.notebook, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            src = "\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("#|"))
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("say", "takeaway"):
                    for a in node.args[:1]:
                        if isinstance(a, ast.JoinedStr):
                            text = "".join(v.value for v in a.values if isinstance(v, ast.Constant))
                        elif isinstance(a, ast.Constant) and isinstance(a.value, str):
                            text = a.value
                        else:
                            continue
                        if re.search(r"[a-z]{2,}", text):
                            found.append(f"{ch.notebook.name} cell {i}: {ast.unparse(a)[:80]}")
    assert found == []
    assert i18n.sentences(["A.", "", "B."], lang="en") == "A. B."
    assert i18n.sentences(["甲。", "", "乙。"], lang="zh") == "甲。乙。"


def test_helper_tables_are_translated():
    # Cells a helper writes in English (what a quarantine reason means, how the unified view is
    # made up, value-level issue names) are catalogue phrases, shown in the report's language.
    from crm_helpers import quality

    issues = ["product name variants"] + [
        f"unparseable {c.replace('_', ' ')}" for c in ("signup_date", "birth_date", "age", "income")
    ]
    assert i18n.missing(list(quality.REASON_TEXT.values()) + issues) == []
    summary = {"reconciliation": {"transactions": {"input": 10, "kept": 8,
               "quarantined": {"exact_duplicate": 1, "zero_price": 1}}}}  # fmt: skip
    customers = pd.DataFrame({"orders": [2.0, None], "in_customer_table": [True, False],
                              "lines": [3.0, None], "source_ids": [2, 1],
                              "return_lines": [1.0, None]})  # fmt: skip
    try:
        i18n.set_language("zh")
        meanings = quality.reasons_table(summary).set_index("reason")["meaning"]
        assert meanings["zero_price"] == "单价为 0（赠品行或调整）"
        rows = quality.unified_view_summary(customers).set_index("customers")["count"]
        assert rows["统一视图中的客户"] == 2 and rows["以多个编号记录（已合并）"] == 1
    finally:
        i18n.set_language("en")
    rows = quality.unified_view_summary(customers).set_index("customers")["count"]
    assert rows["customers in the unified view"] == 2


def test_figure_text_goes_through_the_catalogue():
    # Axis labels, titles and legend entries are drawn into the images, where no later step can
    # translate them: each must be a tr() call (whose phrase the test above checks).
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        found += _untranslated_figure_text(path.read_text(encoding="utf-8"), path.name)
    for ch in CHAPTERS:
        nb = nbformat.read(ch.notebook, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                src = "\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("#|"))
                found += _untranslated_figure_text(src, f"{ch.notebook.name} cell {i}")
    assert found == []
    plt.close("all")
    fig, ax = plt.subplots()
    from crm_helpers.models import profile

    try:
        i18n.set_language("zh")
        profile.plot_lorenz(profile.lorenz_curve(pd.Series([1.0, 2.0, 7.0])), ax=ax, gini=0.4)
        assert ax.get_xlabel() == "客户占比 %（收入从低到高）"
        assert "客户（基尼系数 0.40）" in [t.get_text() for t in ax.get_legend().get_texts()]
    finally:
        i18n.set_language("en")
        plt.close(fig)


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_every_markdown_cell_and_caption_has_a_current_translation(ch):
    nb = nbformat.read(ch.notebook, as_version=4)
    assert nb.nbformat_minor >= 5 and all(c.get("id") for c in nb.cells)
    zh, untranslated = localize.translate(nb, ch.notebook.stem, "zh")
    assert untranslated == [], f"missing or stale entries in notebooks/i18n/zh.yml: {untranslated}"
    heading = zh.cells[0].source.splitlines()[0]
    assert heading.startswith("# ") and i18n.tr(ch.title, lang="zh") in heading
    for cell in zh.cells:
        if cell.cell_type == "code":
            opts = cell_options(cell.source)
            for opt in ("fig-cap", "fig-alt"):
                if opt in opts:
                    assert any("\u4e00" <= c <= "\u9fff" for c in opts[opt]), (cell.id, opt)


def test_an_edited_english_cell_makes_its_translation_stale():
    ch = CHAPTERS[0]
    nb = nbformat.read(ch.notebook, as_version=4)
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    md.source += " Edited."
    fig = next(c for c in nb.cells if c.cell_type == "code" and "fig-cap" in c.source)
    fig.source = fig.source.replace('#| fig-cap: "', '#| fig-cap: "Edited: ', 1)
    zh, untranslated = localize.translate(nb, ch.notebook.stem, "zh")
    assert md.id in untranslated and f"{fig.id}/fig-cap" in untranslated
    assert f"{fig.id}/fig-alt" not in untranslated
    assert next(c for c in zh.cells if c.id == md.id).source.endswith("Edited.")  # English kept


# ----------------------------------------------------------------------- caption folding
def _figure_cell(text: str, *, image: bool = True):
    outs = [new_output("display_data", data={TAKEAWAY_MIME: {"text": text, "off_palette": ["#1f77b4"]},
                                             "text/plain": text})]
    if image:
        outs.append(new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}))
    return new_code_cell('#| fig-cap: "Revenue per month."\n#| fig-alt: "A line chart."\nplot()', outputs=outs)


def test_takeaway_is_folded_into_the_caption_and_its_carrier_removed(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# T"),
                             _figure_cell('Peak in 2024-10 at 78,670: "best" month.')])
    assert localize.fold_takeaways(nb) == 1
    cell = nb.cells[1]
    opts = cell_options(cell.source)
    assert opts["fig-cap"] == 'Revenue per month. Peak in 2024-10 at 78,670: "best" month.'
    assert opts["fig-alt"] == 'A line chart. Peak in 2024-10 at 78,670: "best" month.'
    assert all(TAKEAWAY_MIME not in o.get("data", {}) for o in cell.outputs)
    assert cell.metadata["crm"] == {"takeaway": 'Peak in 2024-10 at 78,670: "best" month.',
                                    "off_palette": ["#1f77b4"]}
    (tmp_path / "media").mkdir()
    md = notebook_to_markdown(nb, tmp_path / "media", "x")
    assert "![Revenue per month. Peak in 2024-10 at 78,670" in md
    assert md.count("78,670") == 2  # caption and alt text, nothing else (carrier gone)


def test_chinese_caption_and_takeaway_join_with_chinese_punctuation():
    nb = new_notebook(cells=[_figure_cell("净收入在 2024-10 达到峰值。")])
    nb.cells[0].source = nb.cells[0].source.replace("Revenue per month.", "每月净收入")
    localize.fold_takeaways(nb)
    assert cell_options(nb.cells[0].source)["fig-cap"] == "每月净收入。净收入在 2024-10 达到峰值。"


def test_a_cell_without_a_figure_keeps_its_caption_but_loses_the_carrier():
    nb = new_notebook(cells=[_figure_cell("Takeaway.", image=False)])
    before = nb.cells[0].source
    localize.fold_takeaways(nb)
    assert nb.cells[0].source == before and nb.cells[0].outputs == []


# ---------------------------------------------------------------------------- palette
def test_off_palette_flags_foreign_colours_and_colour_maps():
    plots.set_theme()
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1], [0, 1], color=plots.PALETTE[2])
    a.axhline(0.5, color=plots.NEUTRAL)
    a.bar([0, 1], [1, 2], color=plots.PALETTE[0], alpha=0.3)
    b.imshow([[0, 1], [1, 0]], cmap=plots.SEQUENTIAL)
    assert plots.off_palette(fig) == []
    a.plot([0, 1], [1, 0], color="#1f77b4")
    b.imshow([[0, 1], [1, 0]], cmap="jet")
    assert plots.off_palette(fig) == ["#1f77b4", "cmap:jet"]
    plt.close(fig)


def test_plot_helpers_draw_only_palette_colours():
    import numpy as np
    import pandas as pd

    from crm_helpers.models import segment

    plots.set_theme()
    profile = pd.DataFrame({"customers": [40, 30, 20], "share": [0.4, 0.3, 0.2], "revenue_share": [0.6, 0.3, 0.1],
                            "mean_recency_days": [10.0, 90.0, 300.0], "mean_frequency": [8.0, 3.0, 1.0],
                            "mean_monetary": [900.0, 300.0, 50.0]}, index=["a", "b", "c"])
    segment.plot_profile_heatmap(profile)
    segment.plot_segments(profile)
    segment.plot_k_choice(pd.DataFrame({"k": [2, 3], "silhouette": [0.5, 0.4], "inertia": [10.0, 8.0]}), 2)
    idx = pd.date_range("2024-01-01", periods=5, freq="MS")
    plots.time_series(pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5.0)[::-1]}, index=idx))
    plots.bar(pd.Series([3, 1, 2], index=list("xyz")))
    for n in plt.get_fignums():
        assert plots.off_palette(plt.figure(n)) == [], n
    plt.close("all")
