"""Benchmark: load + check, and docs, for inventories of growing size (peak memory included).

    .venv/bin/python bench/check.py [SIZES...]      default: 100 1000 10000

Each size runs in a fresh process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from fresh import measure

HOSTS = 50


def generate(root: Path, services: int) -> None:
    """Write an inventory of ``services`` services spread over 50 hosts."""
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "zones").mkdir()
    (root / "zones" / "bench.example.yaml").write_text("nameservers: [ns1.example.net.]\n")
    (root / "allmende.yaml").write_text(
        "name: bench\ndomains: [bench.example]\nedge: {hosts: [host-0]}\n"
        "backup: {repository: 'ssh://borg@vault.bench.example/srv/borg/{service}', "
        "schedule: daily, keep: {daily: 7}}\n"
        "people:\n  alex: {name: Alex, email: alex@bench.example}\n"
    )
    for h in range(HOSTS):
        (root / "hosts" / f"host-{h}.yaml").write_text(
            f"description: host {h}\nkind: vps\naddress: 192.0.2.{h + 1}\n"
            f"public_ipv4: 192.0.2.{h + 1}\nssh: {{user: root}}\nengine: compose\n"
            "resources: {cpus: 4, memory: 16GiB, disk: 512GB}\n"
        )
    for s in range(services):
        host = s % HOSTS
        provider = f"db-{host}"
        if s < HOSTS:
            text = (
                f"description: database {s}\nmaintainers: [alex]\nhost: host-{host}\n"
                "components:\n  server:\n    image: postgres:16.4\n    ports: {pg: 5432}\n"
                "    volumes: {data: /var/lib/postgresql/data}\n"
                "    healthcheck: {command: [pg_isready]}\n"
                "provides: {database: postgres, port: pg}\nbackup: {consistency: dump}\n"
                f"monitor: [{{tcp: 'host-{host}:5432'}}]\n"
            )
            name = provider
        else:
            name = f"svc-{s}"
            text = (
                f"description: service {s}\nmaintainers: [alex]\nhost: host-{host}\n"
                "components:\n  app:\n    image: example/app:1.2.3\n"
                "    command: [serve, --port, '8080']\n"
                f"    env: {{SITE: svc-{s}, WORKERS: 4}}\n    ports: {{http: 8080}}\n"
                f"    publish: {{http: {10000 + s // HOSTS}}}\n    volumes: {{data: /data}}\n"
                "    healthcheck: {http: /health, port: http}\n    depends_on: [worker]\n"
                "  worker:\n    image: example/worker:1.2.3\n"
                f"uses:\n  - database: {provider}/svc-{s}\n"
                f"routes:\n  - domain: svc-{s}.bench.example\n    to: app.http\n"
                "backup: {consistency: stop}\n"
                "docs: |\n  Some words on how this works and whom to ask.\n"
            )
        (root / "services" / f"{name}.yaml").write_text(text)


def one(services: int) -> dict[str, float]:
    """Measure one size in this process; return the figures."""
    from allmende.actions.check import check

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inventory"
        generate(root, services)
        started = time.perf_counter()
        inventory, report = check(root, {})
        checked = time.perf_counter() - started
        assert len(inventory.services) == services, len(inventory.services)
        # The bench has no secret store: the roles' passwords are not stored, all else is clean.
        unclean = [f for f in report.findings if f.rule != "databases.passwords"]
        assert not unclean, unclean[:3]
        figures = {"services": services, "load_check_s": round(checked, 3)}
        try:
            from allmende.actions.docs import build
        except ImportError:
            return figures
        started = time.perf_counter()
        pages = build(root, Path(tmp) / "site", {})
        figures["docs_s"] = round(time.perf_counter() - started, 3)
        figures["docs_files"] = len(pages)
        return figures


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(int(argv[1]))))
        return
    sizes = [int(a) for a in argv] or [100, 1000, 10000]
    print(f"{'services':>9} {'load+check s':>13} {'per 1000':>9} {'docs s':>8} {'peak MiB':>9}")
    for size in sizes:
        figures, peak = measure(__file__, str(size))
        per = figures["load_check_s"] / size * 1000
        docs = figures.get("docs_s", float("nan"))
        print(f"{size:>9} {figures['load_check_s']:>13.3f} {per:>9.3f} {docs:>8.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
