"""Every compose file and HAProxy config of the corpus (tests/corpus/), imported, with a report.

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
original, both normalised the way ``docker compose config`` would (see ``normalise``).
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

import jsonschema
import pytest

from allmende.actions.importing import Options, Report, import_compose, import_haproxy
from allmende.errors import UserError
from allmende.importers.composefile import read_project
from allmende.importers.interpolate import interpolate
from allmende.importers.traefik import labels_of
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.inventory.yamlpos import parse
from allmende.render import compose as render_compose
from allmende.render.output import flat_name

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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("corpus")
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


def test_print_the_report(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n\n== compose corpus, as collected ==")
        print(table(world.collected))
        print("\n== compose corpus, as deployed ==")
        print(table(world.deployed))


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
                }
                ok = all(
                    (e.split(":")[1] if isinstance(e, str) else e["target"]) in paths for e in value
                )
            elif key in ("healthcheck", "depends_on"):
                ok = key in component
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


# --------------------------------------------------------------------------- round trip

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
            differ("image", compose["image"], mine.get("image"))
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


def test_round_trip_through_the_compose_renderer(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Render every import back and compare it with the original, normalised."""
    failures: dict[str, list[str]] = {}
    gaps: dict[str, list[str]] = {}
    for corpus_file, outcome in imported(world):
        found, lacking = differences(outcome)
        if found:
            failures[corpus_file] = found
        if lacking:
            gaps[corpus_file] = lacking
    with capsys.disabled():
        print(f"\n== round trip: {len(list(imported(world)))} imports rendered back ==")
        for corpus_file, keys in sorted(gaps.items()):
            print(f"renderer gap  {corpus_file[8:]}: project-level {', '.join(keys)} not rendered")
    assert not failures, json.dumps(failures, indent=1)


# --------------------------------------------------------------------------- HAProxy


def mirror(world: World, name: str, text: str) -> Path:
    """Return a new inventory that has, for every backend, a service publishing the port of
    its first server on a host at that server's address: what the config was written for."""
    from allmende.importers.haproxycfg import parse as parse_config
    from allmende.importers.naming import sanitize

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


def test_every_haproxy_config_imports_and_reports_what_it_cannot_place(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = materialise(world.root / "haproxy")
    lines = []
    for corpus_file in haproxy_files():
        config = tree[corpus_file]
        name = "h-" + corpus_file.replace("/", "__")
        for variant, inventory in (
            ("empty", new_inventory(world, name + "-empty")),
            ("mirror", mirror(world, name, config.read_text())),
        ):
            options = Options(into=inventory, environ=world.key_env)
            report = import_haproxy(config, options)
            for line in report.lines:
                assert _LOCATED.match(line) or line.startswith("services/"), line
            routes = sum(len(s.data.get("routes", [])) for s in report.services)
            exposed = sum(len(s.data.get("expose", [])) for s in report.services)
            if variant == "empty":
                assert routes == exposed == 0
                continue
            load(inventory, world.key_env)
            unplaced = [ln for ln in report.lines if _LOCATED.match(ln)]
            lines.append(
                f"{corpus_file[8:]}: {routes} routes, {exposed} exposed ports into "
                f"{len(report.services)} services; {len(unplaced)} lines reported"
            )
    with capsys.disabled():
        print("\n== HAProxy corpus ==")
        print("\n".join(lines))
