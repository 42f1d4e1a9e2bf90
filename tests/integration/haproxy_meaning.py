"""What an HAProxy configuration routes: for each way in (a TCP port it binds, the Host or TLS
server name, the path prefix), where it goes (the set of server addresses) and what happens to
TLS on the way (``terminate``, ``passthrough``, ``none``), or that it is redirected to HTTPS.

Read independently of the importer, to compare an imported config with what allmende renders
back. Only routing is read: ``bind``, ``mode`` (own, from ``defaults``, or from the named
``defaults`` after ``from``), ``acl`` on ``hdr(host)``/``req.ssl_sni``/``path``/``path_beg``,
``use_backend``/``default_backend`` (first rule that matches wins), ``redirect scheme https``,
and the ``server`` lines of backends with what changes where traffic goes or what it carries:
``backup`` (no traffic while the others are up), the PROXY protocol (``send-proxy``,
``send-proxy-v2``), ``weight`` and, for several servers, ``balance`` (``disabled`` servers are
left out). A backend's server on a unix socket another frontend binds is followed into that frontend
(the edge's TLS termination behind its SNI frontend). A rule whose condition tests anything
else is kept as a way in of its own, named by its line, so that it can only match the same
rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from allmende.importers.haproxycfg import condition, split

_HOST = re.compile(r"^(?:req\.)?hdr(?:_dom)?\(host\)(?:,field\(1,:\))?(?:,lower)?$", re.I)
_SNI = re.compile(r"^(?:req\.ssl_sni|req_ssl_sni|ssl_fc_sni)(?:,lower)?$")
ACME = "/.well-known/acme-challenge"
REDIRECT = "redirect to https"


@dataclass(frozen=True)
class Way:
    """A way in: the port bound, the Host (or server name), and the path prefix."""

    port: int
    name: str  # a domain, "*" for any, or "?<line>" for a condition on anything else
    path: str = "/"

    def __str__(self) -> str:
        return f":{self.port} {self.name}{'' if self.path == '/' else self.path}"


@dataclass(frozen=True)
class Destination:
    """Where a way in goes: the servers and the TLS mode, or a redirect."""

    servers: frozenset[str]
    tls: str
    balance: str = ""

    def __str__(self) -> str:
        balance = f" ({self.balance})" if self.balance else ""
        return f"{self.tls} -> {', '.join(sorted(self.servers)) or '(no server)'}{balance}"


@dataclass
class Section:
    kind: str
    name: str
    line: int
    parent: str | None
    lines: list[tuple[int, list[str]]] = field(default_factory=list)

    def words(self, keyword: str) -> list[tuple[int, list[str]]]:
        return [(n, w) for n, w in self.lines if w[0] == keyword]


@dataclass
class Routing:
    """The meaning of one config: way in -> destination, and the lines each one rests on:
    the rule and the binds that take it (``lines``), the servers it reaches (``servers``)."""

    ways: dict[Way, Destination] = field(default_factory=dict)
    lines: dict[Way, set[int]] = field(default_factory=dict)
    servers: dict[Way, set[int]] = field(default_factory=dict)

    def resolve(self, way: Way) -> Way | None:
        """The way that takes a request: the same, else the name's root, else the catch-all."""
        for candidate in (way, Way(way.port, way.name), Way(way.port, "*")):
            if candidate in self.ways:
                return candidate
        return None

    def add(
        self, way: Way, destination: Destination, lines: set[int], servers: frozenset[int]
    ) -> None:
        if way not in self.ways:  # the first rule that matches wins
            self.ways[way] = destination
            self.lines[way] = lines
            self.servers[way] = set(servers)


def sections(text: str) -> list[Section]:
    out: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "{%" in raw:  # templating never rendered: as the importer reads it
            continue
        words = split(re.sub(r"\{\{.*?\}\}", "template", raw))
        if not words:
            continue
        if words[0] in ("global", "defaults", "frontend", "backend", "listen", "cache"):
            rest = words[1:]
            name = rest[0] if rest and rest[0] != "from" else ""
            parent = rest[rest.index("from") + 1] if "from" in rest[:-1] else None
            if words[0] == "defaults" and name and name == parent:
                parent = None
            out.append(Section(words[0], name, number, parent))
        elif out:
            out[-1].lines.append((number, words))
    return out


def _balance(section: Section, all_sections: list[Section]) -> str:
    """The balancing algorithm of a backend: its own, else its defaults', else roundrobin."""
    own = section.words("balance")
    if own and len(own[0][1]) > 1:
        return " ".join(own[0][1][1:])
    defaults = [s for s in all_sections if s.kind == "defaults"]
    if section.parent is not None:
        named = [s for s in defaults if s.name == section.parent]
        return _balance(named[0], all_sections) if named else "roundrobin"
    for candidate in reversed([s for s in defaults if s.line < section.line]):
        found = candidate.words("balance")
        if found and len(found[0][1]) > 1:
            return " ".join(found[0][1][1:])
    return "roundrobin"


def _server(words: list[str]) -> str:
    """A server as it takes traffic: its address, ``backup``, the PROXY protocol, and its
    weight where it is not the default 1."""
    kept = [w for w in words[3:] if w in ("backup", "send-proxy", "send-proxy-v2")]
    options = words[3:]
    weight = options[options.index("weight") + 1] if "weight" in options[:-1] else "1"
    kept += [f"weight {weight}"] if weight != "1" else []
    return " ".join([_address(words[2]), *sorted(kept)])


def _mode(section: Section, all_sections: list[Section]) -> str:
    own = section.words("mode")
    if own:
        return own[0][1][1]
    defaults = [s for s in all_sections if s.kind == "defaults"]
    if section.parent is not None:
        named = [s for s in defaults if s.name == section.parent]
        return _mode(named[0], all_sections) if named else "tcp"
    before = [s for s in defaults if s.line < section.line and s is not section]
    for candidate in reversed(before):
        if candidate.words("mode"):
            return candidate.words("mode")[0][1][1]
    return "tcp"


def _test(words: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """Return (host|sni|path, values) of one ACL test, or None if it tests anything else."""
    criterion, values, method, i = words[0], [], "", 1
    while i < len(words):
        if words[i] == "-m" and i + 1 < len(words):
            method, i = words[i + 1], i + 2
            continue
        if words[i].startswith("-") and words[i] != "--":
            i += 1
            continue
        values.append(words[i])
        i += 1
    if _HOST.match(criterion) and method in ("", "str", "dom"):
        return "host", tuple(v.split(":")[0].lower() for v in values)
    if _SNI.match(criterion) and method in ("", "str"):
        return "sni", tuple(v.lower() for v in values)
    if criterion == "path_beg" or (criterion == "path" and method == "beg"):
        return "path", tuple(v.rstrip("/") or "/" for v in values)
    if criterion == "path" and method in ("", "str"):  # ``path /api`` beside ``path_beg /api/``
        return "exact", tuple(v.rstrip("/") or "/" for v in values)
    return None


def _alternatives(
    words: list[str], acls: dict[str, list[tuple[str, tuple[str, ...]] | None]]
) -> list[list[tuple[str, tuple[str, ...]]]] | None:
    """The OR of ANDs of tests after ``if``; None if any is negated or on something else."""
    alternatives: list[list[tuple[str, tuple[str, ...]]]] = []
    for terms in condition(words):
        alternatives.append([])
        for term in terms:
            if isinstance(term, tuple):
                test = _test(list(term))
                if test is None:
                    return None
                alternatives[-1].append(test)
            elif term in acls:
                tests = acls[term]
                if any(t is None for t in tests):
                    return None
                kinds = {t[0] for t in tests if t is not None}
                kinds = {"path"} if kinds == {"path", "exact"} else kinds
                if len(kinds) != 1:
                    return None
                values = {v for t in tests if t is not None for v in t[1]}
                alternatives[-1].append((kinds.pop(), tuple(sorted(values))))
            elif term != "and":
                return None
    return alternatives


def _keys(
    alternatives: list[list[tuple[str, tuple[str, ...]]]], line: int
) -> list[tuple[str, str]]:
    out = []
    for tests in alternatives:
        names = [v for kind, values in tests if kind in ("host", "sni") for v in values]
        paths = [v for kind, values in tests if kind in ("path", "exact") for v in values]
        for name in names or ["*"]:
            for path in paths or ["/"]:
                out.append((name, path))
    return out or [(f"?{line}", "/")]


def read(text: str) -> Routing:
    """Return what a config routes."""
    all_sections = sections(text)
    backends = {s.name: s for s in all_sections if s.kind in ("backend", "listen")}
    sockets = {}
    for section in all_sections:
        for _, words in section.words("bind"):
            if len(words) > 1 and words[1].startswith(("unix@", "/")):
                sockets[words[1].rsplit("/", 1)[-1]] = section
    routing = Routing()

    def destination(
        name: str, tls: str, port: int, way_name: str, path: str, lines: set[int]
    ) -> None:
        backend = backends.get(name)
        if backend is None:
            return
        live = [
            (n, w) for n, w in backend.words("server") if len(w) > 2 and "disabled" not in w[3:]
        ]
        servers = [(n, w) for n, w in live if "backup" not in w[3:]]
        server_lines = frozenset(n for n, _ in backend.words("server"))
        socket = [w[2] for _, w in servers if w[2].startswith(("unix@", "/"))]
        inner = sockets.get(socket[0].rsplit("/", 1)[-1]) if socket else None
        if inner is not None:
            frontend(inner, port, way_name if way_name != "*" else None)
            return
        addresses = frozenset(_server(w) for _, w in live)
        if not addresses:
            return  # nothing answers: as if there were no rule
        balance = _balance(backend, all_sections) if len(live) > 1 else ""
        routing.add(
            Way(port, way_name, path), Destination(addresses, tls, balance), lines, server_lines
        )

    def frontend(section: Section, via: int | None = None, only: str | None = None) -> None:
        mode = _mode(section, all_sections)
        binds = [(n, w) for n, w in section.words("bind") if len(w) > 1]
        ports = {p: "ssl" in w[2:] for _, w in binds for p in _ports(w[1])}
        if via is not None:
            ports = {via: any("ssl" in w[2:] for _, w in binds)}

        def tls(port: int) -> str:
            ssl = ports[port]
            return "passthrough" if mode == "tcp" and not ssl else "terminate" if ssl else "none"

        bind_lines = {n for n, _ in binds}
        acls: dict[str, list[tuple[str, tuple[str, ...]] | None]] = {}
        redirects: list[tuple[str, str, bool | None]] = []
        for number, words in section.lines:
            if words[0] == "acl" and len(words) > 2:
                acls.setdefault(words[1], []).append(_test(words[2:]))
            elif _redirect(words) is not None:
                condition, on_ssl = _redirect(words) or ([], None)
                plain = [w for w in _without_ssl_fc(condition) if not _acme(w, acls)]
                alternatives = _alternatives(plain, acls) if plain else [[]]
                for name, path in _keys(alternatives or [], number):
                    redirects.append((name, path, on_ssl))
            elif words[0] == "use_backend" and len(words) > 1:
                rest = words[2:]
                alternatives = None
                if rest and rest[0] == "if":
                    alternatives = _alternatives(rest[1:], acls)
                keys = _keys(alternatives, number) if alternatives is not None else []
                keys = keys if rest else [("*", "/")]
                keys = keys or [(f"?{number}", "/")]
                for name, path in keys:
                    if path.startswith(ACME) or (only is not None and name not in (only, "*")):
                        continue
                    for port in ports:
                        applies = [(n, p) for n, p, on in redirects if on in (None, ports[port])]
                        if any(n in (name, "*") and _under(path, p) for n, p in applies):
                            routing.add(Way(port, name, path), Destination(frozenset(), REDIRECT),
                                        bind_lines | {number}, frozenset())  # fmt: skip
                        else:
                            destination(words[1], tls(port), port, name, path,
                                        bind_lines | {number})  # fmt: skip
        for name, path, on_ssl in redirects:
            for port in (p for p, ssl in ports.items() if on_ssl in (None, ssl)):
                redirect = Destination(frozenset(), REDIRECT)
                routing.add(Way(port, name, path), redirect, bind_lines, frozenset())
        default = section.words("default_backend")
        target = default[0][1][1] if default and len(default[0][1]) > 1 else None
        if target is None and section.kind == "listen" and section.words("server"):
            target = section.name
        if target is not None:
            number = default[0][0] if default else section.line
            for port in ports:
                destination(target, tls(port), port, "*", "/", bind_lines | {number})

    for section in all_sections:
        if section.kind in ("frontend", "listen"):
            frontend(section)
    return routing


def _redirect(words: list[str]) -> tuple[list[str], bool | None] | None:
    """The condition of a redirect to HTTPS (empty: always) and whether it applies to TLS
    connections only (True), plain ones only (False) or both (None); None if it is none."""
    if words[:3] == ["redirect", "scheme", "https"]:
        rest = words[3:]
    elif words[:4] == ["http-request", "redirect", "scheme", "https"]:
        rest = words[4:]
    else:
        return None
    if "if" in rest:
        condition = rest[rest.index("if") + 1 :]
        negated = "!ssl_fc" in condition or "!{" in condition
    elif "unless" in rest:
        condition = rest[rest.index("unless") + 1 :]
        negated = "ssl_fc" in condition
        condition = [] if condition in (["{", "ssl_fc", "}"], ["ssl_fc"]) else ["!"]
    else:
        return [], None
    if not any("ssl_fc" in w for w in condition) and negated is False:
        return condition, None
    return condition, not negated


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _acme(word: str, acls: dict[str, list[tuple[str, tuple[str, ...]] | None]]) -> bool:
    """Whether a word is ``!name`` of an ACL on ACME challenges (which the edge answers)."""
    tests = acls.get(word[1:]) if word.startswith("!") else None
    return bool(tests) and all(
        t is not None and t[0] == "path" and all(v.startswith(ACME) for v in t[1])
        for t in tests or []
    )


def _without_ssl_fc(words: list[str]) -> list[str]:
    """The condition without its tests on ``ssl_fc`` (which ``_redirect`` has read)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in ("{", "!{") and words[i + 1 : i + 3] == ["ssl_fc", "}"]:
            i += 3
            continue
        if words[i] not in ("ssl_fc", "!ssl_fc", "!"):
            out.append(words[i])
        i += 1
    return out


def _ports(address: str) -> list[int]:
    out = []
    for part in address.split(","):
        match = re.search(r":(\d+)(?:-\d+)?$", part)
        if match and not part.startswith(("/", "unix@", "abns@", "fd@", "sockpair@")):
            out.append(int(match.group(1)))
    return out


def _address(address: str) -> str:
    host, _, port = address.rpartition(":")
    host = re.sub(r"^[a-z0-9]+@", "", host).strip("[]").lower()  # ``ipv4@``, ``mptcp@``...
    return f"{host}:{port}" if port.isdigit() else address
