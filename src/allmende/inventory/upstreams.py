"""How the edge reaches one port of a component: the servers it balances over, the PROXY
protocol, backup servers. Written under a component as ``edge: {<port name>: ...}``; without it
the edge has one server, the component on the service's host."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from allmende.inventory import dnsnames
from allmende.inventory.fields import Model

#: How HAProxy picks a server among those up.
Balance = Literal["roundrobin", "leastconn", "source", "first"]


def split_address(value: str) -> tuple[str, int]:
    """Given ``host:port`` (``[v6]:port`` for IPv6), return (host, port). Raise ValueError."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError("write `<address>:<port>`, such as 192.168.1.20:8080 or nas.lan:80")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("an IPv6 address is written in brackets: [2001:db8::5]:80")
        host = host[1:-1]
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return host, number


class EdgeServer(Model):
    """One more server of a port, at an address and port the collective does not manage (a NAS,
    a box outside the inventory): the edge balances over it beside the component itself."""

    address: str = Field(
        description="`<address>:<port>` the edge connects to: an IP address (`[...]` for "
        "IPv6) or a host name, and the port."
    )
    backup: bool = Field(
        False, description="Used only while every server that is not a backup is down."
    )
    weight: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Its share of the requests against the others' (HAProxy's `weight`, "
        "default 1 each; 0: only requests that must go to it).",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, port = split_address(value)
        try:
            host = dnsnames.host_address(host)
        except dnsnames.BadName as exc:
            raise ValueError(str(exc)) from None
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def host(self) -> str:
        """Return the address without the port (an IPv6 address without brackets)."""
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        """Return the port."""
        return split_address(self.address)[1]


def _server(value: Any) -> Any:
    return {"address": value} if isinstance(value, str) else value


class PortEdge(Model):
    """How the edge reaches one port of a component."""

    servers: tuple[
        Annotated[EdgeServer, BeforeValidator(_server, json_schema_input_type=str | EdgeServer)],
        ...,
    ] = Field(
        (),
        description="More servers for this port beside the component itself: `<address>:<port>` "
        "or {address, backup}. The edge balances over all of them, with the component's "
        "healthcheck for each.",
    )
    backup: bool = Field(
        False,
        description="The component itself is a backup server: used only while every server of "
        "`servers` that is not a backup is down.",
    )
    weight: int | None = Field(
        None, ge=0, le=256, description="The component's own share of the requests (`weight`)."
    )
    balance: Balance = Field(
        "roundrobin",
        description="How the edge picks a server: `roundrobin` (in turn), `leastconn` (the one "
        "with the fewest connections), `source` (by the client's address, so a client stays "
        "on one server), `first` (the first with a free slot).",
    )
    proxy_protocol: Literal["v1", "v2"] | None = Field(
        None,
        description="The port expects the PROXY protocol: every connection from the edge "
        "starts with a header carrying the client's address (`v1` text, `v2` binary), as "
        "HAProxy's `send-proxy`/`send-proxy-v2`. A program that does not expect it reads the "
        "header as garbage.",
    )

    @model_validator(mode="after")
    def _someone_first(self) -> PortEdge:
        if self.backup and all(server.backup for server in self.servers):
            raise ValueError(
                "`backup: true` needs a server in `servers` that is not a backup, to be the "
                "backup of"
            )
        return self
