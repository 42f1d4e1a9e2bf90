"""Commands that write where the user says: a path that cannot be written is a message naming
it and what is wrong (exit 2), never a traceback, and nothing is left half-written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from allmende.cli.main import main
from tests.conftest import FIXTURES

NORDLICHT = FIXTURES / "valid" / "nordlicht"


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file where the commands below expect a directory."""
    path = tmp_path / "notes"
    path.write_text("not a directory\n")
    return path


def failed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line; return what it said on stderr after failing with exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_graph_out_under_a_regular_file(blocker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = blocker / "picture.json"
    err = failed(["graph", str(NORDLICHT), "--format", "json", "--out", str(out)], capsys)
    assert err == f"cannot write {out}: {blocker} is a file, not a directory\n"
    assert blocker.read_text() == "not a directory\n"


def test_graph_out_on_a_full_disk_keeps_the_previous_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "picture.json"
    out.write_text("the previous picture")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    err = failed(["graph", str(NORDLICHT), "--format", "json", "--out", str(out)], capsys)
    assert err == f"cannot write {out}: No space left on device\n"
    assert [p.name for p in tmp_path.iterdir()] == ["picture.json"]
    assert out.read_text() == "the previous picture"


def test_docs_out_under_a_regular_file(blocker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = blocker / "site"
    err = failed(["docs", str(NORDLICHT), "--out", str(out)], capsys)
    assert err == f"cannot write the site to {out}: {blocker} is a file, not a directory\n"
    assert sorted(p.name for p in blocker.parent.iterdir()) == ["notes"]


def test_render_out_under_a_regular_file(blocker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = blocker / "deep" / "rendered"
    err = failed(["render", str(NORDLICHT), "--out", str(out)], capsys)
    assert err.endswith(
        f"cannot write the rendered tree to {out}: {blocker} is a file, not a directory\n"
    )


def test_docs_out_on_a_symbolic_link_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "site"
    loop.symlink_to(loop)
    err = failed(["docs", str(NORDLICHT), "--out", str(loop)], capsys)
    assert err.startswith(f"cannot use {loop}: ")
    assert "loop" in err


def test_import_into_an_inventory_whose_services_is_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "hosts").mkdir(parents=True)
    (inventory / "allmende.yaml").write_text("name: space\n")
    (inventory / "hosts" / "rack.yaml").write_text("address: 192.0.2.10\n")
    services = inventory / "services"
    services.write_text("a note, not the services directory\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "compose.yaml").write_text("services:\n  web:\n    image: nginx:1.27.3\n")
    argv = ["import", "compose", str(project), "--host", "rack", "--into", str(inventory)]
    err = failed(argv, capsys)
    assert err == f"cannot write {services}/website.yaml: {services} is a file, not a directory\n"
    assert sorted(p.name for p in inventory.iterdir()) == ["allmende.yaml", "hosts", "services"]
