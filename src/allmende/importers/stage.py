"""Load an inventory as it would be after an import, before anything of it is written.

The inventory's files are linked into a temporary directory, the new and changed files are laid
over them, every secret name (stored or about to be) gets an empty placeholder, and the real
loader reads the result. The inventory itself is not touched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from allmende.inventory.inventory import COLLECTIVE_FILE, DIRECTORIES, Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SECRETS_DIR, SUFFIX


def staged(
    root: Path,
    files: Mapping[str, str],
    secrets: Iterable[str],
    environ: Mapping[str, str],
) -> Inventory:
    """Given the inventory root, new file texts by relative path and every secret name, return
    the inventory loaded as it would be. Raise InventoryError if it would not load."""
    with tempfile.TemporaryDirectory(prefix="allmende-import-") as temp:
        stage = Path(temp)
        (stage / COLLECTIVE_FILE).symlink_to((root / COLLECTIVE_FILE).absolute())
        for directory in DIRECTORIES.values():
            source = root / directory
            if not any(name.startswith(f"{directory}/") for name in files):
                if source.is_dir():
                    (stage / directory).symlink_to(source.absolute())
                continue
            (stage / directory).mkdir()
            if source.is_dir():
                for path in source.iterdir():
                    if f"{directory}/{path.name}" not in files:
                        (stage / directory / path.name).symlink_to(path.absolute())
        for relative, text in files.items():
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for name in secrets:
            placeholder = stage / SECRETS_DIR / (name + SUFFIX)
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.touch()
        inventory = load(stage, environ)
    return inventory
