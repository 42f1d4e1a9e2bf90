"""Convention checks: one module per concern, each registering rules in ``registry.RULES``."""

from __future__ import annotations

import importlib

MODULES = (
    "names",
    "ports",
    "routes",
    "images",
    "volumes",
    "backups",
    "secrets",
    "monitor",
    "databases",
    "files",
    "domains",
    "certs",
    "xcompose",
    "rendering",
)


def load_rules() -> None:
    """Import every rule module so that its rules are registered (idempotent)."""
    for module in MODULES:
        importlib.import_module(f"allmende.checks.{module}")
