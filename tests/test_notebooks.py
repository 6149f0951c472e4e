"""Contract between the chapter notebooks, the registry and the params model."""

from __future__ import annotations

import nbformat
import papermill as pm
import pytest

from crm_helpers.chapters import CHAPTERS, ENGINE_PARAMETERS
from crm_helpers.config import ChaptersParams
from crm_helpers.paths import NOTEBOOKS_DIR
from crm_helpers.report.render import cell_options

COMMON = {"run_dir", "seed"}


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_notebook_parameters_match_the_params_model(ch):
    declared = set(pm.inspect_notebook(str(ch.notebook)))
    model = ChaptersParams.model_fields.get(ch.slug)
    expected = COMMON | (set(model.annotation.model_fields) if model else set())
    if ch.uses_engine:
        expected |= set(ENGINE_PARAMETERS)
    assert declared == expected


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_notebook_defaults_equal_the_params_defaults(ch):
    info = pm.inspect_notebook(str(ch.notebook))
    model = ChaptersParams.model_fields.get(ch.slug)
    if model is None:
        return
    defaults = model.annotation().model_dump(mode="json")  # what the runner injects
    for name in model.annotation.model_fields:
        assert eval(info[name]["default"]) == defaults[name], name  # noqa: S307 (literal)
        assert info[name]["help"], f"{name} has no one-line comment"


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_notebook_is_stripped_and_first_code_cell_is_parameters(ch):
    nb = nbformat.read(ch.notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    figures = [c for c in code if "plt.show()" in c.source]
    assert all(cell_options(c.source).get("fig-cap") and cell_options(c.source).get("fig-alt") for c in figures)


def test_registry_and_notebook_folder_agree():
    files = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert files == sorted(c.filename for c in CHAPTERS)
    assert [c.number for c in CHAPTERS] == sorted(c.number for c in CHAPTERS)


def test_chapters_run_after_the_chapters_they_read():
    from crm_helpers.chapters import Chapter
    from crm_helpers.report.runner import waves

    a, b, c = Chapter("01", "a", "A"), Chapter("02", "b", "B", reads=("a",)), Chapter("03", "c", "C")
    assert [[x.slug for x in w] for w in waves([a, b, c])] == [["a", "c"], ["b"]]
