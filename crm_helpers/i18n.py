"""The report's language: code-side text (table headers and captions, sentences) in en or zh.

The language is ``report.language`` (``en`` by default). The runner writes it to the run folder's
``run_info.json`` and runs each chapter with the run folder as working directory; :func:`language`
reads it from there on first use, as :mod:`crm_helpers.privacy` reads ``min_group_size``.

Translations are data (``crm_helpers/assets/i18n-zh.yml``):

- ``phrases``: English template -> Chinese template. :func:`tr` looks a template up by its English
  text and fills its named fields (``tr("{n:,} customers", n=12)``), so the English text is both
  the key and the fallback, and a translation can reorder the fields.
- ``headers``: the glossary of table column headers; :func:`crm_helpers.display.table` renames
  the columns of every table it shows through :func:`header`.

The markdown cells and static figure captions of the chapter notebooks are translated separately
(``notebooks/i18n/zh.yml``, applied by :mod:`crm_helpers.report.localize` before execution).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .paths import PACKAGE_DIR

LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"
CATALOGUE = PACKAGE_DIR / "assets" / "i18n-zh.yml"
_state: dict[str, str | None] = {"language": None}


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """The Chinese catalogue: ``{"phrases": {en: zh}, "headers": {en: zh}}``."""
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8")) or {}
    return {"phrases": data.get("phrases") or {}, "headers": data.get("headers") or {}}


def set_language(lang: str) -> None:
    """Put ``lang`` (``en`` or ``zh``) in force for this process (a chapter's kernel)."""
    if lang not in LANGUAGES:
        raise ValueError(f"report.language must be one of {', '.join(LANGUAGES)} (got {lang!r})")
    _state["language"] = lang


def run_language(run_dir: str | Path) -> str:
    """The language of a run: its ``run_info.json``'s (written by the runner); en without it."""
    path = Path(run_dir) / "run_info.json"
    lang = None
    if path.is_file():
        lang = (json.loads(path.read_text(encoding="utf-8")).get("report") or {}).get("language")
    return lang or DEFAULT_LANGUAGE


def configure(run_dir: str | Path) -> str:
    """Put the run's language (:func:`run_language`) in force for this process and return it."""
    set_language(run_language(run_dir))
    return str(_state["language"])


def language() -> str:
    """The language in force: the configured one, else the working directory's run's, else en."""
    if _state["language"] is None:
        configure(".")
    return str(_state["language"])


def tr(text: str, /, lang: str | None = None, **fields: Any) -> str:
    """``text`` in the report's language, with its named fields filled in.

    Parameters
    ----------
    text
        The English template (``str.format`` syntax with named fields); also the catalogue key.
    lang
        The language; the one in force when None.
    **fields
        Values of the template's fields (numbers are formatted by the template's format specs).

    Returns
    -------
    str
        The translated template filled in; the English one when the catalogue lacks it.

    """
    lang = lang or language()
    template = catalogue()["phrases"].get(text, text) if lang == "zh" else text
    return template.format(**fields) if fields else template


def sentences(parts: Any, lang: str | None = None) -> str:
    """Sentences (already translated) run together: a space apart in English, none in Chinese.

    Empty parts are left out, so a sentence that does not apply can be given as ``""``.
    """
    sep = "" if (lang or language()) == "zh" else " "
    return sep.join(p for p in parts if p)


def header(name: Any, lang: str | None = None) -> Any:
    """A table column header in the report's language (the glossary's; unchanged if absent)."""
    if (lang or language()) != "zh" or not isinstance(name, str):
        return name
    return catalogue()["headers"].get(name, name)


def missing(texts: list[str], kind: str = "phrases") -> list[str]:
    """The texts the Chinese catalogue lacks (for completeness checks)."""
    known = catalogue()[kind]
    return sorted({t for t in texts if t not in known or not str(known[t]).strip()})
