"""Where the edges send a service's requests: the HAProxy servers a make-before-break moves.

Pure but for ``tcp_wait``. A start-first replacement (``plan.actions.replacement``) runs the
new version beside the old on ports the host picks, points each edge's servers of the service
at it at run time (``apply.replace``), and back at the service's own ports once its new
version runs there. ``servers`` says which servers those are; ``switchable`` whether they can
be moved at run time at all (an address HAProxy resolves by DNS cannot).
"""

from __future__ import annotations

from allmende import onhost
from allmende.connectors.base import Connector
from allmende.errors import CommandFailed, UserError
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.render.haproxy_plan import Backend, ident
from allmende.render.haproxy_plan import plan as edge_plan


def servers(inventory: Inventory, service: str) -> dict[str, list[Backend]]:
    """Return, for each edge host that serves ``service``, the backends that reach it."""
    found: dict[str, list[Backend]] = {}
    for edge in derive.edges_of(inventory, service):
        mine = [b for b in edge_plan(inventory, edge).backends if b.service == service]
        if mine:
            found[edge] = mine
    return found


def switchable(inventory: Inventory, service: str) -> bool:
    """Return whether every edge server of ``service`` can be pointed elsewhere at run time:
    there is one, and each is reachable at an IP address."""
    found = servers(inventory, service)
    backends = [b for edge in found.values() for b in edge]
    return bool(backends) and all(b.reachable and not b.dns for b in backends)


def server_name(backend: Backend) -> str:
    """Return the name of the one server of a backend, as the configuration has it."""
    return ident(backend.component)


def split_address(address: str) -> tuple[str, int]:
    """Return (IP, port) of a server address as HAProxy writes it (``[::1]:80``)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def tcp_wait(connector: Connector, address: str, port: int, seconds: float) -> None:
    """Wait until ``address:port`` accepts connections as seen from the (opened) host. Raise
    UserError saying so if it does not within ``seconds``."""
    try:
        await connector.run(
            onhost.command("tcp_wait", address, str(port), str(seconds)),
            timeout=seconds + 30,
            what=f"waiting for {address}:{port}",
        )
    except CommandFailed as exc:
        raise UserError(
            f"{connector.host}: {address}:{port} does not accept connections from there: "
            f"{exc.output.strip()}"
        ) from None
