"""Benchmark: import a compose project whose env file grows to 100,000 lines.

    .venv/bin/python bench/envfile.py [LINES...]     default: 1000 10000 100000

Each size runs in a fresh process (its peak memory its own): one service whose ``env_file``
holds LINES variables (plain values, as a large generated env file has them), imported into a
new inventory with ``import_compose``; the env file alone is also parsed with
``parse_dotenv``. Both grow linearly: ten times the lines, about ten times the time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fresh import measure


def one(lines: int) -> dict[str, Any]:
    from allmende.actions.importing import Options, import_compose
    from allmende.importers.interpolate import lookup_in, parse_dotenv
    from allmende.inventory.secrets import create_key

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp) / "inventory"
        (root / "hosts").mkdir(parents=True)
        (root / "allmende.yaml").write_text("name: bench\n")
        (root / "hosts" / "box.yaml").write_text("address: 192.0.2.10\n")
        env = {"ALLMENDE_AGE_KEY": str(Path(temp) / "age.key")}
        create_key(root, env)
        project = Path(temp) / "site"
        project.mkdir()
        text = "".join(f"SETTING_{i}=value-{i}\n" for i in range(lines))
        (project / "big.env").write_text(text)
        (project / "compose.yaml").write_text(
            "services:\n  app:\n    image: nginx:1.27\n    env_file: [big.env]\n"
        )
        started = time.perf_counter()
        parse_dotenv(text, lookup_in({}))
        parsed = time.perf_counter() - started
        started = time.perf_counter()
        import_compose([project], Options(into=root, environ=env, host="box"))
        imported = time.perf_counter() - started
    return {"lines": lines, "parse_s": round(parsed, 3), "import_s": round(imported, 3)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(int(argv[1]))))
        return
    for lines in [int(a) for a in argv] or [1000, 10000, 100000]:
        figures, peak = measure(__file__, str(lines))
        print(f"{json.dumps(figures)}; peak {peak:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
