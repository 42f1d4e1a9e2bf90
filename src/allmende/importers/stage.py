"""Load an inventory as it would be after an import, before anything of it is written.

The inventory's files and the configuration files it carries are copied into a temporary
directory (links are not: a copy can never write into the inventory, nor the real loader's
refusals of links be sidestepped), the new and changed files are laid over them, every
secret name (stored or about to be) gets an empty placeholder, and the real loader reads the
result. The inventory itself is not touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from allmende.inventory.hostpaths import CARRIED
from allmende.inventory.inventory import COLLECTIVE_FILE, DIRECTORIES, Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SECRETS_DIR, SUFFIX


def staged(
    root: Path,
    files: Mapping[str, str],
    secrets: Iterable[str],
    environ: Mapping[str, str],
    blobs: Mapping[str, tuple[bytes, int]] | None = None,
) -> Inventory:
    """Given the inventory root, new file texts by relative path, new carried files (bytes
    and mode) and every secret name, return the inventory loaded as it would be. Raise
    InventoryError if it would not load."""
    with tempfile.TemporaryDirectory(prefix="allmende-import-") as temp:
        stage = Path(temp)
        _copy(root / COLLECTIVE_FILE, stage / COLLECTIVE_FILE)
        for directory in DIRECTORIES.values():
            source = root / directory
            if not source.is_dir() or source.is_symlink():
                continue
            (stage / directory).mkdir()
            for path in source.iterdir():
                if f"{directory}/{path.name}" not in files:
                    _copy(path, stage / directory / path.name)
        carried = root / CARRIED
        for top, _dirs, names in os.walk(carried) if not carried.is_symlink() else ():
            for file in names:
                inside = (Path(top) / file).relative_to(root)
                (stage / inside).parent.mkdir(parents=True, exist_ok=True)
                _copy(root / inside, stage / inside)
        for relative, text in files.items():
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for relative, (content, mode) in (blobs or {}).items():
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
        for name in secrets:
            placeholder = stage / SECRETS_DIR / (name + SUFFIX)
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.touch()
        inventory = load(stage, environ)
    return inventory


def _copy(source: Path, target: Path) -> None:
    """Copy a regular file that is no link (the loader reports links and the rest)."""
    if source.is_file() and not source.is_symlink():
        shutil.copyfile(source, target)
