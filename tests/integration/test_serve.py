"""The built site over real HTTP on 127.0.0.1, as `allmende up` serves it."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from allmende.actions.docs import build
from allmende.actions.serve import serve
from allmende.errors import UserError

NORDLICHT = Path(__file__).parents[1] / "fixtures" / "valid" / "nordlicht"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    out = tmp_path / "site"
    build(NORDLICHT, out, {})
    server = serve(out, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fetch(server: ThreadingHTTPServer, path: str) -> tuple[int, str, str]:
    host, port = server.server_address[:2]
    with urllib.request.urlopen(f"http://{host!s}:{port}/{path}", timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_the_site_is_served_on_the_loopback_only(server: ThreadingHTTPServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.server_address[1] != 0


def test_index_and_a_service_page_over_http(server: ThreadingHTTPServer) -> None:
    status, kind, body = fetch(server, "index.html")
    assert status == 200 and kind.startswith("text/html")
    assert "<h1>nordlicht</h1>" in body
    status, _, body = fetch(server, "")
    assert status == 200 and "<h1>nordlicht</h1>" in body
    status, _, body = fetch(server, "services/wiki.html")
    assert status == 200
    assert "/srv/wiki/images" in body and "borg extract" in body
    status, kind, body = fetch(server, "style.css")
    assert status == 200 and kind.startswith("text/css")
    status, kind, body = fetch(server, "markdown/services/wiki.md")
    assert status == 200 and kind.startswith("text/markdown") and body.startswith("# wiki")


def test_a_missing_page_is_404(server: ThreadingHTTPServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        fetch(server, "services/nothing.html")
    assert raised.value.code == 404
    raised.value.close()


def test_a_taken_port_is_a_user_error(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="already in use"):
        serve(tmp_path, server.server_address[1])


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io", ""])
def test_a_request_for_another_name_is_refused(server: ThreadingHTTPServer, host: str) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 reads nothing."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.putrequest("GET", "/index.html", skip_host=True)
    if host:
        connection.putheader("Host", host.format(port=port))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 421
    assert b"nordlicht" not in answer.read()
    connection.close()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST"])
def test_a_request_that_names_the_server_is_answered(
    server: ThreadingHTTPServer, host: str
) -> None:
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/index.html", headers={"Host": host.format(port=port)})
    answer = connection.getresponse()
    assert answer.status == 200 and b"<h1>nordlicht</h1>" in answer.read()
    connection.close()
