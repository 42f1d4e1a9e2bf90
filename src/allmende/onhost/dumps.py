"""Stream one database dump into a named pipe, counting its rows per table as it passes.

Run on the service's host during a backup, while Borg reads the pipe:

``dumps.py write SPEC`` — SPEC is JSON ``{"kind", "command" | "file", "fifo", "stats"}``: start
``command`` (a dump on its standard output) or, for SQLite, copy ``file`` through SQLite's backup
API; copy what comes out into the named pipe ``fifo`` (waiting until Borg opens it), and write to
``stats`` a JSON object ``{"bytes", "sha256", "rows": {table: count}, "exit", "error"}``. Exit 0
when the dump succeeded, 1 when it did not (what it printed is ``error``).

``dumps.py count KIND FILE`` — print the same object for a dump file (a restore drill).

``dumps.py load FILE COMMAND...`` — run COMMAND with FILE on its standard input (a restore).

Rows are counted in the dump itself: PostgreSQL's plain SQL ``COPY ... FROM stdin`` blocks,
MariaDB/MySQL ``INSERT INTO`` lines (dumped one row a line), a SQLite file's tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import tempfile

BLOCK = 1 << 20


class Counter:
    """Counts rows per table in the lines of a dump of ``kind``, and hashes every byte."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows: dict[str, int] = {}
        self.digest = hashlib.sha256()
        self.size = 0
        self._table: str | None = None
        self._rest = b""

    def feed(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        if self.kind not in ("postgres", "mariadb", "mysql"):
            return
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self.kind == "postgres":
            if self._table is not None:
                if line == b"\\.":
                    self._table = None
                else:
                    self.rows[self._table] += 1
            elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
                self._table = line[5:].split(b" ", 1)[0].decode(errors="replace")
                self.rows.setdefault(self._table, 0)
        elif line.startswith(b"INSERT INTO `"):
            table = line[13:].split(b"`", 1)[0].decode(errors="replace")
            self.rows[table] = self.rows.get(table, 0) + 1
        elif line.startswith(b"CREATE TABLE `"):
            self.rows.setdefault(line[14:].split(b"`", 1)[0].decode(errors="replace"), 0)

    def result(self, exit: int = 0, error: str = "") -> dict[str, object]:
        if self._rest:
            self._line(self._rest)
            self._rest = b""
        return {
            "bytes": self.size,
            "sha256": self.digest.hexdigest(),
            "rows": dict(sorted(self.rows.items())),
            "exit": exit,
            "error": error,
        }


def sqlite_rows(path: str) -> dict[str, int]:
    """Return the row count of every table of the SQLite database file ``path``."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            t: connection.execute(
                f'SELECT count(*) FROM "{t.replace(chr(34), chr(34) * 2)}"'
            ).fetchone()[0]
            for t in sorted(tables)
        }
    finally:
        connection.close()


def _spawn(command: list[str]) -> tuple[int, int, int]:
    """Start ``command`` with its output and errors on pipes; return (pid, out, err)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the dump command
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            for fd in (out_r, out_w, err_r, err_w, devnull):
                os.close(fd)
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"{command[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def write(spec: dict[str, object]) -> int:
    kind = str(spec["kind"])
    counter = Counter(kind)
    fifo = str(spec["fifo"])
    status, error = 0, ""
    if kind == "sqlite":
        source = str(spec["file"])
        with tempfile.TemporaryDirectory(dir=os.path.dirname(str(spec["stats"]))) as scratch:
            copy = os.path.join(scratch, "copy.sqlite")
            try:
                live = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
                target = sqlite3.connect(copy)
                with target:
                    live.backup(target)
                live.close()
                target.close()
                counter.rows = sqlite_rows(copy)
            except sqlite3.Error as exc:
                status, error = 1, f"cannot copy {source}: {exc}"
            with open(fifo, "wb") as sink:
                if status == 0:
                    with open(copy, "rb") as handle:
                        for block in iter(lambda: handle.read(BLOCK), b""):
                            counter.feed(block)
                            sink.write(block)
    else:
        command = [str(word) for word in spec["command"]]  # type: ignore[attr-defined]
        pid, out, err = _spawn(command)
        with open(fifo, "wb") as sink, os.fdopen(out, "rb") as source_pipe:
            for block in iter(lambda: source_pipe.read(BLOCK), b""):
                counter.feed(block)
                sink.write(block)
        with os.fdopen(err, "rb") as errors:
            said = errors.read()
        _, code = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(code)
        if status != 0:
            error = said.decode(errors="replace").strip()[-2000:] or f"exit {status}"
    stats = counter.result(status, error)
    with open(str(spec["stats"]), "w", encoding="utf-8") as handle:
        json.dump(stats, handle)
    return 0 if status == 0 else 1


def count(kind: str, path: str) -> dict[str, object]:
    counter = Counter(kind)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            counter.feed(block)
    result = counter.result()
    if kind == "sqlite":
        result["rows"] = sqlite_rows(path)
    return result


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write":
        return write(json.loads(argv[1]))
    if len(argv) > 2 and argv[0] == "load":
        descriptor = os.open(argv[1], os.O_RDONLY)
        os.dup2(descriptor, 0)
        os.close(descriptor)
        os.execvp(argv[2], argv[2:])
    if len(argv) == 3 and argv[0] == "count":
        print(json.dumps(count(argv[1], argv[2])))
        return 0
    print("usage: dumps.py write SPEC | count KIND FILE | load FILE COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
