"""Faults around the chapters: a hung or dead kernel, SIGINT / SIGTERM and resume, an unwritable
output folder, a full disk. Planted fake chapters (a real chapter's ``parameters`` cell, then a few
cells of their own) keep these runs short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from crm_helpers import chapters as registry
from crm_helpers.paths import DEFAULT_PARAMS, DEMO_DATA_DIR, PROJECT_ROOT

from .conftest import write

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "crm_helpers.cli"]
REAL = {c.slug: c for c in registry.CHAPTERS}


def _params(tmp: Path, name: str, version: str, chapters: str = "null", extra: str = "") -> Path:
    return write(
        tmp / f"{name}.yml",
        f"extends: {DEFAULT_PARAMS}\nclient: faults\ndata:\n  demo:\n    customers: 400\n"
        f"    lines: 8000\nrun:\n  chapters: {chapters}\n{extra}"
        f"report:\n  renderer: pandoc\n  version: {version}\n",
    )


def _fake_notebook(path: Path, like: str, *cells: str) -> None:
    """A notebook with chapter ``like``'s title and parameters cell, then ``cells``."""
    real = nbformat.read(REAL[like].notebook, as_version=4)
    params = next(c for c in real.cells if "parameters" in c.metadata.get("tags", []))
    nb = nbformat.v4.new_notebook(metadata=real.metadata)
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Planted {path.stem}"),
        nbformat.v4.new_code_cell(params.source, metadata=params.metadata),
    ]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CRM_PSEUDONYM_KEY"}  # the demo's key
    env.update(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def _project(tmp: Path, **cells: list[str]) -> Path:
    """A project root (``CRM_PROJECT_ROOT``) whose chapters ``slug`` are planted notebooks."""
    root = tmp / "project"
    (root / "notebooks").mkdir(parents=True)
    DEMO_DATA_DIR.mkdir(parents=True, exist_ok=True)
    (root / "demo_data").symlink_to(DEMO_DATA_DIR)  # the demo tables are generated once
    for slug, sources in cells.items():
        _fake_notebook(root / "notebooks" / REAL[slug].filename, slug, *sources)
    return root


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state == "Z"  # a zombie has exited; only its exit status is left


def _children() -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


# ------------------------------------------------------------------------ timeout, kernel death
def test_hung_and_dying_chapters_fail_while_the_others_complete(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    pids = tmp_path / "pids"
    planted = {
        "hang": [
            "import os, subprocess, time, pathlib\n"
            "child = subprocess.Popen(['sleep', '600'])\n"
            f"pathlib.Path(r'{pids}').write_text(f'{{os.getpid()}} {{child.pid}}')\n"
            "time.sleep(600)"
        ],
        "killed": ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
        "exits": ["import os\nos._exit(1)"],
    }
    chapters = [registry.Chapter("00", "data_quality", "Planted data quality")]
    _fake_notebook(nbdir / chapters[0].filename, "data_quality", "print('ok')")
    for i, (slug, cells) in enumerate(planted.items()):
        chapters.append(registry.Chapter(f"5{i}", slug, f"Planted {slug}"))
        _fake_notebook(nbdir / chapters[-1].filename, "data_quality", "x = 1", *cells)
    chapters.append(registry.Chapter("99", "summary", "Planted summary"))
    _fake_notebook(nbdir / chapters[-1].filename, "summary", "print('summary')")
    monkeypatch.setattr(registry, "NOTEBOOKS_DIR", nbdir)
    monkeypatch.setattr(registry, "CHAPTERS", tuple(chapters))
    params = _params(tmp_path, "hang", "h1", extra="  chapter_timeout_seconds: 20\n")
    reports = tmp_path / "reports"
    before, cwd = _children(), os.getcwd()

    from crm_helpers import cli

    t0 = time.monotonic()
    code = cli.main(["run", "--params", str(params), "--reports-dir", str(reports)])
    elapsed = time.monotonic() - t0

    assert code == 1
    m = _manifest(reports / "faults" / "h1")
    by = {c["slug"]: c for c in m["chapters"]}
    assert by["data_quality"]["status"] == by["summary"]["status"] == "ok"
    assert by["hang"]["status"] == "failed" and by["hang"]["reason"] == "timeout"
    assert "timed out after 20 s" in by["hang"]["error"]
    assert 20 <= by["hang"]["seconds"] < 40
    for slug in ("killed", "exits"):
        assert by[slug]["status"] == "failed" and by[slug]["reason"] == "kernel_died", by[slug]
        assert "kernel died" in by[slug]["error"] and "cell 5 of 5" in by[slug]["error"]
    assert m["status"] == "failed" and elapsed < 120
    assert not (reports / "faults" / "latest").exists()
    console = capsys.readouterr().err
    assert "[50 hang] failed" in console and "timed out after 20 s" in console
    assert "kernel died" in console and "Traceback" not in console
    html = (reports / "faults" / "h1" / "report.html").read_text()
    assert "timed out after 20 s" in html and "kernel died" in html
    # Nothing of the run is left running: the hung kernel and the process it started are gone.
    kernel, child = map(int, pids.read_text().split())
    assert _gone(kernel) and _gone(child)
    assert _children() <= before
    assert os.getcwd() == cwd  # papermill's chdir in parallel threads does not leak


# ---------------------------------------------------------------------- signals and --resume
SLOW = (
    "import os, time, pathlib\n"
    "d = pathlib.Path(r'{tmp}')\n"
    "(d / 'kernel.pid').write_text(str(os.getpid()))\n"
    "(d / 'slow-started').write_text('x')\n"
    "while not (d / 'release').exists():\n"
    "    time.sleep(0.1)\n"
)


def _interrupt(cmd: list[str], env: dict, tmp: Path, signum: int) -> tuple[int, str, float]:
    """Start a run, send ``signum`` once the slow chapter runs; exit code, stderr, seconds."""
    (tmp / "slow-started").unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (tmp / "slow-started").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the slow chapter never started"
            time.sleep(0.1)
        proc.send_signal(signum)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_interrupted_runs_keep_latest_and_resume_to_a_complete_report(tmp_path):
    root = _project(
        tmp_path,
        data_quality=["print('data quality')"],
        profile=[SLOW.format(tmp=tmp_path), "print('profile done')"],
        summary=["print('summary')"],
    )
    env = _env(CRM_PROJECT_ROOT=str(root))
    reports = tmp_path / "reports"
    client = reports / "faults"

    def run(params: Path, *more: str) -> list[str]:
        return [*CLI, "run", "--params", str(params), "--reports-dir", str(reports), *more]

    (tmp_path / "release").write_text("")
    first = subprocess.run(run(_params(tmp_path, "r0", "r0", "[profile]")), env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (client / "latest").resolve() == client / "r0"
    (tmp_path / "release").unlink()

    # SIGINT while the slow chapter runs: exit 130, folder marked interrupted, how to resume.
    # --force: the chapters really execute (r0 computed them from the same inputs).
    p1 = _params(tmp_path, "r1", "r1", "[profile]")
    code, err, seconds = _interrupt(run(p1, "--force"), env, tmp_path, signal.SIGINT)
    assert code == 130, err
    assert seconds < 20  # promptly: kernels killed, not waited for
    assert "Traceback" not in err
    assert f"Resume with: crm-report run --params {p1} --reports-dir {reports} --resume r1" in err
    m = _manifest(client / "r1")
    assert m["status"] == "interrupted" and m["interrupted_by"] == "SIGINT"
    by = {c["slug"]: c for c in m["chapters"]}
    assert by["data_quality"]["status"] == "ok"
    assert by["profile"]["status"] == "failed" and by["profile"]["reason"] == "interrupted"
    assert "summary" not in by and not (client / "r1" / "report.html").exists()
    assert (client / "latest").resolve() == client / "r0"
    assert _gone(int((tmp_path / "kernel.pid").read_text()))

    # Resume: the completed chapter is kept, the rest runs, latest moves to the finished run.
    kept = (client / "r1" / "notebooks" / "00-data_quality.ipynb").stat().st_mtime_ns
    (tmp_path / "release").write_text("")
    resumed = subprocess.run(run(p1, "--resume", "r1", "--force"), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    m = _manifest(client / "r1")
    assert m["status"] == "complete"
    assert [c["status"] for c in m["chapters"]] == ["ok", "ok", "ok"]
    assert m["resumed"][0]["kept"] == ["data_quality"]
    assert m["resumed"][0]["rerun"] == ["profile", "summary"]
    assert (client / "r1" / "notebooks" / "00-data_quality.ipynb").stat().st_mtime_ns == kept
    assert "Planted 01-profile" in (client / "r1" / "report.html").read_text()
    assert (client / "r1" / "report.pdf").stat().st_size > 0
    assert (client / "latest").resolve() == client / "r1"

    # A complete run is not resumed again.
    again = subprocess.run(run(p1, "--resume", "r1"), env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "this run is complete; there is nothing to resume" in again.stderr

    # SIGTERM: exit 143, the same marking.
    (tmp_path / "release").unlink()
    p2 = _params(tmp_path, "r2", "r2", "[profile]")
    code, err, _ = _interrupt(run(p2, "--force"), env, tmp_path, signal.SIGTERM)
    assert code == 143, err
    assert "interrupted by SIGTERM" in err and "--resume r2" in err
    assert _manifest(client / "r2")["status"] == "interrupted"
    assert (client / "latest").resolve() == client / "r1"

    # Resume refuses other params and changed inputs, naming the file.
    other = _params(tmp_path, "r2b", "r2", "[profile]", extra="  workers: 1\n")
    proc = subprocess.run(run(other, "--resume", "r2"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and f"{other}: these params differ" in proc.stderr
    m = _manifest(client / "r2")
    m["inputs"]["transactions"]["sha256"] = "0" * 64  # as if the file had changed since
    (client / "r2" / "manifest.json").write_text(json.dumps(m))
    proc = subprocess.run(run(p2, "--resume", "r2"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "transactions.csv: this input changed since the run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (client / "latest").resolve() == client / "r1"


# --------------------------------------------------------------------- unwritable, full disk
def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], check=True)
    return ok


MOUNT = _can_mount()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (``mount(opts)``) and unmount it after the test."""
    mounted = []

    def mount(opts: str) -> Path:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], check=True)
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _run_cli(params: Path, reports: Path, env: dict | None = None, prefix: tuple = ()):
    return subprocess.run([*prefix, *CLI, "run", "--params", str(params), "--reports-dir", str(reports)],
                          env=env or _env(), capture_output=True, text=True, timeout=300,
                          cwd=params.parent)


def test_output_folder_under_a_file_is_one_message(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = _run_cli(_params(tmp_path, "p", "w1"), tmp_path / "afile" / "reports")
    assert proc.returncode == 2
    assert f"error: {tmp_path / 'afile' / 'reports'}: cannot write the report in this folder" in proc.stderr
    assert "not a directory" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not MOUNT, reason="needs root with permission to mount a tmpfs")
def test_read_only_output_folder_is_one_message(tmp_path, tmpfs):
    ro = tmpfs("ro,size=64k")
    proc = _run_cli(_params(tmp_path, "p", "w2"), ro)
    assert proc.returncode == 2
    assert f"error: {ro}: cannot write the report in this folder: read-only file system" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs setpriv and root to run as another user")
def test_output_folder_without_permission_is_one_message_for_a_normal_user():
    # A world-readable place: pytest's tmp_path is private to root.
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        base = Path(d)
        base.chmod(0o755)
        params = _params(base, "p", "w3")
        params.chmod(0o644)
        reports = base / "reports"
        reports.mkdir(mode=0o755)  # owned by root: nobody cannot write here
        prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        proc = _run_cli(params, reports, env=_env(HOME=str(base)), prefix=prefix)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {reports}: cannot write the report in this folder: permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not MOUNT, reason="needs root with permission to mount a tmpfs")
@pytest.mark.parametrize("where", ["prepare", "chapter"])
def test_full_disk_is_one_message_and_latest_does_not_move(tmp_path, tmpfs, where):
    big = "import pathlib\npathlib.Path(run_dir, 'artifacts', 'big.bin').write_bytes(bytes(8 << 20))"
    root = _project(tmp_path, data_quality=["print('ok')"], profile=[big], summary=["print('s')"])
    full = tmpfs("size=128k" if where == "prepare" else "size=2m")
    proc = _run_cli(_params(tmp_path, "p", "d1", "[profile]"), full,
                    env=_env(CRM_PROJECT_ROOT=str(root)))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {full}/") and "no space left on device" in last, last
    assert "Traceback" not in proc.stderr
    assert not (full / "faults" / "latest").exists()


def test_full_disk_via_dev_full_when_resuming(tmp_path, monkeypatch, capsys):
    """``/dev/full`` returns ENOSPC to every write: a notebook path linked to it is a full disk."""
    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)
    root = _project(tmp_path, data_quality=["print('ok')"],
                    profile=["raise RuntimeError('planted failure')"], summary=["print('s')"])
    env = _env(CRM_PROJECT_ROOT=str(root))
    reports = tmp_path / "reports"
    params = _params(tmp_path, "p", "f1", "[profile]")
    failed = _run_cli(params, reports, env=env)
    assert failed.returncode == 1 and "planted failure" in failed.stderr
    run_dir = reports / "faults" / "f1"
    assert _manifest(run_dir)["status"] == "failed"
    _fake_notebook(root / "notebooks" / "01-profile.ipynb", "profile", "print('fixed')")
    target = run_dir / "notebooks" / "01-profile.ipynb"
    target.unlink()
    target.symlink_to("/dev/full")

    proc = subprocess.run([*CLI, "run", "--params", str(params), "--reports-dir", str(reports),
                           "--resume", "f1"], env=env, capture_output=True, text=True, timeout=300)

    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {target}: no space left on device"), last
    assert "--resume f1" in last and "Traceback" not in proc.stderr
    assert _manifest(run_dir)["status"] == "failed"
    assert not (reports / "faults" / "latest").exists()
