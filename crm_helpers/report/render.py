"""Render the executed chapter notebooks into ``report.html`` and ``report.pdf``.

Two paths, chosen automatically (DESIGN section 7):

- **Quarto** (``quarto`` on PATH): the run folder becomes a Quarto book project (``_quarto.yml``
  from the project's template, chapters = the executed notebooks, ``execute: enabled: false``);
  ``quarto render`` makes the PDF through Typst and the multi-page HTML book in ``book/``.
  Quarto cannot embed resources in a book (quarto-cli #11316), so the single-file
  ``report.html`` is always written by the pandoc path from the same notebooks.
- **Fallback**: pandoc (``pypandoc-binary``) and the ``typst`` wheel. Quarto's cell options are
  applied here first, as Quarto would: code is hidden; cells tagged ``parameters``,
  ``injected-parameters`` or ``remove-cell`` and cells with ``#| include: false`` are dropped;
  ``#| output: false`` drops outputs; ``#| fig-cap`` / ``#| fig-alt`` become the figure's caption
  and alt text.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import yaml

from ..config import Params
from ..errors import RunError
from ..i18n import tr
from ..paths import ASSETS_DIR, QUARTO_PROJECT_FILE, RunPaths
from . import diff

HIDDEN_TAGS = {"parameters", "injected-parameters", "remove-cell"}
_OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*)$")


# ------------------------------------------------------------------------------ cell options
def cell_options(source: str) -> dict[str, Any]:
    """Quarto's ``#| key: value`` options at the top of a code cell, parsed as YAML values."""
    opts: dict[str, Any] = {}
    for line in source.splitlines():
        m = _OPTION.match(line.strip())
        if not m:
            if line.strip():
                break
            continue
        try:
            opts[m.group(1)] = yaml.safe_load(m.group(2)) if m.group(2) else None
        except yaml.YAMLError:
            opts[m.group(1)] = m.group(2)
    return opts


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _escape_attr(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def notebook_to_markdown(nb: nbformat.NotebookNode, media_dir: Path, prefix: str) -> str:
    """Pandoc Markdown of an executed notebook, as the reader of the report sees it.

    Parameters
    ----------
    nb
        The executed notebook.
    media_dir
        Where figures are written (``<prefix>-<n>.png``).
    prefix
        File-name prefix of this chapter's figures.

    Returns
    -------
    str
        Markdown with code hidden, hidden cells dropped and figures captioned.

    """
    parts: list[str] = []
    fig = 0
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & HIDDEN_TAGS:
            continue
        if cell.cell_type == "markdown":
            parts.append(_text(cell.source))
            continue
        if cell.cell_type != "code":
            continue
        opts = cell_options(_text(cell.source))
        if opts.get("include") is False or opts.get("output") is False:
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                if out.get("name") == "stdout" and _text(out.get("text", "")).strip():
                    parts.append("```\n" + _text(out["text"]).rstrip() + "\n```")
            elif kind == "error":
                parts.append(f"> **Error** {out.get('ename')}: {out.get('evalue')}")
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if "text/markdown" in data:
                    parts.append(_text(data["text/markdown"]))
                elif "image/png" in data:
                    fig += 1
                    name = f"{prefix}-{fig}.png"
                    (media_dir / name).write_bytes(base64.b64decode(_text(data["image/png"])))
                    cap = str(opts.get("fig-cap") or "")
                    alt = str(opts.get("fig-alt") or cap or "Figure")
                    label = opts.get("label")
                    ident = (
                        f"#{label} " if isinstance(label, str) and label.startswith("fig-") else ""
                    )
                    parts.append(
                        f'![{cap}]({media_dir.name}/{name}){{{ident}alt="{_escape_attr(alt)}" '
                        f'width="100%"}}'
                    )
                elif "text/plain" in data and kind == "display_data":
                    parts.append("```\n" + _text(data["text/plain"]).rstrip() + "\n```")
    return "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"


# ------------------------------------------------------------------------------ report pieces
def report_meta(params: Params, manifest: dict[str, Any]) -> dict[str, Any]:
    """Title-page metadata in the report's language: title, client, version, period, date, lang."""
    lang = params.report.language
    period = manifest.get("period") or {}
    created = manifest.get("created_utc", dt.datetime.now(dt.UTC).isoformat())[:10]
    return {
        "title": tr(params.report.title, lang=lang),
        "subtitle": tr(
            "Client: {client} · Version {version}",
            lang=lang,
            client=params.client,
            version=manifest["version"],
        ),
        "author": tr(params.report.author, lang=lang),
        "date": tr(
            "Generated {created} · data {start} to {end}",
            lang=lang,
            created=created,
            start=period.get("start", "?"),
            end=period.get("end", "?"),
        ),
        "lang": lang,
    }


def index_markdown(params: Params, manifest: dict[str, Any]) -> str:
    """The report's opening page (in the report's language): what it covers, how to read it."""
    lang = params.report.language
    period = manifest.get("period") or {}
    rows = [
        "| | |",
        "|---|---|",
        f"| {tr('Client', lang=lang)} | {params.client} |",
        f"| {tr('Report version', lang=lang)} | {manifest['version']} |",
        f"| {tr('Data period', lang=lang)} | "
        + tr("{start} to {end}", lang=lang, start=period.get("start", "?"), end=period.get("end", "?"))
        + " |",
        f"| {tr('Generated', lang=lang)} | {manifest.get('created_utc', '')[:10]} |",
        f"| {tr('Product revision', lang=lang)} | "
        f"{manifest.get('git', {}).get('revision', 'unknown')[:12]} |",
    ]
    chapters = "\n".join(
        f"- {tr(c['title'], lang=lang)}"
        + ("" if c["status"] == "ok" else f" (**{tr(c['status'], lang=lang)}**)")
        for c in manifest["chapters"]
    )
    about = tr(
        "This report turns the client's customer data into key figures, segments and action "
        "lists. Every number comes from the executed chapter notebooks kept beside it; customer "
        "identifiers are pseudonymised and no personal data appears.",
        lang=lang,
    )
    return (
        f"# {tr('About this report', lang=lang)} {{.unnumbered}}\n\n"
        + "\n".join(rows)
        + f"\n\n{about}\n\n**{tr('Chapters', lang=lang)}**\n\n{chapters}\n"
    )


def failed_markdown(chapter: dict[str, Any], lang: str = "en") -> str:
    """The page shown in place of a chapter whose notebook failed."""
    return f"# {tr(chapter['title'], lang=lang)}\n\n> " + tr(
        "**This chapter failed and shows no results.** Error: `{error}`. The executed notebook "
        "in the report folder shows where; the other chapters are unaffected.",
        lang=lang,
        error=chapter.get("error"),
    ) + "\n"


def _chapter_sources(run: RunPaths, manifest: dict[str, Any]) -> list[tuple[dict[str, Any], Path]]:
    return [(c, run.notebooks / f"{c['number']}-{c['slug']}.ipynb") for c in manifest["chapters"]]


def build_markdown(run: RunPaths, params: Params, manifest: dict[str, Any], work: Path) -> Path:
    """Write ``work/report.md`` (every chapter in order) and its figures to ``work/media``."""
    media = work / "media"
    media.mkdir(parents=True, exist_ok=True)
    parts = [index_markdown(params, manifest)]
    page = diff.page_of(run.root, manifest)  # what changed since the last report, first
    if page is not None:
        parts.append(page.read_text(encoding="utf-8"))
    for chapter, path in _chapter_sources(run, manifest):
        if chapter["status"] == "ok" and path.is_file():
            nb = nbformat.read(path, as_version=4)
            parts.append(notebook_to_markdown(nb, media, f"{chapter['number']}-{chapter['slug']}"))
        else:
            parts.append(failed_markdown(chapter, params.report.language))
    out = work / "report.md"
    meta = report_meta(params, manifest)
    front = "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True) + "---\n\n"
    out.write_text(front + "\n\n".join(parts), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------ pandoc
def pandoc_path() -> str:
    """The pandoc binary shipped by ``pypandoc-binary``."""
    import pypandoc

    return pypandoc.get_pandoc_path()


def _pandoc(args: list[str], cwd: Path) -> None:
    proc = subprocess.run([pandoc_path(), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"pandoc failed ({' '.join(args[:3])} ...): {proc.stderr.strip()[:2000]}")


def render_html(md: Path, out: Path) -> Path:
    """One self-contained HTML file (figures and styles embedded; opens offline)."""
    _pandoc(
        [
            md.name,
            "--standalone",
            "--wrap=none",
            "--columns=160",
            "--embed-resources",
            "--toc",
            "--toc-depth=2",
            f"--css={ASSETS_DIR / 'report.css'}",
            "--metadata",
            "document-css=false",
            "-o",
            str(out),
        ],
        md.parent,
    )
    return out


def render_pdf(md: Path, out: Path, params: Params, manifest: dict[str, Any]) -> Path:
    """PDF through pandoc's Typst writer and the ``typst`` wheel."""
    import typst

    typ = md.with_suffix(".typ")
    header = md.parent / "header.typ"
    title = tr(params.report.title, lang=params.report.language)
    running = f"{title} · {params.client} · {manifest['version']}".replace('"', "'")
    header.write_text(
        (ASSETS_DIR / "header.typ").read_text(encoding="utf-8").replace("RUNNING-HEADER", running),
        encoding="utf-8",
    )
    _pandoc(
        [
            md.name,
            "--standalone",
            "--wrap=none",
            "--columns=160",
            "-t",
            "typst",
            "--toc",
            "--toc-depth=2",
            "-V",
            "papersize=a4",
            "-V",
            "fontsize=10pt",
            "-V",
            "page-numbering=1",
            "-V",
            "margin.x=2cm",
            "-V",
            "margin.y=2.2cm",
            f"--include-in-header={header.name}",
            "-o",
            typ.name,
        ],
        md.parent,
    )
    typst.compile(str(typ), output=str(out), root=str(md.parent))
    return out


# ------------------------------------------------------------------------------------ quarto
def quarto_config(params: Params, manifest: dict[str, Any], chapters: list[str]) -> dict[str, Any]:
    """The run's ``_quarto.yml``: the project template with this run's chapters and title page."""
    cfg = yaml.safe_load(QUARTO_PROJECT_FILE.read_text(encoding="utf-8"))
    meta = report_meta(params, manifest)
    book = cfg.setdefault("book", {})
    book.update({k: meta[k] for k in ("title", "subtitle", "author", "date")})
    book["chapters"] = ["index.md", *chapters]
    book["output-file"] = "report"
    cfg["lang"] = meta["lang"]  # Quarto's document option: its own labels and the HTML/Typst lang
    if meta["lang"] == "zh":  # Typst's main font must carry the Chinese glyphs (DESIGN section 7)
        cfg.setdefault("format", {}).setdefault("typst", {})["mainfont"] = "Noto Sans CJK SC"
    return cfg


def quarto_chapters(
    run: RunPaths, manifest: dict[str, Any], language: str = "en"
) -> list[str]:
    """The book's chapters after ``index.md``, relative to the run folder.

    The "what changed since the last report" page first (when the run has one), then each
    executed notebook, or a page saying that the chapter failed (written here).
    """
    page = diff.page_of(run.root, manifest)
    chapters = [page.name] if page is not None else []
    for chapter, path in _chapter_sources(run, manifest):
        if chapter["status"] == "ok" and path.is_file():
            chapters.append(str(path.relative_to(run.root)))
        else:
            failed = run.root / f"failed-{chapter['slug']}.md"
            failed.write_text(failed_markdown(chapter, language), encoding="utf-8")
            chapters.append(failed.name)
    return chapters


def render_quarto(run: RunPaths, params: Params, manifest: dict[str, Any]) -> None:
    """Render the run folder as a Quarto book: ``report.pdf`` (Typst) and ``book/`` (HTML)."""
    chapters = quarto_chapters(run, manifest, params.report.language)
    (run.root / "index.md").write_text(index_markdown(params, manifest), encoding="utf-8")
    cfg = quarto_config(params, manifest, chapters)
    (run.root / "_quarto.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    proc = subprocess.run(["quarto", "render", str(run.root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"quarto render failed: {proc.stderr.strip()[-2000:]}")
    out_dir = run.root / cfg["project"].get("output-dir", "_book")
    pdf = out_dir / "report.pdf"
    if not pdf.is_file():
        raise RunError(f"quarto render wrote no {pdf}")
    shutil.copyfile(pdf, run.pdf)


# ------------------------------------------------------------------------------------ entry
def choose_renderer(requested: str) -> str:
    """``quarto`` when requested or (auto) when on PATH; else ``pandoc``."""
    if requested == "quarto":
        if shutil.which("quarto") is None:
            raise RunError(
                "renderer 'quarto' requested but quarto is not on PATH; use --renderer pandoc"
            )
        return "quarto"
    if requested == "auto" and shutil.which("quarto") is not None:
        return "quarto"
    return "pandoc"


def render_report(
    run: RunPaths, params: Params, manifest: dict[str, Any], *, renderer: str = "auto"
) -> str:
    """Render ``report.html`` and ``report.pdf`` into the run folder; return the renderer used."""
    used = choose_renderer(renderer)
    work = run.root / "_render"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    md = build_markdown(run, params, manifest, work)
    if "html" in params.report.formats:
        render_html(md, run.html)
    if "pdf" in params.report.formats:
        if used == "quarto":
            render_quarto(run, params, manifest)
        else:
            render_pdf(md, run.pdf, params, manifest)
    return used
