"""An inventory is a Git repository many people send changes to: what a hostile change can put
there (links out of it, FIFOs, bombs, escape sequences, unreadable directories) is refused or
passed over with a finding, quickly, without a traceback and without echoing foreign content.
The hostile files that Git can hold as files are fixtures in tests/fixtures/invalid/ with their
exact messages (dns-injection, yaml-bomb, deep-nesting, unsafe-names, bad-address, bad-ports).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from allmende.checks.registry import run
from allmende.cli.main import main
from allmende.connectors.ssh import SshConnector
from allmende.errors import InventoryError, UserError
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay

SHADOW = "root:$y$j9T$secret-hash:19000:0:99999:7:::\nalex:$y$j9T$other-hash:19000:0:99999:7:::\n"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    return overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")


@pytest.fixture
def shadow(tmp_path: Path) -> Path:
    """A file outside the inventory that no one should ever see printed."""
    path = tmp_path / "shadow"
    path.write_text(SHADOW)
    return path


def test_a_link_out_of_the_inventory_is_refused_and_never_read(
    inventory: Path, shadow: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (inventory / "services/notes.yaml").symlink_to(shadow)
    (inventory / "zones").rename(inventory / "zones-real")
    (inventory / "zones").symlink_to(shadow.parent)
    code = main(["check", str(inventory)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == (
        "services/notes.yaml: is a symbolic link that leads out of the inventory: refused, and "
        "not read (put the file itself into the inventory, or link only to files inside it)\n"
        "zones: is a symbolic link that leads out of the inventory: refused, and not read (put "
        "the file itself into the inventory, or link only to files inside it)\n"
        "2 problems: the inventory was not loaded.\n"
    )
    assert "hash" not in out + err


def test_a_link_inside_the_inventory_is_read(inventory: Path) -> None:
    (inventory / "services/handbook.yaml").symlink_to(inventory / "services/pages.yaml")
    (inventory / "services/pages.yaml").rename(inventory / "services/pages.txt")
    (inventory / "services/handbook.yaml").unlink()
    (inventory / "services/handbook.yaml").symlink_to("pages.txt")
    assert "handbook" in load(inventory, {}).services


def test_a_file_that_is_no_mapping_is_not_echoed(inventory: Path) -> None:
    (inventory / "services/notes.yaml").write_text("hunter2\n")
    with pytest.raises(InventoryError) as caught:
        load(inventory, {})
    assert str(caught.value) == (
        "services/notes.yaml:1:1: expected a mapping of keys, got text (start the file with "
        "`key: value` lines)\n1 problem: the inventory was not loaded."
    )


def test_a_fifo_or_a_directory_is_passed_over_with_a_finding_not_read(inventory: Path) -> None:
    os.mkfifo(inventory / "services/pipe.yaml")
    (inventory / "hosts/spare.yaml").mkdir()
    done: list[object] = []
    reader = threading.Thread(target=lambda: done.append(load(inventory, {})), daemon=True)
    reader.start()
    reader.join(10)
    assert done, "loading opened the FIFO and hangs"
    loaded = load(inventory, {})
    assert "pipe" not in loaded.services
    assert [str(f) for f in run(loaded) if f.rule == "inventory.skipped"] == [
        "hosts/spare.yaml: warning: not read: it is a directory (make it a regular file, or "
        "remove it) [inventory.skipped]",
        "services/pipe.yaml: warning: not read: it is not a regular file (a FIFO, a device) "
        "(make it a regular file, or remove it) [inventory.skipped]",
    ]


def test_an_unreadable_hosts_directory_is_a_message(
    inventory: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root no mode keeps a directory from being read: the refusal is put in its place."""
    listing = Path.iterdir

    def refuse(path: Path) -> Iterator[Path]:
        if path.name == "hosts":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(Path, "iterdir", refuse)
    code = main(["check", str(inventory)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith(
        "hosts/: cannot read the directory: Permission denied (check its permissions)\n"
    )


def test_escape_sequences_never_reach_the_terminal(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that clears the line and writes `no findings` is shown escaped, not run."""
    fake = "\x1b[2K\r\x1b[1Ainventory: no findings\x1b]0;owned\x07\u202e"
    pages = inventory / "services/pages.yaml"
    pages.write_text(
        pages.read_text() + f'"x-ok": 1\n"{fake.encode("unicode_escape").decode()}": 1\n'
    )
    code = main(["check", str(inventory)])
    err = capsys.readouterr().err
    assert code == 2
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err and "\x07" not in err
    assert "unknown key `\\x1b[2K\\r\\x1b[1Ainventory: no findings\\x1b]0;owned\\x07\\u202e`" in err


@pytest.mark.parametrize(
    "text",
    [
        # a billion laughs in 1.4 KB
        "x-a: &a ["
        + ",".join(['"lol"'] * 9)
        + "]\n"
        + "".join(
            f"x-{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n"
            for p, n in zip("abcdefghi", "bcdefghij", strict=True)
        ),
        "x-deep: " + "[" * 40000 + "]" * 40000 + "\n",
        "x-deep: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
        "x-a0: &a0 {k: 1}\n"
        + "".join(f"x-a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, 3000)),
    ],
    ids=["laughs", "brackets", "braces", "merges"],
)
def test_bombs_are_refused_at_once_with_file_and_line(inventory: Path, text: str) -> None:
    pages = inventory / "services/pages.yaml"
    pages.write_text(pages.read_text() + text)
    started = time.monotonic()
    with pytest.raises(InventoryError) as caught:
        load(inventory, {})
    assert time.monotonic() - started < 1.0
    [problem] = caught.value.problems
    assert problem.location.file == "services/pages.yaml" and problem.location.line > 1
    assert problem.hint == (
        "write the values out; allmende reads no file nested or aliased this much"
    )


def test_the_ssh_keyscan_hint_quotes_the_address(tmp_path: Path) -> None:
    """The hint is a command to paste: every word of it is quoted (the loader refuses such an
    address; a connector made otherwise still says it safely)."""
    known = tmp_path / "known hosts"
    host = SshConnector("rack", "evil; rm -rf ~", "root", 22, {"ALLMENDE_KNOWN_HOSTS": str(known)})
    with pytest.raises(UserError) as caught:
        asyncio.run(host.open())
    assert str(caught.value).endswith(f"add it: ssh-keyscan -p 22 'evil; rm -rf ~' >> '{known}')")
