"""Benchmark: render every target for inventories of growing size (peak memory included).

    .venv/bin/python bench/render.py [SIZES...]      default: 100 1000 10000

Each size runs in a fresh process so that its peak memory (max RSS) is its own. The inventory is
the one bench/check.py generates (50 compose hosts, one edge, a database per host).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from check import generate
from fresh import measure


def one(services: int) -> dict[str, float]:
    """Measure one size in this process; return the figures."""
    from allmende.inventory.load import load
    from allmende.render.targets import render_all

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inventory"
        generate(root, services)
        inventory = load(root, {})
        started = time.perf_counter()
        files = render_all(inventory)
        seconds = time.perf_counter() - started
        size = sum(len(f.content) for f in files.values())
        return {
            "services": services,
            "render_s": round(seconds, 3),
            "files": len(files),
            "mib": round(size / 2**20, 1),
        }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(int(argv[1]))))
        return
    sizes = [int(a) for a in argv] or [100, 1000, 10000]
    print(
        f"{'services':>9} {'render s':>9} {'per 1000':>9} {'files':>7} {'output MiB':>11} "
        f"{'peak MiB':>9}"
    )
    for size in sizes:
        f, peak = measure(__file__, str(size))
        per = f["render_s"] / size * 1000
        print(
            f"{size:>9} {f['render_s']:>9.3f} {per:>9.3f} {f['files']:>7} {f['mib']:>11} "
            f"{peak:>9.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
