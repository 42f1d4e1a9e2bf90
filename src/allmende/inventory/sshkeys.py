"""SSH key pairs allmende makes for the secret store, and the ``authorized_keys`` line that
lets a key run one command only.

Used for a service host's key to its ``ssh://`` repository (``borg serve``) and for the watch
host's key to each host whose backups it asks about (``allmende backup freshness``): a key
allmende hands out may do nothing but the one thing it is for.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from allmende.errors import UserError


@dataclass(frozen=True)
class KeyPair:
    """An SSH key pair: the private key in OpenSSH format, the public key line."""

    private: bytes
    public: str


def new_key(comment: str) -> KeyPair:
    """Return a new ed25519 SSH key pair."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode()} {comment}")


def public_of(private: bytes, comment: str) -> str:
    """Return the public key line of an OpenSSH private key. Raise UserError if it is none."""
    try:
        key = serialization.load_ssh_private_key(private, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"not an OpenSSH private key: {exc}") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {comment}"


def forced(command: Sequence[str], public: str) -> str:
    """Return the ``authorized_keys`` line that lets ``public`` run ``command`` and nothing
    else: sshd runs it whatever the client asks for (a shell, another command, SFTP), and
    ``restrict`` refuses a terminal and every kind of forwarding."""
    return f'restrict,command="{shlex.join(command)}" {public}'
