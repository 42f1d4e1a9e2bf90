"""Zone serials kept in the state database: they survive a render without the zones and a fresh
output directory, move exactly once per change and carry on from the files of an older
allmende."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from allmende.actions.render import render
from allmende.cli.main import cli
from allmende.errors import UserError
from allmende.render import dns as zones
from allmende.state.store import ZoneSerial, open_store, zone_serials
from tests.conftest import FIXTURES

RENDER_DNS = FIXTURES / "valid" / "render-dns"
ZONE = "dns/nordlicht.example.zone"
LAB = "dns/lab.nordlicht.example.zone"
OLD, NEW = "198.51.100.7", "198.51.100.8"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A writable copy of the inventory with zones."""
    return Path(shutil.copytree(RENDER_DNS, tmp_path / "inventory"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose state database lives under tmp_path."""
    return {"ALLMENDE_STATE": str(tmp_path / "state" / "state.sqlite")}


def serial_of(out: Path, path: str = ZONE) -> int | None:
    return zones.serial((out / path).read_bytes())


def recorded(env: dict[str, str], root: Path) -> dict[str, ZoneSerial]:
    db = open_store(Path(env["ALLMENDE_STATE"]))
    try:
        return zone_serials(db, str(root.resolve()))
    finally:
        db.close()


def change(root: Path, old: str = OLD, new: str = NEW) -> None:
    """Move the edge to another address: every zone with a route changes."""
    gateway = root / "hosts" / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace(old, new))


# --------------------------------------------------------------------------- choosing a serial


def test_serial_for_keeps_the_highest_while_the_content_stays() -> None:
    first = b"@ IN SOA ns1. host. 1 14400 3600 1209600 3600\n@ IN NS ns1.\n"
    changed = first + b"www IN A 192.0.2.1\n"
    same, other = zones.content_hash(first), zones.content_hash(changed)
    assert zones.content_hash(first.replace(b" 1 14400", b" 7 14400")) == same
    assert zones.serial_for(first, []) == zones.INITIAL_SERIAL
    assert zones.serial_for(first, [(5, same)]) == 5
    assert zones.serial_for(changed, [(5, same)]) == 6
    # the highest of what the state and the previous file know
    assert zones.serial_for(first, [(3, other), (5, same)]) == 5
    assert zones.serial_for(first, [(5, other), (3, same)]) == 6
    # one serial given to two different zones: only a new serial is safe
    assert zones.serial_for(first, [(5, same), (5, other)]) == 6
    # RFC 1982: past 2**32 - 1 comes 1 (0 is skipped), which counts as an increase
    assert zones.serial_for(changed, [(2**32 - 1, same)]) == 1
    assert zones.next_serial(99) == 100 and zones.next_serial(2**32 - 1) == 1
    assert zones.serial(zones.set_serial(first, 2024010199)) == 2024010199


# --------------------------------------------------------------------------- the render action


def test_unchanged_content_keeps_and_a_change_bumps_exactly_once(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    render(root, out, env, targets=("dns",))
    render(root, out, env, targets=("dns",))
    assert serial_of(out) == serial_of(out, LAB) == 1
    assert recorded(env, root)["nordlicht.example"].serial == 1
    change(root)
    render(root, out, env, targets=("dns",))
    render(root, out, env, targets=("dns",))
    render(root, tmp_path / "elsewhere", env, targets=("dns",))
    assert serial_of(out) == serial_of(out, LAB) == serial_of(tmp_path / "elsewhere") == 2
    state = recorded(env, root)
    assert {zone: s.serial for zone, s in state.items()} == {
        "nordlicht.example": 2,
        "lab.nordlicht.example": 2,
    }
    assert state["nordlicht.example"].content == zones.content_hash((out / ZONE).read_bytes())
    # back to the old content is a change too: serials never go back
    change(root, NEW, OLD)
    render(root, out, env, targets=("dns",))
    assert serial_of(out) == 3


def test_a_partial_render_then_a_full_one_keeps_the_serials(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    render(root, out, env)
    change(root)
    render(root, out, env)
    assert serial_of(out) == 2
    render(root, out, env, host="gateway")
    assert not (out / "dns").exists()
    render(root, out, env, service="wiki")
    render(root, out, env, targets=("haproxy",))
    render(root, out, env)
    assert serial_of(out) == serial_of(out, LAB) == 2
    change(root, NEW, "198.51.100.9")
    render(root, out, env, host="gateway")
    render(root, out, env)
    assert serial_of(out) == 3


def test_a_fresh_output_directory_keeps_the_serials(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    render(root, tmp_path / "one", env, targets=("dns",))
    change(root)
    render(root, tmp_path / "one", env, targets=("dns",))
    shutil.rmtree(tmp_path / "one")
    render(root, tmp_path / "two", env, targets=("dns",))
    assert serial_of(tmp_path / "two") == 2


def test_the_serials_of_an_older_rendering_are_taken_over(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Rendered before the state database knew zones: the files in OUT give the serials, also
    when the first render afterwards leaves the zones out."""
    out = tmp_path / "out"
    render(root, out, {"ALLMENDE_STATE": str(tmp_path / "other.sqlite")}, targets=("dns",))
    for path in (ZONE, LAB):
        (out / path).write_bytes((out / path).read_bytes().replace(b" 1 14400", b" 41 14400"))
    before = zones.content_hash((out / ZONE).read_bytes())
    render(root, out, env, host="gateway")
    assert not (out / "dns").exists()
    assert recorded(env, root)["nordlicht.example"] == ZoneSerial(41, before)
    render(root, tmp_path / "fresh", env, targets=("dns",))
    assert serial_of(tmp_path / "fresh") == serial_of(tmp_path / "fresh", LAB) == 41


def test_the_higher_of_state_and_output_wins(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    render(root, out, env, targets=("dns",))
    # the output directory went further than this state database (say, another machine's)
    (out / ZONE).write_bytes((out / ZONE).read_bytes().replace(b" 1 14400", b" 9 14400"))
    render(root, out, env, targets=("dns",))
    assert serial_of(out) == 9
    assert recorded(env, root)["nordlicht.example"].serial == 9
    # and the other way round: a stale output directory does not pull the serial back
    stale = tmp_path / "stale"
    render(root, stale, env, targets=("dns",))
    (stale / ZONE).write_bytes((stale / ZONE).read_bytes().replace(b" 9 14400", b" 4 14400"))
    render(root, stale, env, targets=("dns",))
    assert serial_of(stale) == 9


def test_a_zone_removed_from_the_inventory_breaks_nothing(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    render(root, out, env, targets=("dns",))
    change(root)
    render(root, out, env, targets=("dns",))
    assert serial_of(out, LAB) == 2
    lab = root / "zones" / "lab.nordlicht.example.yaml"
    saved = lab.read_text()
    lab.unlink()
    render(root, out, env, targets=("dns",))
    assert not (out / LAB).exists() and serial_of(out) == 3
    assert recorded(env, root)["lab.nordlicht.example"].serial == 2
    collective = root / "allmende.yaml"
    collective.write_text(collective.read_text().replace(" lab.nordlicht.example,", ""))
    render(root, out, env, targets=("dns",))
    render(root, tmp_path / "fresh", env, targets=("dns",))
    assert not (tmp_path / "fresh" / LAB).exists()
    # back again: it carries on from its last serial rather than starting over
    collective.write_text(
        collective.read_text().replace(
            "nordlicht.example,", "nordlicht.example, lab.nordlicht.example,", 1
        )
    )
    lab.write_text(saved)
    render(root, tmp_path / "again", env, targets=("dns",))
    assert serial_of(tmp_path / "again", LAB) == 2


def test_the_inventory_is_named_by_its_resolved_root(
    root: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(root)
    render(Path("link"), tmp_path / "out", env, targets=("dns",))
    assert set(recorded(env, root)) == {"nordlicht.example", "lab.nordlicht.example"}


def test_without_zones_the_state_database_is_not_touched(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    render(RENDER_DNS, tmp_path / "out", {"ALLMENDE_STATE": str(state)}, targets=("compose",))
    assert not state.exists()


def test_an_unusable_state_database_is_a_user_error(root: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = {"ALLMENDE_STATE": str(tmp_path / "file" / "state.sqlite")}
    with pytest.raises(UserError, match="cannot open the state database"):
        render(root, tmp_path / "out", env, targets=("dns",))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- command line


def test_cli_partial_then_full_render_keeps_the_serials(root: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"ALLMENDE_STATE": str(tmp_path / "state.sqlite")})
    out = tmp_path / "out"

    def run(*args: str) -> None:
        result = runner.invoke(cli, ["render", str(root), "--out", str(out), *args])
        assert result.exit_code == 0, result.output

    run()
    change(root)
    run()
    assert serial_of(out) == 2
    run("--host", "gateway")
    assert not (out / "dns").exists()
    run()
    assert serial_of(out) == 2
    shutil.rmtree(out)
    run("--target", "dns")
    assert serial_of(out) == serial_of(out, LAB) == 2
