"""Send one command to HAProxy's master socket and print the answer (socat is not everywhere).

Arguments: the socket's path and the command. Exit 3 when nothing listens there.
"""

from __future__ import annotations

import socket
import sys

#: The exit status that says no master listens.
NOBODY = 3


def main(path: str, command: str) -> int:
    """Send ``command`` to the unix socket ``path``, print the answer; return the status."""
    out = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(path)
        except OSError as e:
            sys.stderr.write(str(e) + "\n")
            return NOBODY
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
    sys.stdout.write(out.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
