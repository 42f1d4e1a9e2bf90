"""BIND zone files: one ``dns/<zone>.zone`` per managed domain that can make a valid zone.

A zone holds, in this order:

- ``$ORIGIN`` and ``$TTL`` (the zone's ``ttl``); the SOA record, whose primary is the first
  nameserver and whose contact is the zone's ``email`` (``hostmaster.<zone>`` when unset), with
  the timers in ``REFRESH``, ``RETRY``, ``EXPIRE`` and a negative-answer TTL of the zone's ttl,
  at most ``MAX_NEGATIVE_TTL``; then one NS record per nameserver (a name without a final dot is
  taken as absolute all the same).
- The records of ``zones/<zone>.yaml`` as written (a line break in a value becomes a space). A
  TXT value is one text, quoted here and cut into strings of at most 255 bytes (bytes outside
  printable ASCII written as ``\\DDD``); a TXT value that starts with ``"`` is taken as already
  quoted and written as it is.
- Records derived from routes: every route domain whose longest managed domain is this zone gets
  A/AAAA records of the public addresses of the edge hosts that serve it
  (``derive.domain_edges``).
- Records derived from hosts: every host with a public address gets A/AAAA records at its name,
  which is its ``address`` when that is a DNS name inside a managed domain, else
  ``<host>.<first domain in allmende.yaml>``. A name that a route already uses gets no host
  records: the route's edge answers there.
- Delegations: a managed domain inside this zone that is rendered itself gets NS records here,
  with glue addresses for nameservers inside it.

A derived record is left out where the zone file has a record of the same name and type, or a
CNAME at that name (the check ``routes.dns`` reports such clashes). Identical records are
written once.

A zone is not rendered (``skipped`` says why) when it has no nameservers (no zones file, or one
without ``nameservers``), or when a nameserver inside the zone has no A or AAAA record: neither
would load in a name server.

The serial is 1 here, so that rendering stays a pure function. It is a plain counter (not
YYYYMMDDnn): ``serial_for`` picks it from what was rendered before, as serials with the
``content_hash`` of the zone they were given to: the highest known serial while the zone is the
same but for its serial, the one after it (``next_serial``) when anything else changed. The
render action asks both the previous rendering and the state database, so that a serial
survives a render without the zones or into a fresh directory.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from allmende.inventory import derive
from allmende.inventory.domains import managed_zone, relative
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, text

#: SOA timers, in seconds: secondaries check every 4 hours, retry hourly, give up after 2 weeks.
REFRESH, RETRY, EXPIRE = 14400, 3600, 1209600
#: Negative answers are cached for the zone's ttl, but never longer than an hour.
MAX_NEGATIVE_TTL = 3600
#: The serial a freshly rendered zone carries (see ``serial_for``).
INITIAL_SERIAL = 1
#: Longest string inside a TXT record, in bytes (RFC 1035 character-string).
TXT_CHUNK = 255

_ADDRESS_TYPES = ("A", "AAAA")
_SOA = re.compile(rb"^(\S+[ \t]+(?:\d+[ \t]+)?IN[ \t]+SOA[ \t]+\S+[ \t]+\S+[ \t]+)(\d+)", re.M)


@dataclass(frozen=True)
class Entry:
    """One record of a zone: owner relative to the zone (``@`` for the apex), type, data."""

    name: str
    type: str
    value: str
    ttl: int | None = None
    note: str = ""
    sources: tuple[str, ...] = ()


@dataclass
class _Zone:
    """What one zone is made of while it is being put together."""

    name: str
    file: str
    nameservers: tuple[str, ...] = ()
    ttl: int = 3600
    email: str | None = None
    own: list[Entry] = field(default_factory=list)
    routes: list[Entry] = field(default_factory=list)
    hosts: list[Entry] = field(default_factory=list)
    delegations: list[Entry] = field(default_factory=list)

    def sources(self) -> set[str]:
        """Return the inventory files the zone's records come from."""
        every = (*self.own, *self.routes, *self.hosts, *self.delegations)
        return {source for entry in every for source in entry.sources}

    def addresses(self, name: str) -> list[Entry]:
        """Return the A/AAAA records this zone has at ``name`` (relative)."""
        every = (*self.own, *self.routes, *self.hosts)
        return [e for e in every if e.name == name and e.type in _ADDRESS_TYPES]


def absolute(name: str) -> str:
    """Return a domain name with exactly one final dot, lowercased."""
    return name.lower().rstrip(".") + "."


def rname(email: str) -> str:
    """Given a contact such as ``dns.admin@example.org``, return the SOA form
    ``dns\\.admin.example.org.``; a value without ``@`` is taken as that form already."""
    local, at, domain = email.partition("@")
    if not at:
        return absolute(email)
    return local.replace(".", "\\.") + "." + absolute(domain)


def txt_value(value: str) -> str:
    """Given one text, return the TXT record data: quoted strings of at most 255 bytes each.

    A value starting with ``"`` is taken as quoted strings already and returned as it is.
    """
    if value.lstrip().startswith('"'):
        return value.strip()
    data = value.encode("utf-8")
    chunks = [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    return " ".join('"' + "".join(_txt_char(b) for b in chunk) + '"' for chunk in chunks)


def _txt_char(byte: int) -> str:
    if byte in (0x22, 0x5C):
        return "\\" + chr(byte)
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\{byte:03d}"


def _owner(name: str, zone: str) -> str:
    """Return a zone file owner name relative to the zone where it lies inside it."""
    name = name.strip().lower()
    if name.endswith("."):
        bare = name.rstrip(".")
        if bare == zone or bare.endswith("." + zone):
            return relative(bare, zone)
    return name or "@"


def _ip_sort_key(value: str) -> tuple[int, int]:
    address = ipaddress.ip_address(value)
    return address.version, int(address)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def host_name(inventory: Inventory, host: str) -> str | None:
    """Return the DNS name a host's records get (see the module docstring), or None when the
    collective manages no domain."""
    address = (inventory.hosts[host].address or "").lower().rstrip(".")
    if address and not _is_ip(address) and managed_zone(inventory, address) is not None:
        return address
    domains = inventory.collective.domains
    return f"{host}.{domains[0]}" if domains else None


def _address_entries(
    name: str, v4: Iterable[str], v6: Iterable[str], note: str, sources: tuple[str, ...]
) -> list[Entry]:
    found = [("A", a) for a in sorted(set(v4), key=_ip_sort_key)]
    found += [("AAAA", a) for a in sorted(set(v6), key=_ip_sort_key)]
    return [Entry(name, kind, value, note=note, sources=sources) for kind, value in found]


def _blocked(zone: _Zone, entry: Entry) -> bool:
    """Return whether the zone file already speaks for this derived record's name and type."""
    return any(o.name == entry.name and o.type in (entry.type, "CNAME") for o in zone.own)


def _collect(inventory: Inventory) -> dict[str, _Zone]:
    """Return every managed domain with its own, route and host records (no validity yet)."""
    zones = {name: _own(inventory, name) for name in inventory.collective.domains}
    routed = _add_routes(inventory, zones)
    _add_hosts(inventory, zones, routed)
    return zones


def _own(inventory: Inventory, name: str) -> _Zone:
    """Return a managed domain with what its zones file says (nothing when it has none)."""
    model = inventory.zones.get(name)
    if model is None:
        return _Zone(name, f"zones/{name}.yaml")
    file = inventory.file("zone", name)
    zone = _Zone(name, file, tuple(absolute(ns) for ns in model.nameservers))
    zone.ttl, zone.email = model.ttl, model.email
    for record in model.records:
        value = record.value.replace("\r", " ").replace("\n", " ").strip()
        if record.type == "TXT":
            value = txt_value(value)
        owner = _owner(record.name, name)
        zone.own.append(Entry(owner, record.type, value, record.ttl, sources=(file,)))
    return zone


def _add_routes(inventory: Inventory, zones: dict[str, _Zone]) -> set[str]:
    """Add the A/AAAA records of route domains to their zones; return every routed name."""
    routed: set[str] = set()
    users: dict[str, set[str]] = {}
    for name, service in inventory.services.items():
        for route in service.routes:
            users.setdefault(route.domain, set()).add(name)
    for domain, edges in derive.domain_edges(inventory).items():
        zone_name = managed_zone(inventory, domain)
        if zone_name is None:
            continue
        routed.add(domain)
        hosts = [inventory.hosts[e] for e in edges if e in inventory.hosts]
        services = sorted(users[domain])
        files = [inventory.file("service", s) for s in services]
        files += [inventory.file("host", e) for e in edges if e in inventory.hosts]
        entries = _address_entries(
            relative(domain, zone_name),
            (h.public_ipv4 for h in hosts if h.public_ipv4),
            (h.public_ipv6 for h in hosts if h.public_ipv6),
            f"{', '.join(services)} via {', '.join(edges)}",
            tuple(files),
        )
        zone = zones[zone_name]
        zone.routes += [e for e in entries if not _blocked(zone, e)]
    return routed


def _add_hosts(inventory: Inventory, zones: dict[str, _Zone], routed: set[str]) -> None:
    """Add the A/AAAA records of hosts with a public address, except at routed names."""
    for host, model in sorted(inventory.hosts.items()):
        name = host_name(inventory, host)
        zone_name = managed_zone(inventory, name) if name else None
        if name is None or zone_name is None or name in routed:
            continue
        v4 = [model.public_ipv4] if model.public_ipv4 else []
        v6 = [model.public_ipv6] if model.public_ipv6 else []
        files = (inventory.file("host", host),)
        entries = _address_entries(relative(name, zone_name), v4, v6, f"host {host}", files)
        zone = zones[zone_name]
        zone.hosts += [e for e in entries if not _blocked(zone, e)]


def _problem(zone: _Zone, inventory: Inventory) -> str | None:
    """Return why a zone cannot be rendered, or None when it can."""
    where = zone.file
    if not zone.nameservers:
        return f"it has no nameservers: list them under `nameservers` in {where}"
    for ns in zone.nameservers:
        bare = ns.rstrip(".")
        inside = bare == zone.name or bare.endswith("." + zone.name)
        if inside and not zone.addresses(relative(bare, zone.name)):
            return (
                f"its nameserver {ns} lies inside the zone but has no A or AAAA record: "
                f"add one to {where}"
            )
    return None


def _plan(inventory: Inventory) -> tuple[dict[str, _Zone], dict[str, str]]:
    """Return the zones to render (with delegations added) and the skipped ones with a reason."""
    zones = _collect(inventory)
    skipped = {n: p for n, z in zones.items() if (p := _problem(z, inventory)) is not None}
    good = {n: z for n, z in zones.items() if n not in skipped}
    for child in good.values():
        parents = [p for p in good if child.name.endswith("." + p)]
        if not parents:
            continue
        parent = good[max(parents, key=len)]
        owner = relative(child.name, parent.name)
        note, files = f"delegation to {child.name}", (child.file,)
        parent.delegations += [
            Entry(owner, "NS", ns, note=note, sources=files) for ns in child.nameservers
        ]
        for ns in child.nameservers:
            bare = ns.rstrip(".")
            if bare == child.name or bare.endswith("." + child.name):
                parent.delegations += [
                    Entry(
                        relative(bare, parent.name), g.type, g.value, note=note, sources=g.sources
                    )
                    for g in child.addresses(relative(bare, child.name))
                ]
    return good, skipped


def skipped(inventory: Inventory) -> dict[str, str]:
    """Return the managed domains that get no zone file, each with why and what to do."""
    return _plan(inventory)[1]


@dataclass(frozen=True)
class Answer:
    """What the nameservers of a rendered zone must answer for one route's name: its A and
    AAAA records, and each nameserver with the addresses the zone itself gives it (glue)."""

    zone: str
    addresses: tuple[str, ...]
    nameservers: tuple[tuple[str, tuple[str, ...]], ...]


def answers(inventory: Inventory) -> dict[str, Answer]:
    """Return, for every route domain in a zone that renders and has address records there
    (derived or written), what the zone's nameservers must answer for it."""
    zones, _ = _plan(inventory)
    found: dict[str, Answer] = {}
    for domain in derive.domain_edges(inventory):
        zone_name = managed_zone(inventory, domain)
        zone = zones.get(zone_name or "")
        if zone is None:
            continue
        records = zone.addresses(relative(domain, zone.name))
        if not records:
            continue
        servers = []
        for ns in zone.nameservers:
            bare = ns.rstrip(".")
            inside = bare == zone.name or bare.endswith("." + zone.name)
            glue = zone.addresses(relative(bare, zone.name)) if inside else []
            servers.append((bare, tuple(sorted({g.value for g in glue}))))
        found[domain] = Answer(zone.name, tuple(sorted({r.value for r in records})), tuple(servers))
    return found


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return ``dns/<zone>.zone`` for every managed domain that makes a
    valid zone (see the module docstring), each with serial 1."""
    zones, _ = _plan(inventory)
    return {
        f"dns/{name}.zone": text(
            _zone_text(zone),
            {inventory.file("collective"), zone.file, *zone.sources()},
            comment=";",
            collective=inventory.collective.name,
        )
        for name, zone in sorted(zones.items())
    }


def _zone_text(zone: _Zone) -> str:
    """Return the body of a zone file (everything after the generated-file header)."""
    contact = rname(zone.email) if zone.email else f"hostmaster.{zone.name}."
    negative = min(zone.ttl, MAX_NEGATIVE_TTL)
    soa = Entry(
        "@",
        "SOA",
        f"{zone.nameservers[0]} {contact} {INITIAL_SERIAL} {REFRESH} {RETRY} {EXPIRE} {negative}",
    )
    sections: list[tuple[str, list[Entry]]] = [
        ("SOA: primary, contact, serial, refresh, retry, expire, negative ttl", [soa]),
        ("Nameservers", [Entry("@", "NS", ns) for ns in zone.nameservers]),
        (f"From {zone.file}", zone.own),
        ("Routes: the public addresses of the edge hosts that serve them", zone.routes),
        ("Hosts with a public address", zone.hosts),
        ("Delegations to managed domains inside this one", zone.delegations),
    ]
    every = [e for _, entries in sections for e in entries]
    width = max(len(e.name) for e in every)
    ttl_width = max((len(str(e.ttl)) for e in every if e.ttl is not None), default=0)
    type_width = max(len(e.type) for e in every)
    lines = [f"$ORIGIN {zone.name}.", f"$TTL {zone.ttl}"]
    seen: set[tuple[str, str, str]] = set()
    for title, entries in sections:
        fresh = [e for e in entries if (e.name, e.type, e.value) not in seen]
        seen.update((e.name, e.type, e.value) for e in fresh)
        if not fresh:
            continue
        lines += ["", f"; {title}"]
        for e in sorted(fresh, key=_order) if title.startswith(("Routes", "Hosts")) else fresh:
            ttl = (str(e.ttl) if e.ttl is not None else "").ljust(ttl_width)
            cells = [e.name.ljust(width), *([ttl] if ttl_width else []), "IN"]
            line = " ".join([*cells, e.type.ljust(type_width), e.value])
            lines.append(f"{line} ; {e.note}" if e.note else line)
    return "\n".join(lines) + "\n"


def _order(entry: Entry) -> tuple[bool, str, int, tuple[int, int]]:
    """Sort derived address records: the apex first, then by name, A before AAAA, by address."""
    return (
        entry.name != "@",
        entry.name,
        _ADDRESS_TYPES.index(entry.type),
        _ip_sort_key(entry.value),
    )


def serial(zone: bytes) -> int | None:
    """Return the SOA serial of a rendered zone file, or None when it has no SOA line."""
    match = _SOA.search(zone)
    return int(match.group(2)) if match else None


def without_serial(zone: bytes) -> bytes:
    """Return a rendered zone with its SOA serial replaced by 0 (unchanged without an SOA)."""
    return _SOA.sub(lambda m: m.group(1) + b"0", zone, count=1)


def content_hash(zone: bytes) -> str:
    """Return the SHA-256 (hex) of a rendered zone without its serial: what decides whether a
    zone changed."""
    return hashlib.sha256(without_serial(zone)).hexdigest()


def set_serial(zone: bytes, number: int) -> bytes:
    """Return a rendered zone with ``number`` as its SOA serial."""
    return _SOA.sub(lambda m: m.group(1) + str(number).encode(), zone, count=1)


def next_serial(number: int) -> int:
    """Return the serial after ``number``: one more, modulo 2**32 and skipping 0, which RFC 1982
    serial arithmetic counts as an increase even where it wraps."""
    return (number + 1) % 2**32 or 1


def serial_for(zone: bytes, known: Iterable[tuple[int, str]]) -> int:
    """Given a freshly rendered zone and the serials it was given before, each with the
    ``content_hash`` of the zone it was given to, return its serial now.

    That is the highest known serial when every zone known under it had the same content as
    this one, else the serial after the highest; ``INITIAL_SERIAL`` when nothing is known.
    """
    known = list(known)
    if not known:
        return INITIAL_SERIAL
    highest = max(number for number, _ in known)
    digest = content_hash(zone)
    if all(h == digest for number, h in known if number == highest):
        return highest
    return next_serial(highest)
