"""Shared fixtures: building inventories from the fixture directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BASE = FIXTURES / "valid" / "nordlicht"
EXAMPLES = Path(__file__).parent.parent / "examples"

#: Lines a test has to say besides pass or fail (a corpus's figures), printed once after the
#: run's own summary rather than in the middle of its progress.
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("figures")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def overlay(case: Path, into: Path) -> Path:
    """Copy the base inventory to ``into`` and lay the files of ``case`` over it.

    A file ``DELETE`` in the case lists base files to remove, one per line.
    """
    shutil.copytree(BASE, into)
    for path in sorted(case.rglob("*")):
        relative = path.relative_to(case)
        if path.is_dir() or relative.name in ("expected.txt", "DELETE", "README"):
            continue
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    delete = case / "DELETE"
    if delete.exists():
        for line in delete.read_text().split():
            (into / line).unlink()
    return into


@pytest.fixture(autouse=True)
def own_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the state database of whoever runs the suite: a command run
    with the process environment records into a temporary one instead."""
    state = tmp_path_factory.mktemp("state") / "state.sqlite"
    monkeypatch.setenv("ALLMENDE_STATE", str(state))


@pytest.fixture
def nordlicht(tmp_path: Path) -> Path:
    """A writable copy of the valid base inventory."""
    return overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")


def own_secrets(inventory: Path, key: Path) -> dict[str, bytes]:
    """Give the copied ``inventory`` a new age key at ``key``: its recipients become that key
    alone and every secret it names gets the value ``value-of-<name>``, encrypted to it (the
    bundled inventories are encrypted to keys nobody has). Return the values by name."""
    from allmende.inventory import derive
    from allmende.inventory.load import load
    from allmende.inventory.secrets import SecretStore, create_key

    env = {"ALLMENDE_AGE_KEY": str(key)}
    (inventory / "secrets" / "recipients.txt").unlink(missing_ok=True)
    create_key(inventory, env)
    store = SecretStore(inventory, env)
    loaded = load(inventory, env)
    names = sorted(
        {
            use.secret
            for service in loaded.services.values()
            for component in service.components.values()
            for use in component.secrets.values()
        }
        | {
            derive.password_of(name, use)
            for name, service in loaded.services.items()
            for use in service.uses
            if use.provision
        }
    )
    values = {name: f"value-of-{name}".encode() for name in names}
    for name, value in values.items():
        store.set(name, value)
    return values


def carrying(source: Path, into: Path, service: str, after: str, files: str) -> Path:
    """Copy the inventory ``source`` to ``into`` and give the service's component whose line
    ``after`` is the first to match the ``files`` line after it; return the copy's root."""
    shutil.copytree(source, into)
    path = into / "services" / f"{service}.yaml"
    path.write_text(path.read_text().replace(after, after + files, 1))
    return into
