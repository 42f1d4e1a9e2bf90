"""Read one compose project the way Compose does: find its files, its ``.env``, interpolate.

A project is a compose file, or a directory holding ``compose.yaml``, ``compose.yml``,
``docker-compose.yml`` or ``docker-compose.yaml`` (and the ``compose.override.yaml`` Compose
merges over it), optionally with further files merged over it as ``docker compose -f a -f b``
does. Its directory's ``.env`` (or the file given as ``env_file``) holds the variables; the
process environment wins over it, as in Compose. Every string value is interpolated; keys are
checked against the Compose specification, so a typo is reported with its line, not carried
along.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from allmende.errors import Location, Problem
from allmende.importers.composespec import (
    MERGE_TAG,
    NO_SERVICES,
    check_keys,
    yaml_problems,
)
from allmende.importers.interpolate import (
    InterpolationError,
    interpolate,
    lookup_in,
    parse_dotenv,
)
from allmende.importers.overlay import merge_files, merge_tags
from allmende.importers.result import ImportRefused, Note
from allmende.inventory.yamlpos import Document, KeyPath, dotted, parse

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_NAMES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)
_PLAIN = re.compile(r"[^,}\]\s#]*(?:[ \t]+[^,}\]\s#]+)*")


@dataclass
class Source:
    """One compose file of a project: its parsed document and its text."""

    document: Document
    text: str
    tags: dict[KeyPath, str] = field(default_factory=dict)
    unset: dict[str, Location] = field(default_factory=dict)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()


@dataclass
class Project:
    """One compose project, read, interpolated and merged, with where each value was written.

    ``sources`` are its compose files in the order Compose merges them; ``shown`` names them
    as given, ``origin`` by their absolute paths (the same wherever allmende runs from).
    """

    directory: Path
    shown: str
    first: str
    origin: str
    name: str
    data: dict[str, Any]
    sources: list[Source]
    env: Mapping[str, str]
    env_source: str | None
    notes: list[Note] = field(default_factory=list)

    def _source(self, path: KeyPath) -> Source:
        for source in reversed(self.sources):
            if path in source.document.values or path in source.document.keys:
                return source
        return self.sources[0]

    def where(self, path: KeyPath, *, key: bool = False) -> Location:
        """Return where the value (or key) at ``path`` is written (in the last file that has
        it, as that is the one Compose uses)."""
        return self._source(path).document.locate(path, key=key)

    def problem(self, path: KeyPath, message: str, hint: str = "") -> Problem:
        """Return a Problem located at ``path`` of the compose files."""
        return Problem(self.where(path), dotted(path), message, hint)

    def raw(self, path: KeyPath) -> str | None:
        """Return the text a plain scalar at ``path`` was written as (``022`` for 22)."""
        source = self._source(path)
        position = source.document.values.get(path)
        if position is None or position[0] > len(source.lines):
            return None
        line, column = position
        match = _PLAIN.match(source.lines[line - 1][column - 1 :])
        return match.group().strip() if match else None


def find_file(path: Path, shown: str) -> tuple[Path, Path | None]:
    """Given a compose file or a project directory, return the compose file and, for a
    directory, its override file (``compose.override.yaml`` ...) if it has one, as Compose
    merges that too. Raise ImportRefused if there is no compose file.
    """
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise ImportRefused([Problem(Location(shown), "", "no such file or directory")])
    found = next((path / n for n in COMPOSE_NAMES if (path / n).is_file()), None)
    if found is None:
        names = ", ".join(COMPOSE_NAMES)
        raise ImportRefused([Problem(Location(shown), "", f"no compose file here ({names})")])
    override = next((path / n for n in OVERRIDE_NAMES if (path / n).is_file()), None)
    return found, override


def project_name(raw: str) -> str:
    """Given a directory or ``name:``, return the project name as Compose normalises it."""
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    return name.lstrip("_-") or "project"


def _read_env(file: Path, shown: str, lookup: Any) -> dict[str, str]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        problem = Problem(Location(shown), "", f"cannot read the env file: {reason}")
        raise ImportRefused([problem]) from None
    try:
        return parse_dotenv(text, lookup)
    except InterpolationError as exc:
        message = str(exc)
        match = re.match(r"line (\d+): (.*)", message, re.DOTALL)
        line, message = (int(match.group(1)), match.group(2)) if match else (0, message)
        problem = Problem(Location(shown, line, 1 if line else 0), "", message)
        raise ImportRefused([problem]) from None


class _Interpolator:
    """Interpolate every string value of the data in place, collecting problems and notes."""

    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.lookup = lookup_in(env)
        self.problems: list[Problem] = []
        self.unset: dict[str, Location] = {}

    def walk(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            try:
                return interpolate(value, self.lookup, lambda n: self._missing(n, path))
            except InterpolationError as exc:
                self.problems.append(Problem(self.doc.locate(path), dotted(path), str(exc)))
                return value
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _missing(self, name: str, path: KeyPath) -> None:
        self.unset.setdefault(name, self.doc.locate(path))


def _read_file(file: Path, shown: str, env: Mapping[str, str], later: bool) -> tuple[Source, Any]:
    """Read, check and interpolate one compose file; return it and its data.

    ``later`` files (overrides) may use Compose's ``!override`` and ``!reset`` tags.
    """
    try:
        raw = file.read_bytes()
    except OSError as exc:
        problem = Problem(Location(shown), "", f"cannot read: {exc.strerror}")
        raise ImportRefused([problem]) from None
    document, problems = parse(raw, shown)
    text = raw.decode("utf-8-sig", errors="replace")
    tags = merge_tags(text) if later else {}
    problems = [p for p in problems if not (later and MERGE_TAG.search(p.message))]
    if problems or document.data is None:
        raise ImportRefused(yaml_problems(problems))
    if not isinstance(document.data, dict):
        kind = "a list" if isinstance(document.data, list) else "a single value"
        message = f"a compose file is a mapping (`services:` ...), this is {kind}"
        raise ImportRefused([Problem(Location(shown, 1, 1), "", message)])
    problems = check_keys(document.data, document, later)
    if problems:
        raise ImportRefused(problems)
    interpolator = _Interpolator(document, env)
    data = interpolator.walk(document.data, ())
    if interpolator.problems:
        directory = file.parent
        missing = _missing_env_files(data, directory, document)
        raise ImportRefused([*interpolator.problems, *missing])
    return Source(document, text, tags, interpolator.unset), data


def _missing_env_files(data: dict[str, Any], directory: Path, document: Document) -> list[Problem]:
    """Return a problem for each required ``env_file`` that does not exist (reported with a
    failing variable, so that a user sees every missing input at once)."""
    problems = []
    for name, service in (data.get("services") or {}).items():
        files = service.get("env_file") if isinstance(service, dict) else None
        for i, entry in enumerate([files] if isinstance(files, str | dict) else files or []):
            path = entry.get("path") if isinstance(entry, dict) else entry
            required = not isinstance(entry, dict) or entry.get("required", True) is not False
            if isinstance(path, str) and required and not (directory / path).is_file():
                where = ("services", name, "env_file", i)
                problems.append(
                    Problem(
                        document.locate(where),
                        dotted(where),
                        missing_env_file(path)[0],
                        missing_env_file(path)[1],
                    )
                )
    return problems


def missing_env_file(path: str) -> tuple[str, str]:
    """Return the message and hint for a required env file that does not exist."""
    return f"the env file {path} does not exist", "create it, or mark it `required: false`"


def read_project(
    path: Path,
    shown: str,
    environ: Mapping[str, str],
    env_file: Path | None = None,
    overrides: Sequence[tuple[Path, str]] = (),
) -> Project:
    """Given a compose file or project directory, return the Project, interpolated.

    ``environ`` is the process environment (it wins over the ``.env`` file, as in Compose);
    ``env_file`` replaces the project's ``.env``; ``overrides`` are further compose files
    (path, name for messages) merged over the first as Compose merges them. Raise
    ImportRefused with every problem (invalid YAML, unknown keys, a failing ``${VAR:?...}``,
    an unreadable env file).
    """
    file, override = find_file(path, shown)
    if file != path:
        shown = f"{shown.rstrip('/')}/{file.name}"
    files = [(file, shown), *overrides]
    if override is not None:
        files.insert(1, (override, f"{Path(shown).parent / override.name}"))
    directory = file.parent
    dotenv: dict[str, str] = {}
    env_source = None
    candidate = env_file if env_file is not None else directory / ".env"
    if env_file is not None or candidate.is_file():
        env_source = str(env_file) if env_file is not None else f"{Path(shown).parent / '.env'}"
        if not candidate.is_file():
            raise ImportRefused([Problem(Location(env_source), "", "no such env file")])
        dotenv = _read_env(candidate, env_source, lookup_in(environ))
    env = {**dotenv, **environ}
    sources: list[Source] = []
    data: dict[str, Any] = {}
    problems: list[Problem] = []
    for i, (one, name) in enumerate(files):
        try:
            source, more = _read_file(one, name, env, later=i > 0)
        except ImportRefused as exc:
            problems += exc.problems
            continue
        sources.append(source)
        data = more if i == 0 else merge_files(data, more, source.tags)
    if problems:
        raise ImportRefused(problems)
    if not isinstance(data.get("services"), dict):
        raise ImportRefused([Problem(Location(shown, 1, 1), "services", NO_SERVICES)])
    raw_name = data.get("name") or env.get("COMPOSE_PROJECT_NAME") or directory.resolve().name
    project = Project(
        directory=directory,
        shown=" + ".join(name for _, name in files),
        first=shown,
        origin=" + ".join(str(path.absolute()) for path, _ in files),
        name=project_name(str(raw_name)),
        data=data,
        sources=sources,
        env=env,
        env_source=env_source,
    )
    for source in sources:
        for name, location in sorted(source.unset.items(), key=lambda i: i[1]):
            project.notes.append(
                Note(
                    location,
                    "warning",
                    f"variable {name} is not set; used an empty string, as Compose does",
                )
            )
    return project


def outside(project: Project, raw: str) -> bool:
    """Whether the ``env_file`` entry ``raw`` lies outside the project's directory, its links
    followed (``/etc/shadow``, ``../../secrets.env``): an import never reads such a file."""
    file = Path(raw)
    if not file.is_absolute():
        file = project.directory / file
    try:
        return not file.resolve().is_relative_to(project.directory.resolve())
    except (OSError, RuntimeError):
        return True


def read_env_file(project: Project, raw: str, path: KeyPath) -> dict[str, str] | None:
    """Given an ``env_file`` entry (relative to the project directory), return its variables.

    Return None if it does not exist. Raise ImportRefused if it cannot be read or parsed.
    """
    file = Path(raw)
    if not file.is_absolute():
        file = project.directory / file
    if not file.is_file():
        return None
    shown = raw if Path(raw).is_absolute() else str(Path(project.first).parent / raw)
    return _read_env(file, shown, lookup_in(project.env))
