"""Benchmark: plan and apply over SSH for inventories of growing size (peak memory included).

    .venv/bin/python bench/apply.py [--delay MS] [--per-file] [SIZES...]   default: 10 100 500

Each size is measured twice: with the services and their edge on one host (``box``), and
with the edge on a host of its own (``gateway``), so that an apply across two hosts in step
(``apply.across``) can be seen beside an apply to one.

``--delay MS`` puts a TCP proxy between allmende and sshd that holds every chunk MS
milliseconds each way (a round trip of twice that), as a host across a network would;
``--per-file`` reads, hashes and writes the host's files over SFTP one by one (the SSH
connector's fallback without python3 on the host) instead of through its file helper.

A real OpenSSH server on 127.0.0.1 (as in tests/integration/conftest.py: host and client key,
known_hosts in a temp directory, ``StrictModes no``) stands in for the host ``box``; its root
is a temp directory (``ALLMENDE_REMOTE_ROOT``). Every service runs one component on ``box``
(image ``localhost/allmende-test/busybox:1``, published on 127.0.0.1) with a route through
the edge ``gateway``, which is this machine under another temp directory
(``ALLMENDE_HOST_ROOT``); the routes pass TLS through, so the rendered haproxy.cfg names no
certificate file and the real ``haproxy -c`` accepts it. Only files are planned and applied:
the engine and proxy actions are left out of the plans (no container or HAProxy is started,
no monitor is probed), and both hosts say ``runtime: podman``, so nothing asks for docker.

Each size runs in a fresh process so that its peak memory (max RSS) is its own, through the
action functions: the first apply (``prepare`` + ``apply``), a no-op plan, and a no-op apply
(``prepare`` + ``apply`` finding nothing).

Target: a no-op apply of 100 services in under 2 s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fresh import measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sshd_setup import SSHD, known_hosts, prepare, wait_for
from tests.sshd_setup import stop as stop_sshd

IMAGE = "localhost/allmende-test/busybox:1"
TARGET_SERVICES = 100
TARGET_SECONDS = 2.0


def start_sshd(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start sshd on 127.0.0.1 with its keys and known_hosts in ``directory``; return it and
    its port once it accepts connections."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        raise SystemExit("sshd is not installed: run `script/bootstrap test` (openssh-server)")
    config, port = prepare(directory)
    log = (directory / "sshd.log").open("wb")
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=log)
    log.close()
    failed = wait_for(port, server, directory / "sshd.log")
    if failed is not None:
        stop_sshd(server)
        raise SystemExit(failed)
    known_hosts(directory, port)
    return server, port


def delay_proxy(port: int, delay: float) -> int:
    """Start a TCP proxy to 127.0.0.1:``port`` that holds every chunk ``delay`` seconds in each
    direction, in a daemon thread of this process; return the port it listens on."""
    listening: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        data = b"-"
        while data:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
        await sender

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(
            pipe(client_r, server_w), pipe(server_r, client_w), return_exceptions=True
        )

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        listening.append(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    while not listening:
        time.sleep(0.01)
    return listening[0]


def generate(root: Path, services: int, port: int, hosts: int) -> None:
    """Write an inventory of ``services`` services on the SSH host ``box`` (127.0.0.1:``port``),
    each routed through the edge: ``gateway`` (this machine) with ``hosts`` 2, ``box`` itself
    with 1."""
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text(
        "name: bench\ndescription: Benchmark of apply\ncontact: infra@bench.example\n"
        f"domains: [bench.example]\nedge: {{hosts: [{'gateway' if hosts == 2 else 'box'}]}}\n"
        "people:\n  alex: {name: Alex, email: alex@bench.example}\n"
    )
    (root / "hosts" / "box.yaml").write_text(
        "description: The machine the services run on, reached over SSH\nkind: vps\n"
        f"address: 127.0.0.1\nssh: {{user: root, port: {port}}}\nengine: compose\n"
        + ("public_ipv4: 127.0.0.1\n" if hosts == 1 else "")
        + "runtime: podman\n"
    )
    if hosts == 2:
        (root / "hosts" / "gateway.yaml").write_text(
            "description: The edge, this machine\nkind: vps\naddress: 127.0.0.2\n"
            "public_ipv4: 127.0.0.2\nengine: compose\nruntime: podman\n"
        )
    for s in range(services):
        (root / "services" / f"svc-{s}.yaml").write_text(
            f"description: service {s}\nmaintainers: [alex]\nhost: box\n"
            f"components:\n  app:\n    image: {IMAGE}\n"
            "    command: [httpd, -f, -p, '8080', -h, /www]\n"
            f"    env: {{SITE: svc-{s}}}\n    ports: {{http: 8080}}\n"
            f"    publish: {{http: {20000 + s}}}\n"
            "    healthcheck: {http: /, port: http}\n"
            f"routes:\n  - domain: svc-{s}.bench.example\n    to: app.http\n"
            "    tls: passthrough\n"
        )


def timed(action: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action(*args)
    return result, round(time.perf_counter() - started, 3)


def per_file() -> None:
    """Make the SSH connector go over SFTP, as on a host without python3."""
    from allmende.connectors.ssh import SshConnector

    setattr(SshConnector, "python", ("allmende-no-such-python3",))  # noqa: B010


async def no_actions(*args: object, **kwargs: object) -> list[Any]:
    """Find no actions: the engines are left out of the plans (no container is started on
    ``box`` and no HAProxy on this machine), and only the file part is measured."""
    return []


def one(services: int, port: int, sshd_dir: str, one_by_one: bool, hosts: int) -> dict[str, Any]:
    """Measure one size in this process; return the figures."""
    from allmende.actions.apply import apply
    from allmende.actions.check import check
    from allmende.actions.plan import Seams
    from allmende.actions.plan import prepare as prepare_with
    from allmende.inventory.hostpaths import PROXY_FILES

    def prepare(root: Path, env: dict[str, str]) -> Any:
        return prepare_with(root, env, seams=Seams(actions=no_actions))

    if one_by_one:
        per_file()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "inventory"
        generate(root, services, port, hosts)
        (base / "remote").mkdir()
        (base / "local").mkdir()
        env = {
            "HOME": tmp,
            "USER": "bench",
            "ALLMENDE_SSH_KEY": f"{sshd_dir}/client_key",
            "ALLMENDE_KNOWN_HOSTS": f"{sshd_dir}/known_hosts",
            "ALLMENDE_REMOTE_ROOT": str(base / "remote"),
            "ALLMENDE_HOST_ROOT": str(base / "local"),
            "ALLMENDE_STATE": str(base / "state.sqlite"),
        }
        inventory, report = check(root, env)
        assert len(inventory.services) == services, len(inventory.services)
        assert not report.findings, report.findings[:3]

        def first() -> tuple[int, dict[str, str]]:
            prepared = prepare(root, env)
            assert not prepared.plan.failed, prepared.plan.failed
            return len(prepared.plan.changes), apply(prepared, env)

        (created, results), first_s = timed(first)
        assert all(r.ok for r in results.values()), results
        assert created == services + len(PROXY_FILES), created
        plan, plan_s = timed(lambda: prepare(root, env).plan)
        assert not plan.changes and not plan.failed, (plan.changes[:3], plan.failed)

        def noop() -> dict[str, str]:
            prepared = prepare(root, env)
            assert not prepared.plan.changes
            return apply(prepared, env)

        results, noop_s = timed(noop)
        assert results == {}, results
        return {
            "hosts": hosts,
            "services": services,
            "files": created,
            "first_apply_s": first_s,
            "noop_plan_s": plan_s,
            "noop_apply_s": noop_s,
        }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        setting = json.loads(argv[1])
        figures = one(
            setting["services"],
            setting["port"],
            setting["sshd"],
            setting["per_file"],
            setting["hosts"],
        )
        print(json.dumps(figures))
        return
    delay = 0.0
    if argv[:1] == ["--delay"]:
        delay, argv = float(argv[1]) / 1000, argv[2:]
    one_by_one = "--per-file" in argv
    sizes = [int(a) for a in argv if a != "--per-file"] or [10, 100, 500]
    how = "file by file over SFTP" if one_by_one else "through the file helper"
    print(f"round trip {2 * delay * 1000:g} ms; hashing {how}")
    with tempfile.TemporaryDirectory() as sshd_dir:
        server, port = start_sshd(Path(sshd_dir))
        try:
            if delay:
                port = delay_proxy(port, delay)
                known_hosts(Path(sshd_dir), port)
            print(
                f"{'hosts':>5} {'services':>9} {'files':>6} {'first apply s':>14} "
                f"{'no-op plan s':>13} {'no-op apply s':>14} {'peak MiB':>9}"
            )
            noop: dict[int, float] = {}
            for size in sizes:
                for hosts in (1, 2):
                    setting = {
                        "services": size,
                        "port": port,
                        "sshd": sshd_dir,
                        "per_file": one_by_one,
                        "hosts": hosts,
                    }
                    f, peak = measure(__file__, json.dumps(setting))
                    noop[size] = max(noop.get(size, 0.0), f["noop_apply_s"])
                    print(
                        f"{hosts:>5} {size:>9} {f['files']:>6} {f['first_apply_s']:>14.2f} "
                        f"{f['noop_plan_s']:>13.2f} {f['noop_apply_s']:>14.2f} {peak:>9.1f}"
                    )
        finally:
            stop_sshd(server)
    if TARGET_SERVICES in noop:
        seconds = noop[TARGET_SERVICES]
        verdict = "met" if seconds < TARGET_SECONDS else "MISSED"
        print(
            f"target: no-op apply of {TARGET_SERVICES} services under {TARGET_SECONDS:g} s: "
            f"{seconds:.2f} s, {verdict}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
