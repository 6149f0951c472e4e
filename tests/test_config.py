from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from crm_helpers.config import Params, load_params
from crm_helpers.errors import ParamsError
from crm_helpers.paths import DEFAULT_PARAMS

from .conftest import write


def client(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "acme.yml", f"extends: {DEFAULT_PARAMS}\n{text}")


def test_default_params_run_the_demo():
    p = load_params()
    assert p.client == "demo" and p.data.source == "demo"
    assert p.data.demo.customers == 5000


def test_client_file_overrides_only_what_differs(tmp_path):
    p = load_params(client(tmp_path, "client: acme\nrun:\n  workers: 3\n"))
    assert p.client == "acme" and p.run.workers == 3
    assert p.run.cell_timeout_seconds == load_params().run.cell_timeout_seconds
    assert p.data.demo.lines == 100_000


def test_client_file_beside_default_extends_it_implicitly(tmp_path):
    write(tmp_path / "default.yml", DEFAULT_PARAMS.read_text())
    p = load_params(write(tmp_path / "b.yml", "client: bee\n"))
    assert p.client == "bee" and p.report.title == "CRM insight report"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("run:\n  wrokers: 2\n", "run.wrokers", "unknown key"),
        ("run:\n  workers: many\n", "run.workers", "integer"),
        ("run:\n  workers: 0\n", "run.workers", "greater than or equal to 1"),
        ("colour: blue\n", "colour", "unknown key"),
        ("client: Big Client\n", "client", "pattern"),
        ("report:\n  renderer: word\n", "report.renderer", "'auto', 'quarto' or 'pandoc'"),
        ("data:\n  demo:\n    customers: 3\n", "data.demo.customers", "greater than or equal to 50"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path, text, key, words):
    with pytest.raises(ParamsError) as err:
        load_params(client(tmp_path, text))
    msg = str(err.value)
    assert "acme.yml" in msg and f"key '{key}'" in msg and words in msg
    assert msg.splitlines()[0].split(":")[0].endswith("acme.yml")


def test_missing_data_file_names_file_and_key(tmp_path):
    text = "data:\n  source: files\n  transactions:\n    path: nowhere/tx.csv\n"
    with pytest.raises(ParamsError, match=r"acme\.yml: key 'data\.transactions\.path': data file not found: .*nowhere/tx\.csv"):
        load_params(client(tmp_path, text))


def test_relative_data_path_resolves_against_the_params_file(tmp_path):
    write(tmp_path / "in" / "tx.csv", "a\n1\n")
    text = "data:\n  source: files\n  transactions:\n    path: in/tx.csv\n"
    p = load_params(client(tmp_path, text))
    assert p.data.transactions.path == (tmp_path / "in" / "tx.csv").resolve()


def test_files_source_needs_transactions(tmp_path):
    with pytest.raises(ParamsError, match=r"acme\.yml: key 'data\.transactions'"):
        load_params(client(tmp_path, "data:\n  source: files\n"))


def test_unknown_canonical_column_is_refused(tmp_path):
    write(tmp_path / "tx.csv", "a\n1\n")
    text = "data:\n  source: files\n  transactions:\n    path: tx.csv\n    columns:\n      custid: CustomerID\n"
    with pytest.raises(ParamsError, match=r"key 'data\.transactions\.columns\.custid': not a canonical column"):
        load_params(client(tmp_path, text))


def test_invalid_yaml_names_file_and_line(tmp_path):
    with pytest.raises(ParamsError, match=r"acme\.yml line \d+: not valid YAML"):
        load_params(client(tmp_path, "run: [unclosed\n"))


def test_yaml_is_loaded_safely(tmp_path):
    text = "client: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(client(tmp_path, text))


def test_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yml")


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.append(prefix + name)
            keys += _leaf_keys(ann, prefix + name + ".")
        else:
            keys.append(prefix + name)
    return keys


def test_every_key_is_documented_in_the_model_and_in_default_yml():
    text = DEFAULT_PARAMS.read_text()
    raw = yaml.safe_load(text)
    for key in _leaf_keys(Params):
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} missing from default.yml"
            node = node[part]
        lines = text.splitlines()
        i = next(i for i, ln in enumerate(lines) if re.match(rf"\s*{key.split('.')[-1]}:", ln))
        documented = "#" in lines[i] or lines[i - 1].strip().startswith("#")  # same or line above
        assert documented or key.count(".") == 0 and isinstance(node, dict), f"{key} has no comment"

    def described(model):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                described(f.annotation)

    described(Params)
