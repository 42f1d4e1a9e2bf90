"""Report: how every file of the corpus (tests/corpus/) imports, one line each, with totals.

    .venv/bin/python bench/corpus.py

Compose files are imported twice, as collected and as deployed, and HAProxy configs into an
inventory that mirrors their backends, the way tests/integration/test_import_corpus.py does it;
those tests hold what the report shows (every file imported or refused with a located reason,
at least 95 % imported as deployed, nothing lost). This prints what they do not: each file's
outcome and why, which passthrough fields it kept, what a deployment had to supply.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HARNESS = Path(__file__).parents[1] / "tests" / "integration" / "test_import_corpus.py"


def harness() -> ModuleType:
    """Load the corpus harness of the tests (layout, deployment inputs, the report's table)."""
    spec = importlib.util.spec_from_file_location("import_corpus_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    h = harness()
    with tempfile.TemporaryDirectory() as tmp:
        world = h.build_world(Path(tmp))
        print("== compose corpus, as collected ==")
        print(h.table(world.collected))
        print("\n== compose corpus, as deployed ==")
        print(h.table(world.deployed))
        print("\n== HAProxy corpus ==")
        for corpus_file, variant, _inventory, report in h.haproxy_imports(world):
            if variant == "mirror":
                print(h.haproxy_line(corpus_file, report))


if __name__ == "__main__":
    main()
