"""`zones/<domain>.yaml` as typed models: records and dynamic updates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from allmende.inventory import dnsnames
from allmende.inventory.fields import (
    EnvValue,
    Extensible,
    Model,
    _dns,
)

RecordType = Literal[
    "A", "AAAA", "CAA", "CNAME", "DS", "MX", "NS", "PTR", "SRV", "SSHFP", "TLSA", "TXT"
]


class Record(Model):
    """One DNS record."""

    name: Annotated[str, AfterValidator(_dns(dnsnames.owner))] = Field(
        description="`@` for the zone apex, or a relative name."
    )
    type: RecordType = Field(description="The record type.")
    value: EnvValue = Field(description="The record data as in a zone file.")
    ttl: int | None = Field(None, ge=0, description="Default: the zone's ttl.")

    @model_validator(mode="after")
    def _data(self) -> Record:
        try:
            value = dnsnames.record_value(self.type, self.value)
        except dnsnames.BadName as exc:
            raise ValueError(f"value: {exc}") from None
        return self if value == self.value else self.model_copy(update={"value": value})


TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]


def _server(value: Any) -> Any:
    """Accept ``address`` or ``address:port`` (``[v6]:port``) of a DNS server."""
    if not isinstance(value, str):
        return value
    host, port = value, ""
    if value.startswith("["):
        host, _, port = value[1:].partition("]")
        port = port.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"`{port}` is not a port")
    try:
        address = dnsnames.host_address(host)
    except dnsnames.BadName as exc:
        raise ValueError(str(exc)) from None
    shown = f"[{address}]" if ":" in address else address
    return f"{shown}:{port}" if port else address


DnsServer = Annotated[str, BeforeValidator(_server)]


class Update(Model):
    """RFC 2136 dynamic updates of a zone, signed with a TSIG key. The key's secret (base64,
    as `tsig-keygen` or `keymgr -t` print it) is the secret `dns/<zone>/tsig`."""

    server: DnsServer = Field(
        description="The primary nameserver that takes updates: an address or host name, "
        "with `:port` when it is not 53."
    )
    key: str = Field(description="The TSIG key's name, as the server knows it.", min_length=1)
    algorithm: TsigAlgorithm = Field("hmac-sha256", description="The TSIG algorithm.")
    check: tuple[DnsServer, ...] = Field(
        (),
        description="Where a new record must be answered before the CA is asked to look "
        "(`address` or `address:port`); default: the zone's `nameservers` on port 53, else "
        "`server`.",
    )


class Zone(Extensible):
    """`zones/<domain>.yaml`: records beyond those derived from routes and hosts."""

    provider: Annotated[str, StringConstraints(pattern=r"^(zonefile|rfc2136|octodns:[\w.]+)$")] = (
        Field("zonefile", description="`zonefile`, `rfc2136` or `octodns:<provider class>`.")
    )
    nameservers: tuple[Annotated[str, AfterValidator(_dns(dnsnames.target))], ...] = Field(
        (), description="NS records of the zone."
    )
    ttl: int = Field(3600, ge=0, description="Default TTL in seconds.")
    email: Annotated[str | None, AfterValidator(_dns(dnsnames.soa_email))] = Field(
        None, description="The zone contact for the SOA record."
    )
    records: tuple[Record, ...] = Field((), description="Records beyond the derived ones.")
    update: Update | None = Field(
        None,
        description="Where RFC 2136 dynamic updates of the zone go: ACME `dns-01` writes its "
        "`_acme-challenge` TXT records there.",
    )
