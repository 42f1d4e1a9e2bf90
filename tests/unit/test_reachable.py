"""routes.reachable: every route and exposed port leads to a port the edge can connect to.

The base inventory (tests/fixtures/valid/nordlicht) has the edge host `gateway` and the
compose host `rack`; each case adds one service, and some an Incus host.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from allmende.checks.registry import Finding, run
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import compose
from allmende.render.haproxy_plan import plan
from tests.conftest import EXAMPLES, FIXTURES, overlay

RULE = "routes.reachable"


def inventory(tmp_path: Path, files: dict[str, str]) -> Inventory:
    root = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return load(root, {})


def findings(tmp_path: Path, files: dict[str, str]) -> list[Finding]:
    return list(run(inventory(tmp_path, files), only=[RULE]))


def service(host: str, publish: str = "", extra: str = "") -> str:
    """A service `tools` on ``host`` whose app has the ports http 3000 and ssh 22."""
    return (
        "description: Tools\n"
        f"host: {host}\n"
        "components:\n"
        "  app:\n"
        "    image: example/tools:1.0.0\n"
        "    ports: {http: 3000, ssh: 22}\n"
        + (f"    publish: {publish}\n" if publish else "")
        + "routes:\n"
        "  - {domain: tools.nordlicht.example, to: app.http}\n"
        "monitor: [{tcp: 'rack:1'}]\n" + extra
    )


INCUS = {
    "hosts/box.yaml": "description: An Incus host\naddress: 192.0.2.30\nengine: incus\n",
    "hosts/proxy.yaml": (
        "description: The proxy in a container on box\nkind: container\nparent: box\n"
        "address: 10.0.0.2\npublic_ipv4: 192.0.2.31\nengine: incus\n"
    ),
}


def edges(hosts: str) -> str:
    """Return allmende.yaml of the base inventory with the edge on ``hosts``."""
    text = (FIXTURES / "valid/nordlicht/allmende.yaml").read_text()
    return text.replace("hosts: [gateway]", f"hosts: [{hosts}]")


# --------------------------------------------------------------------------- reachable


def test_the_base_inventory_is_reachable(tmp_path: Path) -> None:
    assert findings(tmp_path, {}) == []


@pytest.mark.parametrize("host", ["rack", "gateway"])
def test_a_published_port_is_reached_on_another_host_and_on_the_edge_host(
    tmp_path: Path, host: str
) -> None:
    files = {"services/tools.yaml": service(host, "{http: 8095}")}
    assert findings(tmp_path, files) == []
    reach = derive.reach(inventory(tmp_path / "i", files), "gateway", "tools", "app.http")
    assert reach is not None and reach.reachable
    # On the edge host itself: the address the port is published on (compose binds the
    # host's IP), not 127.0.0.1, where nothing listens.
    assert (reach.address, reach.port) == (
        ("198.51.100.7", 8095) if host == "gateway" else ("192.0.2.10", 8095)
    )


def test_an_unpublished_port_on_an_incus_host_the_edge_runs_in_is_reached_on_the_bridge(
    tmp_path: Path,
) -> None:
    files = {**INCUS, "allmende.yaml": edges("proxy"), "services/tools.yaml": service("box")}
    assert findings(tmp_path, files) == []
    reach = derive.reach(inventory(tmp_path / "i", files), "proxy", "tools", "app.http")
    assert reach is not None and reach.bridge
    assert (reach.address, reach.port) == ("tools-app.incus", 3000)


# --------------------------------------------------------------------------- unreachable


def test_an_unpublished_port_on_another_host(tmp_path: Path) -> None:
    found = findings(tmp_path, {"services/tools.yaml": service("rack")})
    assert [str(f) for f in found] == [
        "services/tools.yaml:8:43: routes[0].to: error: edge host `gateway` cannot reach "
        "app.http: it is not published on `rack` (publish it: `publish: {http: 3000}` under "
        "components.app in services/tools.yaml) [routes.reachable]"
    ]
    assert found[0].service == "tools"


def test_an_unpublished_port_on_the_edge_host_itself(tmp_path: Path) -> None:
    found = findings(tmp_path, {"services/tools.yaml": service("gateway")})
    assert [(f.keypath, f.message) for f in found] == [
        (
            "routes[0].to",
            "edge host `gateway` cannot reach app.http: it is not published on `gateway`",
        )
    ]


def test_the_suggested_port_is_free_and_needs_no_root(tmp_path: Path) -> None:
    text = service("rack", extra="expose:\n  - {port: 2223, to: app.ssh}\n").replace(
        "ports: {http: 3000, ssh: 22}", "ports: {http: 8082, ssh: 22}"
    )
    found = findings(tmp_path, {"services/tools.yaml": text})
    fixes = {f.keypath: f.fix for f in found}
    # 8082 is git's on rack; 22 needs root, and 8022 is free
    assert "`publish: {http: 8083}`" in fixes["routes[0].to"]
    assert "`publish: {ssh: 8022}`" in fixes["expose[0].to"]


def test_an_exposed_port(tmp_path: Path) -> None:
    extra = "expose:\n  - {port: 2223, to: app.ssh}\n  - {port: 2224, to: app.http}\n"
    found = findings(tmp_path, {"services/tools.yaml": service("rack", "{http: 8095}", extra)})
    assert [(str(f.location), f.keypath, f.message) for f in found] == [
        (
            "services/tools.yaml:12:22",
            "expose[0].to",
            "edge host `gateway` cannot reach app.ssh: it is not published on `rack`",
        )
    ]


def test_only_the_edges_off_the_incus_bridge_are_named(tmp_path: Path) -> None:
    files = {
        **INCUS,
        "allmende.yaml": edges("gateway, proxy"),
        "services/tools.yaml": service("box"),
    }
    found = findings(tmp_path, files)
    assert [f.message for f in found] == [
        "edge host `gateway` cannot reach app.http: it is not published on `box`"
    ]


def test_a_host_without_an_address(tmp_path: Path) -> None:
    files = {
        "hosts/nowhere.yaml": "description: no address\n",
        "services/tools.yaml": service("nowhere", "{http: 8095}"),
    }
    found = findings(tmp_path, files)
    assert [(f.keypath, f.message, f.fix) for f in found] == [
        (
            "routes[0].to",
            "edge host `gateway` cannot reach app.http: host `nowhere` has no `address`",
            "give `nowhere` an `address` in hosts/nowhere.yaml",
        )
    ]


def test_allow_keeps_it_aside(tmp_path: Path) -> None:
    allow = "allow: [{rule: routes.reachable, reason: rendered only}]\n"
    report = run(
        inventory(tmp_path, {"services/tools.yaml": service("rack", extra=allow)}), only=[RULE]
    )
    assert list(report) == []
    assert [f.rule for f in report.allowed] == [RULE]


# --------------------------------------------------------------------------- one decision

TARGET = re.compile(r"^(routes|expose)\[(\d+)\]\.to$")
INVENTORIES = sorted(
    [*(p for p in EXAMPLES.iterdir() if p.is_dir()), *(FIXTURES / "valid").iterdir()]
)


@pytest.mark.parametrize("root", INVENTORIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_check_finds_exactly_the_servers_render_disables(root: Path) -> None:
    inv = load(root, {})
    report = run(inv, only=[RULE])
    flagged = set()
    for finding in [*report.findings, *report.allowed]:
        match = TARGET.match(finding.keypath)
        assert match is not None and finding.service is not None
        service = inv.services[finding.service]
        entries = service.routes if match[1] == "routes" else service.expose
        flagged.add((finding.service, entries[int(match[2])].to))
    disabled = {
        (backend.service, f"{backend.component}.{backend.port}")
        for edge in derive.edge_hosts(inv)
        for backend in plan(inv, edge).backends
        if not backend.reachable and "no IP address or host name" not in backend.note
    }
    assert flagged == disabled


# --------------------------------------------------------------------------- a port's own bind


def test_a_port_on_loopback_is_reached_by_the_edge_on_its_own_host_only(tmp_path: Path) -> None:
    local = {"services/tools.yaml": service("gateway", "{http: {port: 8095, bind: 127.0.0.1}}")}
    assert findings(tmp_path / "a", local) == []
    reach = derive.reach(inventory(tmp_path / "b", local), "gateway", "tools", "app.http")
    assert reach is not None and (reach.address, reach.port) == ("127.0.0.1", 8095)

    elsewhere = {"services/tools.yaml": service("rack", "{http: {port: 8095, bind: 127.0.0.1}}")}
    found = findings(tmp_path / "c", elsewhere)
    assert [(f.keypath, f.message) for f in found] == [
        (
            "routes[0].to",
            "edge host `gateway` cannot reach app.http: it is published on 127.0.0.1 of `rack` "
            "only",
        )
    ]
    edge = plan(inventory(tmp_path / "d", elsewhere), "gateway")
    [backend] = [b for b in edge.backends if b.service == "tools"]
    assert not backend.reachable and "published on 127.0.0.1 of rack only" in backend.note


def test_a_port_bound_to_one_address_of_its_host_is_reached_there(tmp_path: Path) -> None:
    files = {"services/tools.yaml": service("rack", "{http: {port: 8095, bind: 192.0.2.11}}")}
    assert findings(tmp_path / "a", files) == []
    reach = derive.reach(inventory(tmp_path / "b", files), "gateway", "tools", "app.http")
    assert reach is not None and (reach.address, reach.port) == ("192.0.2.11", 8095)


def test_a_component_that_runs_nowhere_routes_to_its_servers_outside_the_inventory(
    tmp_path: Path,
) -> None:
    nas = "    replicas: 0\n    edge: {http: {servers: [192.168.1.20:5000]}}\n"
    text = service("rack").replace(
        "    ports: {http: 3000, ssh: 22}\n", "    ports: {http: 3000, ssh: 22}\n" + nas
    )
    assert findings(tmp_path / "a", {"services/tools.yaml": text}) == []
    backends = plan(inventory(tmp_path / "b", {"services/tools.yaml": text}), "gateway").backends
    (tools,) = [b for b in backends if b.service == "tools"]
    assert [s.address for s in tools.servers] == ["192.168.1.20:5000"]
    assert "runs nowhere" in tools.note
    # and nothing of it runs on rack: no Compose project that podman-compose would start
    rendered = compose.render(inventory(tmp_path / "e", {"services/tools.yaml": text}))
    assert not [p for p in rendered if p.startswith("rack/srv/tools/")]
    # nothing to send to: the route would answer 503 forever
    alone = text.replace("edge: {http: {servers: [192.168.1.20:5000]}}", "edge: {}")
    found = findings(tmp_path / "c", {"services/tools.yaml": alone})
    assert [f.message for f in found] == [
        "app.http runs nowhere (`replicas: 0`) and has no server outside the inventory to send to"
    ]


def test_a_server_outside_that_is_another_component_is_said(tmp_path: Path) -> None:
    # wiki publishes app.http on 8081 of rack (192.0.2.10) in the base inventory
    text = service("rack", "{http: 8095}").replace(
        "    ports: {http: 3000, ssh: 22}\n",
        "    ports: {http: 3000, ssh: 22}\n"
        "    edge: {http: {servers: [192.0.2.10:8081, 192.168.1.20:3000]}}\n",
    )
    found = list(run(inventory(tmp_path, {"services/tools.yaml": text}), only=["routes.servers"]))
    assert [(f.keypath, f.message) for f in found] == [
        (
            "components.app.edge.http.servers[0]",
            "192.0.2.10:8081 is wiki/app.http, published on `rack`",
        )
    ]
