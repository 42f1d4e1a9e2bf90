"""The small programs run on hosts (``python3 -I -S -c``), run here in-process against real
sockets and files on this machine: the http-01 responder, the wait for a port, the word to
HAProxy's master socket, and a SQLite database streamed into a backup's pipe."""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from allmende import onhost
from allmende.onhost import acme_responder, dumps, master_cli, tcp_wait
from tests.ports import free_port

TOKEN = "tok_EN-1"
KEY_AUTH = "tok_EN-1.thumbprint"


def fetch(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1:``port``; return the status and the body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(path: Path, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_the_responder_answers_its_tokens_and_counts_what_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    control = tmp_path / "control"
    (control).mkdir()
    (control / "stop").write_text("")  # left by an earlier run: must not stop this one
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({TOKEN: KEY_AUTH})))
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(acme_responder.main(str(port), str(control), "60"))
    )
    thread.start()
    try:
        wait_for(control / "ready")
        assert thread.is_alive()
        prefix = "/.well-known/acme-challenge/"
        assert fetch(port, prefix + TOKEN) == (200, KEY_AUTH.encode())
        assert fetch(port, prefix + TOKEN + "?from=ca") == (200, KEY_AUTH.encode())
        assert fetch(port, prefix + "unknown") == (404, b"")
        assert fetch(port, prefix + "../etc/passwd") == (404, b"")
        assert fetch(port, "/" + TOKEN) == (404, b"")
    finally:
        (control / "stop").write_text("")
        thread.join(10)
    assert not thread.is_alive() and status == [0]
    assert json.loads(capsys.readouterr().out) == {"served": {TOKEN: 2}, "other": 3}
    assert not (control / "ready").exists() and not (control / "stop").exists()
    with pytest.raises(OSError):  # the port is free again: nothing answers
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_responder_stops_when_its_time_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({TOKEN: KEY_AUTH})))
    started = time.monotonic()
    assert acme_responder.main(str(free_port()), str(tmp_path / "new" / "dir"), "0.3") == 0
    assert time.monotonic() - started < 5
    assert json.loads(capsys.readouterr().out) == {"served": {TOKEN: 0}, "other": 0}
    assert oct((tmp_path / "new" / "dir").stat().st_mode & 0o777) == "0o700"


def test_the_responder_says_when_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({TOKEN: KEY_AUTH})))
        assert acme_responder.main(str(port), str(tmp_path), "5") == acme_responder.TAKEN
    said = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in said.err and said.out == ""
    assert not (tmp_path / "ready").exists()


@pytest.mark.parametrize(
    ("stdin", "port", "seconds"),
    [
        ("not json", "8402", "5"),
        ('["a list"]', "8402", "5"),
        ('{"bad/token": "x"}', "8402", "5"),
        ('{"tok": 1}', "8402", "5"),
        ('{"tok": "tok.x"}', "8402", "soon"),
        ('{"tok": "tok.x"}', "http", "5"),
    ],
)
def test_the_responder_refuses_bad_input(
    stdin: str,
    port: str,
    seconds: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert acme_responder.main(port, str(tmp_path / "control"), seconds) == 2
    assert capsys.readouterr().err.startswith("bad input: ")
    assert not (tmp_path / "control").exists()


def test_tcp_wait_returns_once_the_port_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert tcp_wait.main("127.0.0.1", str(server.getsockname()[1]), "5") == 0
    port = free_port()
    started = time.monotonic()
    assert tcp_wait.main("127.0.0.1", str(port), "0.5") == 1
    assert 0.5 <= time.monotonic() - started < 5
    assert f"127.0.0.1:{port} does not accept connections" in capsys.readouterr().err


def test_tcp_wait_waits_for_a_port_that_opens_later() -> None:
    port = free_port()
    server = socket.socket()

    def listen_later() -> None:
        time.sleep(0.5)
        server.bind(("127.0.0.1", port))
        server.listen()

    late = threading.Thread(target=listen_later)
    late.start()
    try:
        assert tcp_wait.main("127.0.0.1", str(port), "10") == 0
    finally:
        late.join()
        server.close()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket that answers as HAProxy's master CLI does: it reads the command up to
    the end of the input, answers and closes. Yields its path and the commands it got."""
    path = tmp_path / "master.sock"
    heard: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                command = b""
                while chunk := conn.recv(4096):
                    command += chunk
                heard.append(command)
                if command.startswith(b"show proc"):
                    conn.sendall(b"#<PID>  <type>  <reloads>\n4242  master  0\n4243  worker  0\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield path, heard
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def test_master_cli_sends_one_command_and_prints_the_answer(
    master: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, heard = master
    assert master_cli.main(str(path), "show proc") == 0
    assert heard == [b"show proc\n"]
    assert capsys.readouterr().out.splitlines()[1:] == ["4242  master  0", "4243  worker  0"]
    assert master_cli.main(str(path), "reload") == 0  # the master cuts a reload's answer
    assert heard[-1] == b"reload\n" and capsys.readouterr().out == ""


def test_master_cli_says_when_no_master_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert master_cli.main(str(tmp_path / "nobody.sock"), "show proc") == master_cli.NOBODY
    assert "No such file or directory" in capsys.readouterr().err


def sqlite_spec(tmp_path: Path, source: Path) -> dict[str, object]:
    (tmp_path / "run").mkdir(exist_ok=True)
    fifo = tmp_path / "run" / "db.sqlite"
    fifo.write_bytes(b"")  # a plain file stands in for the pipe
    return {"kind": "sqlite", "file": str(source), "fifo": str(fifo),
            "stats": str(tmp_path / "run" / "stats.json")}  # fmt: skip


def test_a_sqlite_database_is_copied_whole_into_the_pipe_while_it_is_used(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live.sqlite"
    db = sqlite3.connect(live)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute('CREATE TABLE "odd ""name""" (x)')
    db.execute("CREATE TABLE notes (x)")
    db.executemany("INSERT INTO notes VALUES (?)", [(i,) for i in range(50)])
    db.commit()
    db.execute("INSERT INTO notes VALUES (50)")  # not committed: not in the dump
    spec = sqlite_spec(tmp_path, live)
    try:
        assert dumps.main(["write", json.dumps(spec)]) == 0
    finally:
        db.close()
    stats = json.loads(Path(str(spec["stats"])).read_text())
    assert stats["rows"] == {'odd "name"': 0, "notes": 50}
    assert stats["exit"] == 0 and stats["error"] == ""
    piped = Path(str(spec["fifo"]))
    assert stats["bytes"] == piped.stat().st_size > 0
    assert sorted(p.name for p in piped.parent.iterdir()) == ["db.sqlite", "stats.json"]
    with closing(sqlite3.connect(piped)) as copy:
        assert copy.execute("SELECT count(*), max(x) FROM notes").fetchone() == (50, 49)


def test_a_sqlite_database_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path, tmp_path / "gone.sqlite")
    Path(str(spec["fifo"])).write_bytes(b"stale")
    assert dumps.write(spec) == 1
    stats = json.loads(Path(str(spec["stats"])).read_text())
    assert stats["exit"] == 1 and stats["rows"] == {} and stats["bytes"] == 0
    assert stats["error"].startswith(f"cannot copy {tmp_path / 'gone.sqlite'}: ")
    assert Path(str(spec["fifo"])).read_bytes() == b""  # the reader gets an end, not a hang


def test_a_dump_command_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path, tmp_path / "unused")
    spec.update(kind="postgres", command=["no-such-pg_dump-here", "wiki"])
    assert dumps.write(spec) == 1
    stats = json.loads(Path(str(spec["stats"])).read_text())
    assert stats["exit"] == 127
    assert stats["error"] == "no-such-pg_dump-here: No such file or directory"


def test_the_dump_program_counts_a_file_and_refuses_other_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "wiki.sql"
    dump.write_bytes(b"COPY public.pages (id) FROM stdin;\n1\n2\n\\.\n")
    assert dumps.main(["count", "postgres", str(dump)]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["rows"] == {"public.pages": 2} and counted["bytes"] == dump.stat().st_size
    assert dumps.main(["unpack", str(dump)]) == 2
    assert capsys.readouterr().err.startswith("usage: dumps.py write SPEC")


def test_a_restore_feeds_the_dump_file_to_the_load_command(tmp_path: Path) -> None:
    dump = tmp_path / "wiki.sql"
    dump.write_bytes(b"INSERT INTO `pages` VALUES (1);\n")
    argv = onhost.command("dumps", "load", str(dump), "sh", "-c", "wc -c; exit 7")
    done = subprocess.run(
        [sys.executable, *argv[1:]],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 7 and done.stdout.strip() == b"32"
