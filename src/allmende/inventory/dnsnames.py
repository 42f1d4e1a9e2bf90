"""DNS names and host addresses as the inventory may write them, checked before anything is
rendered from them.

Every name that ends up in a zone file, an HAProxy rule or a connection is one of:

- a domain (``domains``, a route's ``domain``, a zone file's name, ``nameservers``, record
  targets): labels of letters, digits and ``-`` (``_`` too where records need it, as in
  ``_dmarc``), 1 to 63 characters each, at most 253 in all; a name in other letters
  (``bücher.example``) is accepted and kept in its ASCII form (``xn--bcher-kva.example``,
  IDNA 2008 through the ``idna`` package), and the check ``dns.lookalike`` warns about it;
- a record's owner name: ``@``, or a relative name of such labels, ``*`` allowed as the first;
- a host address: an IP address, or a host name of letters, digits and ``-`` whose last label
  is not a number, and which does not look like an IPv4 address with a typo (``127.0.0.l``).

Anything else (a space, a line break, ``$INCLUDE``, a quote) is refused with the reason, so a
value can never add a line or a directive to a zone file.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

#: The longest domain name, without the final dot (RFC 1035: 255 octets on the wire).
LONGEST = 253
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class BadName(ValueError):
    """A name that cannot be a domain, owner name or host address; the message says why."""


def _ascii_label(label: str) -> str:
    """Return one label in ASCII (an A-label for a label in other letters). Raise BadName."""
    if label.isascii():
        return label.lower()
    try:
        return idna.alabel(label).decode("ascii")
    except idna.IDNAError as exc:
        raise BadName(f"`{label}` cannot be written in DNS: {exc}") from None


def _shown(text: str) -> str:
    return f"`{text}`" if text.isprintable() else repr(text)


def domain(name: str, *, underscore: bool = True, wildcard: bool = False) -> str:
    """Return the domain ``name`` in ASCII, lowercase, without a final dot. Raise BadName
    saying why it is none. ``underscore`` allows ``_`` in labels; ``wildcard`` a first ``*``."""
    if not isinstance(name, str) or not name:
        raise BadName("a domain name must not be empty")
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise BadName("the root `.` is not a domain allmende can use")
    bad = next((c for c in text if unicodedata.category(c)[0] in "CZ"), None)
    if bad is not None:
        raise BadName(f"{_shown(name)} contains {bad!r}: a domain name is letters, digits, - and .")
    labels = text.split(".")
    out = []
    for i, label in enumerate(labels):
        if not label:
            raise BadName(f"{_shown(name)} has an empty label (two dots, or a dot at the start)")
        if wildcard and i == 0 and label == "*":
            out.append("*")
            continue
        ascii_label = _ascii_label(label)
        form = _LABEL if underscore else _HOST_LABEL
        if len(ascii_label) > 63:
            raise BadName(f"{_shown(name)}: the label `{label}` is longer than 63 characters")
        if not form.match(ascii_label):
            allowed = "letters, digits" + (", _" if underscore else "") + " and -"
            raise BadName(
                f"{_shown(name)}: the label `{label}` may hold only {allowed}, "
                "and not start or end with -"
            )
        out.append(ascii_label)
    result = ".".join(out)
    if len(result) > LONGEST:
        raise BadName(f"{_shown(name)} is longer than {LONGEST} characters")
    return result


def owner(name: str) -> str:
    """Return a record's owner name as the zone file gets it: ``@``, a relative name in ASCII,
    or an absolute one (final dot kept). Raise BadName."""
    if name == "@":
        return name
    absolute = name.endswith(".")
    result = domain(name, wildcard=True)
    return result + "." if absolute else result


def lookalike(name: str) -> str | None:
    """Return why a domain in other letters may be mistaken for another (its ASCII form, and
    the scripts it mixes), or None for a name in plain ASCII."""
    if name.isascii():
        return None
    scripts = sorted(
        {
            unicodedata.name(c, "UNKNOWN").split(" ")[0]
            for c in name
            if c.isalpha() and not c.isascii()
        }
        | ({"LATIN"} if any(c.isascii() and c.isalpha() for c in name) else set())
    )
    try:
        ascii_name = domain(name)
    except BadName:
        return None
    mixed = (
        f", mixing {' and '.join(s.title() for s in scripts)} letters" if len(scripts) > 1 else ""
    )
    return f"`{name}` is written in other letters than a-z ({ascii_name}{mixed})"


def is_ipv4_typo(name: str) -> bool:
    """Whether ``name`` looks like an IPv4 address with a typo: four labels, three numbers."""
    labels = name.split(".")
    return len(labels) == 4 and sum(label.isdigit() for label in labels) >= 3


def host_address(value: str) -> str:
    """Return a host's address: an IP address (normalised) or a host name (ASCII,
    lowercase). Raise BadName for anything else."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if is_ipv4_typo(value.rstrip(".")):
        raise BadName(
            f"{_shown(value)} is not an IP address, and as a host name it looks like one with "
            "a typo"
        )
    try:
        name = domain(value, underscore=False)
    except BadName as exc:
        raise BadName(f"neither an IP address nor a host name: {exc}") from None
    if name.rsplit(".", 1)[-1].isdigit():
        raise BadName(
            f"{_shown(value)} is neither an IP address nor a host name (its last label is a number)"
        )
    return name


def target(value: str) -> str:
    """Return a record's target name (a CNAME's, an MX's ...) in ASCII, keeping a final dot
    (absolute) or its absence (relative to the zone). Raise BadName."""
    absolute = value.endswith(".")
    name = domain(value)
    return name + "." if absolute else name


_QUOTED = re.compile(r'^(?:"(?:[^"\\]|\\.)*"[ \t]*)+$')
_UNQUOTED_SPECIAL = re.compile(r"[();]")


def _outside_quotes(value: str) -> str:
    """Return ``value`` with its quoted strings removed."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', "", value)


def _number(text: str, what: str, value: str, top: int = 65535) -> None:
    if not text.isdigit() or int(text) > top:
        raise BadName(f"{_shown(value)}: {what} must be a number from 0 to {top}")


def record_value(kind: str, value: str) -> str:
    """Return the data of a record of type ``kind`` as the zone file gets it (names in ASCII).
    Raise BadName for data that is not of that type, or that could end the record early or
    spread it over lines (control characters; ``(``, ``)`` or ``;`` outside quotes)."""
    if kind == "TXT":
        if value.lstrip().startswith('"') and not _QUOTED.match(value.strip()):
            raise BadName(
                f'{_shown(value)}: a TXT value starting with `"` must be quoted strings only, '
                'such as `"first" "second"`'
            )
        return value  # written quoted, and escaped where need be, by the zone renderer
    bad = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise BadName(f"{_shown(value)} contains the control character {bad!r}")
    parts = value.split()
    if kind in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            address = None
        if address is None or address.version != (4 if kind == "A" else 6):
            raise BadName(f"{_shown(value)} is not an IPv{4 if kind == 'A' else 6} address")
        return str(address)
    if kind in ("CNAME", "NS", "PTR"):
        if len(parts) != 1:
            raise BadName(f"{_shown(value)}: a {kind} record holds one name")
        return target(parts[0])
    if kind == "MX":
        if len(parts) != 2:
            raise BadName(f"{_shown(value)}: an MX record is a preference and a name")
        _number(parts[0], "the preference", value)
        return f"{parts[0]} {target(parts[1])}"
    if kind == "SRV":
        if len(parts) != 4:
            raise BadName(f"{_shown(value)}: an SRV record is priority, weight, port and a name")
        for text, what in zip(parts[:3], ("the priority", "the weight", "the port"), strict=True):
            _number(text, what, value)
        return " ".join([*parts[:3], target(parts[3])])
    if _UNQUOTED_SPECIAL.search(_outside_quotes(value)) or value.count('"') % 2:
        raise BadName(
            f"{_shown(value)}: `(`, `)`, `;` and unclosed quotes would change what the zone "
            "file says; quote text that holds them"
        )
    return value


def soa_email(value: str) -> str:
    """Return a zone's contact as given, once checked: ``local@domain`` (the local part of
    letters, digits and ``.+_-``) or the SOA form of a name. Raise BadName."""
    local, at, rest = value.partition("@")
    if not at:
        domain(value)
        return value
    if not local or not re.fullmatch(r"[A-Za-z0-9._+-]+", local):
        raise BadName(
            f"{_shown(value)}: the part before @ may hold only letters, digits and . + _ -"
        )
    return f"{local}@{domain(rest)}"
