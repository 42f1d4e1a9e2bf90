"""The `serve` part of `up`: the built site over HTTP, on 127.0.0.1 only.

The standard library's threading HTTP server with a file handler bound to one directory; no
outside access (the address is fixed to the loopback), request logs go to the debug log. A
request is answered only when its ``Host`` names the server as it is bound (``127.0.0.1``,
``localhost``, with the port or without): a web page elsewhere that points a name of its own at
127.0.0.1 (DNS rebinding) gets 421 and never reads the site.
"""

from __future__ import annotations

import errno
import logging
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from allmende.errors import UserError

log = logging.getLogger(__name__)

#: The only address the site is served on.
ADDRESS = "127.0.0.1"


#: Content types with their charset, so browsers need no guessing.
TYPES = {
    **SimpleHTTPRequestHandler.extensions_map,
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
}


#: The names a request may give its server by (with the port, or without).
NAMES = (ADDRESS, "localhost")


class QuietHandler(SimpleHTTPRequestHandler):
    """Serve files of one directory to requests that name this server; log requests at debug
    level instead of on stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.extensions_map = TYPES
        super().__init__(*args, **kwargs)

    def _ours(self) -> bool:
        address: Any = self.server.server_address
        port = address[1]
        names = {name for n in NAMES for name in (n, f"{n}:{port}")}
        return self.headers.get("Host", "").lower() in names

    def send_head(self) -> Any:
        if not self._ours():
            self.send_error(421, "Misdirected Request: this server answers for 127.0.0.1 only")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def serve(directory: Path, port: int = 8000) -> ThreadingHTTPServer:
    """Given a directory and a port (0: any free one), return a server bound to 127.0.0.1.

    The server is bound but not yet serving: call ``serve_forever()`` (in a thread, for
    tests) and ``shutdown()`` / ``server_close()`` to stop it; ``server_address[1]`` is the
    port. Raise UserError if the directory does not exist or the port is taken.
    """
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory: nothing to serve")
    handler = partial(QuietHandler, directory=str(directory))
    try:
        return ThreadingHTTPServer((ADDRESS, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {ADDRESS} is already in use: pass another --port (0 picks a "
                "free one)"
            ) from None
        raise UserError(f"cannot serve on {ADDRESS}:{port}: {exc.strerror}") from None
