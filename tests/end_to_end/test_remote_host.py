"""The ``remote_host`` fixture is what it claims: an SSH host whose /srv, /etc/haproxy,
/run/haproxy ... are temp directories, with the test podman, podman-compose and haproxy working
there unchanged over SSH, on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
from pathlib import Path

from tests.end_to_end.conftest import IMAGE, INDEX, http_get
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.connectors.ssh import SshConnector


def test_files_written_over_ssh_land_in_the_temp_directories(remote_host: RemoteHost) -> None:
    probe = "/srv/probe-remote-host"
    done = remote_host.ssh(f"touch {probe} && ls /srv")
    assert done.returncode == 0, done.stderr
    assert "probe-remote-host" in done.stdout
    assert remote_host.local(probe).is_file()
    assert not Path(probe).exists()
    assert remote_host.run(["test", "-f", probe]).returncode == 0
    remote_host.local(probe).unlink()


def test_allmendes_ssh_connector_reaches_the_namespace(remote_host: RemoteHost) -> None:
    env = {**os.environ, **remote_host.connector_env}
    path = "/etc/haproxy/probe.cfg"

    async def write_and_read() -> bytes | None:
        connector = SshConnector("remote", remote_host.address, "root", remote_host.port, env)
        async with connector:
            temp = await connector.write_temp(path, b"probe\n", 0o640)
            await connector.rename(temp, path)
            return await connector.read(path)

    assert asyncio.run(write_and_read()) == b"probe\n"
    assert remote_host.local(path).read_bytes() == b"probe\n"
    assert not Path(path).exists()
    remote_host.local(path).unlink()


def test_podman_over_ssh_uses_the_test_storage(remote_host: RemoteHost) -> None:
    images = remote_host.ssh("podman images --format '{{.Repository}}:{{.Tag}}'")
    assert images.returncode == 0, images.stderr
    assert IMAGE in images.stdout.split()
    port = free_port()
    name = "remote-host-probe"
    started = remote_host.ssh(
        f"podman run -d --name {name} -p 127.0.0.1:{port}:8080 {IMAGE} httpd -f -p 8080 -h /www"
    )
    assert started.returncode == 0, started.stderr
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == INDEX
        outside = subprocess.run(
            ["podman", "ps", "--format", "{{.Names}}"],
            env=dict(remote_host.podman_env),
            capture_output=True,
            text=True,
            check=False,
        )
        assert outside.returncode == 0, outside.stderr  # it sees the network namespace
        assert name in outside.stdout.split()
    finally:
        removed = remote_host.ssh(f"podman rm --force --time 0 {name}")
        assert removed.returncode == 0, removed.stderr


def test_haproxy_started_over_ssh_serves_with_its_socket_in_the_temp_run_dir(
    remote_host: RemoteHost,
) -> None:
    port = free_port()
    config = (
        "global\n"
        "    stats socket /run/haproxy/admin.sock mode 600 level admin\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 5s\n"
        "    timeout server 5s\n"
        "frontend probe\n"
        f"    bind 127.0.0.1:{port}\n"
        '    http-request return status 200 content-type text/plain string "from the remote"\n'
    )
    written = remote_host.ssh("cat > /etc/haproxy/haproxy.cfg", input=config)
    assert written.returncode == 0, written.stderr
    assert remote_host.local("/etc/haproxy/haproxy.cfg").read_text() == config
    started = remote_host.ssh(
        "haproxy -W -D -f /etc/haproxy/haproxy.cfg -p /run/haproxy/haproxy.pid", timeout=20
    )
    assert started.returncode == 0, started.stderr
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == "from the remote"
        master = remote_host.local("/run/haproxy/haproxy.pid").read_text().strip()
        namespace = Path(f"/proc/{master}/ns/mnt").readlink()
        assert namespace == Path(f"/proc/{remote_host.pid}/ns/mnt").readlink()
        assert "frontend probe" not in Path("/etc/haproxy/haproxy.cfg").read_text()
        socket_path = remote_host.local("/run/haproxy/admin.sock")
        assert stat.S_ISSOCK(socket_path.stat().st_mode)
        assert not Path("/run/haproxy/admin.sock").exists()
        with socket.socket(socket.AF_UNIX) as admin:
            admin.connect(str(socket_path))
            admin.sendall(b"show info\n")
            answer = admin.makefile().read()
        assert "Name: HAProxy" in answer
    finally:
        stopped = remote_host.ssh("kill $(cat /run/haproxy/haproxy.pid)")
        assert stopped.returncode == 0, stopped.stderr
        remote_host.empty("/etc/haproxy", "/run/haproxy")  # the shared host as it was


def test_podman_compose_runs_over_ssh(remote_host: RemoteHost) -> None:
    done = remote_host.ssh("command -v podman-compose && podman-compose version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/usr/local/bin/podman-compose\n")
    assert "podman-compose version" in done.stdout
