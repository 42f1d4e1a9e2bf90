"""The schema and the reference pages come from the models and must not drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from allmende.cli.main import main
from allmende.cli.reference import files
from allmende.inventory.schema import inventory_schema, kind_schema
from allmende.inventory.yamlpos import parse
from tests.conftest import BASE, EXAMPLES

REFERENCE = Path(__file__).parents[2] / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(files()))
def test_generated_reference_is_up_to_date(name: str) -> None:
    on_disk = REFERENCE / name
    assert on_disk.exists(), f"run script/reference to create docs/reference/{name}"
    assert on_disk.read_text(encoding="utf-8") == files()[name], (
        f"docs/reference/{name} is out of date: run script/reference"
    )


def test_schema_command_prints_the_combined_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == inventory_schema()
    jsonschema.Draft202012Validator.check_schema(printed)


def test_schema_command_writes_one_file_per_kind(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "collective.json",
        "host.json",
        "service.json",
        "zone.json",
    ]


def _inventory_files() -> list[tuple[str, Path]]:
    out = []
    for root in [BASE, *sorted(p for p in EXAMPLES.iterdir() if p.is_dir())]:
        out.append(("collective", root / "allmende.yaml"))
        for kind, folder in (("host", "hosts"), ("service", "services"), ("zone", "zones")):
            out += [(kind, p) for p in sorted((root / folder).glob("*.yaml"))]
    return out


@pytest.mark.parametrize(
    ("kind", "path"),
    _inventory_files(),
    ids=lambda v: v if isinstance(v, str) else f"{v.parent.parent.name}/{v.name}",
)
def test_every_valid_inventory_file_passes_the_json_schema(kind: str, path: Path) -> None:
    validator = jsonschema.Draft202012Validator(kind_schema(kind))  # type: ignore[arg-type]
    document, problems = parse(path.read_bytes(), path.name)
    assert problems == []
    errors = [e.message for e in validator.iter_errors(document.data)]
    assert errors == []


def test_the_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(kind_schema("service"))
    bad = {"description": "x", "host": "h", "components": {"app": {"image": "a:1", "imag": "b"}}}
    assert any("imag" in e.message for e in validator.iter_errors(bad))
    extension = {
        "description": "x",
        "host": "h",
        "components": {"app": {"image": "a:1", "x-compose": {"stop_signal": "INT"}}},
    }
    assert list(validator.iter_errors(extension)) == []


def test_schema_command_names_an_out_it_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    out = blocker / "schema"
    assert main(["schema", "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert f"cannot make the directory {out}:" in said
    assert "internal error" not in said


def test_schema_command_names_a_file_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "host.json").mkdir()
    assert main(["schema", "--out", str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'host.json'}:" in said
    assert "internal error" not in said
