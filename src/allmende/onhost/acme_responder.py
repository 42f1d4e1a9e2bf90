"""Answer ACME http-01 challenges on an edge host while a certificate is being obtained.

Arguments: the port (on 127.0.0.1, where the edge's HTTP port sends every
``/.well-known/acme-challenge/`` request), a control directory and the most seconds to run.
Standard input: a JSON object, token -> key authorization. It answers
``GET /.well-known/acme-challenge/<token>`` with the key authorization and anything else with
404, writes ``<directory>/ready`` once it listens, and stops when ``<directory>/stop`` appears
or the time is up; then it prints, as JSON, how often each token was fetched (``served``) and
how many other requests came (``other``). Exit 2 for bad input, 3 when the port is taken.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import re
import sys
import threading
import time
from typing import Any

#: The exit status that says the port is taken (another renewal, or another program).
TAKEN = 3
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
PREFIX = "/.well-known/acme-challenge/"


def handler(tokens: dict[str, str], served: dict[str, int], other: list[int]) -> type[Any]:
    """Return the request handler class answering ``tokens``, counting into ``served``."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            token = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
            body = tokens.get(token) if _TOKEN.match(token) else None
            if body is None:
                other[0] += 1
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            served[token] += 1
            data = body.encode("ascii")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Answer


def main(port: str, directory: str, seconds: str) -> int:
    """Serve the tokens read from standard input (see the module docstring)."""
    try:
        tokens = json.loads(sys.stdin.read())
        ok = isinstance(tokens, dict) and all(
            isinstance(k, str) and _TOKEN.match(k) and isinstance(v, str) for k, v in tokens.items()
        )
        if not ok:
            raise ValueError("not token -> key authorization")
        limit = float(seconds)
        number = int(port)
    except ValueError as exc:
        sys.stderr.write(f"bad input: {exc}\n")
        return 2
    served = dict.fromkeys(tokens, 0)
    other = [0]
    try:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", number), handler(tokens, served, other)
        )
    except OSError as exc:
        sys.stderr.write(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}\n")
        return TAKEN
    control = pathlib.Path(directory)
    control.mkdir(mode=0o700, parents=True, exist_ok=True)
    stop, ready = control / "stop", control / "ready"
    stop.unlink(missing_ok=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        ready.write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not stop.exists():
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for path in (ready, stop):
            path.unlink(missing_ok=True)
    sys.stdout.write(json.dumps({"served": served, "other": other[0]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
