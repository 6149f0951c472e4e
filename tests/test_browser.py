"""The HTML report in a real browser (Debian's Chromium, driven headless by Playwright)."""

from __future__ import annotations

import base64

import pytest

from crm_helpers.report import browser

pytestmark = pytest.mark.slow

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()

BROKEN = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="https://cdn.example.com/lib.js"></script></head><body>
<nav id="TOC"><a href="#one">One</a> <a href="#missing">Gone</a></nav>
<h1 id="one">One</h1><p style="height:2000px">text</p>
<img src="data:image/png;base64,{PNG}" style="width:50px">
<img src="data:image/png;base64,{PNG}" alt="a figure" style="width:1500px">
<div style="width:2000px">too wide</div>
<script>console.error("boom"); undefinedFunction();</script>
</body></html>"""


def test_the_check_names_every_problem_a_reader_would_meet(tmp_path):
    assert browser.available() is None, browser.available()  # make test installs Chromium
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    facts = browser.inspect(page, tmp_path / "shots")
    found = browser.problems(facts)
    text = "\n".join(found)
    assert "tried to load https://cdn.example.com/lib.js" in text
    assert "console error: boom" in text and "undefinedFunction" in text
    assert "contents link #missing does not reach its heading" in text
    assert "#one" not in text  # the good link lands on its heading
    assert "figure 1 has no alt text" in text
    assert "figure 2 is wider than the window" in text
    assert "page scrolls sideways at 1280 px" in text and "page scrolls sideways at 390 px" in text
    assert facts["screenshots"] == ["00-one.png"]
    assert (tmp_path / "shots" / "00-one.png").read_bytes()[:4] == b"\x89PNG"


def test_a_heading_too_near_the_end_to_reach_the_top_counts_as_reached(tmp_path):
    page = tmp_path / "toc.html"
    page.write_text(
        """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<nav id="TOC"><a href="#first">First</a> <a href="#stuck" onclick="event.preventDefault()">Stuck</a>
<a href="#last">Last</a></nav>
<h1 id="first">First</h1><p style="height:3000px">long</p>
<h2 id="stuck">A link that does not scroll</h2><p style="height:3000px">long</p>
<h2 id="last">Last, a few lines from the end</h2><p>short</p></body></html>"""
    )
    facts = browser.inspect(page)
    toc = {t["href"]: t for t in facts["toc"]}
    assert toc["#first"]["reached"] and not toc["#first"]["at_end"]
    assert toc["#last"]["reached"] and toc["#last"]["at_end"] and toc["#last"]["top"] > 120
    assert not toc["#stuck"]["reached"]  # its click never scrolled: still far below
    assert browser.problems(facts) == ["contents link #stuck does not reach its heading"]
