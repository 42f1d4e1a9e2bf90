"""Round trip: every corpus import rendered back with ``allmende.render.compose`` and compared
with the original, both normalised the way ``docker compose config`` reads them.

What is compared, per compose service: image, command, environment (a secret moved to the
store and passed as ``<ENV>_FILE`` counts as the same variable with the same value), ports
(published, target, protocol; an explicit host address must stay), volumes (as the host sees
them: a relative bind made absolute, a plain named volume at ``/srv/<service>/<volume>``),
healthcheck (what it runs, timings with Compose's defaults; any local curl/wget probe of the
same port and path is the same probe), dependencies (names; conditions where the original
gave them), replicas and deploy keys, labels other than Traefik's, and every other key the
service had (kept verbatim, they must come back equal). The rendered file must also pass the
Compose JSON Schema. Project-level definitions (networks, compose secrets and configs, volumes
that stay compose volumes) must be rendered too.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from test_import_corpus import (  # the corpus harness (tests/integration has no package)
    HANDLED,
    SCHEMA,
    Outcome,
    World,
    _service,
    environment_of,
    imported,
    original,
    world,
)
from tests.conftest import SUMMARY

from allmende.importers.interpolate import interpolate
from allmende.importers.traefik import labels_of
from allmende.inventory.images import qualified
from allmende.inventory.load import load
from allmende.inventory.secretnames import flat_name
from allmende.inventory.yamlpos import parse
from allmende.render import compose as render_compose

__all__ = ["world"]  # the session fixture, shared with test_import_corpus


_GO = re.compile(r"([0-9]*\.?[0-9]+)(ms|s|m|h)")
_PROBE = re.compile(
    r"\b(?:curl|wget)\b[^|;&]*?(?:http://)?(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])"
    r"(?::([0-9]+))?(/[^\s'\"|]*)?"
)
PROJECT_KEYS = ("networks", "secrets", "configs", "volumes")


def seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * factor[u] for n, u in _GO.findall(str(value)))


def norm_test(test: Any) -> tuple[Any, ...]:
    """Return a healthcheck test as what it runs: a command, a shell line, or an HTTP probe."""
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not isinstance(test, list) or not test:
        return ("NONE",)
    words = [str(t) for t in test]
    if words[0] == "CMD" and words[1:3] == ["/bin/sh", "-c"] and len(words) == 4:
        words = ["CMD-SHELL", words[3]]
    line = " ".join(words[1:])
    probe = _PROBE.search(line)
    if probe and (words[0] == "CMD" or "|" not in line.split("||")[0]):
        return ("HTTP", int(probe.group(1) or 80), probe.group(2) or "/")
    if words[0] == "CMD-SHELL":
        return ("SHELL", " ".join(words[1:]))
    return tuple(words)


def norm_healthcheck(check: Any) -> Any:
    if not isinstance(check, dict):
        return None
    if check.get("disable") or check.get("test") in (["NONE"], None):
        return {k: v for k, v in check.items()}
    return {
        "test": norm_test(check.get("test")),
        "interval": seconds(check.get("interval"), 30),
        "timeout": seconds(check.get("timeout"), 30),
        "retries": int(check.get("retries", 3)),
        "start_period": seconds(check.get("start_period"), 0),
        "start_interval": seconds(check.get("start_interval"), 5),
    }


def norm_ports(entries: Any) -> tuple[set[tuple[Any, ...]], set[str]]:
    """Return ((published, target, protocol) of every port, the explicit host addresses)."""
    ports: set[tuple[Any, ...]] = set()
    addresses: set[str] = set()
    for entry in entries or []:
        if isinstance(entry, dict):
            ip, published = str(entry.get("host_ip") or ""), entry.get("published")
            target, protocol = entry["target"], entry.get("protocol") or "tcp"
        else:
            text, _, protocol = str(entry).partition("/")
            parts = text.split(":")
            target = parts[-1]
            published = parts[-2] if len(parts) > 1 else None
            ip = ":".join(parts[:-2]).strip("[]")
        ports.add((str(published or ""), str(target), protocol or "tcp"))
        if ip not in ("", "0.0.0.0"):
            addresses.add(ip)
    return ports, addresses


def norm_volumes(
    entries: Any, directory: Path, service: str, plain: set[str]
) -> set[tuple[str, str, str]]:
    """Return (source, target, options) of every mount; sources as they end up on the host."""
    out: set[tuple[str, str, str]] = set()
    for entry in entries or []:
        if isinstance(entry, dict):
            source, target = str(entry.get("source") or ""), str(entry["target"])
            options = "ro" if entry.get("read_only") else ""
        else:
            parts = str(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            options = ",".join(sorted(set(parts[2].split(",")) - {"rw"})) if len(parts) > 2 else ""
        if source.startswith("."):
            source = str((directory.absolute() / source).resolve(strict=False))
        elif source in plain:
            source = f"/srv/{service}/{re.sub(r'[^a-z0-9]+', '-', source.lower()).strip('-')}"
        out.add((source.rstrip("/"), target.rstrip("/"), options))
    return out


def norm_env(env: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """Return an environment with each ``<ENV>_FILE`` naming a secret replaced by its value."""
    out = {}
    for key, value in env.items():
        if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
            flat = str(value).removeprefix("/run/secrets/")
            if flat in secrets:
                out[key[:-5]] = secrets[flat]
                continue
        out[key] = "" if value is None else str(value)
    return out


def original_env(project: Any, compose: dict[str, Any]) -> dict[str, str]:
    from allmende.importers.composefile import read_env_file

    env: dict[str, str] = {}
    files = compose.get("env_file") or []
    for entry in [files] if isinstance(files, str | dict) else files:
        path = entry["path"] if isinstance(entry, dict) else entry
        env.update(read_env_file(project, path, ()) or {})
    for key, value in environment_of(compose.get("environment")).items():
        if value is None:
            value = project.env.get(key)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if value is not None:
            env[key] = str(value)
        else:
            env.pop(key, None)
    return env


@cache
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def rendered_project(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """Render the inventory an outcome wrote; return the service name and its project, read
    back the way Compose reads it (``$$`` is a ``$``)."""
    assert outcome.inventory is not None
    inventory = load(outcome.inventory, outcome.environ)
    name, _ = _service(outcome)
    files = render_compose.render(inventory)
    content = files[f"box/srv/{name}/compose.yaml"].content
    document, problems = parse(content, "rendered")
    assert not problems, problems
    validator().validate(document.data)

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return interpolate(value, lambda _: None)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    return name, resolve(document.data)


def differences(outcome: Outcome) -> tuple[list[str], list[str]]:
    """Return (what the rendered project does differently, project-level keys it lacks)."""
    project = original(outcome)
    name, rendered = rendered_project(outcome)
    assert outcome.report is not None
    secrets = {flat_name(k): v for s in outcome.report.services for k, v in s.secrets.items()}
    definitions = project.data.get("volumes") or {}
    plain = {k for k, v in definitions.items() if v in (None, {})}
    found: list[str] = []
    services = rendered["services"]
    _, data = _service(outcome)
    names = dict(zip(project.data["services"], data["components"], strict=True))
    for (compose_name, compose), cname in zip(
        project.data["services"].items(), data["components"], strict=True
    ):
        mine = services.get(cname)
        if mine is None:
            found.append(f"{compose_name}: not rendered")
            continue

        def differ(what: str, a: Any, b: Any, compose_name: str = compose_name) -> None:
            if a != b:
                found.append(f"{compose_name}.{what}: {a!r} became {b!r}")

        if "image" in compose:
            differ("image", qualified(compose["image"]), mine.get("image"))
        command = compose.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        differ("command", [str(c) for c in command] if command else None, mine.get("command"))
        differ(
            "environment",
            original_env(project, compose),
            norm_env(mine.get("environment") or {}, secrets),
        )
        ours, theirs = norm_ports(compose.get("ports")), norm_ports(mine.get("ports"))
        differ("ports", ours[0], theirs[0])
        if not ours[1] <= theirs[1]:
            differ("ports (addresses)", ours[1], theirs[1])
        differ(
            "volumes",
            norm_volumes(compose.get("volumes"), project.directory, name, plain),
            norm_volumes(mine.get("volumes"), project.directory, name, set()),
        )
        differ(
            "healthcheck",
            norm_healthcheck(compose.get("healthcheck")),
            norm_healthcheck(mine.get("healthcheck")),
        )
        deps = compose.get("depends_on") or []
        differ("depends_on", sorted(names[d] for d in deps), sorted(mine.get("depends_on") or []))
        if isinstance(deps, dict):
            for dep, options in deps.items():
                for key, value in (options or {}).items():
                    got = (mine["depends_on"].get(names[dep]) or {}).get(key)
                    differ(f"depends_on.{dep}.{key}", value, got)
        deploy = compose.get("deploy") or {}
        replicas = deploy.get("replicas", compose.get("scale", 1))
        differ("replicas", replicas, (mine.get("deploy") or {}).get("replicas", 1))
        for key, value in deploy.items():
            differ(f"deploy.{key}", value, (mine.get("deploy") or {}).get(key))
        labels = {
            k: v
            for k, v in (labels_of(compose.get("labels")) or {}).items()
            if not k.startswith("traefik.")
        }
        theirs_labels = labels_of(mine.get("labels")) or {}
        differ("labels", labels, {k: v for k, v in theirs_labels.items() if k in labels})
        for key, value in compose.items():
            if key in HANDLED:
                continue
            if key == "networks":
                value = sorted(value) if isinstance(value, list) else value
                ours_n = sorted(value) if isinstance(value, list) else value
                theirs_n = _without_alias(mine.get("networks") or {}, compose_name)
                if isinstance(ours_n, list):
                    differ("networks", ours_n, sorted(n for n in theirs_n if n in ours_n))
                else:
                    differ("networks", ours_n, {k: v for k, v in theirs_n.items() if k in ours_n})
            elif key == "secrets":
                differ("secrets", value, [s for s in mine.get("secrets", []) if s in value])
            else:
                differ(key, value, mine.get(key))
    lacking = [
        f"{key}.{name}"
        for key in PROJECT_KEYS
        for name in _project_level(project.data, key)
        if name not in (rendered.get(key) or {})
    ]
    return found, lacking


def _without_alias(networks: dict[str, Any], alias: str) -> dict[str, Any]:
    """Return networks without the alias a renamed component keeps its old name by."""
    out = {}
    for name, options in networks.items():
        if isinstance(options, dict) and alias in (options.get("aliases") or []):
            options = {**options, "aliases": [a for a in options["aliases"] if a != alias]}
            if not options["aliases"]:
                del options["aliases"]
        out[name] = options
    return out


def _project_level(data: dict[str, Any], key: str) -> list[str]:
    """Return the names the project defines under a top-level key (volumes: those that stay
    compose volumes)."""
    value = data.get(key) or {}
    if key == "volumes":
        return [k for k, v in value.items() if v not in (None, {})]
    return list(value)


def test_round_trip_through_the_compose_renderer(world: World) -> None:
    """Render every import back and compare it with the original, normalised."""
    failures: dict[str, list[str]] = {}
    gaps: dict[str, list[str]] = {}
    for corpus_file, outcome in imported(world):
        found, lacking = differences(outcome)
        if found:
            failures[corpus_file] = found
        if lacking:
            gaps[corpus_file] = lacking
    SUMMARY.append(f"import round trip: {len(list(imported(world)))} imports rendered back")
    for corpus_file, keys in sorted(gaps.items()):
        SUMMARY.append(f"  renderer gap {corpus_file[8:]}: project-level {', '.join(keys)}")
    assert not failures, json.dumps(failures, indent=1)
