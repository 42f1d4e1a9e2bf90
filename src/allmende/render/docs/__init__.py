"""The documentation site: every page of an inventory as HTML and as Markdown, in memory.

``site(inventory, report, svg)`` is pure: it reads nothing but its own templates and
stylesheet (package data) and returns ``{relative path: bytes}``; writing is the job of
``allmende.actions.docs``. The same inventory and report give byte-identical files.

Pages (HTML at the root, the same pages as Markdown under ``markdown/``)::

    index                 the collective, counts, open findings, services, hosts, the picture
    services/<service>    what it offers, components, routes, ports, volumes, databases,
                          secrets (names only), backup, restore runbook, monitors, notes, checks
    hosts/<host>          kind, parent and children, addresses, engine, what runs there
    ports                 the port registry: every published and edge port per host
    domains               each managed zone: routes, derived and extra records, nameservers
    databases             each database: engine, server, users
    people                who maintains what, how to reach them
    onboarding            how things are kept, how to add a service, where data lives, whom to ask
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from allmende.inventory.inventory import Inventory
from allmende.render.docs import hosts, html, markdown, network, overview, people, services
from allmende.render.docs.blocks import Page
from allmende.render.docs.context import Context, LastArchive, ReportLike

__all__ = ["pages", "site"]

STYLESHEET = "style.css"


def pages(context: Context) -> list[Page]:
    """Return every page of the site, in a stable order."""
    result = [overview.page(context)]
    result += [services.page(context, name) for name in context.services()]
    result += [hosts.host_page(context, name) for name in context.hosts()]
    result += [
        hosts.ports_page(context),
        network.domains_page(context),
        network.databases_page(context),
        people.people_page(context),
        people.onboarding_page(context),
    ]
    return result


def site(
    inventory: Inventory,
    report: ReportLike,
    svg: str | None,
    archives: Mapping[str, LastArchive] | None = None,
) -> dict[str, bytes]:
    """Given an inventory, its check report, the picture of the whole (SVG text, or None
    when it could not be drawn) and the newest archive of each service as recorded on this
    machine, return every file of the site by relative path, sorted.

    Secret values are never read: secrets appear by name only.
    """
    context = Context(inventory, report, svg is not None, archives or {})
    name = inventory.collective.name
    files: dict[str, bytes] = {}
    for page in pages(context):
        files[f"{page.key}{html.SUFFIX}"] = html.render(page, name).encode()
        files[f"markdown/{page.key}{markdown.SUFFIX}"] = markdown.render(page, name).encode()
    files[STYLESHEET] = resources.files(__package__).joinpath("static", STYLESHEET).read_bytes()
    if svg is not None:
        files[overview.GRAPH] = svg.encode()
        files[f"markdown/{overview.GRAPH}"] = svg.encode()
    return dict(sorted(files.items()))
