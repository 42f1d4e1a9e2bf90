"""How a host is reached: the local machine, or over SSH (see ``base.Connector``).

``connect`` imports the SSH connector (and the inventory's models) only when it is called:
allmende's copy on a host runs its backups through ``connectors.local`` with the standard
library alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from allmende.connectors.base import Connector
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError

if TYPE_CHECKING:
    from allmende.inventory.inventory import Inventory


def connect(inventory: Inventory, host_name: str, env: Mapping[str, str]) -> Connector:
    """Return the (not yet opened) connector of a host: the local machine when the host has no
    ``ssh`` (under ``ALLMENDE_HOST_ROOT`` if set), else SSH to its address. Raise UserError for
    an unknown host or an SSH host without an address."""
    from allmende.connectors.ssh import SshConnector

    host = inventory.hosts.get(host_name)
    if host is None:
        raise UserError(f"unknown host `{host_name}`")
    if host.ssh is None:
        return LocalConnector(host_name, env.get("ALLMENDE_HOST_ROOT") or "/")
    if not host.address:
        raise UserError(
            f"{inventory.file('host', host_name)}: host `{host_name}` is reached over SSH but "
            "has no address (add `address:`)"
        )
    return SshConnector(host_name, host.address, host.ssh.user, host.ssh.port, env)
