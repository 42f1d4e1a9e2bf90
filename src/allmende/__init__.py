"""allmende: keep a collective's shared servers as one Git repository of small YAML files."""

__version__ = "0.1.0"
