"""The argument lists that drive Incus on a host, and the small scripts run inside instances.

Incus is driven through its REST API with ``incus query`` (one atomic request per create or
change, the body exactly the rendered definition) and the ``incus`` CLI for what it does
better (start, stop, rename, exec, snapshots, the preseed). Every command runs on the Incus
host itself through ``Connector.run`` (over SSH for a remote host). Commands that read a file
or need the time of day go through ``sh -c`` with a fixed script and the values as arguments.

What runs inside a system container after it is made is one fixed script per job, given the
packages or services as arguments, that finds the distribution's package manager (apt-get,
apk, pacman, dnf, zypper) or init (systemd, OpenRC) itself; ``setup`` steps are the user's own
shell commands, each run once with ``sh -c``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from allmende.engines.base import Command

#: Waits until the instance's init is up and it has a default route (its package manager and
#: setup steps may need the network), at most a minute.
WAIT = r"""i=0
while [ "$i" -lt 60 ]; do
  if grep -q '^[^[:space:]]*[[:space:]]00000000' /proc/net/route 2>/dev/null; then
    if [ -d /run/systemd/system ]; then systemctl is-system-running --wait >/dev/null 2>&1 || :; fi
    exit 0
  fi
  i=$((i + 1)); sleep 1
done
echo "no network in the instance (no default route) after 60 s: is its eth0 getting an address?" >&2
exit 1"""

#: Installs the packages given as arguments that are missing, with the package manager found.
INSTALL = r"""set -e
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -n "$missing" ] || exit 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q $missing
elif command -v apk >/dev/null 2>&1; then apk add --no-cache "$@"
elif command -v pacman >/dev/null 2>&1; then pacman -S --needed --noconfirm "$@"
elif command -v dnf >/dev/null 2>&1; then dnf install -y "$@"
elif command -v zypper >/dev/null 2>&1; then zypper --non-interactive install "$@"
else
  echo "no package manager allmende knows (apt-get, apk, pacman, dnf, zypper) to install: $*" >&2
  exit 1
fi"""

#: Enables and starts the services given as arguments, with the init found.
ENABLE = r"""set -e
if [ -d /run/systemd/system ]; then systemctl enable --now "$@"
elif command -v rc-update >/dev/null 2>&1; then
  for s in "$@"; do rc-update add "$s" default; rc-service "$s" start; done
else
  echo "no init allmende knows (systemd, OpenRC) to enable: $*" >&2
  exit 1
fi"""

#: Stops and disables the services given as arguments.
DISABLE = r"""set -e
if [ -d /run/systemd/system ]; then systemctl disable --now "$@"
elif command -v rc-update >/dev/null 2>&1; then
  for s in "$@"; do rc-service "$s" stop || :; rc-update del "$s" default || :; done
fi"""

#: Takes a snapshot named after the time: ``$1`` the instance, ``$2`` the name's start.
SNAPSHOT_NOW = 'exec incus snapshot create "$1" "$2-$(date -u +%Y%m%d-%H%M%S)"'
#: Deletes the instance ``$1`` if it exists (an undo that may find nothing to undo).
DELETE_IF_THERE = (
    'if incus query "/1.0/instances/$1" >/dev/null 2>&1; then exec incus delete --force "$1"; fi'
)
#: Puts the instance kept aside (``$2``) back in the place of ``$1`` and starts it.
PUT_BACK = (
    'if incus query "/1.0/instances/$2" >/dev/null 2>&1; then '
    'incus rename "$2" "$1" && incus config set "$1" boot.autostart=true && '
    'exec incus start "$1"; fi'
)
#: Deletes every instance of the service ``$1`` (with what it kept aside).
DELETE_SERVICE = (
    'for i in $(incus list "user.allmende.service=$1" --format csv --columns n); do '
    'incus delete --force "$i" || exit 1; done'
)
#: Starts every instance of the service ``$1`` that is not running.
START_SERVICE = (
    'for i in $(incus list "user.allmende.service=$1" status=stopped --format csv --columns n); '
    'do case "$i" in *-previous) ;; *) incus start "$i" || exit 1;; esac; done'
)
#: Applies the preseed file ``$1``.
PRESEED = 'exec incus admin init --preseed < "$1"'


def _json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def query(method: str, path: str, body: Mapping[str, Any] | None = None) -> Command:
    """Return ``incus query`` of one REST request, waiting for its operation to end."""
    data = ("--data", _json(body)) if body is not None else ()
    return ("incus", "query", "-X", method, "--wait", path, *data)


def create(body: Mapping[str, Any]) -> Command:
    """Return the request that creates an instance from its definition."""
    return query("POST", "/1.0/instances", body)


def put(name: str, body: Mapping[str, Any]) -> Command:
    """Return the request that replaces an instance's configuration, devices, profiles and
    description at once: Incus takes all of it or, refusing any part, none."""
    return query("PUT", f"/1.0/instances/{name}", body)


def incus(*words: str) -> Command:
    """Return an ``incus`` CLI command."""
    return ("incus", *words)


def sh(script: str, *args: str) -> Command:
    """Return a fixed ``sh -c`` script with its arguments (``$1``...)."""
    return ("sh", "-c", script, "sh", *args)


def inside(name: str, script: str, *args: str) -> Command:
    """Return a fixed script run in the instance ``name`` with its arguments."""
    return ("incus", "exec", name, "--", "sh", "-c", script, "sh", *args)


def step(name: str, text: str) -> Command:
    """Return a user's setup step run in the instance ``name``."""
    return ("incus", "exec", name, "--", "sh", "-c", text)


def record(name: str, keys: Mapping[str, str]) -> Command:
    """Return the command that records ``user.allmende.*`` keys once what they say was done."""
    return ("incus", "config", "set", name, *(f"{k}={v}" for k, v in sorted(keys.items())))


def mkdirs(paths: Sequence[str]) -> Command:
    """Return the command that makes the host directories of new volumes."""
    return ("mkdir", "-p", *paths)
