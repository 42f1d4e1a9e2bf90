"""Wait until a TCP port accepts connections, as seen from this host.

Arguments: the address, the port and how many seconds to wait at most. Exit 0 once a
connection is accepted (it is closed at once), 1 after the time is up, saying why.
"""

from __future__ import annotations

import socket
import sys
import time


def main(address: str, port: str, seconds: str) -> int:
    """Try to connect every 0.2 s until it works or ``seconds`` have passed."""
    deadline = time.monotonic() + float(seconds)
    while True:
        try:
            with socket.create_connection((address, int(port)), timeout=2):
                return 0
        except OSError as e:
            if time.monotonic() > deadline:
                sys.stderr.write(f"{address}:{port} does not accept connections: {e}\n")
                return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
