"""allmende: keep a collective's shared servers as one Git repository of small YAML files."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version; pyproject.toml is the only place it is written.
    __version__ = version("allmende")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
