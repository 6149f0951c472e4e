"""Fast reruns: reuse prepared tables and executed chapters whose inputs are unchanged.

Each run records fingerprints in its manifest (``fingerprints``):

- ``code``: the ``crm_helpers`` package source (every ``.py`` file and asset), the notebook
  translations and the versions of the packages the report depends on;
- ``prepared``: the input files' sha256, the pseudonym key (hashed), every parameter the preparation
  can read (all but the chapters' blocks and the keys that only say how or where to run and render)
  and the code;
- one per chapter: the prepared fingerprint, the chapter's own ``chapters.<slug>`` block, the
  parameters every chapter can read (seed, privacy threshold, report language, ...), the chapter's
  notebook file, the code and the fingerprints of the chapters whose artifacts it reads.

A new run looks through the client's earlier runs (newest first) for prepared tables and chapter
results with the same fingerprint and copies them (hard links where possible) instead of
recomputing; the manifest says what was reused, from which version, and why the rest was run.
Changing one chapter's parameter therefore re-executes that chapter, the chapters reading its
artifacts and the summary. ``--force`` ignores earlier runs.

The fingerprints are deliberately conservative: any change of the package source reruns
everything, and a parameter not listed below as run-only counts as one the chapters read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .. import __version__
from ..chapters import Chapter
from ..config import Params, TableSource
from ..paths import PROJECT_ROOT, RunPaths

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TRANSLATIONS_DIR = PROJECT_ROOT / "notebooks" / "i18n"

#: Keys that only say how or where to run and render: no number of any chapter depends on them.
RUN_ONLY: dict[str, tuple[str, ...]] = {
    "report": ("title", "author", "version", "renderer", "formats"),
    "run": ("chapters", "workers", "cell_timeout_seconds", "chapter_timeout_seconds"),
    "privacy": ("export_real_ids", "restricted_dir"),
}
#: Keys the preparation does not read (they shape the chapters only).
CHAPTERS_ONLY: dict[str, tuple[str, ...]] = {
    "report": ("*",),
    "privacy": ("min_group_size",),
    "run": ("examples_per_reason", "top_shares"),
}
#: The parts of a chapter's fingerprint, in the order a reason names them.
PARTS = ("prepared", "params", "notebook", "code", "reads")
PART_REASON = {
    "prepared": "the prepared data changed (input files or preparation params)",
    "params": "its params changed",
    "notebook": "its notebook changed",
    "code": "the crm_helpers code or package versions changed",
    "reads": "a chapter it reads was re-executed",
}


def sha(obj: Any) -> str:
    """sha256 of bytes, or of an object's sorted JSON."""
    blob = obj if isinstance(obj, bytes) else json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _drop(data: dict[str, Any], keys: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    out = json.loads(json.dumps(data, default=str))
    for block, names in keys.items():
        if names == ("*",):
            out.pop(block, None)
        else:
            for name in names:
                out.get(block, {}).pop(name, None)
    return out


def code_fingerprint(packages: dict[str, str]) -> str:
    """sha256 of the package source, the notebook translations and the package versions."""
    h = hashlib.sha256(f"crm_helpers {__version__}\n".encode())
    # Named relative to their folder: the project root may be elsewhere (PROJECT_ROOT is set).
    files = [
        ("crm_helpers", p.relative_to(PACKAGE_DIR), p)
        for p in sorted(PACKAGE_DIR.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    ]
    if TRANSLATIONS_DIR.is_dir():
        files += [
            ("i18n", p.relative_to(TRANSLATIONS_DIR), p)
            for p in sorted(TRANSLATIONS_DIR.rglob("*"))
            if p.is_file()
        ]
    for where, name, p in files:
        h.update(f"{where}/{name}".encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(json.dumps(packages, sort_keys=True).encode())
    return h.hexdigest()


def prepared_fingerprint(params: Params, input_sha: dict[str, str], key: str, code: str) -> str:
    """What the prepared tables depend on: inputs, key, preparation params, code."""
    data = _drop(_drop(params.model_dump(mode="json"), RUN_ONLY), CHAPTERS_ONLY)
    data.pop("chapters", None)
    return sha(
        {
            "inputs": input_sha,
            "key": hashlib.sha256(key.encode()).hexdigest(),
            "params": data,
            "code": code,
        }
    )


def shared_params(params: Params) -> dict[str, Any]:
    """The params every chapter can read: all but the chapters' blocks and the run-only keys."""
    shared = _drop(params.model_dump(mode="json"), RUN_ONLY)
    shared.pop("chapters", None)
    return shared


def earlier_runs(client_dir: Path, current: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The client's other run folders with a readable manifest that records fingerprints.

    Newest first (by the manifest's creation time, then the folder name).
    """
    runs = []
    if not client_dir.is_dir():
        return runs
    for d in client_dir.iterdir():
        if d.is_symlink() or not d.is_dir() or d.resolve() == current.resolve():
            continue
        try:
            m = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(m.get("fingerprints"), dict):
            runs.append((d, m))
    runs.sort(key=lambda r: (str(r[1].get("created_utc", "")), r[0].name), reverse=True)
    return runs


def find_prepared(
    runs: list[tuple[Path, dict[str, Any]]], fingerprint: str
) -> tuple[Path, dict[str, Any]] | None:
    """The newest earlier run whose prepared tables have this fingerprint and are all there."""
    for root, m in runs:
        if m["fingerprints"].get("prepared") != fingerprint or not m.get("reconciliation"):
            continue
        if (RunPaths(root).prepared / "prepare.json").is_file():
            return root, m
    return None


def find_chapter(
    runs: list[tuple[Path, dict[str, Any]]], ch: Chapter, fingerprint: str
) -> tuple[Path, dict[str, Any]] | None:
    """The newest earlier run where this chapter succeeded with this fingerprint."""
    for root, m in runs:
        fp = (m["fingerprints"].get("chapters") or {}).get(ch.slug, {})
        if fp.get("total") != fingerprint:
            continue
        result = next((c for c in m.get("chapters", []) if c.get("slug") == ch.slug), None)
        if (
            result
            and result.get("status") == "ok"
            and (RunPaths(root).notebooks / ch.filename).is_file()
        ):
            return root, result
    return None


def why_rerun(runs: list[tuple[Path, dict[str, Any]]], slug: str, parts: dict[str, str]) -> str:
    """Why a chapter is executed: what differs from the newest earlier run that has it."""
    for root, m in runs:
        before = (m["fingerprints"].get("chapters") or {}).get(slug)
        if not before:
            continue
        changed = [PART_REASON[p] for p in PARTS if before.get(p) != parts.get(p)]
        if not changed:
            return f"same inputs as {root.name}, but that run did not complete it"
        return f"{'; '.join(changed)} since {root.name}"
    return "no earlier run has it"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)  # run folders are written once: a hard link is a safe, free copy
    except OSError:
        shutil.copy2(src, dst)


def copy_prepared(src: Path, dst: RunPaths) -> None:
    """Bring an earlier run's prepared and quarantined tables into this run."""
    s = RunPaths(src)
    for a, b in ((s.prepared, dst.prepared), (s.quarantine, dst.quarantine)):
        for f in sorted(a.rglob("*")):
            if f.is_file():
                _link_or_copy(f, b / f.relative_to(a))


def chapter_files(run: RunPaths, ch: Chapter) -> list[Path]:
    """A chapter's outputs in a run folder: its executed notebook and its artifacts."""
    files = [run.notebooks / ch.filename]
    if run.artifacts.is_dir():
        files += sorted(
            p
            for p in run.artifacts.iterdir()
            if p.is_file() and (p.stem == ch.slug or p.name.startswith(f"{ch.slug}_"))
        )
    return files


def copy_chapter(src: Path, dst: RunPaths, ch: Chapter) -> None:
    """Bring an earlier run's executed notebook and artifacts of one chapter into this run."""
    s = RunPaths(src)
    for f in chapter_files(s, ch):
        if f.is_file():
            _link_or_copy(f, dst.root / f.relative_to(s.root))


def input_fingerprints(inputs: dict[str, TableSource]) -> dict[str, str] | None:
    """sha256 of each input file; None when one is remote.

    A URI cannot be fingerprinted here, so nothing computed from it is reused.
    """
    from ..config import RemotePath
    from ..data import sha256_file

    if any(isinstance(s.path, RemotePath) for s in inputs.values()):
        return None
    return {t: sha256_file(Path(s.path)) for t, s in sorted(inputs.items())}
