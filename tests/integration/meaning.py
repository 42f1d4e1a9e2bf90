"""What a compose project means, as a real Compose implementation reads it, and what differs.

``normalise`` reads projects with docker-compose 1.x (its own ``config`` code, loaded once in
its own interpreter for speed: the same functions ``docker-compose config`` runs); a project it
refuses for a newer part of the specification (``app_protocol``, ``start_interval``, a boolean
in ``environment``, ``${VAR:+...}``) is read by podman-compose's ``config`` instead, and so is
the other side of the pair, so that both sides are always read by the same implementation.

``meaning`` then reduces one normalised service to what its containers do, field by field:

- ``image`` fully qualified (``postgres:16`` is ``docker.io/library/postgres:16`` to Docker);
  ``build``: its context relative to the project's directory, its Dockerfile and arguments;
- ``command`` and ``entrypoint`` as words (a string is split the way Compose splits it);
- ``environment`` with ``env_file``s read, and every secret by the value it delivers: a
  ``<VAR>_FILE`` naming a mounted compose secret counts as ``<VAR>`` holding the secret's value;
- ``ports`` as (host address, published, target, protocol): no address is ``0.0.0.0``, as the
  Compose specification says;
- ``volumes`` by target: the source's kind (a named volume, a directory or file of the project,
  a path of the host, tmpfs), what the source holds when it is a file or directory that exists
  (compared by content, wherever it lies), and read-only;
- ``healthcheck``: what it runs (``CMD /bin/sh -c X`` is ``CMD-SHELL X``; ``$VAR`` of a shell
  line replaced by the container's value of it) and its timings with Compose's defaults;
- ``depends_on`` with conditions (a list means ``service_started``), ``restart`` (none is
  ``no``), ``labels`` (without ``org.allmende.*``, allmende's own names for the container, which
  no program reads), ``networks`` with aliases (the alias a renamed component keeps its old name
  by is the old name itself; a service that names none is on ``default``), ``expose`` as a set,
  ``secrets`` by where they are mounted (those whose value reaches the environment through
  ``<VAR>_FILE`` are compared there), ``cap_add``, ``cap_drop``, ``ulimits``; every other key as
  it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dotenv.parser import parse_stream

from allmende.inventory.images import qualified

DOCKER_COMPOSE = Path("/usr/bin/docker-compose")
PODMAN_COMPOSE = Path(__file__).parents[2] / ".venv" / "bin" / "podman-compose"

_DRIVER = r"""
import json, os, sys
import yaml
from compose.cli.command import get_config_from_options
from compose.config.serialize import serialize_config
jobs = json.load(sys.stdin)
results = []
for job in jobs:
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    try:
        options = {"--file": job["files"], "--project-directory": None, "--env-file": None}
        config = get_config_from_options(".", options, {"--no-interpolate": False})
        results.append({"config": yaml.safe_load(serialize_config(config, None, False))})
    except BaseException as exc:
        results.append({"error": (type(exc).__name__ + ": " + str(exc)).strip()})
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Job:
    """One project to read: its compose files (the first is the base), environment, directory."""

    files: tuple[Path, ...]
    env: Mapping[str, str]
    cwd: Path


@dataclass(frozen=True)
class Read:
    """A project as an implementation read it (``config``), or why it could not (``error``)."""

    tool: str
    config: dict[str, Any] | None
    error: str = ""


def _interpreter() -> str:
    """Return the Python that runs docker-compose (its script's first line)."""
    first = DOCKER_COMPOSE.read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("#!").strip()


def _base_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}


def docker_compose(jobs: Sequence[Job]) -> list[Read]:
    """Read every job with docker-compose 1.x, in one process."""
    payload = [
        {"files": [str(f) for f in j.files], "env": {**_base_env(), **j.env}, "cwd": str(j.cwd)}
        for j in jobs
    ]
    done = subprocess.run(
        [_interpreter(), "-c", _DRIVER],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [Read("docker-compose", r.get("config"), r.get("error", "")) for r in results]


def podman_compose(job: Job) -> Read:
    """Read one job with podman-compose's ``config``."""
    argv = [str(PODMAN_COMPOSE)]
    for file in job.files:
        argv += ["-f", str(file)]
    done = subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        cwd=job.cwd,
        env={**_base_env(), **job.env},
        timeout=120,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return Read("podman-compose", None, tail)
    return Read("podman-compose", yaml.safe_load(done.stdout))


#: What read_pairs says of a project whose original neither implementation reads.
UNREAD_ORIGINAL = "original unread"


def read_pairs(pairs: Sequence[tuple[Job, Job]]) -> list[tuple[Read, Read]]:
    """Read (original, rendered) pairs, both sides by the same implementation (see above)."""
    flat = docker_compose([job for pair in pairs for job in pair])
    out: list[tuple[Read, Read]] = []
    for i, (original, rendered) in enumerate(pairs):
        first, second = flat[2 * i], flat[2 * i + 1]
        if first.config is None or second.config is None:
            first, second = podman_compose(original), podman_compose(rendered)
            if first.config is None or second.config is None:
                errors = [r.error for r in (flat[2 * i], flat[2 * i + 1], first, second)]
                read = flat[2 * i].config is not None or first.config is not None
                tool = "none" if read else UNREAD_ORIGINAL
                first = Read(tool, None, " | ".join(e for e in errors if e))
        out.append((first, second))
    return out


# --------------------------------------------------------------------------- meaning

_GO = re.compile(r"([0-9]*\.?[0-9]+)(us|ms|s|m|h)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
OWN_LABELS = "org.allmende."


def seconds(value: Any, default: float) -> float:
    """Return a Compose duration (``1m30s``, or a number of seconds) in seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    return sum(float(n) * _UNITS[u] for n, u in _GO.findall(str(value)))


def words(value: Any) -> list[str] | None:
    """Return a command or entrypoint as words."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            return [value]
    return [str(v) for v in value]


def digest(path: Path) -> str:
    """Return what a file or directory holds, as one hash (names and contents)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Project:
    """One read project and what resolving its paths and secrets needs."""

    config: dict[str, Any]
    directory: Path
    #: host paths that stand for another directory: the rendered project's /srv/<service>
    #: is the directory it was rendered into.
    moved: Mapping[str, Path]

    def path(self, text: str) -> Path:
        """Return a path of the project as it is on this machine."""
        for prefix, there in self.moved.items():
            if text == prefix or text.startswith(prefix + "/"):
                return there / text[len(prefix) :].lstrip("/")
        path = Path(text)
        return path if path.is_absolute() else self.directory / path

    def secrets(self, service: dict[str, Any]) -> dict[str, str]:
        """Return target path -> value of every compose secret the service mounts."""
        defined = self.config.get("secrets") or {}
        out: dict[str, str] = {}
        for entry in service.get("secrets") or []:
            name = entry if isinstance(entry, str) else entry.get("source")
            target = entry.get("target") if isinstance(entry, dict) else None
            target = target or f"/run/secrets/{name}"
            if not target.startswith("/"):
                target = f"/run/secrets/{target}"
            file = (defined.get(name) or {}).get("file")
            if file and self.path(str(file)).is_file():
                out[target] = self.path(str(file)).read_text(encoding="utf-8", errors="replace")
        return out


def environment(project: Project, service: dict[str, Any]) -> dict[str, str]:
    """Return the environment the service's container gets, secrets by their value."""
    env: dict[str, str] = {}
    files = service.get("env_file") or []
    for file in [files] if isinstance(files, str) else files:
        path = file.get("path") if isinstance(file, dict) else file
        if path and project.path(str(path)).is_file():
            env.update(env_file(project.path(str(path)), {}))
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(str(i).partition("=")[::2] for i in given)
    for key, value in given.items():
        if value is None:  # a bare name: the runner's variable, and there is none
            env.pop(str(key), None)
            continue
        env[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    mounted = project.secrets(service)
    for key in [k for k in env if k.endswith("_FILE")]:
        if env[key] in mounted and key[:-5] not in env:
            env[key[:-5]] = mounted[env.pop(key)]
    return env


_DEFAULTED = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def env_file(path: Path, outer: Mapping[str, str]) -> dict[str, str]:
    """Return the variables of an env file as Compose reads them: a value not in single quotes
    may use variables set before it (``B=${A}x``) or in ``outer``, which win (docker-compose
    1.x takes such values literally)."""
    found: dict[str, str] = {}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        known = {**found, **outer}
        if match.group(2) == ":-" and not known.get(name):
            return match.group(3) or ""
        if match.group(2) == "-" and name not in known:
            return match.group(3) or ""
        return known.get(name, "")

    if not path.is_file():
        return found
    with path.open(encoding="utf-8") as stream:
        bindings = [b for b in parse_stream(stream) if b.key is not None and not b.error]
    for binding in bindings:
        text = binding.value or ""
        quoted = binding.original.string.partition("=")[2].lstrip().startswith("'")
        found[str(binding.key)] = text if quoted else _DEFAULTED.sub(value, text)
    return found


def dotenv(path: Path, outer: Mapping[str, str]) -> dict[str, str]:
    """Return what a project's ``.env`` sets that the environment ``outer`` does not, read as
    Compose reads it (``env_file``): given these, docker-compose 1.x reads what Compose does."""
    return {k: v for k, v in env_file(path, outer).items() if k not in outer}


def _expand(line: str, env: Mapping[str, str]) -> str:
    return _REFERENCE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), line)


def healthcheck(check: Any, env: Mapping[str, str]) -> Any:
    """Return a healthcheck as what it runs and when (see the module's text)."""
    if not isinstance(check, dict):
        return None
    if check.get("disable") or check.get("test") in (["NONE"], "NONE"):
        return "disabled"
    test = check.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    test = [str(t) for t in test or []]
    if test[:3] == ["CMD", "/bin/sh", "-c"] and len(test) == 4:
        test = ["CMD-SHELL", test[3]]
    if test and test[0] == "CMD-SHELL":
        test = ["CMD-SHELL", _expand(" ".join(test[1:]), env)]
    return {
        "test": test,
        "interval": seconds(check.get("interval"), 30),
        "timeout": seconds(check.get("timeout"), 30),
        "retries": int(check.get("retries", 3)),
        "start_period": seconds(check.get("start_period"), 0),
        "start_interval": seconds(check.get("start_interval"), 5),
    }


def ports(entries: Any) -> list[tuple[str, str, str, str]]:
    """Return every published port as (address, published, target, protocol)."""
    out = set()
    for entry in entries or []:
        if isinstance(entry, dict):
            ip = str(entry.get("host_ip") or "")
            published, target = str(entry.get("published") or ""), str(entry["target"])
            protocol = str(entry.get("protocol") or "tcp")
        else:
            text, _, protocol = str(entry).partition("/")
            parts = text.split(":")
            target = parts[-1]
            published = parts[-2] if len(parts) > 1 else ""
            ip = ":".join(parts[:-2]).strip("[]")
        out.add((ip or "0.0.0.0", published, target, protocol or "tcp"))
    return sorted(out)


def volumes(project: Project, service: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """Return every mount by target: (kind, source, read-only) as the module's text says."""
    defined = project.config.get("volumes") or {}
    out: dict[str, tuple[str, str, bool]] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            mode = set(parts[2].split(",")) if len(parts) > 2 else set()
            read_only = "ro" in mode
            kind = "volume" if source and not source.startswith((".", "/", "~")) else "bind"
            if not source:
                kind = "anonymous"
        else:
            source, target = str(entry.get("source") or ""), str(entry["target"])
            kind = str(entry.get("type") or "volume")
            read_only = bool(entry.get("read_only"))
        if kind == "bind":
            path = project.path(source)
            inside = path.is_relative_to(project.directory) or any(
                path.is_relative_to(p) for p in project.moved.values()
            )
            if inside and path.exists():
                kind, source = ("file" if path.is_file() else "directory"), digest(path)
            elif inside:
                kind, source = "project data", "(made when the container starts)"
            else:
                kind, source = "host path", str(path)
        elif kind == "volume":
            definition = defined.get(source) or {}
            source = str(definition.get("name") or source) if definition.get("external") else ""
        out[target.rstrip("/") or "/"] = (kind, source, read_only)
    for entry in service.get("tmpfs") or []:
        out[str(entry).split(":")[0]] = ("tmpfs", "", False)
    return out


def networks(value: Any, alias: str) -> dict[str, Any]:
    """Return the networks a service is on, with their options (without ``alias``); a service
    that names none is on the project's ``default``."""
    if not value:
        return {"default": {}}
    if isinstance(value, list):
        return {str(n): {} for n in value}
    out = {}
    for name, options in (value or {}).items():
        options = dict(options or {})
        aliases = [a for a in options.get("aliases") or [] if a != alias]
        options.pop("aliases", None)
        if aliases:
            options["aliases"] = sorted(aliases)
        out[str(name)] = options
    return out


def depends_on(value: Any) -> dict[str, Any]:
    """Return dependencies with their conditions."""
    if isinstance(value, list):
        return {str(n): {"condition": "service_started"} for n in value}
    out = {}
    for name, options in (value or {}).items():
        options = {"condition": "service_started", **(options or {})}
        options.pop("restart", None) if options.get("restart") is False else None
        if options.get("required") is True:
            options.pop("required")
        out[str(name)] = options
    return out


def labels(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        value = dict(str(i).partition("=")[::2] for i in value)
    return {str(k): str(v) for k, v in (value or {}).items() if not str(k).startswith(OWN_LABELS)}


HANDLED = {"image", "build", "command", "entrypoint", "environment", "env_file", "ports"}
HANDLED |= {"volumes", "tmpfs", "healthcheck", "depends_on", "restart", "labels", "networks"}
HANDLED |= {"secrets", "container_name", "expose"}


def _secret_target(entry: Any) -> str:
    """Return where a service's compose secret is mounted inside."""
    if isinstance(entry, str):
        return f"/run/secrets/{entry}"
    target = str(entry.get("target") or entry.get("source"))
    return target if target.startswith("/") else f"/run/secrets/{target}"


def meaning(project: Project, service: dict[str, Any], alias: str) -> dict[str, Any]:
    """Return what one normalised service does, field by field (see the module's text)."""
    env = environment(project, service)
    mounted = project.secrets(service)
    delivered = {t for t, v in mounted.items() if v in env.values()}
    build = service.get("build")
    if isinstance(build, str):
        build = {"context": build}
    if isinstance(build, dict):
        context = str(build.get("context", "."))
        path = project.path(context)
        if path.exists():
            context = digest(path) if path.is_dir() else context
        build = {**build, "context": context}
    out: dict[str, Any] = {
        "image": qualified(str(service["image"])) if service.get("image") else None,
        "build": build,
        "command": words(service.get("command")),
        "entrypoint": words(service.get("entrypoint")),
        "environment": env,
        "ports": ports(service.get("ports")),
        "volumes": volumes(project, service),
        "healthcheck": healthcheck(service.get("healthcheck"), env),
        "depends_on": depends_on(service.get("depends_on")),
        "restart": str(service.get("restart") or "no"),
        "labels": labels(service.get("labels")),
        "networks": networks(service.get("networks"), alias),
        "secrets": sorted(
            target
            for target in (_secret_target(e) for e in service.get("secrets") or [])
            if target not in delivered
        ),
        "expose": sorted(str(e) for e in service.get("expose") or []) or None,
    }
    for key, value in service.items():
        if key not in HANDLED:
            out[key] = value
    return out


@dataclass(frozen=True)
class Difference:
    """One field of one compose service that does something else after the round trip."""

    service: str
    field: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.service}.{self.field}: {self.before!r} became {self.after!r}"


def compare(original: Project, rendered: Project, names: Mapping[str, str]) -> list[Difference]:
    """Given both projects read and compose service -> component, return every difference."""
    found: list[Difference] = []
    theirs = rendered.config.get("services") or {}
    for name, service in (original.config.get("services") or {}).items():
        mine = theirs.get(names.get(name, name))
        if mine is None:
            found.append(Difference(name, "(service)", "defined", "missing"))
            continue
        before = meaning(original, service, name)
        after = meaning(rendered, mine, name)
        renamed = {names.get(k, k): v for k, v in before["depends_on"].items()}
        before["depends_on"] = renamed
        for field in sorted(set(before) | set(after)):
            a, b = before.get(field), after.get(field)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                a = {k: a[k] for k in keys if k in a}
                b = {k: b[k] for k in keys if k in b}
            found.append(Difference(name, field, a, b))
    return found
