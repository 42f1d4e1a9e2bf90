"""The domains the collective manages: which zone a name falls under, and its name there."""

from __future__ import annotations

from collections.abc import Iterable

from allmende.inventory.inventory import Inventory


def zone_of(domain: str, zones: Iterable[str]) -> str | None:
    """Given a domain and zone names, return the longest zone it lies in (or is), else None."""
    inside = [z for z in zones if domain == z or domain.endswith("." + z)]
    return max(inside, key=len) if inside else None


def managed_zone(inventory: Inventory, domain: str) -> str | None:
    """Return the managed domain (zone) a name falls under, the longest match, or None."""
    return zone_of(domain, inventory.collective.domains)


def relative(name: str, zone: str) -> str:
    """Given an absolute name (no final dot) inside ``zone``, return it relative to the zone."""
    return name[: -len(zone)].rstrip(".") or "@"
