"""Free ports on 127.0.0.1 for the servers tests start, kept apart between test runs.

A port found free (bound to port 0, then let go) is only free until someone binds it, and
HAProxy binds with SO_REUSEPORT: two test runs at the same time that picked the same number
would share it, each HAProxy answering half of the other's requests. So each port handed out
is reserved for the life of the process that asked for it, by an abstract Unix socket named
after it (``@allmende-test-port-<port>``): the kernel drops the name when the process ends,
nothing is left on disk, and every other test run on the machine skips the port.
"""

from __future__ import annotations

import socket

#: The reservations of this process (kept open: closing one gives its port back).
_HELD: list[socket.socket] = []


def _reserve(port: int) -> bool:
    """Reserve ``port`` for this process; return False if another test run has it."""
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.bind(f"\0allmende-test-port-{port}")
    except OSError:
        holder.close()
        return False
    _HELD.append(holder)
    return True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now and that no other test run
    on this machine will be given."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if _reserve(port):
            return port
