"""Every compose file and HAProxy config of the corpus (tests/corpus/), imported (bench/corpus.py
prints how each one went).

The corpus keeps each file flat (``compose/<owner>__<repo>/<path with / as __>``); SOURCES.md
gives each file's original path, so the files are first laid out again as they sit in their
repositories (an ``env_file: db.env`` then finds ``db.env`` next to it). Two runs:

- **as collected**: the files exactly as they are. Many cannot run as they are either: they
  name env files the corpus does not have (their values are private), require variables that
  only a deployment's ``.env`` sets, or only override another file. Each of those must be
  refused with a located reason a user understands.
- **as deployed**: what a running deployment has besides the files. A sample env
  (``.env.example`` ...) is copied to ``.env`` as the projects' READMEs say; an override file is
  imported with the file it overrides (``-f base -f override``, per the repository's README);
  env files a file names but the corpus lacks are empty; variables without a value or default
  get a placeholder (a number for ports, a relative path for paths). At least 95 % must import,
  and every import must lose nothing: each compose field mapped or kept under ``x-compose``.

Then each import is rendered back with ``allmende.render.compose`` and compared with the
original by what their containers do (``test_import_meaning.py``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from allmende.actions.importing import Options, Report, import_compose, import_haproxy
from allmende.checks.registry import run as run_rules
from allmende.errors import UserError
from allmende.importers.composefile import read_project
from allmende.importers.traefik import labels_of
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.inventory.yamlpos import parse

CORPUS = Path(__file__).parents[1] / "corpus"
SCHEMA = Path(__file__).parents[1] / "schemas" / "compose-spec.json"
ROW = re.compile(r"^\| `((?:compose|haproxy)/[^`]+)` \| `([^`]+)`")
SAMPLES = (".env.example", ".env.dist", "env.example", ".env-sample", ".env.sample")
SAMPLES += ("env.prod.sample",)
#: Override files, and the files they are merged over when deployed (from each README).
BASES = {
    "compose/TryGhost__ghost-docker/compose.ipv6.yml": "compose.yml",
    "compose/jitsi__docker-jitsi-meet/etherpad.yml": "docker-compose.yml",
    "compose/jitsi__docker-jitsi-meet/grafana.yml": "docker-compose.yml",
    "compose/jitsi__docker-jitsi-meet/jibri.yml": "docker-compose.yml",
    "compose/jitsi__docker-jitsi-meet/jigasi.yml": "docker-compose.yml",
    "compose/jitsi__docker-jitsi-meet/prometheus.yml": "docker-compose.yml",
    "compose/mailcow__mailcow-dockerized/helper-scripts__docker-compose.override.yml.d__"
    "EXTERNAL_DNS__docker-compose.override.yml": "docker-compose.yml",
    "compose/mailcow__mailcow-dockerized/helper-scripts__docker-compose.override.yml.d__"
    "HAPROXY__docker-compose.override.yml": "docker-compose.yml",
    "compose/mattermost__docker/docker-compose.nginx.yml": "docker-compose.yml",
    "compose/mattermost__docker/docker-compose.without-nginx.yml": "docker-compose.yml",
    "compose/netbox-community__netbox-docker/docker-compose.test.override.yml": (
        "docker-compose.test.yml"
    ),
    "compose/zulip__docker-zulip/ci__certbot__compose.yaml": "compose.yaml",
    "compose/zulip__docker-zulip/ci__http-only__compose.yaml": "compose.yaml",
    "compose/zulip__docker-zulip/ci__settings__compose.yaml": "compose.yaml",
}
_VARIABLE = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)(\}|[?:][^}]*\})?")
_LOCATED = re.compile(r"^\S+:\d+(:\d+)?: \S")


@cache
def corpus_files() -> dict[str, str]:
    """Return corpus file -> its original path in its repository, from SOURCES.md."""
    rows = {}
    for line in (CORPUS / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match and (CORPUS / match.group(1)).is_file():
            rows[match.group(1)] = match.group(2).split(" ")[0]
    return rows


def materialise(into: Path) -> dict[str, Path]:
    """Lay the corpus out under ``into`` as in its repositories; return corpus file -> path."""
    out = {}
    for corpus_file, original in corpus_files().items():
        target = into / corpus_file.split("/")[1] / original
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / corpus_file, target)
        out[corpus_file] = target
    return out


def compose_files() -> list[str]:
    """Return every compose YAML file of the corpus (not its env files)."""
    return sorted(f for f in corpus_files() if f.startswith("compose/") and _is_yaml(f))


def haproxy_files() -> list[str]:
    return sorted(f for f in corpus_files() if f.startswith("haproxy/"))


def _is_yaml(name: str) -> bool:
    return name.endswith((".yml", ".yaml"))


def _placeholder(name: str, number: int) -> str:
    upper = name.upper()
    if "PORT" in upper:
        return str(20000 + number)
    if upper.endswith(("_IP", "_IPV6")):
        return "10.0.0.1" if not upper.endswith("IPV6") else "fd00::1"
    if upper.endswith(("PATH", "DIR", "ROOT", "FILE", "VOLUME")) or upper == "CONFIG":
        return f"./{name.lower()}"
    if upper.endswith("TAG"):
        return "1.0"
    if upper.endswith("IMAGE"):
        return "example/image"
    if upper.endswith("READONLY"):
        return "false"
    if "RESTART" in upper:
        return "unless-stopped"
    return f"{name.lower().replace('_', '-')}-placeholder"


# --------------------------------------------------------------------------- importing


@dataclass
class Outcome:
    """One corpus file imported: how it went, what was kept verbatim, what was supplied."""

    file: str
    status: str  # lossless | passthrough | refused | crashed
    detail: list[str] = field(default_factory=list)
    supplied: list[str] = field(default_factory=list)
    inventory: Path | None = None
    report: Report | None = None
    paths: list[Path] = field(default_factory=list)
    environ: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """Where the corpus was laid out, the key for secrets, and every outcome."""

    root: Path
    key_env: dict[str, str]
    public_key: str
    collected: dict[str, Outcome] = field(default_factory=dict)
    deployed: dict[str, Outcome] = field(default_factory=dict)
    haproxy: dict[str, list[str]] = field(default_factory=dict)


def new_inventory(world: World, name: str) -> Path:
    root = world.root / "inventories" / name
    root.mkdir(parents=True)
    (root / "allmende.yaml").write_text("name: corpus\ndomains: [example.org]\n")
    SecretStore(root, world.key_env).add_recipient(world.public_key)
    return root


def run_import(world: World, name: str, paths: list[Path], environ: dict[str, str]) -> Outcome:
    """Import one project (several files: the first is the base) into a fresh inventory."""
    inventory = new_inventory(world, name)
    env = {**world.key_env, **environ}
    options = Options(into=inventory, environ=env, host="box", files=tuple(paths))
    outcome = Outcome(name, "refused", inventory=inventory, paths=paths, environ=env)
    try:
        report = import_compose([], options)
    except UserError as exc:
        outcome.detail = str(exc).splitlines()
        return outcome
    except Exception as exc:  # a bug: reported as such by the tests below
        outcome.status = "crashed"
        outcome.detail = [repr(exc)]
        return outcome
    kept = [k for s in report.services for k in s.kept]
    outcome.status = "passthrough" if kept else "lossless"
    outcome.detail = kept
    outcome.report = report
    return outcome


def deployment(corpus_file: str, path: Path) -> tuple[list[Path], dict[str, str], list[str]]:
    """Return the files, environment and a list of what was supplied to deploy one file."""
    supplied: list[str] = []
    files = [path]
    base = BASES.get(corpus_file)
    if base is not None:
        repository = path.parents[len(Path(corpus_files()[corpus_file]).parts) - 1]
        files = [repository / base, path]
        supplied.append(f"merged over {base}")
    directory = files[0].parent
    for sample in SAMPLES:
        if (directory / sample).is_file() and not (directory / ".env").exists():
            shutil.copyfile(directory / sample, directory / ".env")
    if (directory / ".env").exists():
        supplied.append(".env")
    environ: dict[str, str] = {}
    known = _dotenv_names(directory / ".env")
    for file in files:
        text = file.read_text(encoding="utf-8")
        for match in _VARIABLE.finditer(text):
            name, tail = match.group(1), match.group(2) or ""
            if name in known or name in environ or tail.startswith((":-", "-")):
                continue
            environ[name] = _placeholder(name, len(environ))
    if environ:
        supplied.append(f"{len(environ)} variables")
    return files, environ, supplied


def _missing_env_files(outcome: Outcome, directory: Path) -> list[str]:
    """Create, empty, every relative env file a refusal names as missing; return them."""
    created = []
    for reason in outcome.detail if outcome.status == "refused" else []:
        match = re.search(r"the env file (\S+) does not exist", reason)
        if match and not match.group(1).startswith("/"):
            target = directory / match.group(1)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
                created.append(match.group(1))
    return created


def _dotenv_names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    names = re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=", path.read_text(), re.M)
    return set(names)


def build_world(root: Path) -> World:
    """Lay the corpus out under ``root`` and import every compose file of it twice: as
    collected and as deployed (see the module's docstring)."""
    key_env = {"ALLMENDE_AGE_KEY": str(root / "age.key")}
    holder = root / "keyholder"
    holder.mkdir()
    (holder / "allmende.yaml").write_text("name: keyholder\n")
    key = create_key(holder, key_env)
    world = World(root, key_env, key.public_key)
    collected = materialise(root / "collected")
    for corpus_file in compose_files():
        name = "c-" + corpus_file.replace("/", "__")
        world.collected[corpus_file] = run_import(world, name, [collected[corpus_file]], {})
    deployed = materialise(root / "deployed")
    for corpus_file in compose_files():
        files, environ, supplied = deployment(corpus_file, deployed[corpus_file])
        name = "d-" + corpus_file.replace("/", "__")
        outcome = run_import(world, name, files, environ)
        created = _missing_env_files(outcome, files[0].parent)
        if created:
            shutil.rmtree(world.root / "inventories" / name)
            outcome = run_import(world, name, files, environ)
            supplied += [f"empty {c}" for c in created]
        outcome.supplied = supplied
        world.deployed[corpus_file] = outcome
    return world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("corpus"))


# --------------------------------------------------------------------------- the report


def table(outcomes: dict[str, Outcome]) -> str:
    """Return one line per file: its outcome and why, then the totals."""
    lines = []
    for corpus_file, outcome in sorted(outcomes.items()):
        if outcome.status in ("refused", "crashed"):
            why = outcome.detail[0] if outcome.detail else ""
            why = re.sub(r"^\S+/(\S+:\d+)", r"\1", why)
        else:
            why = ", ".join(outcome.detail[:6]) + (", ..." if len(outcome.detail) > 6 else "")
        supplied = f" [{'; '.join(outcome.supplied)}]" if outcome.supplied else ""
        lines.append(f"{outcome.status:<11} {corpus_file[8:]}{supplied}\n            {why}")
    counts = Counter(o.status for o in outcomes.values())
    total = len(outcomes)
    imported = counts["lossless"] + counts["passthrough"]
    lines.append(
        f"{total} files: {counts['lossless']} lossless, {counts['passthrough']} with listed "
        f"passthrough fields, {counts['refused']} refused, {counts['crashed']} crashed; "
        f"{imported / total:.1%} imported"
    )
    return "\n".join(lines)


@pytest.mark.parametrize("variant", ["collected", "deployed"])
def test_every_file_imports_or_is_refused_with_a_located_reason(world: World, variant: str) -> None:
    outcomes = getattr(world, variant)
    assert sorted(outcomes) == compose_files()
    for corpus_file, outcome in outcomes.items():
        assert outcome.status != "crashed", f"{corpus_file}: {outcome.detail}"
        if outcome.status == "refused":
            reasons = outcome.detail[:-1]
            assert reasons, corpus_file
            assert outcome.detail[-1].endswith("nothing was imported."), corpus_file
            for reason in reasons:
                assert _LOCATED.match(reason), f"{corpus_file}: not located: {reason}"
                assert "Traceback" not in reason


def test_at_least_95_percent_import_as_deployed(world: World) -> None:
    imported = [o for o in world.deployed.values() if o.status in ("lossless", "passthrough")]
    share = len(imported) / len(world.deployed)
    assert share >= 0.95, table(world.deployed)


def test_the_refusals_as_collected_are_what_a_deployment_supplies(world: World) -> None:
    """Every file refused as collected is refused for an input the corpus lacks."""
    expected = re.compile(
        r"does not exist|is not set|neither `image` nor `build`|a `services` mapping"
        r"|!override|cannot read the (port|volume) .*variable|which the file does not define"
    )
    for corpus_file, outcome in world.collected.items():
        if outcome.status == "refused":
            reasons = "\n".join(outcome.detail)
            assert expected.search(reasons), f"{corpus_file}: {reasons}"


# --------------------------------------------------------------------------- nothing is lost

HANDLED = {"image", "build", "command", "environment", "env_file", "ports", "expose", "volumes"}
HANDLED |= {"healthcheck", "depends_on", "deploy", "scale", "labels"}


def dollars(value: Any) -> Any:
    """Return data as Compose text holds it: every ``$`` written ``$$``."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: dollars(v) for k, v in value.items()}
    return value


def environment_of(value: Any) -> dict[str, Any]:
    """Return ``environment`` as a mapping; a list entry without ``=`` has the value None."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value or []:
        key, sep, text = str(item).partition("=")
        out[key] = text if sep else None
    return out


def imported(world: World) -> Iterator[tuple[str, Outcome]]:
    for corpus_file, outcome in sorted(world.deployed.items()):
        if outcome.report is not None:
            yield corpus_file, outcome


@cache
def _project_cache(paths: tuple[Path, ...], environ: tuple[tuple[str, str], ...]) -> Any:
    overrides = [(p, str(p)) for p in paths[1:]]
    return read_project(paths[0], str(paths[0]), dict(environ), None, overrides)


def original(outcome: Outcome) -> Any:
    """Return the compose project an outcome was imported from, read again."""
    return _project_cache(tuple(outcome.paths), tuple(sorted(outcome.environ.items())))


def _service(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    assert outcome.report is not None and outcome.inventory is not None
    [service] = outcome.report.services
    text = (outcome.inventory / "services" / f"{service.name}.yaml").read_text()
    document, problems = parse(text.encode(), "service")
    assert not problems
    return service.name, document.data


def uncovered(outcome: Outcome) -> list[str]:
    """Return every compose field of an import that is neither mapped nor kept verbatim."""
    project = original(outcome)
    _name, data = _service(outcome)
    missing: list[str] = []
    pairs = zip(project.data["services"].items(), data["components"].values(), strict=True)
    for (compose_name, compose), component in pairs:
        kept = component.get("x-compose", {})
        env = {**component.get("env", {}), **component.get("secrets", {})}
        for key, value in compose.items():
            here = f"{compose_name}.{key}"
            if key in kept:
                continue
            if key == "image":
                ok = component.get("image") == value
            elif key == "command":
                words = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
                ok = component.get("command") == words
            elif key == "environment":
                given = environment_of(value)
                ok = all(k in env for k, v in given.items() if v is not None or k in project.env)
            elif key in ("env_file", "scale"):
                ok = True
            elif key == "ports":
                ok = bool(component.get("publish")) or not value
            elif key == "expose":
                ports = set(component.get("ports", {}).values())
                ok = all(int(str(e).split("/")[0]) in ports for e in value)
            elif key == "volumes":
                paths = {
                    v if isinstance(v, str) else v["path"]
                    for v in component.get("volumes", {}).values()
                } | set(component.get("files", {}))
                ok = all(
                    (e.split(":")[1] if isinstance(e, str) else e["target"]) in paths for e in value
                )
            elif key in ("healthcheck", "depends_on", "build"):
                ok = key in component
            elif key == "restart":
                ok = component.get("restart", "unless-stopped") == value
            elif key == "deploy":
                ok = set(value) <= {"replicas"}
            elif key == "labels":
                rest = [k for k in (labels_of(value) or {}) if not k.startswith("traefik.")]
                ok = not rest and bool(data.get("routes"))
            else:
                ok = False
            if not ok:
                missing.append(here)
    top = data.get("x-compose", {})
    for key, value in project.data.items():
        if key in ("services", "name", "version") or key.startswith("x-"):
            continue
        if key == "volumes":
            rest = {k: v for k, v in value.items() if v not in (None, {})}
            if rest and top.get("volumes") != dollars(rest):
                missing.append("(volumes)")
        elif top.get(key) != dollars(value):
            missing.append(f"({key})")
    return missing


def test_every_import_keeps_every_field(world: World) -> None:
    lost = {f: uncovered(o) for f, o in imported(world)}
    lost = {f: fields for f, fields in lost.items() if fields}
    assert not lost, json.dumps(lost, indent=1)


def test_every_kept_field_is_listed(world: World) -> None:
    for corpus_file, outcome in imported(world):
        _, data = _service(outcome)
        listed = {k.split(" (")[0] for k in outcome.detail}
        for cname, component in data["components"].items():
            for key in component.get("x-compose", {}):
                assert f"{cname}.{key}" in listed, corpus_file
        for key in data.get("x-compose", {}):
            assert f"({key})" in listed, corpus_file


# --------------------------------------------------------------------------- HAProxy


def mirror(world: World, name: str, text: str) -> Path:
    """Return a new inventory that has, for every backend, a service publishing the port of
    its first server on a host at that server's address: what the config was written for."""
    from allmende.importers.haproxycfg import parse as parse_config
    from allmende.importers.naming import sanitize
    from allmende.inventory.dnsnames import BadName, host_address

    inventory = new_inventory(world, name)
    (inventory / "hosts").mkdir()
    (inventory / "services").mkdir()
    sections, _ = parse_config(text)
    hosts: dict[str, str] = {}
    taken: set[str] = set()
    for section in sections:
        servers = [
            ln.words for ln in section.lines if ln.words[0] == "server" and len(ln.words) > 2
        ]
        address, _, port = servers[0][2].rpartition(":") if servers else ("", "", "")
        if section.kind not in ("backend", "listen") or not port.isdigit() or not address:
            continue
        try:  # no host is written with what no host could be reached at (`mptcp@[::1]`)
            host_address(address.strip("[]"))
        except BadName:
            continue
        host = hosts.setdefault(address, f"h{len(hosts)}")
        (inventory / "hosts" / f"{host}.yaml").write_text(f"address: '{address.strip('[]')}'\n")
        service = sanitize(section.name, "backend")
        if service in taken:
            continue
        taken.add(service)
        (inventory / "services" / f"{service}.yaml").write_text(
            f"description: {section.name}\nhost: {host}\ncomponents:\n  app:\n"
            f"    image: example/app:1.0\n    ports: {{main: {port}}}\n"
            f"    publish: {{main: {port}}}\n"
        )
    return inventory


def haproxy_imports(world: World) -> Iterator[tuple[str, str, Path, Report]]:
    """Import every HAProxy config of the corpus twice, into an empty inventory and into one
    that mirrors its backends (``mirror``); yield (corpus file, variant, inventory, report)."""
    tree = materialise(world.root / "haproxy")
    for corpus_file in haproxy_files():
        config = tree[corpus_file]
        name = "h-" + corpus_file.replace("/", "__")
        for variant, inventory in (
            ("empty", new_inventory(world, name + "-empty")),
            ("mirror", mirror(world, name, config.read_text())),
        ):
            options = Options(into=inventory, environ=world.key_env)
            yield corpus_file, variant, inventory, import_haproxy(config, options)


def placed(report: Report) -> tuple[int, int]:
    """Return how many routes and exposed ports an HAProxy import gave the services."""
    routes = sum(len(s.data.get("routes", [])) for s in report.services)
    exposed = sum(len(s.data.get("expose", [])) for s in report.services)
    return routes, exposed


def haproxy_line(corpus_file: str, report: Report) -> str:
    """Return one line on an HAProxy import: what it placed, and how much it reported."""
    routes, exposed = placed(report)
    unplaced = [ln for ln in report.lines if _LOCATED.match(ln)]
    return (
        f"{corpus_file[8:]}: {routes} routes, {exposed} exposed ports into "
        f"{len(report.services)} services; {len(unplaced)} lines reported"
    )


def test_every_haproxy_config_imports_and_reports_what_it_cannot_place(world: World) -> None:
    for _corpus_file, variant, inventory, report in haproxy_imports(world):
        for line in report.lines:
            assert _LOCATED.match(line) or line.startswith("services/"), line
        routes, exposed = placed(report)
        if variant == "empty":
            assert routes == exposed == 0
        else:
            load(inventory, world.key_env)


def test_no_import_keeps_under_x_compose_what_its_typed_keys_say_otherwise(world: World) -> None:
    """``xcompose.typed`` finds nothing in any import: editing a typed key changes what runs."""
    found = []
    for corpus_file, outcome in imported(world):
        inventory = load(outcome.inventory or Path(), outcome.environ)
        found += [
            f"{corpus_file}: {finding}" for finding in run_rules(inventory, only=["xcompose.typed"])
        ]
    assert not found, "\n".join(found)
