"""Stand-in certificates, so that HAProxy can start before the first real one is issued.

The rendered ``/etc/haproxy/certs.list`` names one PEM file (chain and key) per domain the edge
terminates; HAProxy refuses a configuration whose certificate files are missing. Before a new
configuration is checked, every file the list names that does not exist yet is written with a
self-signed certificate for its names (valid 30 days, mode 0600). The certificate job replaces
them with real ones; a stand-in is never written over an existing file.
"""

from __future__ import annotations

import datetime
import shlex
from pathlib import PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from allmende.connectors.base import Connector

#: How long a stand-in is valid.
VALID_DAYS = 30


def parse_crt_list(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Return each PEM path of a HAProxy crt-list with the SNI names its line lists (in the
    form ``<path> [<ssl options>] <sni filter>...``), skipping comments and blank lines."""
    entries: list[tuple[str, tuple[str, ...]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        rest = words[1:]
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        names = tuple(n for n in rest if not n.startswith("!"))
        entries.append((words[0], names))
    return entries


def stand_in(names: tuple[str, ...]) -> bytes:
    """Return a PEM with a new private key and a self-signed certificate for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    common = names[0] if names else "allmende stand-in"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "allmende stand-in certificate"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def ensure_certificates(connector: Connector, crt_list: bytes) -> tuple[list[str], list[str]]:
    """Write a stand-in for every PEM the crt-list names that the (opened) host lacks; return
    the files written and the directories made for them, deepest first (to remove both when
    the apply does not finish). Raise UserError if one cannot be written."""
    entries = parse_crt_list(crt_list.decode(errors="replace"))
    found = await connector.stat_many([path for path, _ in entries])
    written: list[str] = []
    made: list[str] = []
    for (path, names), have in zip(entries, found, strict=True):
        if have is None:
            for parent in reversed(PurePosixPath(path).parents[:-1]):
                if await connector.make_dir(str(parent)):
                    made.append(str(parent))
            await connector.write_atomic(path, stand_in(names), 0o600)
            written.append(path)
    return written, sorted(made, key=lambda d: -len(PurePosixPath(d).parts))
