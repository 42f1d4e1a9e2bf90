"""What renewing an edge's certificates needs, as one job: the file an edge's timer runs.

A ``Job`` names the ACME directory and account, how early to renew, where the http-01
responder listens, the certificates (each with its names, challenge, PEM file and the edge
hosts that serve it), where the zones of dns-01 names take their updates, and where alerts go.
``allmende certs renew`` and ``allmende up`` build one from the inventory for every edge at
once (``operations.certs.due``); render writes each edge host's own to
``/etc/allmende/certs/job.json``, holding the certificates that edge can renew alone (those only
it serves, and every dns-01 one), which ``allmende certs job`` runs there. No secret is in
it: the account key and the TSIG keys are files of their own, which apply writes from the
secret store.

This module imports only the standard library: allmende's copy on a host reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from allmende.inventory.backupjob import Channel

#: The version of the job file's format.
VERSION = 1


@dataclass(frozen=True)
class Cert:
    """One certificate: ``name`` (a domain or ``*.<domain>``) is its only name."""

    name: str
    challenge: str
    pem: str
    edges: tuple[str, ...]
    zone: str = ""


@dataclass(frozen=True)
class Update:
    """Where RFC 2136 updates of ``zone`` go, signed with the TSIG key ``key``; ``check``:
    the servers (``address:port``) that must answer a new record before the CA looks."""

    zone: str
    server: str
    port: int
    key: str
    algorithm: str
    check: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """Everything needed to keep one or more edges' certificates."""

    collective: str
    directory: str
    email: str
    renew_before_days: int
    responder_port: int
    certificates: tuple[Cert, ...]
    updates: tuple[Update, ...] = ()
    notify: tuple[Channel, ...] = ()
    #: PEM of the CA that signs the directory's HTTPS ("": the system's CAs).
    trust: str = ""
    #: The edge host whose timer runs this job ("": every edge, from the inventory).
    host: str = ""

    def update_of(self, zone: str) -> Update | None:
        """Return where the updates of ``zone`` go, if the job knows."""
        return next((u for u in self.updates if u.zone == zone), None)

    def to_json(self, comment: str = "") -> str:
        """Return the job as its file's JSON text (keys sorted, one trailing newline), with
        ``comment`` (what it was made from) as its first key, ``_comment``."""
        data = asdict(self)
        data["version"] = VERSION
        if comment:
            data["_comment"] = comment
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of text: {value!r}")
    return tuple(value)


def from_json(text: str | bytes) -> Job:
    """Return the job a job file holds. Raise ValueError if it is not one (or of another
    version)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data.pop("_comment", None)
    if data.pop("version", None) != VERSION:
        raise ValueError(f"not a certificate job file of version {VERSION}")
    try:
        return Job(
            collective=str(data["collective"]),
            directory=str(data["directory"]),
            email=str(data["email"]),
            renew_before_days=int(data["renew_before_days"]),
            responder_port=int(data["responder_port"]),
            certificates=tuple(
                Cert(
                    str(c["name"]),
                    str(c["challenge"]),
                    str(c["pem"]),
                    _strings(c["edges"]),
                    str(c.get("zone", "")),
                )
                for c in data["certificates"]
            ),
            updates=tuple(
                Update(
                    str(u["zone"]),
                    str(u["server"]),
                    int(u["port"]),
                    str(u["key"]),
                    str(u["algorithm"]),
                    _strings(u.get("check", [])),
                )
                for u in data.get("updates", [])
            ),
            notify=tuple(
                Channel(str(c["kind"]), str(c["target"]), str(c.get("smtp", "")))
                for c in data.get("notify", [])
            ),
            trust=str(data.get("trust", "")),
            host=str(data.get("host", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete certificate job file: {exc}") from None
