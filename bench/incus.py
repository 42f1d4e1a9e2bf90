"""Benchmark: the Incus target and the Incus engine's judgement for growing Incus hosts.

    .venv/bin/python bench/incus.py [SIZES...]      default: 10 100 1000

One Incus host with SIZES services shaped like the art school's (a system container each, with
packages, setup steps, services, environment, a secret, a volume and a published port) and an
HAProxy container on it. For each size, in a fresh process (peak memory is its own): rendering
the Incus files, then the engine judging every service as plan does, once against an empty
Incus (everything to create) and once against instances exactly as wanted (nothing to do: the
second apply). The commands are not run: that is Incus's time (``tests/end_to_end``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from fresh import measure


def generate(root: Path, services: int) -> None:
    """Write an inventory of one Incus host with ``services`` system containers."""
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "secrets" / "bench").mkdir(parents=True)
    (root / "secrets" / "bench" / "token.age").write_bytes(b"not read by render")
    (root / "allmende.yaml").write_text("name: bench\nedge: {hosts: [gateway]}\n")
    (root / "hosts" / "box.yaml").write_text(
        "engine: incus\naddress: 192.0.2.1\n"
        "incus: {subnet: 10.71.0.1/24, snapshots: {schedule: daily, expiry: 2w}}\n"
    )
    (root / "hosts" / "gateway.yaml").write_text(
        "kind: container\nparent: box\nengine: systemd\naddress: 10.71.0.2\n"
        "system: {image: debian/12, packages: [haproxy, python3]}\n"
    )
    for s in range(services):
        (root / "services" / f"svc-{s}.yaml").write_text(
            f"description: service {s}\nhost: box\ncomponents:\n  app:\n"
            "    system:\n      image: debian/12\n      packages: [nginx, curl, python3]\n"
            "      setup: ['useradd --system app', 'curl -fsSL -o /opt/app https://x/app']\n"
            "      services: [nginx, app]\n"
            f"    env: {{SITE: svc-{s}, WORKERS: 4}}\n    secrets: {{TOKEN: bench/token}}\n"
            f"    ports: {{http: 80}}\n    publish: {{http: {10000 + s}}}\n"
            "    resources: {cpus: 1, memory: 512MiB}\n    volumes: {data: /var/lib/app}\n"
            f"routes: [{{domain: svc-{s}.bench.example, to: app.http}}]\n"
        )


def running_as_wanted(files: dict[str, Any]) -> dict[str, Any]:
    """Return what Incus would answer when every instance is exactly as rendered."""
    import yaml

    from allmende.engines.base import Running

    observed: dict[str, Any] = {}
    for path, rendered in files.items():
        if path.endswith("/incus.yaml"):
            for name, body in yaml.safe_load(rendered.content)["instances"].items():
                observed[name] = {**body, "status": "Running"}
    return {p.split("/")[2]: Running(observed=observed) for p in files if p.endswith("incus.yaml")}


def one(services: int) -> dict[str, float]:
    """Measure one size in this process; return the figures."""
    from allmende.engines import engine
    from allmende.engines.base import Site
    from allmende.inventory.load import load
    from allmende.render.incus import render

    incus = engine("incus")
    assert incus is not None
    site = Site("box", "docker")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inventory"
        generate(root, services)
        inventory = load(root, {})
        started = time.perf_counter()
        files = render(inventory)
        rendered = time.perf_counter() - started
        projects = {
            p.split("/")[2]: f.content for p, f in files.items() if p.endswith("/incus.yaml")
        }
        started = time.perf_counter()
        created = [incus.converge(site, s, project, None) for s, project in projects.items()]
        create_s = time.perf_counter() - started
        running = running_as_wanted(files)
        started = time.perf_counter()
        same = [incus.converge(site, s, p, running[s]) for s, p in projects.items()]
        same_s = time.perf_counter() - started
        assert all(step is not None and step.commands for step in created)
        assert all(step is not None and not step.commands for step in same)
        return {
            "services": services,
            "render_s": round(rendered, 3),
            "create_s": round(create_s, 3),
            "nothing_s": round(same_s, 3),
            "commands": sum(len(s.commands) for s in created if s is not None),
        }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(int(argv[1]))))
        return
    sizes = [int(a) for a in argv] or [10, 100, 1000]
    print(
        f"{'services':>9} {'render s':>9} {'judge: create s':>16} {'judge: nothing s':>17} "
        f"{'commands':>9} {'peak MiB':>9}"
    )
    for size in sizes:
        f, peak = measure(__file__, str(size))
        print(
            f"{size:>9} {f['render_s']:>9.3f} {f['create_s']:>16.3f} {f['nothing_s']:>17.3f} "
            f"{f['commands']:>9} {peak:>9.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
