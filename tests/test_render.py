"""The fallback renderer applies Quarto's cell options itself; the Quarto project stays valid."""

from __future__ import annotations

import base64
import shutil

import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from crm_helpers.paths import QUARTO_PROJECT_FILE
from crm_helpers.report.render import cell_options, notebook_to_markdown

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)).decode()


def _nb():
    nb = new_notebook()
    params = new_code_cell("x = 1", metadata={"tags": ["parameters"]})
    injected = new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]})
    removed = new_code_cell("secret()", metadata={"tags": ["remove-cell"]},
                            outputs=[new_output("stream", name="stdout", text="removed-cell-output")])
    hidden = new_code_cell("#| include: false\nsetup()",
                           outputs=[new_output("stream", name="stdout", text="hidden-output")])
    quiet = new_code_cell("#| output: false\nnoisy()",
                          outputs=[new_output("stream", name="stdout", text="quiet-output")])
    fig = new_code_cell(
        '#| label: fig-trend\n#| fig-cap: "Revenue grows."\n#| fig-alt: "A rising line."\nplot()',
        outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})],
    )
    md_out = new_code_cell("table(df)", outputs=[new_output(
        "display_data", data={"text/markdown": "| a |\n|---|\n| 1 |", "text/plain": "<Markdown>"})])
    err = new_code_cell("boom()", outputs=[new_output("error", ename="ValueError", evalue="bad", traceback=[])])
    nb.cells = [new_markdown_cell("# Title"), params, injected, removed, hidden, quiet, fig, md_out, err]
    return nb


def test_cell_options_are_parsed_as_yaml_values():
    opts = cell_options('#| include: false\n#| fig-cap: "A, b: c"\n#|label: fig-x\ncode()\n#| echo: true')
    assert opts == {"include": False, "fig-cap": "A, b: c", "label": "fig-x"}


def test_fallback_hides_code_and_applies_cell_options(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    md = notebook_to_markdown(_nb(), media, "00-x")
    assert md.startswith("# Title")
    for hidden in ("x = 1", "x = 2", "removed-cell-output", "hidden-output", "quiet-output",
                   "setup()", "plot()", "table(df)", "<Figure>"):
        assert hidden not in md
    assert '![Revenue grows.](media/00-x-1.png){#fig-trend alt="A rising line."' in md
    assert (media / "00-x-1.png").read_bytes().startswith(b"\x89PNG")
    assert "| a |" in md
    assert "**Error** ValueError: bad" in md


def test_quarto_project_is_a_book_that_never_executes():
    cfg = yaml.safe_load(QUARTO_PROJECT_FILE.read_text())
    assert cfg["project"]["type"] == "book"
    assert cfg["execute"]["enabled"] is False
    assert cfg["book"]["author"], "Quarto's Typst book template needs an author"
    assert set(cfg["format"]) == {"html", "typst"}
    assert cfg["book"]["chapters"][0] == "index.md"
    root = QUARTO_PROJECT_FILE.parent
    for ch in cfg["book"]["chapters"]:
        assert (root / ch).is_file(), ch
    for fmt in cfg["format"].values():
        assert fmt.get("echo") is False


@pytest.mark.quarto
@pytest.mark.skipif(shutil.which("quarto") is None, reason="quarto is not on PATH (runs where it is)")
def test_quarto_renders_the_project_template(tmp_path):
    import subprocess

    proc = subprocess.run(["quarto", "check", "jupyter"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
