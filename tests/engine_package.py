"""Install an engine from another package for a test: a temporary package made installed by
its ``dist-info`` (an entry point in the group ``allmende.engines``)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from allmende import engines


@contextmanager
def installed(
    directory: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> Iterator[None]:
    """Install the engine ``name`` whose module is ``source`` (a package ``<name>_engine``)
    under ``directory`` while the block runs."""
    package = f"{name}_engine"
    site = directory / "site"
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-engine\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[allmende.engines]\n{name} = {package}\n")
    monkeypatch.syspath_prepend(str(site))
    engines.engines.cache_clear()
    try:
        yield
    finally:
        engines.engines.cache_clear()
        sys.modules.pop(package, None)
