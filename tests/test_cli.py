"""The command line: clear one-line errors without a traceback, non-zero exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from crm_helpers.paths import DEFAULT_PARAMS

from .conftest import write

CLI = [sys.executable, "-m", "crm_helpers.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_bad_params_exit_2_naming_file_and_key_without_traceback(tmp_path):
    bad = write(tmp_path / "acme.yml", f"extends: {DEFAULT_PARAMS}\nrun:\n  workers: -1\n")
    proc = _run("validate", "--params", str(bad))
    assert proc.returncode == 2
    assert "acme.yml: key 'run.workers'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_run_with_unknown_key_fails_before_anything_runs(tmp_path):
    bad = write(tmp_path / "acme.yml", f"extends: {DEFAULT_PARAMS}\nclient: acme\nreprot: {{}}\n")
    proc = _run("run", "--params", str(bad), "--reports-dir", str(tmp_path / "reports"))
    assert proc.returncode == 2 and "key 'reprot': unknown key" in proc.stderr
    assert not (tmp_path / "reports").exists()


def _validate_csv(tmp_path: Path, csv: str) -> subprocess.CompletedProcess:
    """Run `crm-report validate` on a client whose transactions file holds ``csv``."""
    write(tmp_path / "tx.csv", csv)
    p = write(tmp_path / "c.yml", f"extends: {DEFAULT_PARAMS}\nclient: c\ndata:\n  source: files\n"
              "  transactions: {path: tx.csv}\n")
    return subprocess.run([*CLI, "validate", "--params", str(p)], capture_output=True, text=True,
                          env={"CRM_PSEUDONYM_KEY": "k", "PATH": "/usr/bin:/bin"}, timeout=300)


def test_missing_column_is_reported_with_file_and_column(tmp_path):
    proc = _validate_csv(tmp_path, "customer_id,order_id,order_date,qty,unit_price\nA,O,2024-01-01,1,2\n")
    assert proc.returncode == 2
    assert "tx.csv: required column quantity missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_prints_reconciliation_without_running_notebooks(tmp_path):
    proc = _validate_csv(
        tmp_path,
        "customer_id,order_id,order_date,quantity,unit_price\nA,O,2024-01-01,1,2\n,O2,2024-01-01,1,2\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "transactions: 2 rows = 1 kept + 1 quarantined" in proc.stdout
    assert "missing_customer_id: 1" in proc.stdout
    assert not Path("reports/c").exists()


def test_several_clients_are_all_validated_before_any_run(tmp_path):
    good = write(tmp_path / "a.yml", f"extends: {DEFAULT_PARAMS}\nclient: a\n")
    bad = write(tmp_path / "b.yml", f"extends: {DEFAULT_PARAMS}\nclient: b\nrun:\n  wrokers: 1\n")
    reports = tmp_path / "reports"
    proc = _run("run", "--params", str(good), "--params", str(bad), "--reports-dir", str(reports))
    assert proc.returncode == 2 and "b.yml: key 'run.wrokers': unknown key" in proc.stderr
    assert not reports.exists()  # client a did not start either


def test_several_clients_in_one_command_a_refused_one_does_not_stop_the_others(tmp_path):
    from .conftest import SMALL_DEMO

    write(tmp_path / "tx.csv", "customer_id,order_id,order_date,quantity,unit_price\n,O1,2024-01-01,1,2\n")
    refused = write(
        tmp_path / "two.yml",
        f"extends: {DEFAULT_PARAMS}\nclient: two\ndata:\n  source: files\n"
        "  transactions: {path: tx.csv}\n",
    )
    one = write(
        tmp_path / "one.yml",
        SMALL_DEMO.replace("client: e2e", "client: one")
        + "run:\n  chapters: []\nreport:\n  renderer: pandoc\n  formats: [html]\n",
    )
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [*CLI, "run", "--params", str(refused), "--params", str(one), "--reports-dir", str(reports)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "two.yml: " in proc.stderr and "no usable transactions" in proc.stderr
    assert "two: refused" in proc.stderr and "one: complete -> " in proc.stderr
    assert (reports / "one" / "latest" / "report.html").is_file()
    assert not (reports / "two" / "latest").exists()
    assert "Traceback" not in proc.stderr
