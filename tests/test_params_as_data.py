"""Parameters reach notebooks as data, never as code; params YAML is loaded safely.

Values crafted to run Python if they were pasted into a cell as source (quotes closed early,
triple quotes, newlines, template braces) go through the runner's own parameter injection
(``notebook_parameters`` + papermill, as ``execute_chapter`` calls it) into a real chapter's
``parameters`` cell; the kernel must receive the exact strings and no marker file may appear.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

from crm_helpers.chapters import by_slug
from crm_helpers.config import load_params
from crm_helpers.errors import ParamsError
from crm_helpers.paths import DEFAULT_PARAMS
from crm_helpers.report.runner import notebook_parameters

MARK = Path(tempfile.gettempdir()) / f"PWNED_{uuid.uuid4().hex}"


def _payloads(mark: Path) -> list[str]:
    m = str(mark)
    return [
        f"x'); import os; open('{m}_1','w').write('1'); ('",
        f'x"); import os; open("{m}_2","w").write("1"); ("',
        f"x'''\nimport os; open('{m}_3','w').write('1')\n'''",
        f'x"""\nimport os; open("{m}_4","w").write("1")\n"""',
        f"{{{{ __import__('os').system('touch {m}_5') }}}}",
        f"\\'; __import__('os').system('touch {m}_6') #",
        f"x\n__import__('os').system('touch {m}_7')\n#",
        f"${{__import__('os').system('touch {m}_8')}} %(x)s {{0}}",
        f"x'; import os; open('{m}_9','w').write('1'); y = '",
    ]


PAYLOADS = _payloads(MARK)


def _marks() -> list[Path]:
    return sorted(MARK.parent.glob(MARK.name + "*"))


def test_the_payloads_are_live_when_pasted_as_source(tmp_path):
    """Control: pasted into a cell as source (the anti-pattern), a payload does run."""
    mark = tmp_path / "control"
    payload = _payloads(mark)[8]
    subprocess.run([sys.executable, "-c", f"complaint_type = '{payload}'"], check=True, timeout=60)
    assert (tmp_path / "control_9").is_file()


def _client(tmp_path: Path) -> Path:
    """A params file that carries every payload in the free-text keys that reach notebooks."""
    default = yaml.safe_load(DEFAULT_PARAMS.read_text())
    rules = default["chapters"]["segmentation"]["segment_rules"]
    for rule, payload in zip(rules, PAYLOADS, strict=False):
        rule["name"], rule["action"] = payload, payload
    raw = {
        "extends": str(DEFAULT_PARAMS),
        "client": "injection",
        "report": {"title": PAYLOADS[0], "author": PAYLOADS[2]},
        "chapters": {
            "segmentation": {"segment_rules": rules},
            "churn": {"complaint_type": PAYLOADS[2]},
            "satisfaction": {"complaint_type": PAYLOADS[4]},
        },
    }
    path = tmp_path / "injection.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_crafted_values_survive_yaml_and_validation_unchanged(tmp_path):
    p = load_params(_client(tmp_path))
    names = [r.name for r in p.chapters.segmentation.segment_rules]
    assert names[: len(PAYLOADS)] == PAYLOADS
    assert p.chapters.churn.complaint_type == PAYLOADS[2]
    assert p.report.title == PAYLOADS[0]


def _probe_notebook(slug: str, out: Path) -> Path:
    """The chapter's real ``parameters`` cell, then a cell that dumps what the kernel received."""
    real = nbformat.read(by_slug(slug).notebook, as_version=4)
    cell = next(c for c in real.cells if "parameters" in c.metadata.get("tags", []))
    declared = list(pm.inspect_notebook(str(by_slug(slug).notebook)))
    nb = nbformat.v4.new_notebook(metadata=real.metadata)
    nb.cells = [
        nbformat.v4.new_code_cell(cell.source, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import json\n"
            f"json.dump({{k: globals()[k] for k in {declared!r}}}, open({str(out)!r}, 'w'))"
        ),
    ]
    path = out.with_suffix(".ipynb")
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("slug", ["segmentation", "churn", "satisfaction"])
def test_injected_parameters_arrive_as_exact_strings_and_run_nothing(tmp_path, slug):
    params = load_params(_client(tmp_path))
    ch = by_slug(slug)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    given = notebook_parameters(ch, params, run_dir)
    got_file = tmp_path / f"{slug}-received.json"
    nb = _probe_notebook(slug, got_file)
    executed = tmp_path / f"{slug}-executed.ipynb"
    pm.execute_notebook(  # as crm_helpers.report.runner.execute_chapter calls it
        str(nb),
        str(executed),
        parameters=given,
        engine_name="crm-progress",
        kernel_name="python3",
        progress_bar=False,
        cwd=str(run_dir),
        execution_timeout=120,
    )
    assert _marks() == []
    received = json.loads(got_file.read_text())
    assert {k: received[k] for k in given} == json.loads(json.dumps(given))
    # The injected cell is data: assignments of literals only, nothing that calls or imports.
    injected = next(
        c
        for c in nbformat.read(executed, as_version=4).cells
        if "injected-parameters" in c.metadata.get("tags", [])
    )
    tree = ast.parse(injected.source)
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        ast.literal_eval(node.value)  # raises on anything but a literal
    assert {n.targets[0].id for n in tree.body} == set(given)


YAML_ATTACKS = [
    '!!python/object/apply:os.system ["touch {m}"]',
    "!!python/object/new:os.system [touch {m}]",
    '!!python/name:os.system ""',
]


@pytest.mark.parametrize("attack", YAML_ATTACKS)
def test_yaml_tags_that_would_run_code_are_refused_naming_the_file(tmp_path, attack):
    mark = tmp_path.parent / f"PWNED_{uuid.uuid4().hex}"
    bad = tmp_path / "evil.yml"
    bad.write_text(f"extends: {DEFAULT_PARAMS}\nclient: {attack.format(m=mark)}\n")
    with pytest.raises(ParamsError, match=r"evil\.yml line 2: not valid YAML") as err:
        load_params(bad)
    assert "could not determine a constructor" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "crm_helpers.cli", "validate", "--params", str(bad)],
        capture_output=True,
        text=True,
        env=os.environ | {"CRM_PSEUDONYM_KEY": "test-key"},
        timeout=120,
    )
    assert proc.returncode == 2 and "evil.yml line 2: not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not mark.exists()
