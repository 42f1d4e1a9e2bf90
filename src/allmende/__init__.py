"""allmende: keep a collective's shared servers as one Git repository of small YAML files."""

from functools import cache


@cache
def version() -> str:
    """Return the installed distribution's version (pyproject.toml is the only place it is
    written), looked up only when asked: ``importlib.metadata`` takes longer to import than
    the rest of what a host's backup job imports."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("allmende")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    """``allmende.__version__``, computed on first use (``version``)."""
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
