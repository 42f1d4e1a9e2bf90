"""The secret store: values of named secrets, encrypted with age, in the inventory's ``secrets/``.

Layout, readable with the plain ``age`` tool as well::

    secrets/recipients.txt              public keys (age1...), one a line, '#' comment lines;
                                        every value is encrypted to all of them
    secrets/music/django-secret.age     the value of ``music/django-secret`` (age binary format)

The private key (an age identity file as ``age-keygen`` writes it) lives outside the inventory,
at the first of ``$ALLMENDE_AGE_KEY``, ``$XDG_CONFIG_HOME/allmende/age.key`` and
``~/.config/allmende/age.key``, readable by its owner only (a key file others can read is
refused, as SSH refuses one). Every failure is a ``SecretError``; values never appear in
messages, logs or reprs, and neither does the private key. Adding a recipient holds
``secrets/.lock``, so that members adding theirs at once lose none.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from allmende.errors import SecretError
from allmende.inventory.atomic import create_new, write_atomic
from allmende.inventory.typed import typed

SECRETS_DIR = "secrets"
RECIPIENTS_FILE = "recipients.txt"
#: Held while the recipients file is changed (a dot file: never taken for a secret).
LOCK_FILE = ".lock"
SUFFIX = ".age"
NAME_MAX = 200
KEY_ENV = "ALLMENDE_AGE_KEY"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")
_AGE_STARTS = (b"age-encryption.org/v1\n", b"-----BEGIN AGE ENCRYPTED FILE-----")
# pyrage 1.4 says exactly this when none of the identities opens any recipient stanza.
_NO_MATCHING_KEY = "No matching keys found"
_INIT = "`allmende secret init`"
_RECIPIENTS_HEADER = (
    "# Public age keys (age1...) that every secret in this directory is encrypted to, one a line.\n"
    "# Add one with `allmende secret recipient add age1...`.\n"
)


def check_name(name: str) -> str | None:
    """Given a secret name, return why it is not a valid name, or None if it is one."""
    if len(name) <= NAME_MAX and _NAME.fullmatch(name):
        return None
    if not name:
        return "a secret name must not be empty"
    if len(name) > NAME_MAX:
        return f"a secret name is at most {NAME_MAX} characters long, this one has {len(name)}"
    shown = f"`{name}`" if name.isprintable() else repr(name)
    example = " (e.g. music/django-secret)"
    if name != name.lower():
        return f"secret name {shown} has uppercase letters: secret names are lowercase{example}"
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        chars = " ".join(repr(c) for c in bad)
        return (
            f"secret name {shown} contains {chars}: use lowercase letters, digits, '.', '_'"
            f" and '-', with '/' between parts{example}"
        )
    if "" in name.split("/"):
        return f"secret name {shown} has an empty part: one '/' between parts, none at the ends"
    return f"secret name {shown}: each part must start with a lowercase letter or digit{example}"


@dataclass(frozen=True)
class KeyLocation:
    """Where the private key file is, and which setting put it there (for messages)."""

    path: Path
    source: str


@dataclass(frozen=True)
class NewKey:
    """A private key just created: where it is and its public key."""

    path: Path
    public_key: str


def key_location(root: Path, env: Mapping[str, str] | None = None) -> KeyLocation:
    """Given the inventory root and the environment, return where the private key file is.

    The first of ``$ALLMENDE_AGE_KEY``, ``$XDG_CONFIG_HOME/allmende/age.key`` (when absolute)
    and ``$HOME/.config/allmende/age.key``. The file need not exist. Raise SecretError if the
    path lies inside the inventory, where it would end up in Git next to what it protects.
    """
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        value = env[KEY_ENV]
        if value == "~" or value.startswith("~/"):
            value = _home(env) + value[1:]
        location = KeyLocation(Path(value).absolute(), f"set by {KEY_ENV}")
    elif env.get("XDG_CONFIG_HOME", "").startswith("/"):
        path = Path(env["XDG_CONFIG_HOME"]) / "allmende" / "age.key"
        location = KeyLocation(path, "from XDG_CONFIG_HOME")
    else:
        path = Path(_home(env)) / ".config" / "allmende" / "age.key"
        location = KeyLocation(path, "the default place")
    try:
        inside = location.path.resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError) as err:  # a symbolic link loop
        raise SecretError(f"cannot follow the age key file path {location.path}: {err}") from None
    if inside:
        raise SecretError(
            f"the age key file {location.path} ({location.source}) is inside the inventory"
            f" {root}: a private key must never be committed next to the secrets it opens;"
            f" keep it outside, e.g. at ~/.config/allmende/age.key, or set {KEY_ENV}"
        )
    return location


def _home(env: Mapping[str, str]) -> str:
    try:
        return env.get("HOME") or str(Path.home())
    except RuntimeError:
        raise SecretError(f"cannot tell where your home directory is: set {KEY_ENV}") from None


def _read_identities(location: KeyLocation) -> list[Any]:
    """Given where the key is, return its age identities. Raise SecretError if that fails."""
    path = location.path
    if not path.exists():
        raise SecretError(
            f"no age key file at {path} ({location.source}): run {_INIT} to create one there,"
            f" or set {KEY_ENV} to the path of your existing age key file"
        )
    try:
        data = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as err:
        raise SecretError(f"cannot read the age key file {path}: {err.strerror}") from None
    if mode & 0o077:
        raise SecretError(
            f"the age key file {path} can be read by others (mode {mode:04o}): run `chmod 600 "
            f"{path}`; whoever could read it may have a copy, so think about a new key"
        )
    if data.startswith(_AGE_STARTS):
        raise SecretError(
            f"the age key file {path} is protected with a passphrase, which allmende does not"
            f" support: decrypt it to a file readable only by you and set {KEY_ENV} to it"
        )
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SecretError(f"{path} is not an age key file (it is not text)") from None
    identities: list[Any] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith("AGE-SECRET-KEY-1"):
            raise SecretError(
                f"{path}:{number}: not an age private key (a line AGE-SECRET-KEY-1...);"
                " only age keys as `allmende secret init` or `age-keygen` write them are supported"
            )
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SecretError(f"{path}:{number}: this age private key is damaged") from None
    if not identities:
        raise SecretError(f"{path} holds no age private key (a line AGE-SECRET-KEY-1...)")
    return identities


def _parse_public_key(text: str) -> str:
    """Given a public key as typed, return it canonical. Raise SecretError if it is none."""
    key = text.strip()
    if key.upper().startswith("AGE-SECRET-KEY-"):
        raise SecretError(
            "that is a private key, not a public one: keep it to yourself and give the public key"
            " (age1...), which `allmende secret init` printed and `age-keygen -y KEYFILE` prints"
        )
    if not key.lower().startswith("age1"):
        raise SecretError(
            "not an age public key: expected one starting with age1 (SSH keys and plugin"
            " recipients are not supported)"
        )
    try:
        return str(x25519.Recipient.from_str(key))
    except pyrage.RecipientError:
        raise SecretError("not a valid age public key: it looks damaged or cut off") from None


def _make_private_dirs(directory: Path) -> None:
    """Create directory and its missing parents, each readable only by its owner."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for new in reversed(missing):
        new.mkdir(mode=0o700, exist_ok=True)
        new.chmod(0o700)


def create_key(root: Path, env: Mapping[str, str] | None = None, comment: str = "") -> NewKey:
    """Given the inventory root and the environment, create a new private age key.

    Write it at ``key_location(root, env)`` with mode 0600 (new parent directories 0700),
    complete or not at all, and add its public key to ``secrets/recipients.txt`` (with comment
    above it, if given). Return where it is and its public key. Raise SecretError if a key file
    is already there (it is never overwritten), if the place is inside the inventory, or if
    writing fails.
    """
    location = key_location(root, env)
    path = location.path
    if path.exists() or path.is_symlink():
        hint = f"set {KEY_ENV} to another path to create a second key"
        with contextlib.suppress(SecretError):
            public = str(_read_identities(location)[0].to_public())
            adding = typed(root, "secret", "recipient", "add", public)
            hint = f"to use it for this inventory, run `{adding}`"
        raise SecretError(f"an age key file already exists at {path}; not replacing it: {hint}")
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    created = datetime.now().astimezone().replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {public}\n{identity}\n"
    try:
        _make_private_dirs(path.parent)
        create_new(path, text.encode(), 0o600)
    except FileExistsError:
        raise SecretError(f"an age key file already exists at {path}; not replacing it") from None
    except OSError as err:
        raise SecretError(f"cannot create the age key file {path}: {err.strerror}") from None
    try:
        SecretStore(root, env).add_recipient(public, comment)
    except SecretError as err:
        raise SecretError(
            f"created the age key file {path}, but could not add its public key {public} to"
            f" {SECRETS_DIR}/{RECIPIENTS_FILE}: {err}"
        ) from None
    return NewKey(path=path, public_key=public)


class SecretStore:
    """The secrets of the inventory at root; env says where the private key is."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.directory = self.root / SECRETS_DIR
        self.recipients_file = self.directory / RECIPIENTS_FILE
        self._env: Mapping[str, str] = os.environ if env is None else env

    def __repr__(self) -> str:
        return f"SecretStore({str(self.root)!r})"

    def key_location(self) -> KeyLocation:
        """Return where the private key file is. Raise SecretError if inside the inventory."""
        return key_location(self.root, self._env)

    def path(self, name: str) -> Path:
        """Given a secret name, return the file of its value. Raise SecretError if invalid."""
        problem = check_name(name)
        if problem:
            raise SecretError(problem)
        return self.directory / (name + SUFFIX)

    def _shown(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def names(self) -> list[str]:
        """Return the names of all stored secrets, sorted. Needs no key; reads no file."""
        found: list[str] = []
        pending = [(self.directory, "")]
        while pending:
            directory, prefix = pending.pop()
            try:
                with os.scandir(directory) as scan:
                    entries = list(scan)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # temporary files of set(), and anything hidden
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
                elif entry.name.endswith(SUFFIX) and entry.is_file():
                    name = prefix + entry.name[: -len(SUFFIX)]
                    if check_name(name) is None:
                        found.append(name)
        return sorted(found)

    def exists(self, name: str) -> bool:
        """Given a secret name, return whether it has a value. Raise SecretError if invalid."""
        return self.path(name).is_file()

    def _unknown(self, name: str) -> SecretError:
        close = difflib.get_close_matches(name, self.names(), n=3)
        if close:
            hint = "did you mean " + " or ".join(close) + "?"
        else:
            hint = f"`{typed(self.root, 'secret', 'list')}` shows the names there are"
        return SecretError(f"there is no secret {name}: {hint}")

    def recipients(self) -> list[str]:
        """Return the public keys in secrets/recipients.txt, canonical, without duplicates.

        Return [] if the file does not exist. Raise SecretError if it cannot be read or a line
        is not an age public key.
        """
        try:
            text = self.recipients_file.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as err:
            raise SecretError(f"cannot read {self._shown(self.recipients_file)}: {err}") from None
        keys: list[str] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                key = _parse_public_key(line)
            except SecretError as err:
                where = f"{self._shown(self.recipients_file)}:{number}"
                raise SecretError(f"{where}: {err}") from None
            if key not in keys:
                keys.append(key)
        return keys

    def require_recipients(self) -> list[str]:
        """Return the recipients (see recipients()). Raise SecretError if there are none."""
        keys = self.recipients()
        if not keys:
            state = "is empty" if self.recipients_file.exists() else "does not exist"
            raise SecretError(
                f"{self._shown(self.recipients_file)} {state}, so there is no one to encrypt"
                f" secrets to: run `{typed(self.root, 'secret', 'init')}` to create your key and"
                " add it, or add a member's public key with"
                f" `{typed(self.root, 'secret', 'recipient', 'add', 'age1...')}`"
            )
        return keys

    def set(self, name: str, value: bytes) -> None:
        """Given a name and a value, store the value encrypted to every recipient.

        Replace an earlier value atomically: on failure the old value stays as it was. Raise
        SecretError if the name is invalid, there are no valid recipients or writing fails.
        """
        path = self.path(name)
        recipients = [x25519.Recipient.from_str(k) for k in self.require_recipients()]
        try:
            ciphertext: bytes = pyrage.encrypt(value, recipients)
        except pyrage.EncryptError as err:
            raise SecretError(f"cannot encrypt {name}: {err}") from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, ciphertext)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise SecretError(f"cannot write {self._shown(path)}: {reason}") from None

    def get(self, name: str) -> bytes:
        """Given a secret name, return its value, decrypted with the private key.

        Raise SecretError if the name is invalid or unknown, the key file is missing, unreadable
        or inside the inventory, the value was not encrypted to this key, or its file is damaged.
        """
        path = self.path(name)
        if not path.is_file():
            raise self._unknown(name)
        location = self.key_location()
        identities = _read_identities(location)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SecretError(f"cannot read {self._shown(path)}: {err.strerror}") from None
        damaged = f"cannot decrypt {name}: {self._shown(path)} is damaged or not age-encrypted"
        if not data.startswith(_AGE_STARTS):
            raise SecretError(damaged)
        try:
            value: bytes = pyrage.decrypt(data, identities)
        except pyrage.DecryptError as err:
            if str(err) != _NO_MATCHING_KEY:
                raise SecretError(f"{damaged} ({err})") from None
            raise self._not_for_you(name, location, identities) from None
        return value

    def _not_for_you(self, name: str, location: KeyLocation, identities: list[Any]) -> SecretError:
        public = str(identities[0].to_public())
        try:
            listed = public in self.recipients()
        except SecretError:
            listed = False
        if listed:
            hint = (
                f"your key is in {SECRETS_DIR}/{RECIPIENTS_FILE}, so it was probably added after"
                f" {name} was last set: someone who can decrypt {name} must set it again"
            )
        else:
            hint = (
                "someone who can decrypt it must run"
                f" `{typed(self.root, 'secret', 'recipient', 'add', public)}` and set {name} again"
            )
        return SecretError(
            f"cannot decrypt {name}: it was not encrypted to your key {location.path}"
            f" (public key {public}); {hint}"
        )

    def remove(self, name: str) -> None:
        """Given a secret name, delete its value and any directories that become empty.

        Raise SecretError if the name is invalid or unknown, or the file cannot be removed.
        """
        path = self.path(name)
        if not path.is_file():
            raise self._unknown(name)
        try:
            path.unlink()
        except OSError as err:
            raise SecretError(f"cannot remove {self._shown(path)}: {err.strerror}") from None
        parent = path.parent
        while parent != self.directory and parent.is_relative_to(self.directory):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def add_recipient(self, public_key: str, comment: str = "") -> bool:
        """Given an age public key, add it to secrets/recipients.txt (creating the file).

        Write comment on a line of its own above it, if given. Return False, changing nothing,
        if the key is there already. Values already stored stay encrypted to the recipients
        they were set for. Raise SecretError if the key or comment is invalid or writing fails.
        """
        key = _parse_public_key(public_key)
        if "\n" in comment or "\r" in comment:
            raise SecretError("a recipient's comment must be a single line")
        path = self.recipients_file
        with self._locked():
            if key in self.recipients():
                return False
            try:
                text = path.read_text() if path.exists() else _RECIPIENTS_HEADER
                if text and not text.endswith("\n"):
                    text += "\n"
                text += (f"# {comment.strip()}\n" if comment.strip() else "") + f"{key}\n"
                write_atomic(path, text.encode())
            except OSError as err:
                raise SecretError(f"cannot write {self._shown(path)}: {err.strerror}") from None
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock of the recipients file (``secrets/.lock``): two members adding a
        recipient at once each add theirs, neither writes over the other's."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise SecretError(f"cannot lock {SECRETS_DIR}/{LOCK_FILE}: {err.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def own_public_key(self) -> str | None:
        """Return the public key of your age key, or None if there is no key to read."""
        try:
            return str(_read_identities(self.key_location())[0].to_public())
        except SecretError:
            return None
