"""The proxy part of apply: keep HAProxy running and reload it with a new configuration.

HAProxy runs in master-worker mode: one master process, controlled on
its master socket, and a worker that serves. A reload makes the master re-execute itself with
the new configuration and start a new worker; the old worker finishes its connections, so no
request is lost. If the new configuration does not load, the master keeps the old worker
serving and ``show proc`` counts the failure (``[failed: N]``).

Starting: where nothing answers on the master socket and the host runs systemd
(``/run/systemd/system`` exists), the Debian unit (``haproxy -Ws``, master-worker under
systemd) gets a drop-in, ``/etc/systemd/system/haproxy.service.d/allmende.conf``, naming the
master socket in its ``EXTRAOPTS``, and is enabled and restarted (once: a Debian HAProxy that
ran without the socket). Elsewhere HAProxy is started as a daemon,
``haproxy -W -D -S <master.sock>,mode,600 -p <pidfile> -f <cfg>``.

Every program runs on the host through ``Connector.run`` with an argument list; the master
socket is spoken to by a small fixed Python program run there (``allmende.onhost.master_cli``),
the socket path and the command passed as arguments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from allmende.connectors.base import Connector
from allmende.errors import CommandFailed, UserError
from allmende.inventory.hostpaths import (
    HAPROXY_DROP_IN,
    HAPROXY_MASTER_SOCKET,
    HAPROXY_RUN,
    ProxyPaths,
)
from allmende.plan.proxy import Processes, master_cli, proxy_paths, show_proc

#: How long to wait for the master to answer after a start or a reload.
WAIT_SECONDS = 10.0


def _alerts(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "[ALERT]" in line]
    return "\n".join(lines) if lines else text.strip()


async def _wait(
    connector: Connector, paths: ProxyPaths, done: Callable[[Processes], bool]
) -> Processes | None:
    """Poll ``show proc`` until ``done(processes)`` holds; return the last answer."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        processes = await show_proc(connector, paths)
        if processes is not None and done(processes):
            return processes
        if time.monotonic() > deadline:
            return processes
        await asyncio.sleep(0.1)


async def validate(connector: Connector, paths: ProxyPaths) -> None:
    """Raise UserError with HAProxy's ALERT lines if it rejects the configuration."""
    try:
        await connector.run(["haproxy", "-c", "-f", paths.config], timeout=60.0)
    except CommandFailed as exc:
        raise UserError(
            f"{connector.host}: HAProxy rejects {paths.config}, nothing was reloaded:\n"
            f"{_alerts(exc.output)}"
        ) from None


async def ensure_running(connector: Connector, paths: ProxyPaths | None = None) -> Processes:
    """Start HAProxy in master-worker mode unless a master answers on the master socket, and
    return its processes once it answers with a worker. ``paths`` default to where the host
    has them, under its root (``plan.proxy.proxy_paths``). Raise UserError if it does not
    start."""
    paths = paths or proxy_paths(connector)
    # Imported here: reload() runs on edge hosts too, from allmende's copy there (the
    # certificate timer), which carries no engine nor the inventory's models.
    from allmende.plan.actions import has_systemd

    processes = await show_proc(connector, paths)
    if processes is not None and processes.workers:
        return processes
    if processes is None:
        await validate(connector, paths)
        if await has_systemd(connector):
            await _start_unit(connector, paths)
        else:
            await _start_daemon(connector, paths)
    processes = await _wait(connector, paths, lambda p: bool(p.workers))
    if processes is None or not processes.workers:
        raise UserError(
            f"{connector.host}: HAProxy started but its master socket {paths.master_socket} "
            f"shows no worker within {WAIT_SECONDS:.0f} s"
        )
    return processes


async def _start_daemon(connector: Connector, paths: ProxyPaths) -> None:
    if paths.master_socket == connector.real(HAPROXY_MASTER_SOCKET):
        await connector.make_dir(HAPROXY_RUN)  # no directory made through a link
    else:  # a place of the caller's (the tests' HAProxy)
        for directory in sorted(
            {str(PurePosixPath(p).parent) for p in (paths.master_socket, paths.pidfile)}
        ):
            await connector.run(["mkdir", "-p", directory])
    start = ["haproxy", "-W", "-D", "-S", f"{paths.master_socket},mode,600"]
    try:
        await connector.run([*start, "-p", paths.pidfile, "-f", paths.config], timeout=60.0)
    except CommandFailed as exc:
        raise UserError(
            f"{connector.host}: HAProxy did not start (exit {exc.exit}):\n{_alerts(exc.output)}"
        ) from None


def drop_in(paths: ProxyPaths) -> bytes:
    """Return the drop-in for the Debian ``haproxy.service``: its ``EXTRAOPTS`` name the master
    socket (the unit already runs ``haproxy -Ws``, master-worker under systemd)."""
    return (
        "# Written by allmende: HAProxy's master socket, through which it is reloaded.\n"
        "[Service]\n"
        f'Environment="CONFIG={paths.config}" "PIDFILE={paths.pidfile}" '
        f'"EXTRAOPTS=-S {paths.master_socket},mode,600"\n'
        f"RuntimeDirectory={PurePosixPath(paths.master_socket).parent.name}\n"
        "RuntimeDirectoryPreserve=yes\n"
    ).encode()


async def _start_unit(connector: Connector, paths: ProxyPaths) -> None:
    """Run HAProxy as the Debian unit, with the drop-in; restart it once if it ran without."""
    from allmende.apply.engines import run_action
    from allmende.plan.changes import Action

    await connector.write_atomic(HAPROXY_DROP_IN, drop_in(paths), 0o644)
    commands = (
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "haproxy"),
        ("systemctl", "restart", "haproxy"),
    )
    reason = "see `journalctl -u haproxy` there"
    await run_action(connector, Action(connector.host, "start-proxy", "haproxy", reason, commands))


async def reload(connector: Connector, paths: ProxyPaths | None = None) -> Processes:
    """Validate the configuration, reload HAProxy through its master socket, and return its
    processes once a new worker serves (``paths``: as for ``ensure_running``). Raise UserError
    if HAProxy rejects the configuration (the old worker keeps serving) or no master answers."""
    paths = paths or proxy_paths(connector)
    await validate(connector, paths)
    before = await show_proc(connector, paths)
    if before is None:
        raise UserError(
            f"{connector.host}: no HAProxy master answers on {paths.master_socket}: "
            "start it first (apply does)"
        )
    await master_cli(connector, paths, "reload")  # the master re-executes: the answer is cut

    def settled(now: Processes) -> bool:
        return now.reloads > before.reloads and (
            now.failed > before.failed or bool(now.workers - before.workers)
        )

    after = await _wait(connector, paths, settled)
    if after is not None and after.failed > before.failed:
        said = (await connector.run(["haproxy", "-c", "-f", paths.config], ok=None)).stderr
        hint = _alerts(said.decode(errors="replace")) if b"[ALERT]" in said else ""
        raise UserError(
            f"{connector.host}: HAProxy kept the old configuration: loading {paths.config} "
            f"failed (failed reloads {before.failed} -> {after.failed}); the old worker still "
            "serves. HAProxy writes the [ALERT] lines to its log (a port in use, a missing "
            f"certificate){': ' + hint if hint else ''}"
        )
    if after is None or not settled(after):
        raise UserError(
            f"{connector.host}: HAProxy did not confirm the reload within {WAIT_SECONDS:.0f} s "
            f"(show proc before: {before}, after: {after})"
        )
    return after


@dataclass(frozen=True)
class ServerAt:
    """Where one server of a running HAProxy sends: its address, its port and the port of
    its health checks (0: the server's own)."""

    address: str
    port: int
    check_port: int = 0


def parse_servers_state(text: str) -> dict[str, ServerAt]:
    """Return the servers ``show servers state <backend>`` lists, by name."""
    columns: list[str] = []
    found: dict[str, ServerAt] = {}
    for line in text.splitlines():
        if line.startswith("# be_id"):
            columns = line[2:].split()
            continue
        words = line.split()
        if not columns or len(words) < len(columns) or line.startswith("#"):
            continue
        row = dict(zip(columns, words, strict=False))
        check = row.get("srv_check_port", "0")
        found[row["srv_name"]] = ServerAt(
            row["srv_addr"], int(row["srv_port"]), int(check) if check.isdigit() else 0
        )
    return found


async def server_at(connector: Connector, backend: str, server: str) -> ServerAt | None:
    """Return where a server of the (opened) edge's running HAProxy sends, or None when no
    HAProxy answers there or it has no such server. Raise UserError if its answer cannot be
    read."""
    answer = await master_cli(connector, proxy_paths(connector), f"@1 show servers state {backend}")
    if answer is None:
        return None
    return parse_servers_state(answer).get(server)


async def point(connector: Connector, backend: str, server: str, to: ServerAt) -> None:
    """Point a server of the (opened) edge's running HAProxy elsewhere at run time, until its
    next reload (which makes it what the configuration says). Raise UserError with what HAProxy
    answered if it refuses."""
    paths = proxy_paths(connector)
    commands = [f"@1 set server {backend}/{server} addr {to.address} port {to.port}"]
    if to.check_port:
        commands.append(f"@1 set server {backend}/{server} check-port {to.check_port}")
    for command in commands:
        answer = (await master_cli(connector, paths, command)) or ""
        if not any(word in answer for word in ("changed", "no need to change", "updated")):
            raise UserError(
                f"{connector.host}: HAProxy did not take `{command.removeprefix('@1 ')}`: "
                f"{answer.strip() or 'no answer'}"
            )


async def set_state(connector: Connector, backend: str, server: str, state: str) -> None:
    """Set a server of the (opened) edge's running HAProxy to ``state`` (``maint``: no
    request is sent to it, the edge answers with its maintenance page when none is left;
    ``ready``: as its health checks say) until the next reload. Raise UserError with what
    HAProxy answered if it refuses or none answers."""
    command = f"@1 set server {backend}/{server} state {state}"
    answer = await master_cli(connector, proxy_paths(connector), command)
    if answer is None or answer.strip():
        raise UserError(
            f"{connector.host}: HAProxy did not take `{command.removeprefix('@1 ')}`: "
            f"{(answer or '').strip() or 'no HAProxy answers'}"
        )
