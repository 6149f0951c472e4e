"""The chapter notebooks' text in the report's language, and figure captions with takeaways.

Two steps around papermill, each called once by the runner:

- :func:`source_notebook` (before execution): with ``report.language: zh``, the chapter's markdown
  cells and static ``#| fig-cap`` / ``#| fig-alt`` options are replaced by their translations from
  ``notebooks/i18n/zh.yml``, so that the executed notebook reviewers read is in Chinese. Each
  translation is keyed by notebook and cell id (nbformat 4.5) and carries the sha256 (first 12
  hex digits) of the English text it translates: when the English cell is edited, the entry is
  stale and the English text is kept (``tests/test_i18n.py`` fails on any missing or stale entry).
- :func:`fold_takeaways` (after execution): the takeaway a figure cell computed
  (:func:`crm_helpers.display.takeaway`) is appended to the cell's ``#| fig-cap`` (and
  ``#| fig-alt``) and its carrier output removed, so that the executed notebook, Quarto and the
  fallback renderer show one and the same caption. The cell's metadata keeps the takeaway and any
  colour off the report's palette (``crm.takeaway``, ``crm.off_palette``) for checks.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import yaml

from ..display import TAKEAWAY_MIME
from ..paths import NOTEBOOKS_DIR
from .render import cell_options

TRANSLATIONS_DIR = NOTEBOOKS_DIR / "i18n"
CAPTION_OPTIONS = ("fig-cap", "fig-alt")


def text_hash(text: str) -> str:
    """The short fingerprint of an English text that its translation records (12 hex digits)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:12]


@cache
def _load(language: str, mtime: float) -> dict[str, Any]:
    path = TRANSLATIONS_DIR / f"{language}.yml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def translations(language: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{notebook stem: {key: {"en": sha, "text": translation}}}`` for ``language``.

    A key is a cell id (a markdown cell) or ``<cell id>/fig-cap`` / ``<cell id>/fig-alt``.
    """
    path = TRANSLATIONS_DIR / f"{language}.yml"
    if not path.is_file():
        return {}
    return _load(language, path.stat().st_mtime)


def translatable(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The English texts of a notebook that a translation covers: key -> text."""
    out: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            out[cell.id] = cell.source
        elif cell.cell_type == "code":
            opts = cell_options(cell.source)
            for opt in CAPTION_OPTIONS:
                if opts.get(opt):
                    out[f"{cell.id}/{opt}"] = str(opts[opt])
    return out


def _set_option(source: str, option: str, value: str) -> str:
    """``source`` with its ``#| option:`` line set to ``value`` (a YAML double-quoted string)."""
    line = f"#| {option}: {json.dumps(value, ensure_ascii=False)}"
    pattern = re.compile(rf"^#\|\s*{re.escape(option)}\s*:.*$", re.M)
    return pattern.sub(lambda _: line, source, count=1)


def translate(
    nb: nbformat.NotebookNode, stem: str, language: str
) -> tuple[nbformat.NotebookNode, list[str]]:
    """A copy of ``nb`` with its current translations applied; and the keys left in English.

    Parameters
    ----------
    nb
        The chapter's source notebook (nbformat 4.5, cell ids).
    stem
        Its file name without ``.ipynb`` (``02-segmentation``), the key in the translation file.
    language
        ``en`` (nothing changes) or a language with ``notebooks/i18n/<language>.yml``.

    Returns
    -------
    (notebook, untranslated)
        The translated copy, and the keys with no entry or a stale one (English kept).

    """
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    if language == "en":
        return nb, []
    table = translations(language).get(stem, {})
    untranslated = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            entry = table.get(cell.id)
            if entry and entry.get("en") == text_hash(cell.source):
                cell.source = entry["text"].rstrip("\n")
            else:
                untranslated.append(cell.id)
        elif cell.cell_type == "code":
            opts = cell_options(cell.source)
            for opt in CAPTION_OPTIONS:
                if not opts.get(opt):
                    continue
                entry = table.get(f"{cell.id}/{opt}")
                if entry and entry.get("en") == text_hash(str(opts[opt])):
                    cell.source = _set_option(cell.source, opt, entry["text"].strip())
                else:
                    untranslated.append(f"{cell.id}/{opt}")
    return nb, untranslated


def source_notebook(path: Path, language: str) -> str | nbformat.NotebookNode:
    """What papermill executes for a chapter: its path (en) or its translated copy."""
    if language == "en":
        return str(path)
    nb, _ = translate(nbformat.read(path, as_version=4), Path(path).stem, language)
    return nb


def _join(static: str, takeaway: str) -> str:
    static = static.strip()
    if not static:
        return takeaway
    if not static.endswith((".", "。", "!", "?", ":", ";", "：", "；")):
        static += "。" if re.search(r"[\u4e00-\u9fff]", static) else "."
    sep = "" if static.endswith(("。", "：", "；")) else " "
    return f"{static}{sep}{takeaway}"


def fold_takeaways(nb: nbformat.NotebookNode) -> int:
    """Append each figure cell's computed takeaway to its caption; return the figures captioned.

    A code cell's takeaway outputs (:data:`crm_helpers.display.TAKEAWAY_MIME`) are removed; when
    the cell also drew a figure, their sentences are appended to its ``#| fig-cap`` and
    ``#| fig-alt`` options (the static text first). The cell's metadata records ``crm.takeaway``
    and ``crm.off_palette`` (colours outside the report's palette found in its figures).
    """
    folded = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = cell.get("outputs", [])
        carriers = [o for o in outs if TAKEAWAY_MIME in o.get("data", {})]
        if not carriers:
            continue
        cell.outputs = [o for o in outs if TAKEAWAY_MIME not in o.get("data", {})]
        texts = [str(o["data"][TAKEAWAY_MIME].get("text", "")).strip() for o in carriers]
        text = " ".join(t for t in texts if t)
        off = sorted({c for o in carriers for c in o["data"][TAKEAWAY_MIME].get("off_palette", [])})
        cell.metadata["crm"] = {"takeaway": text, "off_palette": off}
        has_figure = any("image/png" in o.get("data", {}) for o in cell.outputs)
        if not (text and has_figure):
            continue
        opts = cell_options(cell.source)
        for opt in CAPTION_OPTIONS:
            if opts.get(opt):
                cell.source = _set_option(cell.source, opt, _join(str(opts[opt]), text))
            elif opt == "fig-cap":
                cell.source = f"#| fig-cap: {json.dumps(text, ensure_ascii=False)}\n{cell.source}"
        folded += 1
    return folded
