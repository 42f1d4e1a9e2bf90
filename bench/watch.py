"""How fast and how light the watcher probes: 100, 1,000 and 5,000 HTTP targets, side by side
with the Prometheus blackbox exporter probing the same targets, and the HTTP clients compared.

The targets are names served by one local nginx (Debian ``nginx-light``) on 127.0.0.1; the
blackbox exporter is Debian's ``prometheus-blackbox-exporter``, asked for one ``/probe`` per
target at the same concurrency as the watcher (100), as a Prometheus server would scrape it.
Each watcher run is a process of its own (``--one N``), so its peak resident memory is its own.

    .venv/bin/python bench/watch.py   # needs nginx-light, prometheus-blackbox-exporter
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (100, 1000, 5000)
CONCURRENCY = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one(size: int, port: int) -> None:
    """Run one round of the watcher over ``size`` targets in this process; print JSON."""
    from allmende.inventory.watchspec import Plan, Probe
    from allmende.watch.runner import Options, Watcher

    probes = tuple(
        Probe(
            id=f"t{i}/http",
            kind="http",
            service=f"t{i}",
            host="h",
            what=f"t{i}",
            interval=60,
            timeout=10,
            retries=0,
            address="127.0.0.1",
            port=port,
            name=f"t{i}.bench.test",
            scheme="http",
            path="/",
        )
        for i in range(size)
    )
    watcher = Watcher(Plan("bench", probes), None, Options(concurrency=CONCURRENCY))
    started = time.perf_counter()
    results = asyncio.run(watcher.round())
    took = time.perf_counter() - started
    up = sum(r.state == "up" for r in results.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": size, "seconds": took, "up": up, "peak_mib": peak}))


async def drive(urls: list[str], client: str) -> float:
    """GET every URL at CONCURRENCY with ``client``; return the seconds it took."""
    slots = asyncio.Semaphore(CONCURRENCY)
    started = time.perf_counter()
    if client == "httpx":
        import httpx

        async with httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=CONCURRENCY)
        ) as c:

            async def get(url: str) -> None:
                async with slots:
                    (await c.get(url)).raise_for_status()

            await asyncio.gather(*(get(u) for u in urls))
    else:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:

            async def get(url: str) -> None:
                async with slots, s.get(url) as answer:
                    answer.raise_for_status()
                    await answer.read()

            await asyncio.gather(*(get(u) for u in urls))
    return time.perf_counter() - started


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        one(int(sys.argv[2]), int(sys.argv[3]))
        return
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    blackbox = shutil.which("prometheus-blackbox-exporter")
    if not Path(nginx).exists() or blackbox is None:
        raise SystemExit("apt-get install nginx-light prometheus-blackbox-exporter")
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    web, exporter = free_port(), free_port()
    (work / "nginx.conf").write_text(
        f"worker_processes 1;\nerror_log {work}/error.log;\npid {work}/nginx.pid;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {work}/body;\n"
        f"  server {{ listen 127.0.0.1:{web} default_server; server_name _;\n"
        '    location / { return 200 "ok\\n"; } } }\n'
    )
    (work / "blackbox.yml").write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n"
        "    http:\n      preferred_ip_protocol: ip4\n"
    )
    processes = [
        subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-g", "daemon off;"]),
        subprocess.Popen(
            [
                blackbox,
                f"--config.file={work}/blackbox.yml",
                f"--web.listen-address=127.0.0.1:{exporter}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(web)
        wait_port(exporter)
        print(f"{'targets':>8} {'watcher s':>10} {'probes/s':>9} {'peak MiB':>9} "
              f"{'blackbox s':>11} {'probes/s':>9} {'peak MiB':>9}")  # fmt: skip
        for size in SIZES:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(size), str(web)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            ours = json.loads(done.stdout)
            assert ours["up"] == size, ours
            urls = [
                f"http://127.0.0.1:{exporter}/probe?module=http_2xx&target="
                f"http://127.0.0.1:{web}/t{i}"
                for i in range(size)
            ]
            theirs = asyncio.run(drive(urls, "aiohttp"))
            print(
                f"{size:>8} {ours['seconds']:>10.2f} {size / ours['seconds']:>9.0f} "
                f"{ours['peak_mib']:>9.1f} {theirs:>11.2f} {size / theirs:>9.0f} "
                f"{peak_mib(processes[1].pid):>9.1f}"
            )
        print("\nHTTP clients, 1,000 GETs at concurrency 100 (the choice of the watcher's):")
        urls = [f"http://127.0.0.1:{web}/c{i}" for i in range(1000)]
        for client in ("aiohttp", "httpx"):
            print(f"  {client:>8}: {asyncio.run(drive(urls, client)):.2f} s")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
