"""The backend sections of the edge's ``haproxy.cfg``: health checks, the component's own
server and the servers of its ``edge`` settings (more servers, backups, weights, the PROXY
protocol)."""

from __future__ import annotations

from collections.abc import Iterable

from allmende.render.haproxy_plan import Backend, comment, ident


def section(head: str, lines: Iterable[str]) -> str:
    """Return a configuration section: its head and its lines, indented."""
    return "\n".join([head, *(f"    {line}" if line else "" for line in lines)]) + "\n"


def _checked(backend: Backend, own: bool) -> list[str]:
    """Return the health check options of a server: the component's healthcheck, on its
    health port for the component itself (a server outside is checked on its own port)."""
    health = backend.health
    words = ["check"]
    if own and health.port is not None:
        words.append(f"port {health.port}")
    if health.interval is not None:
        # Only while up is the service's own interval kept: a server that is down (or
        # changing state, as during a redeploy) is checked every 2 s, so it is back in
        # seconds rather than after two full intervals.
        words.append(f"inter {health.interval} fastinter 2s downinter 2s")
    if health.retries is not None:
        words.append(f"fall {health.retries}")
    return words


def _options(backend: Backend, backup: bool, dns: bool, weight: int | None) -> list[str]:
    """Return the options of a server: its weight, the backend's PROXY protocol, backup,
    resolving."""
    words = [f"weight {weight}"] if weight is not None else []
    if backend.proxy is not None:
        words.append("send-proxy-v2" if backend.proxy == "v2" else "send-proxy")
    if backup:
        words.append("backup")
    if dns:
        words.append("resolvers system init-addr libc,none")
    return words


def _servers(backend: Backend) -> list[str]:
    """Return the backend's server lines: the component itself (disabled when it cannot be
    reached), then each server of its ``edge`` settings."""
    own = [f"server {ident(backend.component)} {backend.address}"]
    own += ["disabled"] if not backend.reachable else _checked(backend, True)
    lines = [" ".join(own + _options(backend, backend.backup, backend.dns, backend.weight))]
    for server in backend.servers:
        words = [f"server {server.name} {server.address}", *_checked(backend, False)]
        options = _options(backend, server.backup, server.dns, server.weight)
        lines.append(" ".join(words + options))
    return lines


def backend_section(backend: Backend) -> str:
    """Return the ``backend`` section of one backend: its health check and its servers."""
    lines = [comment(f"# {backend.service}: {backend.component}.{backend.port} on {backend.host}")]
    health = backend.health
    if not backend.reachable:
        lines.append(f"# Cannot be reached: {comment(backend.note)}.")
    if health.note:
        lines.append(f"# {comment(health.note)}.")
    usable = backend.reachable or bool(backend.servers)
    if backend.servers and backend.balance != "roundrobin":
        lines.append(f"balance {backend.balance}")
    if usable and health.http_path is not None:
        send = f"http-check send meth GET uri {health.http_path}"
        if health.http_host is not None:
            send += f" ver HTTP/1.1 hdr host {health.http_host}"
        lines += ["option httpchk", send, "http-check expect status 200"]
    if usable and health.timeout is not None:
        lines.append(f"timeout check {health.timeout}")
    lines += _servers(backend)
    return section(f"backend {backend.name} from {backend.mode}", lines)
