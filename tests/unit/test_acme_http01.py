"""http-01 on the edges: the responder runs on each edge host through its connector (here the
local machine, a directory standing in for its ``/``), answers the CA's requests for the
tokens while the order is checked, and says how often each was fetched; a port that is taken
fails the order with what to do."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from allmende.connectors.local import LocalConnector
from allmende.errors import CertificateFailed
from allmende.inventory.hostpaths import ACME_RESPONDER_DIR
from allmende.operations.certs.http01 import answering
from tests.ports import free_port

TOKENS = {"tok-A": "tok-A.print", "tok-B": "tok-B.print"}


def edge_at(root: Path) -> LocalConnector:
    """The edge named as ``root``, with ``root`` standing in for its ``/``."""
    root.mkdir()
    return LocalConnector(root.name, str(root))


def status_of(port: int, token: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_the_edges_answer_the_tokens_while_the_order_is_checked(tmp_path: Path) -> None:
    port = free_port()
    edge = edge_at(tmp_path / "gateway")
    control = tmp_path / "gateway" / ACME_RESPONDER_DIR.lstrip("/")

    async def order() -> tuple[list[tuple[int, bytes]], dict[str, dict[str, int]], bool]:
        async with edge:
            async with answering({"gateway": edge}, port, TOKENS) as answered:
                assert (control / "ready").exists()
                seen = [
                    await asyncio.to_thread(status_of, port, token)
                    for token in ("tok-A", "tok-A", "tok-C")
                ]
            return seen, answered.served, answered.reached()

    seen, served, reached = asyncio.run(order())
    assert seen == [(200, b"tok-A.print"), (200, b"tok-A.print"), (404, b"")]
    assert served == {"gateway": {"tok-A": 2, "tok-B": 0}} and reached
    assert sorted(p.name for p in control.iterdir()) == []  # ready and stop are gone
    with pytest.raises(OSError):  # and nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_taken_port_fails_the_order_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        edge = edge_at(tmp_path / "gateway")

        async def order() -> None:
            async with edge, answering({"gateway": edge}, port, TOKENS):
                raise AssertionError("the order must not be checked")

        with pytest.raises(CertificateFailed) as failed:
            asyncio.run(order())
    assert failed.value.kind == "other"
    assert str(failed.value).startswith(f"gateway: 127.0.0.1:{port} (acme.responder_port) is taken")


def test_when_one_edge_cannot_answer_the_others_stop_too(tmp_path: Path) -> None:
    port = free_port()  # two edges on one machine: the second finds the port taken
    edges = {
        "gateway": edge_at(tmp_path / "gateway"),
        "backup-edge": edge_at(tmp_path / "backup-edge"),
    }

    async def order() -> None:
        async with edges["gateway"], edges["backup-edge"], answering(edges, port, TOKENS):
            raise AssertionError("the order must not be checked")

    with pytest.raises(
        CertificateFailed, match=r"127\.0\.0\.1:\d+ \(acme.responder_port\) is taken"
    ):
        asyncio.run(order())
    for root in ("gateway", "backup-edge"):
        control = tmp_path / root / ACME_RESPONDER_DIR.lstrip("/")
        assert not control.exists() or list(control.iterdir()) == []
    with pytest.raises(OSError):  # the one that listened was stopped
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_nothing_served_means_the_ca_did_not_reach_the_edge(tmp_path: Path) -> None:
    edge = edge_at(tmp_path / "gateway")

    async def order() -> bool:
        async with edge, answering({"gateway": edge}, free_port(), TOKENS) as answered:
            pass
        assert answered.served == {"gateway": {"tok-A": 0, "tok-B": 0}}
        return answered.reached()

    assert asyncio.run(order()) is False
