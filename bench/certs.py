"""Benchmark: certificates, deciding for growing inventories and obtaining from a real Pebble.

    .venv/bin/python bench/certs.py [SIZES...]          default: 100 1000 10000
    .venv/bin/python bench/certs.py --issue [COUNTS...]  default: 1 5 20

Deciding: bench/check.py's inventory (a route per service) with `acme:`; the time to decide
every certificate and each edge's job (``inventory.certificates``) and to render the HAProxy
and certificate targets that use them, and the `certs.*` rules' time.

Obtaining: COUNT names renewed in one run (``operations.certs.renew.renew``) from a Pebble on
127.0.0.1 (Debian's ``pebble``, real http-01 checks through allmende's responder on the local
connector, names resolved by ``pebble-challtestsrv``), the edge being a temporary root without
HAProxy running (the files are checked by ``haproxy -c`` against a minimal configuration).

Each size runs in a fresh process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from check import generate
from fresh import measure

ACME = "acme: {email: infra@bench.example, renew_before_days: 30}\n"


def decide(services: int) -> dict[str, float]:
    """Measure deciding and rendering the certificates of one size in this process."""
    from allmende.checks.registry import run
    from allmende.inventory import certificates
    from allmende.inventory.load import load
    from allmende.render.targets import render_all

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inventory"
        generate(root, services)
        with (root / "allmende.yaml").open("a") as out:
            out.write(ACME)
        inventory = load(root, {})
        started = time.perf_counter()
        wanted = certificates.certificates(inventory)
        job = certificates.job(inventory)
        decided = time.perf_counter() - started
        started = time.perf_counter()
        files = render_all(inventory, ("haproxy", "certs"))
        rendered = time.perf_counter() - started
        started = time.perf_counter()
        run(inventory, ["certs.dns", "certs.unused"])
        checked = time.perf_counter() - started
        assert job is not None and len(job.certificates) == len(wanted)
        return {
            "services": services,
            "certificates": len(wanted),
            "decide_s": round(decided, 3),
            "render_s": round(rendered, 3),
            "check_s": round(checked, 3),
            "files": len(files),
        }


def _free() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def issue(count: int) -> dict[str, float]:
    """Measure obtaining ``count`` certificates from a real Pebble in one run."""
    from tests.end_to_end.acme_world import ListenerCa

    from allmende.connectors.local import LocalConnector
    from allmende.inventory.certjob import Cert, Job
    from allmende.operations.certs.client import new_account_key
    from allmende.operations.certs.renew import Secrets, renew

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = ListenerCa.make(directory)
        ports = {n: _free() for n in ("acme", "management", "responder", "dns", "dnsm")}
        (directory / "pebble.json").write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{ports['acme']}",
                        "managementListenAddress": f"127.0.0.1:{ports['management']}",
                        "certificate": str(ca.cert),
                        "privateKey": str(ca.key),
                        "httpPort": ports["responder"],
                        "tlsPort": ports["responder"] + 1,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        names = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{ports['dns']}", "-http01", "",
             "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{ports['dnsm']}", "-defaultIPv6", ""],
            **quiet,
        )  # fmt: skip
        pebble = subprocess.Popen(
            ["pebble", "-config", str(directory / "pebble.json"),
             "-dnsserver", f"127.0.0.1:{ports['dns']}"],
            env=env, **quiet,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            root = directory / "edge"
            (root / "etc/haproxy").mkdir(parents=True)
            (root / "etc/haproxy/haproxy.cfg").write_text(
                f"frontend bench\n    mode http\n    bind 127.0.0.1:{_free()}\n"
            )
            job = Job(
                "bench",
                f"https://127.0.0.1:{ports['acme']}/dir",
                "infra@bench.example",
                30,
                ports["responder"],
                tuple(
                    Cert(f"site-{i}.bench.test", "http-01", f"/etc/haproxy/certs/{i}.pem", ("e",))
                    for i in range(count)
                ),
                trust=ca.pem,
            )
            connector = LocalConnector("e", str(root))
            os.environ["ALLMENDE_HOST_ROOT"] = str(root)
            started = time.perf_counter()
            done = asyncio.run(
                renew(job, Secrets(new_account_key()), {"e": connector},
                      directory / "state.sqlite", trigger="bench")
            )  # fmt: skip
            seconds = time.perf_counter() - started
        finally:
            for process in (pebble, names):
                process.terminate()
                process.wait(10)
        failed = [r.message for r in done if not r.ok]
        assert not failed, failed
        return {"count": count, "seconds": round(seconds, 2)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(decide(int(argv[1]))))
        return
    if argv[:1] == ["--one-issue"]:
        print(json.dumps(issue(int(argv[1]))))
        return
    if argv[:1] == ["--issue"]:
        counts = [int(a) for a in argv[1:]] or [1, 5, 20]
        print(f"{'certificates':>12} {'run s':>7} {'per cert s':>11} {'peak MiB':>9}")
        for count in counts:
            f, peak = measure(__file__, str(count), "--one-issue")
            print(f"{count:>12} {f['seconds']:>7.2f} {f['seconds'] / count:>11.2f} {peak:>9.1f}")
        return
    sizes = [int(a) for a in argv] or [100, 1000, 10000]
    print(
        f"{'services':>9} {'certs':>7} {'decide s':>9} {'render s':>9} {'rules s':>8} "
        f"{'peak MiB':>9}"
    )
    for size in sizes:
        f, peak = measure(__file__, str(size))
        print(
            f"{size:>9} {f['certificates']:>7} {f['decide_s']:>9.3f} {f['render_s']:>9.3f} "
            f"{f['check_s']:>8.3f} {peak:>9.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
