"""The `import` verbs: what runs already (compose projects, an HAProxy config) becomes inventory.

Policy lives here; the importers only read and map. An import decides every file it would
write, merges into files that exist (adding, never overwriting, unless ``force``), loads the
inventory as it would be, and only then writes: secrets first, then the files, each atomically.
With ``dry_run`` it stops before writing and says what it would write.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from allmende.errors import InventoryError, Problem, SecretError, UserError
from allmende.importers import compose as compose_importer
from allmende.importers import haproxy as haproxy_importer
from allmende.importers.composefile import read_project
from allmende.importers.databases import Provider, link
from allmende.importers.merge import merge
from allmende.importers.result import Imported, ImportRefused, Note
from allmende.importers.stage import staged
from allmende.importers.textmerge import insert
from allmende.importers.yamlout import dump
from allmende.inventory.atomic import make_parent, save
from allmende.inventory.hostpaths import CARRIED
from allmende.inventory.inventory import COLLECTIVE_FILE, Inventory
from allmende.inventory.load import load
from allmende.inventory.models import NAME_PATTERN
from allmende.inventory.secrets import SecretStore
from allmende.inventory.validate import did_you_mean
from allmende.inventory.yamlpos import parse

MARK = "Imported by `allmende import"
NAME = re.compile(NAME_PATTERN)
SERVICE_ORDER = [
    "description",
    "maintainers",
    "host",
    "components",
    "provides",
    "uses",
    "routes",
    "expose",
    "backup",
    "monitor",
    "docs",
    "allow",
    "x-compose",
]


@dataclass(frozen=True)
class Options:
    """How to import: into which inventory, onto which host, and how careful to be."""

    into: Path
    environ: Mapping[str, str]
    host: str = ""
    files: tuple[Path, ...] = ()
    name: str | None = None
    env_file: Path | None = None
    force: bool = False
    dry_run: bool = False
    #: Told how many projects of how many are read, as each is.
    tally: Callable[[int, int], None] = lambda done, total: None


@dataclass
class Change:
    """One inventory file the import writes: its text before (None: new) and after."""

    path: str
    before: str | None
    after: str

    def diff(self) -> str:
        """Return the change as a unified diff (the whole text for a new file)."""
        before = (self.before or "").splitlines(keepends=True)
        after = self.after.splitlines(keepends=True)
        old = f"a/{self.path}" if self.before is not None else "/dev/null"
        return "".join(difflib.unified_diff(before, after, old, f"b/{self.path}"))


@dataclass
class Report:
    """What an import did (or, with dry_run, would do): changes, and lines for the user."""

    changes: list[Change] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    services: list[Imported] = field(default_factory=list)
    written: bool = False


def service_file(root: Path, name: str) -> str:
    """Return the file of service ``name``, relative to the inventory: the one there is
    (``.yaml`` or ``.yml``), else ``services/<name>.yaml``."""
    for suffix in (".yaml", ".yml"):
        if (root / "services" / f"{name}{suffix}").is_file():
            return f"services/{name}{suffix}"
    return f"services/{name}.yaml"


def _inventory(root: Path, environ: Mapping[str, str]) -> Inventory:
    """Return the target inventory loaded. Raise UserError if it is none or does not load."""
    if not (root / COLLECTIVE_FILE).is_file():
        raise UserError(
            f"{root} is not an inventory (it has no {COLLECTIVE_FILE}): pass --into DIR, "
            "the directory holding allmende.yaml"
        )
    try:
        return load(root, environ)
    except InventoryError as exc:
        raise UserError(f"{exc}\nFix the inventory first: an import must load with it.") from None


def _imported_from(text: str) -> str | None:
    """Return the source named in a file's import header (the line after the one saying
    ``Imported by``), or None for a hand-written file."""
    lines = text.splitlines()
    for number, line in enumerate(lines[:-1]):
        if not line.startswith("#"):
            return None
        if MARK in line:
            return lines[number + 1].lstrip("# ").strip()
    return None


def _choose(candidates: list[str], source: str, root: Path, taken: set[str]) -> str:
    """Return the service name for a project: the first candidate whose file this project
    made before, else the first with a hand-written file (merged into), else the first free
    one; never one taken in this run or made by another import."""
    existing: list[str] = []
    for name in candidates:
        path = root / service_file(root, name)
        if name not in taken and path.is_file():
            origin = _imported_from(path.read_text(encoding="utf-8", errors="replace"))
            if origin == source:
                return name
            if origin is None:
                existing.append(name)
    if existing:
        return existing[0]
    for name in candidates:
        path = root / service_file(root, name)
        if name in taken:
            continue
        if path.is_file():
            origin = _imported_from(path.read_text(encoding="utf-8", errors="replace"))
            if origin is not None and origin != source:
                continue
        return name
    base = candidates[0]
    number = 2
    while f"{base}-{number}" in taken or (root / service_file(root, f"{base}-{number}")).exists():
        number += 1
    return f"{base}-{number}"


def _providers(imported: list[Imported], inventory: Inventory) -> list[Provider]:
    """Return every database server: those imported now, and those the inventory has."""
    found = []
    for out in imported:
        provides = out.data.get("provides")
        if provides:
            component = provides.get("component") or next(iter(out.data["components"]))
            extra = out.data["components"][component].get("x-compose", {})
            names = {str(extra[k]) for k in ("container_name", "hostname") if k in extra}
            databases = provides.setdefault("databases", [])
            hosts = frozenset({component, *names})
            found.append(Provider(out.name, provides["database"], hosts, databases))
    for name, service in inventory.services.items():
        if service.provides is not None and name not in {o.name for o in imported}:
            component = service.provides.component or next(iter(service.components))
            known = frozenset({component, f"{name}-{component}"})
            declared = list(service.provides.databases or [])
            found.append(Provider(name, service.provides.database, known, declared, imported=False))
    return found


def _link(imported: list[Imported], inventory: Inventory) -> None:
    """Give every imported service the ``uses`` its connections make clear; order its keys."""
    providers = _providers(imported, inventory)
    for out in imported:
        uses, notes = link(out.name, out.connections, providers, set(out.data["components"]))
        if uses:
            out.data["uses"] = [{"database": u} for u in uses]
        out.notes += [Note(where, "info", message) for where, message in notes]
    for out in imported:
        provides = out.data.get("provides")
        if provides is not None and not provides.get("databases"):
            provides.pop("databases", None)
        out.data = {k: out.data[k] for k in SERVICE_ORDER if k in out.data}


def valid_name(option: str, value: str) -> str:
    """Return ``value`` if it can name a new host or service file. Raise UserError saying why
    not: an import writes ``hosts/<host>.yaml`` and ``services/<name>.yaml``, so ``..``, ``/``
    or a control character would put a file outside ``--into``."""
    if NAME.fullmatch(value):
        return value
    shown = f"`{value}`" if value.isprintable() else repr(value)
    raise UserError(
        f"{option} {shown} cannot name a file in the inventory: use lowercase letters, digits "
        "and -, starting with a letter, at most 63 characters"
    )


def _host_stub(host: str, inventory: Inventory, report: Report) -> dict[str, str]:
    """Return a file for ``host`` if the inventory lacks it (to be filled in), else nothing."""
    if not host:
        raise UserError("say which host runs these projects: --host NAME")
    valid_name("--host", host)
    if host in inventory.hosts:
        return {}
    report.lines.append(
        f"hosts/{host}.yaml: new host (fill in its address and how to reach it; until then "
        "its published ports are rendered on 127.0.0.1)"
    )
    hint = did_you_mean(host, inventory.hosts, "host")
    if hint.startswith("did you mean"):
        report.lines.append(f"note: there is no host `{host}` yet ({hint})")
    text = (
        f"# Created by `allmende import` for the services imported onto it.\n"
        f"description: {host}, found running compose projects  # say what the machine is\n"
        "engine: compose\n"
    )
    return {f"hosts/{host}.yaml": text}


def _secrets(
    store: SecretStore, wanted: dict[str, str], force: bool, report: Report
) -> dict[str, str]:
    """Return the secrets to store now; report those kept as they are."""
    if not wanted:
        return {}
    store.require_recipients()
    to_store: dict[str, str] = {}
    for name, value in sorted(wanted.items()):
        if not store.exists(name) or force:
            to_store[name] = value
            continue
        try:
            same = store.get(name) == value.encode()
        except SecretError:
            report.lines.append(f"secret {name} exists and cannot be read here: left as it is")
            continue
        if not same:
            report.lines.append(
                f"secret {name} exists with another value: left as it is (--force replaces it)"
            )
    return to_store


def _file_text(out: Imported, root: Path, force: bool, report: Report) -> Change | None:
    """Return the change to services/<name>.yaml: new, merged into what is there (conflicts
    reported), or forced over it; None if the file already says all of it."""
    relative = service_file(root, out.name)
    path = root / relative
    fresh = dump(out.data, out.comments, out.header)
    if not path.is_file():
        return Change(relative, None, fresh)
    before = path.read_text(encoding="utf-8")
    if force:
        return Change(relative, before, fresh) if before != fresh else None
    document, problems = parse(before.encode(), relative)
    if problems or not isinstance(document.data, dict):
        raise ImportRefused(problems, f"{relative} is not valid YAML; nothing was imported")
    merged = merge(document.data, out.data)
    for conflict in merged.conflicts:
        report.lines.append(f"{relative}: {conflict}")
    if merged.data == document.data:
        return None
    after = insert(before, merged.added, merged.data, out.comments)
    if after is None:
        lines = before.splitlines()
        header = []
        for line in lines:
            if not line.startswith("#"):
                break
            header.append(line[1:].removeprefix(" "))
        after = dump(merged.data, out.comments, "\n".join(header))
        if any("#" in line for line in lines[len(header) :]):
            report.lines.append(f"{relative}: rewritten; comments below its header were not kept")
    return Change(relative, before, after)


def _finish(
    root: Path,
    options: Options,
    report: Report,
    files: dict[str, str],
    secrets: dict[str, str],
    blobs: Mapping[str, tuple[bytes, int]] | None = None,
) -> Report:
    """Validate the whole inventory as it would be, then (unless dry_run) write: ``files``
    as text, ``blobs`` (carried files) as bytes with their mode."""
    blobs = blobs or {}
    store = SecretStore(root, options.environ)
    to_store = _secrets(store, secrets, options.force, report)
    try:
        staged(root, files, {*store.names(), *secrets}, options.environ, blobs)
    except InventoryError as exc:
        raise UserError(f"{exc}\nThe imported files would not load: nothing was written.") from None
    if options.dry_run:
        return report
    for relative in [*files, *blobs]:  # before any secret: a file in the way stops it all
        make_parent(root / relative)
    for name, value in to_store.items():
        store.set(name, value.encode())
    for relative, text in files.items():
        save(root / relative, text.encode("utf-8"))
    for relative, (content, mode) in blobs.items():
        save(root / relative, content, mode)
    report.written = True
    return report


def import_compose(paths: Sequence[Path], options: Options) -> Report:
    """Import each compose project (file or directory) into one service of the inventory;
    ``options.files``, if any, are one more project made of several files merged.

    Raise ImportRefused for a project that cannot be imported, SecretError when values must
    go to a secret store without recipients, UserError for anything else; nothing is written
    then.
    """
    root = options.into
    if options.name is not None:
        valid_name("--name", options.name)
    if options.host:
        valid_name("--host", options.host)
    inventory = _inventory(root, options.environ)
    report = Report()
    projects: list[tuple[Path, tuple[Path, ...]]] = [(p, ()) for p in paths]
    if options.files:
        projects.append((options.files[0], options.files[1:]))
    if not projects:
        raise UserError("name a compose project: a file or directory, or the files with -f")
    if options.name is not None and len(projects) != 1:
        raise UserError("--name names one service: give one compose project with it")
    files = _host_stub(options.host, inventory, report)
    blobs: dict[str, tuple[bytes, int]] = {}
    problems: list[Problem] = []
    taken: set[str] = set()
    for done, (path, extra) in enumerate(projects):
        options.tally(done, len(projects))
        try:
            overrides = [(f, str(f)) for f in extra]
            project = read_project(path, str(path), options.environ, options.env_file, overrides)
            names = [options.name] if options.name else compose_importer.candidates(project)
            name = _choose(names, project.origin, root, taken)
            taken.add(name)
            report.services.append(compose_importer.map_project(project, name, options.host))
        except ImportRefused as exc:
            problems.extend(exc.problems)
    options.tally(len(projects), len(projects))
    if problems:
        raise ImportRefused(problems)
    _link(report.services, inventory)
    secrets: dict[str, str] = {}
    for out in report.services:
        change = _file_text(out, root, options.force, report)
        if change is not None:
            report.changes.append(change)
            files[change.path] = change.after
        relative = service_file(root, out.name)
        text = files.get(relative)
        if text is None:
            text = (root / relative).read_text(encoding="utf-8")
        used = _secret_references(text)
        for name, value in out.secrets.items():
            if name in used:
                secrets[name] = value
            else:
                report.lines.append(
                    f"{relative} names another secret where the import has {name}: "
                    f"{name} is not stored"
                )
        for change, content, mode in _carried(out, root, options.force, report):
            report.changes.append(change)
            blobs[change.path] = (content, mode)
    report.changes += [Change(p, None, t) for p, t in files.items() if p.startswith("hosts/")]
    return _finish(root, options, report, files, secrets, blobs)


def _carried(
    out: Imported, root: Path, force: bool, report: Report
) -> list[tuple[Change, bytes, int]]:
    """Return the changes that carry the project's configuration files into
    ``files/<service>/`` (each with its bytes and mode: 0755 for an executable one): new
    files, and (with ``force``) changed ones; a file there that says otherwise is kept and
    reported."""
    changes = []
    for relative, content in sorted(out.files.items()):
        path = f"{CARRIED}/{out.name}/{relative}"
        mode = 0o755 if relative in out.executable else 0o644
        there = root / path
        before = (there.read_bytes(), there.stat().st_mode & 0o777) if there.is_file() else None
        if (
            before is not None
            and before[0] == content
            and bool(before[1] & 0o111) == (mode == 0o755)
        ):
            continue
        if before is not None and not force:
            report.lines.append(f"{path}: kept as it is; the project's copy differs (--force)")
            continue
        shown = None if before is None else _shown(*before)
        changes.append((Change(path, shown, _shown(content, mode)), content, mode))
    return changes


def _shown(content: bytes, mode: int) -> str:
    """Return a carried file as the report shows it: its text, or what it is when binary;
    an executable one says so first."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = f"(a binary file of {len(content)} bytes)\n"
    return ("(executable)\n" if mode & 0o111 else "") + text


def _secret_references(text: str) -> set[str]:
    """Return every secret name a service file's components refer to."""
    document, _ = parse(text.encode(), "service")
    components = document.data.get("components") if isinstance(document.data, dict) else None
    return {
        str(use.get("secret") if isinstance(use, dict) else use)
        for component in (components or {}).values()
        if isinstance(component, dict)
        for use in (component.get("secrets") or {}).values()
    }


def import_haproxy(config: Path, options: Options) -> Report:
    """Attach the routes and exposed ports of an HAProxy config to the inventory's services.

    Raise ImportRefused for an unreadable config; UserError if the result would not load.
    """
    root = options.into
    inventory = _inventory(root, options.environ)
    report = Report()
    services, notes = haproxy_importer.import_config(config, str(config), inventory)
    report.lines += [str(n) for n in notes]
    files: dict[str, str] = {}
    for out in services:
        report.services.append(out)
        change = _file_text(out, root, False, report)
        if change is not None:
            report.changes.append(change)
            files[change.path] = change.after
    return _finish(root, options, report, files, {})
