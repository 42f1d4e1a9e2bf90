"""An HAProxy configuration becomes routes and exposed ports of the services it sends to.

Frontends and ``listen`` sections are read for their ``bind`` lines (``ssl`` terminates TLS),
their ``mode``, ACLs on the host (``hdr(host)``, ``hdr_dom(host)``, ``req.hdr(host)``), the
path (``path_beg``) and the TLS server name (``req.ssl_sni``, ``req_ssl_sni``,
``ssl_fc_sni``), ``use_backend ... if|unless ...`` and ``default_backend``:

- an HTTP frontend routes ``domain`` (+ ``path``) with ``tls: terminate`` when it binds with
  ``ssl`` (a unix socket behind an SNI frontend too), with ``tls: none`` when it binds without
  and does not redirect plain HTTP to HTTPS; the same route on both is ``terminate`` with
  ``redirect_https: false``, as plain HTTP was served, not redirected;
- a port other than the edge's ``http_port``/``https_port`` is reported with its bind line;
- a TCP frontend routing by server name routes ``domain`` with ``tls: passthrough``;
- a TCP frontend or ``listen`` section that sends every connection to one backend exposes
  its port.

A backend's ``server`` lines are matched to a service's component: the host's address (or
public address) and a published port, or the component's name and a port inside the container
(HAProxy on the same Compose network); one that is no backup is taken first. The backend's
other servers that match no component are kept as servers outside the inventory in the
component's ``edge`` settings of that port, with ``backup``, the PROXY protocol and
``balance`` (``haproxyservers``); ``accept-proxy`` on a bind asks for the edge's
``accept_proxy`` (the addresses of the load balancers that send it). Whatever matches
nothing, or cannot be said as a route (a catch-all, a rule on the client address...), is
reported with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from allmende.errors import Location, Problem
from allmende.importers.haproxycfg import Line, Section, condition, parse
from allmende.importers.haproxyservers import (
    ARGUMENT,
    SERVER_SAID,
    Target,
    backup,
    component_at,
    place,
)
from allmende.importers.result import Imported, ImportRefused, Note
from allmende.inventory.inventory import Inventory

_HOST = re.compile(r"^(?:req\.)?hdr(?:_dom)?\((?:host|Host|HOST)\)(?:,.*)?$")
_PATH = re.compile(r"^path_beg$|^path$")
_SNI = re.compile(r"^(?:req\.ssl_sni|req_ssl_sni|ssl_fc_sni)$")
_ACME = "/.well-known/acme-challenge"


@dataclass(frozen=True)
class Acl:
    """One ACL test: what it looks at (host, path, sni, or None: anything else) and values."""

    kind: str | None
    values: tuple[str, ...]


@dataclass
class Outcome:
    """What an HAProxy config gives: per service, routes and exposed ports; and notes."""

    routes: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    expose: dict[str, dict[tuple[int, str], dict[str, Any]]] = field(default_factory=dict)
    #: service -> component -> port name -> the port's ``edge`` settings
    edges: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


def _acl(words: tuple[str, ...]) -> Acl:
    """Given the words of an ACL test (criterion, flags, values), return it read."""
    criterion, rest = words[0], list(words[1:])
    values: list[str] = []
    method = ""
    skip = False
    for i, word in enumerate(rest):
        if skip:
            skip = False
            continue
        if word == "-m":
            method = rest[i + 1] if i + 1 < len(rest) else ""
            skip = True
        elif word.startswith("-") and word != "--":
            continue
        else:
            values.append(word)
    if _HOST.match(criterion) and method in ("", "str", "dom"):
        return Acl("host", tuple(v.split(":")[0].lower() for v in values))
    if (criterion == "path_beg" or (criterion == "path" and method == "beg")) and values:
        return Acl("path", tuple(values))
    if _SNI.match(criterion) and method in ("", "str"):
        return Acl("sni", tuple(v.lower() for v in values))
    return Acl(None, tuple(values))


def _conditions(words: tuple[str, ...], acls: dict[str, list[Acl]]) -> list[list[Acl]] | None:
    """Given the words after ``if``, return the alternatives (OR) of tests (AND), or None if
    any is negated or unknown."""
    alternatives: list[list[Acl]] = []
    for terms in condition(words):
        alternatives.append([])
        for term in terms:
            if isinstance(term, tuple):
                alternatives[-1].append(_acl(term))
            elif term.startswith("!") or term == "unless":
                return None
            elif term in acls:
                kinds = {a.kind for a in acls[term]}
                if len(kinds) != 1:
                    return None
                values = tuple(v for a in acls[term] for v in a.values)
                alternatives[-1].append(Acl(acls[term][0].kind, values))
            elif term != "and":
                return None
    if any(a.kind is None for alt in alternatives for a in alt):
        return None
    return alternatives


def _binds(section: Section) -> list[tuple[int, bool, Line]]:
    """Return (port, ssl, line) for each TCP port the section binds."""
    found = []
    for line in section.lines:
        if line.words[0] != "bind" or len(line.words) < 2:
            continue
        for address in line.words[1].split(","):
            match = re.search(r":(\d+)(?:-\d+)?$", address)
            if match and not address.startswith(("/", "unix@", "abns@", "fd@", "sockpair@")):
                found.append((int(match.group(1)), "ssl" in line.words[2:], line))
    return found


def _tls(section: Section, mode: str) -> list[str]:
    """Return what the section's routes do with TLS: ``passthrough`` in TCP mode; in HTTP
    mode ``terminate`` for ``ssl`` binds (a unix socket too) and ``none`` for plain ones that
    are not all redirected to HTTPS."""
    if mode == "tcp":
        return ["passthrough"]
    binds = [ln.words[2:] for ln in section.lines if ln.words[0] == "bind" and len(ln.words) > 1]
    modes = ["terminate"] if any("ssl" in words for words in binds) else []
    redirected = any(_redirects_plain(ln.words) for ln in section.lines)
    if (any("ssl" not in words for words in binds) or not modes) and not redirected:
        modes.append("none")
    return modes


def _redirects_plain(words: tuple[str, ...]) -> bool:
    """Whether a line redirects every plain HTTP request to HTTPS (but ACME challenges)."""
    if words[:3] == ("redirect", "scheme", "https"):
        rest = words[3:]
    elif words[:4] == ("http-request", "redirect", "scheme", "https"):
        rest = words[4:]
    else:
        return False
    ignored = {"if", "unless", "{", "}", "!{", "code", "-i", "path_beg"}
    condition = [w for w in rest if w not in ignored and not w.isdigit()]
    return all(w.lstrip("!") == "ssl_fc" or w.startswith(_ACME) for w in condition)


class _Mapper:
    """Walk the sections of one config, collecting routes, exposed ports and notes."""

    def __init__(self, inventory: Inventory, shown: str, sections: list[Section]) -> None:
        self.inventory = inventory
        self.shown = shown
        self.sections = sections
        self.backends = {s.name: s for s in sections if s.kind in ("backend", "listen")}
        self.out = Outcome()
        self.targets: dict[str, Target | None] = {}
        self.moved: set[int] = set()
        #: Server lines the inventory now says (the component, servers outside it).
        self.said: set[int] = set()

    def note(self, line: int, message: str, kind: str = "warning") -> None:
        self.out.notes.append(Note(Location(self.shown, line, 1), kind, message))  # type: ignore[arg-type]

    def inherited(self, section: Section, keyword: str) -> Line | None:
        """Return the section's directive ``keyword``: its own, else that of the nearest
        defaults above it that has one."""
        line = section.first(keyword)
        if line is not None and len(line.words) > 1:
            return line
        defaults = [s for s in self.sections if s.kind == "defaults" and s.line < section.line]
        for candidate in reversed(defaults):
            line = candidate.first(keyword)
            if line is not None and len(line.words) > 1:
                return line
        return None

    def mode(self, section: Section) -> str:
        """Return the section's mode: its own, else that of the defaults above it, else tcp."""
        line = self.inherited(section, "mode")
        return line.words[1] if line is not None else "tcp"

    def target(self, backend: str, line: int) -> Target | None:
        """Return the component a backend sends to, reporting once when there is none; the
        backend's other servers become that port's ``edge`` settings (``haproxyservers``)."""
        if backend in self.targets:
            return self.targets[backend]
        section = self.backends.get(backend)
        found: Target | None = None
        if section is None:
            self.note(line, f"backend {backend} is not defined in this file")
        else:
            servers = [ln for ln in section.lines if ln.words[0] == "server" and len(ln.words) > 2]
            if not servers:
                self.note(section.line, f"backend {backend} has no server lines")
            matched = {ln.number: self.match(backend, ln) for ln in servers}
            # a server that is no backup is the component, where one matches
            for server in sorted(servers, key=backup):
                found = matched[server.number][0]
                if found is not None:
                    self.edge(section, found, server, servers, matched)
                    break
            else:
                for server in servers:
                    self.note(server.number, matched[server.number][1])
        self.targets[backend] = found
        return found

    def edge(
        self,
        section: Section,
        found: Target,
        own: Line,
        servers: list[Line],
        matched: dict[int, tuple[Target | None, str]],
    ) -> None:
        """Keep the backend's servers beside ``own`` as the edge settings of ``found``."""
        others = [
            (ln, None if matched[ln.number][0] is not None else matched[ln.number][1])
            for ln in servers
            if ln is not own
        ]
        placed = place(section, own, others, self.inherited(section, "balance"))
        for number, message in placed.notes:
            self.note(number, message)
        self.said |= placed.said
        for server in (ln for ln in servers if ln.number in placed.said):
            if "ssl" in server.words[3:]:
                self.note(
                    server.number,
                    f"backend {section.name} speaks TLS to {server.words[2]}; the edge sends "
                    "plain HTTP to a route's port: check that the service answers it",
                )
        ports = self.out.edges.setdefault(found.service, {}).setdefault(found.component, {})
        if found.port in ports and ports[found.port] != placed.settings:
            self.note(
                section.line,
                f"backend {section.name} sends to {found.service}/{found.component}."
                f"{found.port} with other servers than another backend does; the first is kept",
            )
        elif placed.settings:
            ports.setdefault(found.port, placed.settings)

    def match(self, backend: str, server: Line) -> tuple[Target | None, str]:
        """Return the one component a server line reaches, or None and why not."""
        return component_at(self.inventory, self.edges(), backend, server)

    def ports(self, section: Section, modes: list[str]) -> None:
        """Note each port a section routes on that is not the edge's port for its routes."""
        edge = self.inventory.collective.edge
        http, https = (edge.http_port, edge.https_port) if edge is not None else (80, 443)
        for port, ssl, line in _binds(section):
            if ssl or "passthrough" in modes:
                expected, key = https, "https_port"
            elif "none" in modes:
                expected, key = http, "http_port"
            else:
                continue  # redirected to HTTPS: routes nothing
            if port != expected and line.number not in self.moved:
                self.moved.add(line.number)
                self.note(
                    line.number,
                    f"{section.kind} {section.name} routes on port {port}; the edge routes on "
                    f"its `{key}` ({expected}): set `edge.{key}` to keep the port",
                )

    def edges(self) -> tuple[str, ...]:
        edge = self.inventory.collective.edge
        return edge.hosts if edge is not None else ()

    def route(self, target: Target, domain: str, path: str, tls: str) -> None:
        """Add a route to the target's service; the same route by TLS and plain HTTP terminates."""
        routes = self.out.routes.setdefault(target.service, {})
        key = (domain, path)
        current = routes.get(key)
        if current is not None:
            if {current.get("tls", "terminate"), tls} == {"none", "terminate"}:
                current.pop("tls", None)  # both: terminated, and plain HTTP served as well
                current["redirect_https"] = False
            return
        route: dict[str, Any] = {"domain": domain}
        if path != "/":
            route["path"] = path
        route["to"] = f"{target.component}.{target.port}"
        if tls != "terminate":
            route["tls"] = tls
        routes[key] = route

    def expose(self, target: Target, port: int) -> None:
        exposed = self.out.expose.setdefault(target.service, {})
        exposed.setdefault(
            (port, "tcp"),
            {"port": port, "protocol": "tcp", "to": f"{target.component}.{target.port}"},
        )

    def frontend(self, section: Section) -> None:
        """Read a frontend or listen section: its rules become routes, its catch-all an expose."""
        mode = self.mode(section)
        binds = _binds(section)
        tls = _tls(section, mode)
        acls: dict[str, list[Acl]] = {}
        sni_rules = False
        for line in section.lines:
            words = line.words
            if words[0] == "acl" and len(words) > 2:
                acls.setdefault(words[1], []).append(_acl(words[2:]))
            elif words[0] == "use_backend" and len(words) > 1:
                sni_rules |= self.rule(section, line, acls, tls)
        default = section.first("default_backend")
        if default is not None and len(default.words) > 1:
            self.catch_all(section, default, mode, sni_rules, binds)
        elif section.kind == "listen" and section.first("server") is not None:
            self.catch_all(
                section,
                Line(section.line, ("default_backend", section.name)),
                mode,
                sni_rules,
                binds,
            )

    def rule(
        self, section: Section, line: Line, acls: dict[str, list[Acl]], modes: list[str]
    ) -> bool:
        backend = line.words[1]
        rest = line.words[2:]
        if not rest or rest[0] not in ("if", "unless"):
            self.note(
                line.number, f"use_backend {backend} without a condition: a catch-all, not a route"
            )
            return False
        alternatives = _conditions(rest[1:] if rest[0] == "if" else rest, acls)
        if alternatives is None:
            self.note(
                line.number,
                f"use_backend {backend}: the condition is not on host, path or server name",
            )
            return False
        target = self.target(backend, line.number)
        sni = False
        for tests in alternatives:
            hosts = [v for a in tests if a.kind in ("host", "sni") for v in a.values]
            paths = [v for a in tests if a.kind == "path" for v in a.values] or ["/"]
            sni = sni or any(a.kind == "sni" for a in tests)
            if not hosts:
                if all(p.startswith(_ACME) for p in paths):
                    self.note(line.number, "ACME challenges: the edge answers them itself", "info")
                else:
                    self.note(
                        line.number, f"use_backend {backend}: a path without a domain is no route"
                    )
                continue
            if target is not None:
                self.ports(section, modes)
                for tls, host in ((t, h) for t in modes for h in hosts):
                    for path in paths if tls != "passthrough" else ["/"]:
                        self.route(target, host, path, tls)
        return sni

    def catch_all(
        self,
        section: Section,
        line: Line,
        mode: str,
        sni: bool,
        binds: list[tuple[int, bool, Line]],
    ) -> None:
        backend = line.words[1]
        if mode != "tcp" or sni:
            what = "server name" if sni else "domain"
            self.note(
                line.number,
                f"default_backend {backend}: a catch-all for any {what}, which routes cannot say",
            )
            return
        if not binds:
            return
        target = self.target(backend, line.number)
        if target is not None:
            for port, _, _ in binds:
                self.expose(target, port)


#: Directives the edge's own configuration covers, or whose meaning routes and exposed ports
#: already hold; every other directive of a proxy section is listed as unsaid.
SAID = frozenset({"bind", "mode", "acl", "use_backend", "default_backend", "timeout", "log"})
SAID |= {"option", "balance", "maxconn", "tcp-request"}  # the edge inspects SNI itself
#: The edge sends plain HTTP to HTTPS for every route that terminates TLS.
_TO_HTTPS = ("http-request", "redirect", "scheme", "https")


def unsaid(mapper: _Mapper) -> None:
    """Note, by line, every directive of the config that the inventory does not say: servers
    it does not hold, server options (``maxconn``, ``cookie``...), headers set, error files,
    statistics pages..., unless a note already names the line."""
    noted = {note.location.line for note in mapper.out.notes}
    edge = mapper.inventory.collective.edge
    accepting = edge is not None and bool(edge.accept_proxy)
    for section in mapper.sections:
        if section.kind not in ("defaults", "frontend", "backend", "listen"):
            continue
        for line in section.lines:
            if line.number in noted:
                continue
            words = line.words
            if words[0] == "server" and line.number in mapper.said:
                extra = [
                    w
                    for previous, w in pairwise(words[2:])
                    if w not in SERVER_SAID and previous not in ARGUMENT
                ]
                if extra:
                    shown = " ".join(extra)
                    mapper.note(line.number, f"the inventory cannot say the server's {shown}")
            elif words[0] == "server":
                mapper.note(
                    line.number,
                    f"{section.kind} {section.name}: server {' '.join(words[1:3])} is not held: "
                    "no route or exposed port sends to its backend",
                )
            elif words[0] == "bind" and "accept-proxy" in words[2:] and not accepting:
                mapper.note(
                    line.number,
                    "the edge reads the PROXY protocol here: name the load balancers that send "
                    "it in allmende.yaml, `edge: {accept_proxy: [<address>]}`",
                )
            elif section.kind == "defaults" and words[0] != "errorfile":
                continue
            elif words[0] not in SAID and words[:4] != _TO_HTTPS:
                mapper.note(line.number, f"the inventory cannot say `{' '.join(words)}`")


def import_config(
    config: Path, shown: str, inventory: Inventory
) -> tuple[list[Imported], list[Note]]:
    """Given an HAProxy config and the inventory, return the services it adds routes and
    exposed ports to (their new keys only) and notes on everything it could not place.

    Raise ImportRefused if the file cannot be read.
    """
    try:
        text = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ImportRefused([Problem(Location(shown), "", f"cannot read: {reason}")]) from None
    sections, problems = parse(text)
    mapper = _Mapper(inventory, shown, sections)
    for number, message in problems:
        mapper.note(number, message)
    for section in sections:
        if section.kind in ("frontend", "listen"):
            mapper.frontend(section)
    unsaid(mapper)
    out = mapper.out
    services = []
    for name in sorted(set(out.routes) | set(out.expose)):
        data: dict[str, Any] = {}
        edges = {c: {"edge": ports} for c, ports in out.edges.get(name, {}).items() if ports}
        if edges:
            data["components"] = edges
        if out.routes.get(name):
            data["routes"] = list(out.routes[name].values())
        if out.expose.get(name):
            data["expose"] = list(out.expose[name].values())
        services.append(Imported(name=name, source=shown, header="", data=data))
    return services, sorted(out.notes)
