"""``Connector.run(env=...)`` on both connectors: the variables reach the program (over SSH,
where sshd passes on none but its AcceptEnv, through env(1)), values with spaces and quotes
intact, and a name that is not one is refused."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.conftest import Sshd

from allmende.connectors.base import Connector
from allmende.connectors.local import LocalConnector
from allmende.connectors.ssh import SshConnector
from allmende.errors import InternalError

PRINT = ["sh", "-c", 'printf "%s|%s" "$ALLMENDE_PROBE" "$OTHER"']
VALUE = "a b 'c' \"d\" $HOME"


async def probe(connector: Connector) -> bytes:
    async with connector:
        ran = await connector.run(PRINT, env={"ALLMENDE_PROBE": VALUE, "OTHER": "2"})
        return ran.stdout


def test_the_local_connector_adds_the_variables() -> None:
    assert asyncio.run(probe(LocalConnector("here"))) == f"{VALUE}|2".encode()


def test_the_ssh_connector_adds_the_variables(sshd: Sshd) -> None:
    env = {"ALLMENDE_KNOWN_HOSTS": str(sshd.known_hosts), "ALLMENDE_SSH_KEY": str(sshd.client_key)}
    connector = SshConnector("there", "127.0.0.1", "root", sshd.port, env)
    assert asyncio.run(probe(connector)) == f"{VALUE}|2".encode()


def test_a_name_that_is_no_variable_is_refused() -> None:
    with pytest.raises(InternalError, match="not an environment variable name"):
        asyncio.run(LocalConnector("here").run(["true"], env={"A=B": "c"}))
