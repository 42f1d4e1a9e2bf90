"""Benchmark: import the whole compose corpus (tests/corpus/) and its HAProxy configs.

    .venv/bin/python bench/import.py

The corpus is laid out "as deployed" the way tests/integration/test_import_corpus.py does it
(sample env copied to .env, override files with their base, missing env files and variables
supplied). Two runs, each in a fresh process so that its peak memory (max RSS) is its own:

- ``each``: every compose file imported into its own new inventory, one after the other, the
  way a collective adopts one project at a time (each import validated, written, secrets
  encrypted); then every HAProxy config imported into an inventory built for it;
- ``all``: every importable project imported into one inventory with one command, the way a
  collective adopts a whole machine (one validation of the whole result).

Target: the whole corpus in under 5 s.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from corpus import harness
from fresh import measure


def prepare(h: ModuleType, root: Path) -> tuple[Any, list[tuple[list[Path], dict[str, str]]]]:
    """Lay out the corpus as deployed; return the world and every project's files and env."""
    from allmende.inventory.secrets import create_key

    key_env = {"ALLMENDE_AGE_KEY": str(root / "age.key")}
    holder = root / "holder"
    holder.mkdir()
    (holder / "allmende.yaml").write_text("name: bench\n")
    world = h.World(root, key_env, create_key(holder, key_env).public_key)
    tree = h.materialise(root / "deployed")
    projects = []
    for corpus_file in h.compose_files():
        files, environ, _ = h.deployment(corpus_file, tree[corpus_file])
        projects.append((files, environ))
    return world, projects


def each(h: ModuleType, root: Path) -> dict[str, float]:
    from allmende.actions.importing import Options, import_haproxy

    world, projects = prepare(h, root)
    started = time.perf_counter()
    counts = {"lossless": 0, "passthrough": 0, "refused": 0, "crashed": 0}
    for i, (files, environ) in enumerate(projects):
        outcome = h.run_import(world, f"p{i}", files, environ)
        if outcome.status == "refused" and h._missing_env_files(outcome, files[0].parent):
            outcome = h.run_import(world, f"p{i}-again", files, environ)
        counts[outcome.status] += 1
    compose_s = time.perf_counter() - started
    tree = h.materialise(root / "haproxy")
    started = time.perf_counter()
    for i, corpus_file in enumerate(h.haproxy_files()):
        inventory = h.mirror(world, f"h{i}", tree[corpus_file].read_text())
        import_haproxy(tree[corpus_file], Options(into=inventory, environ=world.key_env))
    haproxy_s = time.perf_counter() - started
    return {
        "projects": len(projects),
        **counts,
        "compose_s": round(compose_s, 3),
        "haproxy_files": len(h.haproxy_files()),
        "haproxy_s": round(haproxy_s, 3),
    }


def together(h: ModuleType, root: Path) -> dict[str, float]:
    from allmende.actions.importing import Options, import_compose
    from allmende.errors import UserError

    world, projects = prepare(h, root)
    importable = []
    for i, (files, environ) in enumerate(projects):
        outcome = h.run_import(world, f"probe{i}", files, environ)
        if outcome.status == "refused" and h._missing_env_files(outcome, files[0].parent):
            outcome = h.run_import(world, f"probe{i}-again", files, environ)
        if outcome.status in ("lossless", "passthrough"):
            importable.append((files, environ))
    inventory = h.new_inventory(world, "all")
    # One command for every single-file project (a project of several files needs its own -f);
    # their placeholder variables together, which is fine for timing.
    paths = [files[0] for files, _ in importable if len(files) == 1]
    environ = {k: v for _, env in importable for k, v in env.items()}
    options = Options(into=inventory, environ={**world.key_env, **environ}, host="box")
    started = time.perf_counter()
    try:
        report = import_compose(paths, options)
    except UserError as exc:
        raise SystemExit(f"importing all at once failed:\n{exc}") from None
    return {"projects": len(report.services), "all_s": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        h = harness()
        with tempfile.TemporaryDirectory() as tmp:
            figures = (each if argv[1] == "each" else together)(h, Path(tmp))
        print(json.dumps(figures))
        return
    for mode in ("each", "all"):
        figures, peak = measure(__file__, mode)
        print(f"{mode}: {json.dumps(figures)}; peak {peak:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
