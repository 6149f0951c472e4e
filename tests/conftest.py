"""Shared fixtures: paths to the shared real data and small crafted inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
