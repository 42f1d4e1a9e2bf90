"""What a plan shows and records of a file's content: its sha256, or, for a file that carries
secret values, an HMAC keyed with the host's own key.

A plain SHA-256 of a secret value (in ``plan --json``, a CI log, the state database, the host's
manifest) is a dictionary attack away from the value: ``hunter2`` is found in a second. So the
hash of every file written with mode 0600 (``changes.sensitive``) is shown and stored only as
``hmac-sha256:<HMAC-SHA256(key, sha256 hex)>``, with a random 32-byte key kept on the host
(``hostpaths.HASH_KEY``, mode 0600, next to the manifest). Whoever can read that key is root
there and can read the secret files themselves; everybody else sees a value they cannot test
guesses against, and the same secret on two hosts gives two unrelated values.

Plan and apply still compare plain hashes in memory, so a changed secret value is seen. A host
that has no key yet (never applied by this allmende) gets one chosen by the plan, which apply
writes before anything else; until then the plan's checksum covers only whether such a file
changes, not its hash, so that two plans of that host agree.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

#: How a keyed hash starts, to tell it from a plain sha256.
KEYED = "hmac-sha256:"
#: The length of a host's key, in bytes.
KEY_BYTES = 32


@dataclass(frozen=True)
class HostKey:
    """A host's key for the hashes of secret files; ``new`` when the host has none yet (apply
    writes this one)."""

    value: bytes = field(repr=False)
    new: bool = False

    def keyed(self, plain: str) -> str:
        """Return the keyed hash of a file whose plain sha256 hex digest is ``plain``."""
        return KEYED + hmac.new(self.value, plain.encode(), hashlib.sha256).hexdigest()

    def shown(self, plain: str, sensitive: bool) -> str:
        """Return what is shown and recorded of a file with sha256 ``plain``: the keyed hash
        where it carries secrets, else the sha256 itself."""
        return self.keyed(plain) if sensitive else plain


def host_key(found: bytes | None) -> HostKey:
    """Given the content of the host's key file (None: there is none), return its key, or a
    new random one when there is none or it is not a key."""
    if found is not None and len(found) == KEY_BYTES:
        return HostKey(found)
    return HostKey(secrets.token_bytes(KEY_BYTES), new=True)
