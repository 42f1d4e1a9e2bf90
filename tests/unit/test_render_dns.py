"""BIND zone files: what goes in, what is derived, what wins, which zones are left out, the
serial that only moves with the content, and every zone of every inventory through the real
`named-checkzone`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from allmende.actions.render import render as render_action
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import dns as zones
from tests.conftest import BASE, EXAMPLES, FIXTURES

RENDER_DNS = FIXTURES / "valid" / "render-dns"
INVENTORIES = sorted(
    [*(FIXTURES / "valid").iterdir(), *(p for p in EXAMPLES.iterdir() if p.is_dir())]
)


def rendered(inventory: Inventory) -> dict[str, dns.zone.Zone]:
    """Render and parse every zone with dnspython (which insists on SOA and NS at the apex)."""
    return {
        path.removeprefix("dns/").removesuffix(".zone"): dns.zone.from_text(
            f.content.decode(), path.removeprefix("dns/").removesuffix(".zone"), relativize=False
        )
        for path, f in zones.render(inventory).items()
    }


def answer(zone: dns.zone.Zone, name: str, kind: str) -> set[str]:
    """Return the data of one record set as text, empty when there is none."""
    rdataset = zone.get_rdataset(dns.name.from_text(name), dns.rdatatype.from_text(kind))
    return {r.to_text() for r in rdataset} if rdataset is not None else set()


def with_files(root: Path, files: dict[str, str]) -> Inventory:
    """Write ``files`` (relative path -> text) into the inventory at ``root`` and load it."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return load(root, {})


# --------------------------------------------------------------------------- pieces


def test_txt_is_quoted_and_cut_into_strings_of_255_bytes() -> None:
    assert zones.txt_value("v=spf1 mx -all") == '"v=spf1 mx -all"'
    assert zones.txt_value('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert zones.txt_value("ü") == '"\\195\\188"'
    assert zones.txt_value("") == '""'
    assert zones.txt_value('"already" "quoted"') == '"already" "quoted"'
    long = "a" * 255 + "b" * 255 + "c"
    assert zones.txt_value(long) == f'"{"a" * 255}" "{"b" * 255}" "c"'


def test_long_txt_reads_back_as_the_same_bytes(tmp_path: Path) -> None:
    text = "v=DKIM1; k=rsa; p=" + "Ab0/+" * 120 + ' "quoted" Grüße'
    root = shutil.copytree(RENDER_DNS, tmp_path / "inventory")
    record = f"{{name: dkim, type: TXT, value: '{text}'}}"
    zone_file = f"nameservers: [ns2.example.net.]\nrecords:\n  - {record}\n"
    inventory = with_files(root, {"zones/nordlicht.example.yaml": zone_file})
    zone = rendered(inventory)["nordlicht.example"]
    rdataset = zone.get_rdataset("dkim.nordlicht.example.", "TXT")
    assert rdataset is not None
    strings = next(iter(rdataset)).strings
    assert all(len(s) <= 255 for s in strings) and len(strings) == 3
    assert b"".join(strings) == text.encode()


def test_rname_from_an_email_address() -> None:
    assert zones.rname("hostmaster@example.org") == "hostmaster.example.org."
    assert zones.rname("dns.admin@Example.org") == "dns\\.admin.example.org."
    assert zones.rname("hostmaster.example.org") == "hostmaster.example.org."


# --------------------------------------------------------------------------- what is rendered


def test_the_fixture_zone_holds_own_derived_host_and_delegation_records() -> None:
    zone = rendered(load(RENDER_DNS, {}))["nordlicht.example"]
    edge_v4, edge_v6 = {"198.51.100.7"}, {"2001:db8::7"}
    soa = answer(zone, "nordlicht.example.", "SOA")
    assert soa == {
        "ns1.nordlicht.example. dns\\.admin.nordlicht.example. 1 14400 3600 1209600 3600"
    }
    # a nameserver without a final dot is absolute all the same
    assert answer(zone, "nordlicht.example.", "NS") == {
        "ns1.nordlicht.example.",
        "ns2.example.net.",
    }
    for name in ("wiki", "git", "pages"):
        assert answer(zone, f"{name}.nordlicht.example.", "A") == edge_v4
        assert answer(zone, f"{name}.nordlicht.example.", "AAAA") == edge_v6
    assert answer(zone, "nordlicht.example.", "A") == edge_v4  # git's route on the apex
    assert answer(zone, "nordlicht.example.", "MX") == {"10 mail.nordlicht.example."}
    assert answer(zone, "mail.nordlicht.example.", "A") == {"192.0.2.25"}
    assert zone.get_rdataset("mail.nordlicht.example.", "A").ttl == 300  # type: ignore[union-attr]
    # hosts: at their address when it is a name in a managed domain, else <host>.<first domain>
    assert answer(zone, "ns1.nordlicht.example.", "A") == {"198.51.100.53"}
    assert answer(zone, "rack.nordlicht.example.", "A") == {"192.0.2.10"}
    assert answer(zone, "rack.nordlicht.example.", "AAAA") == set()
    assert answer(zone, "dns.nordlicht.example.", "A") == set()
    assert answer(zone, "build.nordlicht.example.", "A") == set()  # no public address
    # the zone file wins: same name and type, or a CNAME at the name
    assert answer(zone, "handbook.nordlicht.example.", "A") == {"192.0.2.80"}
    assert answer(zone, "handbook.nordlicht.example.", "AAAA") == edge_v6
    assert answer(zone, "docs.nordlicht.example.", "CNAME") == {"handbook.nordlicht.example."}
    assert answer(zone, "docs.nordlicht.example.", "A") == set()
    # the lab's zone is delegated, with glue for its nameserver inside it
    assert answer(zone, "lab.nordlicht.example.", "NS") == {
        "ns1.lab.nordlicht.example.",
        "ns1.nordlicht.example.",
    }
    assert answer(zone, "ns1.lab.nordlicht.example.", "A") == {"192.0.2.54"}


def test_records_go_to_the_longest_managed_domain() -> None:
    lab = rendered(load(RENDER_DNS, {}))["lab.nordlicht.example"]
    assert answer(lab, "ci.lab.nordlicht.example.", "A") == {"198.51.100.7"}
    assert answer(lab, "box.lab.nordlicht.example.", "A") == {"192.0.2.30"}
    assert answer(lab, "lab.nordlicht.example.", "SOA") == {
        "ns1.lab.nordlicht.example. hostmaster.lab.nordlicht.example. 1 14400 3600 1209600 300"
    }


def test_zones_that_cannot_be_valid_are_skipped_with_a_reason() -> None:
    inventory = load(RENDER_DNS, {})
    assert sorted(zones.render(inventory)) == [
        "dns/lab.nordlicht.example.zone",
        "dns/nordlicht.example.zone",
    ]
    skipped = zones.skipped(inventory)
    assert skipped == {
        "nordlicht.org": "it has no nameservers: list them under `nameservers` in "
        "zones/nordlicht.org.yaml",
        "spare.example": "it has no nameservers: list them under `nameservers` in "
        "zones/spare.example.yaml",
    }
    assert zones.skipped(load(BASE, {})) == {
        "nordlicht.example": "its nameserver ns1.nordlicht.example. lies inside the zone but "
        "has no A or AAAA record: add one to zones/nordlicht.example.yaml"
    }


def test_a_route_wins_over_a_host_of_the_same_name(tmp_path: Path) -> None:
    root = shutil.copytree(RENDER_DNS, tmp_path / "inventory")
    host = (
        (root / "hosts/rack.yaml")
        .read_text()
        .replace("address: 192.0.2.10", "address: wiki.nordlicht.example")
    )
    zone = rendered(with_files(root, {"hosts/rack.yaml": host}))["nordlicht.example"]
    assert answer(zone, "wiki.nordlicht.example.", "A") == {"198.51.100.7"}
    assert answer(zone, "rack.nordlicht.example.", "A") == set()


def test_sources_name_every_file_a_record_came_from() -> None:
    files = zones.render(load(RENDER_DNS, {}))
    assert files["dns/lab.nordlicht.example.zone"].sources == (
        "allmende.yaml",
        "hosts/gateway.yaml",
        "hosts/lab.yaml",
        "services/ci.yaml",
        "zones/lab.nordlicht.example.yaml",
    )
    parent = files["dns/nordlicht.example.zone"].sources
    assert "hosts/dns.yaml" in parent and "zones/lab.nordlicht.example.yaml" in parent
    assert "services/ci.yaml" not in parent


# --------------------------------------------------------------------------- serial


def test_a_rendered_zone_starts_at_the_initial_serial_and_takes_another() -> None:
    first = zones.render(load(RENDER_DNS, {}))["dns/nordlicht.example.zone"].content
    assert zones.serial(first) == zones.INITIAL_SERIAL
    kept = zones.set_serial(first, 41)
    assert zones.serial(kept) == 41
    assert kept == first.replace(b" 1 14400", b" 41 14400")
    assert zones.serial(b"; not a zone\n") is None


def test_the_render_action_carries_the_serial(tmp_path: Path) -> None:
    root = shutil.copytree(RENDER_DNS, tmp_path / "inventory")
    out = tmp_path / "out"
    env = {"ALLMENDE_STATE": str(tmp_path / "state.sqlite")}
    zone = out / "dns/nordlicht.example.zone"
    render_action(root, out, env, targets=("dns",))
    assert zones.serial(zone.read_bytes()) == 1
    render_action(root, out, env, targets=("dns",))
    assert zones.serial(zone.read_bytes()) == 1
    gateway = root / "hosts/gateway.yaml"
    gateway.write_text(gateway.read_text().replace("198.51.100.7", "198.51.100.8"))
    render_action(root, out, env, targets=("dns",))
    assert zones.serial(zone.read_bytes()) == 2
    assert b"198.51.100.8" in zone.read_bytes()
    render_action(root, out, env, targets=("dns",))
    assert zones.serial(zone.read_bytes()) == 2
    assert zones.serial((out / "dns/lab.nordlicht.example.zone").read_bytes()) == 2


def test_the_render_action_warns_about_skipped_zones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"ALLMENDE_STATE": str(tmp_path / "state.sqlite")}
    render_action(RENDER_DNS, tmp_path / "out", env, targets=("dns",))
    assert "no zone file for nordlicht.org: it has no nameservers" in caplog.text


# --------------------------------------------------------------------------- the real tool


@pytest.mark.parametrize("root", INVENTORIES, ids=lambda p: p.name)
def test_every_zone_passes_named_checkzone(root: Path, tmp_path: Path) -> None:
    checkzone = shutil.which("named-checkzone")
    if checkzone is None:
        pytest.fail("named-checkzone is missing: apt-get install bind9-utils (script/bootstrap)")
    for path, file in zones.render(load(root, {})).items():
        zone = path.removeprefix("dns/").removesuffix(".zone")
        target = tmp_path / f"{zone}.zone"
        target.write_bytes(file.content)
        done = subprocess.run(
            [checkzone, "-k", "fail", "-m", "fail", zone, str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{root.name}: {path}\n{done.stdout}{done.stderr}"
        assert done.stdout.rstrip().endswith("OK")
