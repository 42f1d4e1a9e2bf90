"""The `secret` verbs: keep secret values encrypted with age in the inventory's secrets/.

What each command does beyond asking and printing: the inventory is checked, a name is checked
before anyone types its value, an empty value is refused. Every failure is a SecretError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from allmende.errors import SecretError
from allmende.inventory.inventory import COLLECTIVE_FILE
from allmende.inventory.secrets import (
    RECIPIENTS_FILE,
    SECRETS_DIR,
    NewKey,
    SecretStore,
    create_key,
)

#: The recipients file, as messages name it.
RECIPIENTS = f"{SECRETS_DIR}/{RECIPIENTS_FILE}"


def inventory(directory: Path) -> Path:
    """Given --inventory, return it. Raise SecretError if it holds no allmende.yaml."""
    try:
        found = (directory / COLLECTIVE_FILE).is_file()
    except OSError as err:
        raise SecretError(f"cannot read {directory}: {err.strerror}") from None
    if not found:
        raise SecretError(
            f"{directory} is not an inventory (it has no {COLLECTIVE_FILE}): pass --inventory DIR"
        )
    return directory


def store(directory: Path) -> SecretStore:
    """Return the secret store of the inventory in ``directory`` (see ``inventory``)."""
    return SecretStore(inventory(directory))


def init(directory: Path, comment: str = "") -> NewKey:
    """Create the user's private key and add it as a recipient (``create_key``)."""
    return create_key(inventory(directory), comment=comment)


def read_file(path: Path) -> bytes:
    """Return the bytes of the file a value is to be read from. Raise SecretError if it
    cannot be read."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise SecretError(f"cannot read {path}: {err.strerror}") from None


@dataclass(frozen=True)
class Stored:
    """How a value was stored: to how many recipients, and your own public key where it is not
    one of them (you cannot read the value back), else None."""

    recipients: int
    not_yours: str | None = None


def set_value(directory: Path, name: str, value: Callable[[], bytes]) -> Stored:
    """Store secret ``name`` with the bytes ``value()`` returns, encrypted to every recipient;
    return how many recipients that is, and whether your own key is not one.

    ``value`` is called only once the inventory, the name and the recipients are known to be
    good, so no one types a value that cannot be stored. Raise SecretError if any of them is
    not, or the value is empty.
    """
    secrets = store(directory)
    secrets.path(name)  # refuse a bad name before anyone types a value
    recipients = secrets.require_recipients()
    data = value()
    if not data:
        raise SecretError(f"the value is empty; {name} was not stored")
    secrets.set(name, data)
    own = secrets.own_public_key()
    return Stored(len(recipients), own if own is not None and own not in recipients else None)


def add_recipient(directory: Path, key: str, comment: str = "") -> bool:
    """Add the age public ``key`` to the recipients; return False if it is there already."""
    return store(directory).add_recipient(key, comment)
