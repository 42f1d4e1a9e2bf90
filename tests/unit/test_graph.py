"""The graph of an inventory: which nodes and edges appear, and the three text formats."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from allmende.actions import graph as graph_action
from allmende.cli.main import cli, main
from allmende.errors import InventoryError, ToolMissing
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.models import Collective, Host, Service
from allmende.render.graph import BACKENDS_AT, Edge, Graph, build, to_json
from allmende.render.graph_dot import to_dot
from allmende.render.graph_mermaid import to_mermaid

ROOT = Path(__file__).parents[2]
VALID = ROOT / "tests" / "fixtures" / "valid"
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/allmende.yaml"))
GRAPH_FIXTURES = sorted(p for p in VALID.glob("graph-*") if p.is_dir())
needs_graphviz = pytest.mark.needs_graphviz


def service(host: str = "gw", image: str = "nginx:1.27", **keys: Any) -> dict[str, Any]:
    """Return the YAML data of a one-component service with an `http` and a `tcp` port."""
    component = {"image": image, "ports": {"http": 80, "tcp": 9000}}
    return {"description": "test", "host": host, "components": {"app": component}, **keys}


def inventory(
    services: dict[str, dict[str, Any]],
    hosts: dict[str, dict[str, Any]] | None = None,
    edge: tuple[str, ...] = ("gw",),
    description: str = "",
) -> Inventory:
    """Return an Inventory built from model data, without files (and so without resolving)."""
    collective: dict[str, Any] = {"name": "test", "description": description}
    if edge:
        collective["edge"] = {"hosts": list(edge)}
    return Inventory(
        root=Path(),
        collective=Collective.model_validate(collective),
        hosts={
            n: Host.model_validate(h)
            for n, h in (hosts if hosts is not None else {"gw": {"kind": "vps"}}).items()
        },
        services={n: Service.model_validate(s) for n, s in services.items()},
        zones={},
        secrets=frozenset(),
        files={},
        documents={},
    )


def edges(graph: Graph, kind: str) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.label) for e in graph.edges if e.kind == kind}


def route(domain: str, **keys: Any) -> dict[str, Any]:
    return {"domain": domain, "to": "app.http", **keys}


# --------------------------------------------------------------------------- build


def test_runs_on_links_each_service_to_its_host() -> None:
    graph = build(inventory({"wiki": service(), "pad": service()}))
    assert edges(graph, "runs_on") == {
        ("service:wiki", "host:gw", ""),
        ("service:pad", "host:gw", ""),
    }
    assert {n.id: n.cluster for n in graph.nodes if n.kind == "service"} == {
        "service:pad": "host:gw",
        "service:wiki": "host:gw",
    }


def test_host_parent_links_a_vm_to_its_host_and_draws_it_inside() -> None:
    hosts = {"gw": {"kind": "physical"}, "ci": {"kind": "vm", "parent": "gw"}}
    graph = build(inventory({}, hosts))
    assert edges(graph, "host_parent") == {("host:ci", "host:gw", "")}
    assert [(n.id, n.cluster) for n in graph.nodes] == [("host:ci", "host:gw"), ("host:gw", None)]
    dot = to_dot(graph)
    assert dot.index('subgraph "cluster_host:gw"') < dot.index('subgraph "cluster_host:ci"')
    assert "no services" in dot  # an empty host is still drawn


def test_databases_are_hosted_by_their_provider_and_used_by_their_users() -> None:
    database = service(provides={"database": "postgres", "databases": ["wiki", "spare"]})
    wiki = service(uses=[{"database": "database/wiki"}])
    graph = build(inventory({"database": database, "wiki": wiki}))
    assert edges(graph, "db_hosted") == {
        ("database:database/spare", "service:database", ""),
        ("database:database/wiki", "service:database", ""),
    }
    assert edges(graph, "db_used") == {("database:database/wiki", "service:wiki", "")}
    wiki_db = next(n for n in graph.nodes if n.id == "database:database/wiki")
    assert (wiki_db.label, wiki_db.detail, wiki_db.cluster) == ("wiki", "postgres", "host:gw")


def test_sites_are_domain_and_path_and_served_by_their_service() -> None:
    routes = [route("pad.example"), route("example.org", path="/pad", cache="5m")]
    graph = build(inventory({"pad": service(routes=routes)}))
    assert edges(graph, "site_served") == {
        ("site:pad.example", "service:pad", ""),
        ("site:example.org/pad", "service:pad", ""),
    }
    details = {n.label: n.detail for n in graph.nodes if n.kind == "site"}
    assert details == {"pad.example": "", "example.org/pad": "cached 5m"}


def test_terminated_and_plain_routes_are_http_backends_of_every_edge_host() -> None:
    routes = [route("a.example"), route("b.example", tls="none")]
    hosts = {"gw": {"kind": "vps"}, "gw2": {"kind": "vps"}, "box": {}}
    graph = build(inventory({"pad": service(host="box", routes=routes)}, hosts, ("gw", "gw2")))
    assert edges(graph, "edge_http") == {
        ("host:gw", "service:pad", ""),
        ("host:gw2", "service:pad", ""),
    }
    assert edges(graph, "edge_tcp") == set()
    assert {n.detail for n in graph.nodes if n.kind == "site"} == {"", "no TLS"}


def test_passthrough_routes_and_exposed_ports_are_tcp_backends() -> None:
    mail = service(
        routes=[route("mail.example", tls="passthrough")],
        expose=[{"port": 993, "to": "app.tcp"}, {"port": 53, "protocol": "udp", "to": "app.tcp"}],
    )
    graph = build(inventory({"mail": mail}))
    assert edges(graph, "edge_tcp") == {
        ("host:gw", "service:mail", "passthrough"),
        ("host:gw", "service:mail", "tcp 993"),
        ("host:gw", "service:mail", "udp 53"),
    }
    assert edges(graph, "edge_http") == set()
    assert "TLS at the service" in {n.detail for n in graph.nodes}
    assert 'label="passthrough · tcp 993 · udp 53"' in to_dot(graph)  # one line, joined


def test_without_an_edge_there_are_no_backends() -> None:
    graph = build(inventory({"pad": service(routes=[route("pad.example")])}, edge=()))
    assert not edges(graph, "edge_http") and not edges(graph, "edge_tcp")
    assert graph.edge_hosts == ()
    assert edges(graph, "site_served") == {("site:pad.example", "service:pad", "")}


@needs_graphviz
def test_an_empty_inventory_is_drawn_too() -> None:
    graph = build(inventory({}, {}, edge=()))
    assert graph.nodes == () and graph.edges == ()
    assert graph_action.execute.run(["dot", "-Tsvg"], input=to_dot(graph).encode()).stdout
    text = to_mermaid(graph)
    assert text.splitlines()[3] == "flowchart LR"
    assert "subgraph" not in text and "-->" not in text


def test_references_that_do_not_resolve_are_left_out() -> None:
    graph = build(inventory({"pad": service(host="nowhere")}, edge=("gone",)))
    assert edges(graph, "runs_on") == set()
    assert graph.edge_hosts == ()
    assert next(n for n in graph.nodes if n.kind == "service").cluster is None
    to_dot(graph), to_mermaid(graph)  # and the writers cope


def test_service_detail_names_the_software() -> None:
    digest = "sha256:" + "ab" * 32
    system = {"system": {"image": "debian/12", "services": ["a", "b", "c", "d"]}}
    services = {
        "wiki": service(image="ghcr.io/requarks/wiki:2.5.304"),
        "pinned": service(image=f"docker.io/library/caddy@{digest}"),
        "music": {"description": "x", "host": "gw", "components": {"app": system}},
    }
    details = {n.label: n.detail for n in build(inventory(services)).nodes}
    assert details["wiki"] == "wiki:2.5.304"
    assert details["pinned"] == "caddy@abababababab"
    assert details["music"] == "debian/12 (a, b, c +1)"


def test_build_is_deterministic_whatever_the_order() -> None:
    names = ["b", "a", "c"]
    forward = {n: service(routes=[route(f"{n}.example")]) for n in names}
    backward = dict(reversed(forward.items()))
    one, two = build(inventory(forward)), build(inventory(backward))
    assert one == two
    assert [n.id for n in one.nodes] == sorted(n.id for n in one.nodes)
    assert list(one.edges) == sorted(one.edges)
    assert to_dot(one) == to_dot(two) and to_mermaid(one) == to_mermaid(two)


# --------------------------------------------------------------------------- what is drawn


def test_a_service_using_every_database_gets_one_dashed_line() -> None:
    graph = build(load(VALID / "graph-artschool", {}))
    assert len(edges(graph, "db_used")) == 10  # pgadmin's five are in the data
    dot = to_dot(graph)
    assert '"service:dbadmin" -> "service:database"' in dot
    assert 'xlabel="all 5 databases"' in dot and "style=dashed" in dot
    assert '"service:dbadmin" -> "database:' not in dot
    assert '"service:music" -> "database:database/music"' in dot
    assert 'service_dbadmin -.->|"all 5 databases"| service_database' in to_mermaid(graph)


def test_two_databases_are_not_collapsed() -> None:
    database = service(provides={"database": "postgres", "databases": ["one", "two"]})
    admin = service(uses=[{"database": "database/one"}, {"database": "database/two"}])
    dot = to_dot(build(inventory({"database": database, "admin": admin})))
    assert "dashed, penwidth" not in dot
    assert dot.count('"service:admin" -> "database:') == 2


def test_many_http_backends_are_drawn_one_line_per_host() -> None:
    hosts = {"gw": {"kind": "vps"}, "big": {}, "small": {}}
    services = {
        f"s{i:02d}": service(host="big", routes=[route(f"s{i}.example")])
        for i in range(BACKENDS_AT)
    }
    services["lone"] = service(host="small", routes=[route("lone.example")])
    graph = build(inventory(services, hosts))
    dot = to_dot(graph)
    assert f'label="{BACKENDS_AT} HTTP backends"' in dot
    assert 'lhead="cluster_host:big"' in dot
    assert '"host:gw" -> "service:lone" [color="#2e86de"]' in dot
    assert dot.count('"host:gw" ->') == 2
    assert f'host_gw -->|"{BACKENDS_AT} HTTP backends"| cluster_host_big' in to_mermaid(graph)


# --------------------------------------------------------------------------- formats


def test_json_lists_every_node_and_edge_sorted() -> None:
    graph = build(load(VALID / "nordlicht", {}))
    data = json.loads(to_json(graph))
    assert data["name"] == "nordlicht" and data["edge_hosts"] == ["host:gateway"]
    assert [n["id"] for n in data["nodes"]] == sorted(n["id"] for n in data["nodes"])
    assert [Edge(**e) for e in data["edges"]] == list(graph.edges)
    kinds = "runs_on host_parent db_hosted db_used site_served edge_http edge_tcp"
    assert {e["kind"] for e in data["edges"]} == set(kinds.split())


def test_dot_escapes_text_and_balances_braces() -> None:
    text = 'Tom & "Jerry" <servers> \\ more'
    graph = build(inventory({"pad": service(routes=[route("pad.example")])}, description=text))
    dot = to_dot(graph)
    assert dot.startswith('digraph "test" {') and dot.endswith("}\n")
    assert dot.count("{") == dot.count("}")
    assert 'Tom &amp; "Jerry" &lt;servers&gt; \\ more' in dot
    assert "<servers>" not in dot
    assert "site served by service" in dot  # the legend


def test_mermaid_ids_are_safe_unique_and_labels_quoted() -> None:
    services = {
        "a": service(
            routes=[route("a-b.example"), route("a.b.example"), route("d.example", path="/x#y")]
        ),
        "b": service(routes=[route("c.example", tls="passthrough")]),
    }
    text = to_mermaid(build(inventory(services, description='say "hi" & <b>')))
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "test: say \\"hi\\" & <b>"', "---", "flowchart LR"]
    assert "site_a_b_example(" in text and "site_a_b_example_2(" in text
    links = [ln for ln in lines if re.search(r" (-->|---|-\.->)[| ]", ln)]
    for line in links:
        if "legend_" not in line:
            assert re.fullmatch(r'  \w+ (-->|---|-\.->)(\|"[^"]*"\|)? \w+', line), line
    for line in lines[4:]:
        assert line.count('"') % 2 == 0, line
    assert "#35;y" in text  # the path's '#' as an entity
    styled = [int(i) for ln in lines if "linkStyle" in ln for i in ln.split()[1].split(",")]
    assert sorted(styled) == list(range(len(links)))


def test_every_drawn_node_has_a_class_and_shape() -> None:
    graph = build(load(VALID / "graph-artschool", {}))
    text = to_mermaid(graph)
    classed = {
        i for ln in text.splitlines() if ln.startswith("  class ") for i in ln.split()[1].split(",")
    }
    declared = set(re.findall(r"^\s+(\w+)[\[({]", text, re.M))
    assert declared <= classed
    assert "host_macpro{{" in text and 'database_database_git[("' in text


# --------------------------------------------------------------------------- SVG (Graphviz)


@needs_graphviz
@pytest.mark.parametrize("root", [VALID / "nordlicht", *GRAPH_FIXTURES], ids=lambda p: p.name)
def test_svg_parses_and_shows_every_label(root: Path) -> None:
    inv = load(root, {})
    svg = graph_action.svg(inv)
    assert svg.startswith("<svg") and svg == graph_action.svg(inv)
    tree = ET.fromstring(svg)
    texts = {t.text for t in tree.iter("{http://www.w3.org/2000/svg}text")}
    missing = [n.label for n in build(inv).nodes if n.label not in texts]
    assert not missing


def test_svg_without_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    inv = load(VALID / "nordlicht", {})
    with pytest.raises(ToolMissing) as caught:
        graph_action.render(inv, "svg")
    assert str(caught.value) == (
        "`dot` is not installed (on Debian/Ubuntu: apt-get install graphviz)"
    )
    assert graph_action.render(inv, "json").startswith("{")  # the text formats need nothing


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="png"):
        graph_action.render(load(VALID / "nordlicht", {}), "png")


@needs_graphviz
@pytest.mark.parametrize(
    "root",
    [*EXAMPLES, VALID / "nordlicht", *GRAPH_FIXTURES],
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_dot_is_accepted_by_graphviz_without_warnings(root: Path) -> None:
    try:
        inv = load(root, {})
    except InventoryError as exc:
        pytest.fail(f"{root.relative_to(ROOT)} does not load:\n{exc}", pytrace=False)
    result = graph_action.execute.run(["dot", "-Tsvg"], input=to_dot(build(inv)).encode())
    assert result.returncode == 0
    assert result.stderr.decode() == ""


# --------------------------------------------------------------------------- command line


def test_cli_prints_each_text_format() -> None:
    runner = CliRunner()
    fixture = str(VALID / "nordlicht")
    for fmt, start in (("json", "{"), ("dot", "digraph"), ("mermaid", "---")):
        result = runner.invoke(cli, ["graph", fixture, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(start)


@needs_graphviz
def test_cli_writes_svg_atomically_by_default(tmp_path: Path) -> None:
    out = tmp_path / "picture.svg"
    out.write_text("old")
    out.chmod(0o640)
    result = CliRunner().invoke(cli, ["graph", str(VALID / "nordlicht"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<svg")
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["picture.svg"]  # no temporary left


def test_cli_reports_an_inventory_that_does_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", str(tmp_path / "missing"), "--format", "json"]) == 2
    assert "no such directory" in capsys.readouterr().err
