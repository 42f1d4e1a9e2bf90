"""The graph of a collective: hosts, services, databases and sites, and how they connect.

Pure: ``build`` turns an Inventory into a ``Graph`` of frozen nodes and edges; ``to_json``
here, ``graph_dot.to_dot`` and ``graph_mermaid.to_mermaid`` write it as text. Nothing here
reads files or runs programs; ``allmende.actions.graph`` runs Graphviz for SVG.

The picture follows the art school's hand-drawn graph: services (their containers) orange,
databases yellow, sites red; yellow edges "database hosted by", green "database used by",
red "site served by", blue HTTP backends of the edge proxy, pink TCP backends (TLS
passthrough and exposed ports). Hosts are boxes around what runs on them, a vm or container
nested in its parent. A service that uses every database of a provider (pgadmin, say) gets one
dashed edge to the provider instead of one per database. Output is sorted and deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from allmende.inventory.derive import databases, edge_hosts, edges_of
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Host, Route, Service

NodeKind = Literal["host", "service", "database", "site"]
EdgeKind = Literal[
    "runs_on", "host_parent", "db_hosted", "db_used", "site_served", "edge_http", "edge_tcp"
]

#: Collapse "used by" edges into one when a service uses all of at least this many databases.
COLLAPSE_AT = 3
#: Draw a proxy's HTTP backends one line per host box when it has more than this many.
BACKENDS_AT = 16
#: Above this many services one picture of the whole is unreadable and slow to lay out.
DRAWN_AT_MOST = 300
FONT = "Helvetica,Arial,sans-serif"
#: How each kind of node is drawn: fill, border, DOT shape and style, Mermaid brackets, and
#: the legend's words. "edge" is an edge host, drawn as its proxy.
KINDS = {
    "host": (
        "#f4f6f7",
        "#7f8c8d",
        "box",
        "rounded,filled,dashed",
        '["',
        "host (its vms, containers inside)",
    ),
    "edge": ("#d6e4f0", "#2c3e50", "hexagon", "filled", '{{"', "edge proxy on the host"),
    "service": ("#fdd9b5", "#d35400", "box", "rounded,filled", '["', "service"),
    "database": ("#fff3b0", "#b7950b", "cylinder", "filled", '[("', "database"),
    "site": ("#fadbd8", "#c0392b", "box", "rounded,filled", '(["', "site: domain and path"),
}
#: style -> (colour, DOT attributes, Mermaid arrow, legend words) of drawn lines, in legend
#: order; "collapsed" stands for all the db_used edges of a service that uses every
#: database of a provider.
LINES = {
    "site_served": ("#c0392b", "", "-->", "site served by service"),
    "edge_http": ("#2e86de", "", "-->", "HTTP backend (TLS ends at the edge)"),
    "edge_tcp": ("#e84393", "", "-->", "TCP backend (TLS passthrough, port)"),
    "db_used": ("#27ae60", "penwidth=1.2", "-->", "service uses database"),
    "collapsed": ("#27ae60", "style=dashed, penwidth=1.2", "-.->", "uses every database of"),
    "db_hosted": ("#d4ac0d", "arrowhead=none, penwidth=2.4", "---", "service hosts database"),
}
#: How a site shows its TLS when it is not the usual (terminated at the edge).
TLS_TEXT = {"passthrough": "TLS at the service", "none": "no TLS"}


@dataclass(frozen=True, order=True)
class Node:
    """A host, service, database or site. ``cluster`` is the id of the host it is drawn in
    (for a host: its parent's), or None."""

    id: str
    kind: NodeKind
    label: str
    detail: str = ""
    cluster: str | None = None


@dataclass(frozen=True, order=True)
class Edge:
    """``source`` <kind> ``target``: e.g. a database (source) ``db_used`` by a service."""

    source: str
    target: str
    kind: EdgeKind
    label: str = ""


@dataclass(frozen=True)
class Graph:
    """The whole picture: nodes and edges sorted by id; ``edge_hosts`` are the proxies."""

    name: str
    description: str
    proxy: str
    edge_hosts: tuple[str, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def _image(image: str) -> str:
    """Return an image without registry and owner: ``ghcr.io/a/wiki:2.5`` -> ``wiki:2.5``."""
    name, _, digest = image.rpartition("/")[2].partition("@")
    return f"{name}@{digest.partition(':')[2][:12]}" if digest else name


def _software(service: Service) -> str:
    """Return what a service runs, shortly: its images, or system images and init services."""
    parts = []
    for component in service.components.values():
        if component.system is not None:
            names = component.system.services
            started = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
            parts.append(
                f"{component.system.image} ({started})" if started else component.system.image
            )
        elif component.image is not None:
            parts.append(_image(component.image))
    shown = list(dict.fromkeys(parts))
    return ", ".join(shown[:2]) + (f" +{len(shown) - 2}" if len(shown) > 2 else "")


def _host_detail(host: Host) -> str:
    return " · ".join(p for p in (host.kind, host.engine, host.provider or host.location) if p)


def _site(route: Route) -> tuple[str, str]:
    """Return (label, detail) of the site a route serves: domain and path, and its TLS."""
    label = route.domain + ("" if route.path == "/" else route.path)
    parts = [TLS_TEXT[route.tls]] if route.tls != "terminate" else []
    return label, " · ".join([*parts, f"cached {route.cache}"] if route.cache else parts)


def build(inventory: Inventory) -> Graph:
    """Given a loaded Inventory, return its Graph.

    References that do not resolve (possible only for inventories built by hand) are left
    out rather than drawn as dangling edges.
    """
    nodes: dict[str, Node] = {}
    edges: set[Edge] = set()
    hosts = inventory.hosts
    for name, host in hosts.items():
        parent = f"host:{host.parent}" if host.parent in hosts else None
        nodes[f"host:{name}"] = Node(f"host:{name}", "host", name, _host_detail(host), parent)
        if parent:
            edges.add(Edge(f"host:{name}", parent, "host_parent"))
    for name, service in inventory.services.items():
        on = f"host:{service.host}" if service.host in hosts else None
        nodes[f"service:{name}"] = Node(f"service:{name}", "service", name, _software(service), on)
        if on:
            edges.add(Edge(f"service:{name}", on, "runs_on"))
    for ref, db in databases(inventory).items():
        provider = nodes[f"service:{db.provider}"]
        nodes[f"database:{ref}"] = Node(
            f"database:{ref}", "database", db.name, db.engine, provider.cluster
        )
        edges.add(Edge(f"database:{ref}", provider.id, "db_hosted"))
        edges.update(
            Edge(f"database:{ref}", f"service:{user}", "db_used")
            for user in db.users
            if user in inventory.services
        )
    proxies_all = tuple(f"host:{h}" for h in edge_hosts(inventory) if h in hosts)
    for name, service in sorted(inventory.services.items()):
        target = f"service:{name}"
        proxies = tuple(f"host:{h}" for h in edges_of(inventory, name) if h in hosts)
        for route in service.routes:
            label, detail = _site(route)
            nodes.setdefault(f"site:{label}", Node(f"site:{label}", "site", label, detail))
            edges.add(Edge(f"site:{label}", target, "site_served"))
            for proxy in proxies:
                if route.tls == "passthrough":
                    edges.add(Edge(proxy, target, "edge_tcp", "passthrough"))
                else:
                    edges.add(Edge(proxy, target, "edge_http"))
        for expose in service.expose:
            label = f"{expose.protocol} {expose.port}"
            edges.update(Edge(proxy, target, "edge_tcp", label) for proxy in proxies)
    edge = inventory.collective.edge
    return Graph(
        name=inventory.collective.name,
        description=inventory.collective.description,
        proxy=edge.proxy if edge is not None else "",
        edge_hosts=tuple(sorted(proxies_all)),
        nodes=tuple(sorted(nodes.values(), key=lambda n: n.id)),
        edges=tuple(sorted(edges)),
    )


def to_json(graph: Graph) -> str:
    """Return the graph as indented JSON: name, description, nodes and edges, sorted."""
    data = asdict(graph)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- what is drawn


@dataclass(frozen=True, order=True)
class DrawnLine:
    """One drawn edge; ``box`` (a host id) when it stands for all backends in that host."""

    source: str
    target: str
    style: str
    label: str = ""
    box: str = ""


@dataclass(frozen=True)
class Drawing:
    """What a picture shows: its lines, the nodes inside each host box (None: outside), the
    hosts drawn as nodes (proxies, hosts with nothing in them), the legend's kinds and styles."""

    lines: tuple[DrawnLine, ...]
    members: dict[str | None, list[Node]]
    shown: frozenset[str]
    kinds: tuple[str, ...]
    styles: tuple[str, ...]


def _joined(labels: list[str]) -> str:
    """Join the labels of parallel edges: ``passthrough``, ``tcp 25``, ``tcp 993`` ->
    ``passthrough · tcp 25, 993``."""
    ports: dict[str, list[int]] = {}
    others: list[str] = []
    for label in sorted(labels):
        head, _, port = label.partition(" ")
        if port.isdigit():
            ports.setdefault(head, []).append(int(port))
        elif label:
            others.append(label)
    joined = (f"{h} {', '.join(str(p) for p in sorted(n))}" for h, n in sorted(ports.items()))
    return " · ".join([*others, *joined])


def drawing(graph: Graph) -> Drawing:
    """Decide what the DOT and Mermaid pictures show, the same way for both.

    Hosts are boxes (containment shows runs_on and host_parent). Database edges are drawn
    service -> database, so databases sit right of the services; a service that uses all of
    a provider's databases (at least COLLAPSE_AT) gets one dashed line to the provider.
    Parallel edges become one line with joined labels; a proxy with more than BACKENDS_AT
    HTTP backends gets one line per host box instead, labelled with the count.
    """
    hosted: dict[str, list[str]] = {}
    used: dict[str, set[str]] = {}
    for e in graph.edges:
        if e.kind == "db_hosted":
            hosted.setdefault(e.target, []).append(e.source)
        elif e.kind == "db_used":
            used.setdefault(e.target, set()).add(e.source)
    provider_of = {db: provider for provider, dbs in hosted.items() for db in dbs}
    collapsed = {
        (user, provider)
        for provider, dbs in hosted.items()
        for user, uses in used.items()
        if len(dbs) >= COLLAPSE_AT and set(dbs) <= uses and user != provider
    }
    labels = {(u, p, "collapsed"): [f"all {len(hosted[p])} databases"] for u, p in collapsed}
    for e in graph.edges:
        if e.kind == "db_hosted" or (
            e.kind == "db_used" and (e.target, provider_of[e.source]) not in collapsed
        ):
            labels.setdefault((e.target, e.source, e.kind), []).append(e.label)
        elif e.kind not in ("runs_on", "host_parent", "db_used"):
            labels.setdefault((e.source, e.target, e.kind), []).append(e.label)
    lines = {DrawnLine(*key, _joined(texts)) for key, texts in labels.items()}
    box_of = {n.id: n.cluster for n in graph.nodes}
    for proxy in graph.edge_hosts:
        http = sorted(x for x in lines if x.source == proxy and x.style == "edge_http")
        boxes: dict[str | None, list[DrawnLine]] = {}
        for line in http if len(http) > BACKENDS_AT else []:
            boxes.setdefault(box_of[line.target], []).append(line)
        for box, group in boxes.items():
            if box and len(group) > 1 and box != proxy:
                lines.difference_update(group)
                text = f"{len(group)} HTTP backends"
                lines.add(DrawnLine(proxy, group[0].target, "edge_http", text, box))
    members: dict[str | None, list[Node]] = {}
    for node in graph.nodes:
        members.setdefault(node.cluster, []).append(node)
    hosts = {n.id for n in graph.nodes if n.kind == "host"}
    shown = frozenset(h for h in hosts if h in graph.edge_hosts or h not in members)
    kinds = {kind_of(n, graph) for n in graph.nodes if n.kind != "host" or n.id in shown}
    styles = {x.style for x in lines}
    return Drawing(
        lines=tuple(sorted(lines)),
        members=members,
        shown=shown,
        kinds=tuple(k for k in KINDS if k in kinds or (k == "host" and hosts)),
        styles=tuple(k for k in LINES if k in styles),
    )


def walk(plan: Drawing, box: Node | None = None, depth: int = 0) -> Iterator[tuple[str, int, Node]]:
    """Yield the drawing order as ("open", depth, box), ("node", depth, node) and
    ("close", depth, box): nodes outside any box (sites), then each host's box with its
    nodes and the boxes of its vms and containers."""
    if box is not None:
        yield "open", depth, box
        if box.id in plan.shown:
            yield "node", depth + 1, box
    for node in plan.members.get(box.id if box else None, []):
        if node.kind == "host":
            yield from walk(plan, node, depth + 1)
        else:
            yield "node", depth + 1, node
    if box is not None:
        yield "close", depth, box


def kind_of(node: Node, graph: Graph) -> str:
    return "edge" if node.id in graph.edge_hosts else node.kind


def text_of(node: Node, graph: Graph) -> tuple[str, str]:
    """Return (label, detail) as drawn: an edge host is drawn as its proxy."""
    if node.id in graph.edge_hosts:
        return graph.proxy or "proxy", "edge"
    if node.kind == "host":
        return node.label, "no services"
    return node.label, node.detail
