"""The HTML report as a reader's browser shows it: headless Chromium driven by Playwright.

:func:`inspect` opens ``report.html`` from disk with every network request blocked and records
what a reviewer would check by hand: console errors and page errors, requests the page tried to
make, whether each table-of-contents link lands on its heading, each figure's rendered size and
alt text, and whether the page overflows sideways at a desktop (1280 px) and a phone (390 px)
width. With ``screenshots`` it also saves one screenshot per chapter (the top of the chapter at
1280 px) for reviewers. The runner calls it after rendering and writes ``browser.json``; the tests
assert on the same facts.

Chromium comes from Debian (``/usr/bin/chromium``, installed by ``scripts/system-deps.sh``);
Playwright only drives it (it never downloads a browser).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

WIDTHS = (1280, 390)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The Chromium executable (``CRM_CHROMIUM`` or Debian's), or None."""
    for cand in (os.environ.get("CRM_CHROMIUM"), "chromium", "chromium-browser"):
        if cand and (found := shutil.which(cand)):
            return found
    return None


def available() -> str | None:
    """None when a browser check can run here, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if chromium_path() is None:
        return "no Chromium on PATH (apt-get install chromium)"
    return None


_FIGURES_JS = """() => Array.from(document.querySelectorAll('img')).map(img => {
  const r = img.getBoundingClientRect();
  return {alt: img.getAttribute('alt') || '', width: r.width, height: r.height,
          natural_width: img.naturalWidth, natural_height: img.naturalHeight,
          complete: img.complete, visible: getComputedStyle(img).visibility !== 'hidden'
                                           && getComputedStyle(img).display !== 'none'};
})"""

_OVERFLOW_JS = """() => ({scroll_width: document.documentElement.scrollWidth,
  inner_width: window.innerWidth,
  widest: Array.from(document.querySelectorAll('body *')).filter(e => {
      const r = e.getBoundingClientRect();
      return r.right > window.innerWidth + 1 && getComputedStyle(e).position !== 'fixed'
             && !e.closest('table') && !e.closest('pre');
  }).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''))})"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "chapter"


def inspect(html: Path, screenshots: Path | None = None) -> dict[str, Any]:
    """Open the report in headless Chromium and return what it shows (see the module doc)."""
    from playwright.sync_api import sync_playwright

    url = Path(html).resolve().as_uri()
    facts: dict[str, Any] = {"console_errors": [], "page_errors": [], "requests": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.on(
                    "console",
                    lambda m: facts["console_errors"].append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: facts["page_errors"].append(str(e)))

                def block(route, request=None):
                    facts["requests"].append(route.request.url)
                    route.abort()

                page.route(re.compile(r"^(https?|wss?|ftp)://"), block)
                page.goto(url, wait_until="load")
                facts[f"overflow_{width}"] = page.evaluate(_OVERFLOW_JS)
                if width == WIDTHS[0]:
                    facts["figures"] = page.evaluate(_FIGURES_JS)
                    facts["toc"] = _check_toc(page)
                    if screenshots is not None:
                        facts["screenshots"] = _screenshots(page, screenshots)
                else:
                    facts["figures_narrow"] = page.evaluate(_FIGURES_JS)
                page.close()
        finally:
            browser.close()
    return facts


_TOC_JS = """() => Array.from(document.querySelectorAll('nav#TOC a[href^="#"]')).map(a => {
    window.scrollTo(0, 0);
    a.click();  // a real click on the link: same-document navigation scrolls synchronously
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    const e = document.getElementById(id);
    const r = e ? e.getBoundingClientRect() : null;
    const bottom = window.scrollY + window.innerHeight
        >= document.documentElement.scrollHeight - 2;
    return {href: a.getAttribute('href'), text: a.textContent.trim(), found: !!e,
            top: r ? Math.round(r.top * 10) / 10 : null, hash: location.hash,
            // a heading near the end cannot scroll to the top: the page's end is in view instead
            at_end: bottom && !!r && r.top >= -2 && r.bottom <= window.innerHeight};
})"""


def _check_toc(page) -> list[dict[str, Any]]:
    """Follow every table-of-contents link and record whether its heading came into view.

    The links are clicked in the page (one round trip for all of them, which keeps the check
    cheap on a long report); each lands when its heading's top is within the first 120 px, or,
    for a heading too near the end of the page to scroll that far, when the page is scrolled to
    its end with the heading in view.
    """
    return [
        link | {"reached": link["found"] and (-2 <= link["top"] <= 120 or link["at_end"])}
        for link in page.evaluate(_TOC_JS)
    ]


def _screenshots(page, folder: Path) -> list[str]:
    """One screenshot per chapter heading (h1 with an id), the top of the chapter at 1280 px."""
    folder.mkdir(parents=True, exist_ok=True)
    heads = page.evaluate(
        "() => Array.from(document.querySelectorAll('h1[id]'))"
        ".map(h => ({id: h.id, text: h.textContent.trim()}))"
    )
    names = []
    for i, head in enumerate(heads):
        page.evaluate("id => document.getElementById(id).scrollIntoView()", head["id"])
        name = f"{i:02d}-{_slug(head['id'])}.png"
        page.screenshot(path=str(folder / name))
        names.append(name)
    return names


def problems(facts: dict[str, Any]) -> list[str]:
    """What a reader would notice, in words (empty when the page is fine)."""
    out = [f"console error: {e}" for e in facts["console_errors"]]
    out += [f"page error: {e}" for e in facts["page_errors"]]
    out += [f"tried to load {u} (the report must open offline)" for u in facts["requests"]]
    out += [
        f"contents link {t['href']} does not reach its heading"
        for t in facts["toc"]
        if not t["reached"]
    ]
    for key in ("figures", "figures_narrow"):
        for i, f in enumerate(facts.get(key, [])):
            if not f["alt"]:
                out.append(f"figure {i + 1} has no alt text")
            if f["width"] <= 0 or f["height"] <= 0 or not f["natural_width"] or not f["visible"]:
                out.append(f"figure {i + 1} is not visible ({key})")
            if (
                f["width"]
                > facts[f"overflow_{WIDTHS[0 if key == 'figures' else 1]}"]["inner_width"]
            ):
                out.append(f"figure {i + 1} is wider than the window ({key})")
    for width in WIDTHS:
        o = facts[f"overflow_{width}"]
        if o["scroll_width"] > o["inner_width"] + 1:
            out.append(
                f"page scrolls sideways at {width} px ({o['scroll_width']} px wide: {o['widest']})"
            )
    return out
