"""One invalid inventory per user mistake, each with the exact message the user gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from allmende.cli.main import cli, main
from allmende.errors import InventoryError
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay

CASES = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mistake_gets_its_exact_message(case: Path, tmp_path: Path) -> None:
    inventory = overlay(case, tmp_path / "inventory")
    with pytest.raises(InventoryError) as caught:
        load(inventory, {})
    assert str(caught.value) + "\n" == (case / "expected.txt").read_text()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_cli_prints_it_without_a_traceback_and_exits_2(
    case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = overlay(case, tmp_path / "inventory")
    code = main(["check", str(inventory)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert captured.err == (case / "expected.txt").read_text()


def test_all_problems_of_several_files_come_at_once(tmp_path: Path) -> None:
    inventory = overlay(FIXTURES / "invalid" / "unknown-key", tmp_path / "inventory")
    (inventory / "services" / "pages.yaml").write_text("description: x\nhost: nowhere\n")
    with pytest.raises(InventoryError) as caught:
        load(inventory, {})
    files = {p.location.file for p in caught.value.problems}
    assert files == {"hosts/build.yaml", "services/pages.yaml"}
    messages = [p.message for p in caught.value.problems]
    assert "unknown key `adress`" in messages
    assert "required key `components` is missing" in messages


def test_json_output_lists_load_problems_with_file_and_line(tmp_path: Path) -> None:
    inventory = overlay(FIXTURES / "invalid" / "unknown-host", tmp_path / "inventory")
    result = CliRunner().invoke(cli, ["check", "--json", str(inventory)], standalone_mode=False)
    assert result.return_value == 2
    assert '"file": "services/pages.yaml"' in result.output
    assert '"line": 3' in result.output


def test_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such directory"):
        load(tmp_path / "nowhere", {})
