"""Shared fixtures: paths to the shared real data and small crafted inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crm_helpers.paths import DEFAULT_PARAMS

#: The small demo (400 customers, 8,000 lines) the end-to-end runs use; tests add their own keys.
SMALL_DEMO = f"""extends: {DEFAULT_PARAMS}
client: e2e
data:
  demo:
    customers: 400
    lines: 8000
"""

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRM_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("MPLBACKEND", "Agg")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prepared_demo(tmp_path_factory):
    """The default demo (5,000 customers, 2023-01-01 .. 2024-12-31), prepared once per session.

    Returns the prepared folder (read it, never write to it) and the demo's source folder (with
    ``ground_truth.json``).
    """
    from crm_helpers.config import load_params
    from crm_helpers.data import prepare
    from crm_helpers.paths import RunPaths
    from crm_helpers.report.runner import input_sources

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_PSEUDONYM_KEY", "test-key")
        params = load_params()
        sources = input_sources(params, progress=lambda _: None)
        run = RunPaths(tmp_path_factory.mktemp("prepared_demo") / "run")
        prepare(params, sources, run)
    return {"prepared": run.prepared, "source": Path(sources["transactions"].path).parent}
