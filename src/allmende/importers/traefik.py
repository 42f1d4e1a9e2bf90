"""Traefik labels become routes: ``Host(...)`` and ``PathPrefix(...)`` rules of HTTP routers,
``HostSNI(...)`` of TCP routers with TLS passthrough, and Traefik 1's ``frontend.rule``.

A router's port is its service's ``loadbalancer.server.port``, else the component's only port,
else 80 (said in a note). TLS: a router with ``tls``, a certificate resolver or a secure entry
point terminates TLS at the edge; a route whose routers are all plain HTTP is imported with the
edge's default (terminate) and a note. Labels the edge cannot do (middlewares, sticky cookies,
HTTPS backends, regular expressions, ...) are not consumed: they stay verbatim with the other
labels, and each is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from allmende.importers.context import ComponentContext
from allmende.importers.mounts import port_for

_ATOM = re.compile(r"\s*(Host|PathPrefix|HostSNI)\(\s*((?:[`\"][^`\"]*[`\"]\s*,?\s*)+)\)\s*")
_ARG = re.compile(r"[`\"]([^`\"]*)[`\"]")
_ROUTER_KEYS = frozenset(
    {"rule", "entrypoints", "tls", "tls.certresolver", "service", "tls.passthrough"}
)
_SERVICE_PORT = re.compile(r"(?i)traefik\.(http|tcp)\.services\.[^.]+\.loadbalancer\.server\.port")
_SECURE = re.compile(r"(?i)(secure|https|443|tls|ssl)")


@dataclass(frozen=True)
class Match:
    """One (domain, path) a router answers."""

    domain: str
    path: str


def labels_of(value: Any) -> dict[str, str] | None:
    """Given ``labels`` in list (``a=b``) or map form, return them as a mapping, or None."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            key, _, text = str(item).partition("=")
            out[key] = text
        return out
    return None


def parse_rule(rule: str) -> list[Match] | None:
    """Given a rule such as ``Host(`a`) && PathPrefix(`/p`) || Host(`b`)``, return what it
    matches, or None if it uses anything else (regular expressions, headers, negation...)."""
    matches: list[Match] = []
    for alternative in re.split(r"\|\|", rule):
        text = alternative.strip()
        while text.startswith("(") and text.endswith(")") and text.count("(") > 1:
            text = text[1:-1].strip()
        hosts: list[str] = []
        paths: list[str] = []
        for part in text.split("&&"):
            atom = _ATOM.fullmatch(part)
            if atom is None:
                return None
            args = _ARG.findall(atom.group(2))
            if atom.group(1) in ("Host", "HostSNI"):
                if hosts or any(a == "*" or not a for a in args):
                    return None
                hosts = args
            else:
                if paths:
                    return None
                paths = args
        if not hosts:
            return None
        matches += [Match(h.lower(), p or "/") for h in hosts for p in (paths or ["/"])]
    return matches or None


def _rule_v1(rule: str) -> list[Match] | None:
    """Traefik 1: ``Host:a,b;PathPrefix:/p``."""
    hosts: list[str] = []
    paths: list[str] = []
    for part in rule.split(";"):
        kind, _, args = part.strip().partition(":")
        values = [v.strip() for v in args.split(",") if v.strip()]
        if kind == "Host":
            hosts = values
        elif kind == "PathPrefix":
            paths = values
        else:
            return None
    if not hosts:
        return None
    return [Match(h.lower(), p) for h in hosts for p in (paths or ["/"])]


def _port(ctx: ComponentContext, labels: dict[str, str], kind: str, service: str | None) -> int:
    """Return the container port a router sends to (see the module's text)."""
    prefix = f"traefik.{kind}.services."
    ports = {
        key[len(prefix) :].split(".")[0]: value
        for key, value in labels.items()
        if key.startswith(prefix) and key.lower().endswith(".loadbalancer.server.port")
    }
    chosen = ports.get(service) if service else (next(iter(ports.values())) if ports else None)
    if chosen is None and "traefik.port" in labels:
        chosen = labels["traefik.port"]
    if chosen is not None and chosen.isdigit():
        return int(chosen)
    known = ctx.component.get("ports") or {}
    if len(known) == 1:
        return int(next(iter(known.values())))
    ctx.note(("labels",), "warning", "assumed Traefik sends to port 80 (no port label)")
    return 80


def map_traefik(
    ctx: ComponentContext, labels: dict[str, str]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Given the component's labels, return (routes, the label keys they consumed)."""
    if labels.get("traefik.enable", "true").lower() == "false":
        return [], set()
    consumed: set[str] = set()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    plain: set[tuple[str, str]] = set()
    for kind in ("http", "tcp"):
        prefix = f"traefik.{kind}.routers."
        routers: dict[str, dict[str, str]] = {}
        for key, value in labels.items():
            if key.startswith(prefix):
                router, _, setting = key[len(prefix) :].partition(".")
                routers.setdefault(router, {})[setting.lower()] = value
        for router, settings in sorted(routers.items()):
            matches = parse_rule(settings.get("rule", ""))
            if matches is None:
                continue
            if "@" in settings.get("service", ""):
                continue  # a Traefik-internal service such as api@internal
            passthrough = settings.get("tls.passthrough", "").lower() == "true"
            if kind == "tcp" and not passthrough:
                continue
            port = port_for(ctx, _port(ctx, labels, kind, settings.get("service")))
            secure = (
                settings.get("tls", "").lower() == "true"
                or "tls.certresolver" in settings
                or bool(_SECURE.search(settings.get("entrypoints", "")))
            )
            for match in matches:
                spot = (match.domain, match.path)
                route: dict[str, Any] = {"domain": match.domain}
                if match.path != "/":
                    route["path"] = match.path
                route["to"] = f"{ctx.cname}.{port}"
                if passthrough:
                    route["tls"] = "passthrough"
                elif not secure:
                    plain.add(spot)
                found.setdefault(spot, route)
                if secure:
                    plain.discard(spot)
            mine = {k for k in labels if k.startswith(f"{prefix}{router}.")}
            consumed |= {
                k for k in mine if k[len(prefix) + len(router) + 1 :].lower() in _ROUTER_KEYS
            }
            if "middlewares" in settings:
                ctx.note(
                    ("labels",),
                    "warning",
                    f"Traefik router {router} runs middlewares ({settings['middlewares']}) the "
                    "edge does not: check its route before the edge serves it",
                )
    v1 = labels.get("traefik.frontend.rule")
    matches = _rule_v1(v1) if v1 else None
    if matches:
        port = port_for(ctx, _port(ctx, labels, "http", None))
        for match in matches:
            route = {"domain": match.domain, "to": f"{ctx.cname}.{port}"}
            if match.path != "/":
                route["path"] = match.path
            found.setdefault((match.domain, match.path), route)
        consumed |= {"traefik.frontend.rule", "traefik.port"}
    if found:
        consumed |= {k for k in labels if k in ("traefik.enable", "traefik.docker.network")}
        consumed |= {k for k in labels if _SERVICE_PORT.fullmatch(k)}
    for domain, path in sorted(plain):
        ctx.note(
            ("labels",),
            "info",
            f"{domain}{path if path != '/' else ''} was plain HTTP in Traefik; the edge "
            "serves it with TLS (write `tls: none` on the route to keep plain HTTP)",
        )
    return list(found.values()), consumed
