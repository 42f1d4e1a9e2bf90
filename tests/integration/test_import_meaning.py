"""Meaning kept: every corpus import rendered back by ``allmende.render.compose``, both the
original and the rendered project read by a real Compose implementation (``meaning.py``:
docker-compose 1.x, or podman-compose for both sides where docker-compose refuses either) and
checked against the Compose JSON Schema, then compared service by service on what their
containers do. Every difference must be one the import listed for that compose service and
field (``Imported.differences``, printed line by line in the import report); the test fails on
any other, and prints the figure: importable projects with no unlisted difference.

The rendered project is laid out as apply lays it on the host: ``compose.yaml`` in the
service's directory with the secret files and env files next to it (values from the secret
store, as the engine delivers them), and the configuration files the service carries.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from meaning import UNREAD_ORIGINAL, Difference, Job, Project, compare, dotenv, read_pairs
from test_import_corpus import SCHEMA, Outcome, World, _service, imported, original, world

from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.plan.deliver import secret_files
from allmende.render import compose as render_compose

__all__ = ["world"]  # the session fixture, shared with test_import_corpus


@cache
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


#: Where the implementations at hand read a project otherwise than the Compose specification:
#: (corpus file, compose service, field) -> why. Each must still be found (no stale entry).
AGAINST_THE_SPECIFICATION = {
    (
        "compose/ChristianLempa__boilerplates/docker-compose__postgres__compose.yaml",
        "postgres",
        "environment",
    ): "docker-compose 1.x takes ${POSTGRES_DB:-$POSTGRES_USER} literally and podman-compose "
    "reads POSTGRES_USER from the container's own environment; the specification (and the "
    "import) interpolate from the project's environment only, where POSTGRES_USER is unset",
}


def build_contexts(outcome: Outcome, into: Path | None = None) -> None:
    """Give a project the build contexts a deployment has (empty directories): the original
    beside its file, the rendered one (``into``) in the service's directory, where the import
    says to put the sources."""
    project = original(outcome)
    for service in project.data["services"].values():
        build = service.get("build")
        context = build.get("context", ".") if isinstance(build, dict) else build
        if isinstance(context, str) and "://" not in context and not context.startswith("git@"):
            base = project.directory if into is None or context.startswith("/") else into
            (base / context).mkdir(parents=True, exist_ok=True)


def lay_out(outcome: Outcome, world: World, into: Path) -> tuple[str, Path]:
    """Render the inventory an outcome wrote and lay its service's directory out under
    ``into`` as apply would on the host; return the service's name and its directory."""
    assert outcome.inventory is not None
    inventory = load(outcome.inventory, outcome.environ)
    name, _ = _service(outcome)
    directory = into / name
    prefix = f"box/srv/{name}/"
    for path, rendered in render_compose.render(inventory).items():
        if path.startswith(prefix):
            target = directory / path.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rendered.content)
    store = SecretStore(outcome.inventory, world.key_env)
    for path, rendered in secret_files(inventory, name, store).items():
        target = directory / path.removeprefix(f"/srv/{name}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rendered.content)
    return name, directory


@pytest.fixture(scope="session")
def compared(world: World) -> dict[str, tuple[str, list[Difference], set[tuple[str, str]]]]:
    return compare_all(world)


def compare_all(world: World) -> dict[str, tuple[str, list[Difference], set[tuple[str, str]]]]:
    """Read every import and its original; return, by corpus file, the implementation that
    read both, every difference, and what the import listed as (compose service, field)."""
    jobs: list[tuple[Job, Job]] = []
    laid: list[tuple[str, Outcome, str, Path]] = []
    rendered_root = world.root / "rendered"
    for corpus_file, outcome in imported(world):
        build_contexts(outcome)
        name, directory = lay_out(outcome, world, rendered_root / corpus_file.replace("/", "__"))
        build_contexts(outcome, directory)
        directory_of = outcome.paths[0].parent
        environ = {**dotenv(directory_of / ".env", outcome.environ), **outcome.environ}
        first = Job(tuple(outcome.paths), environ, directory_of)
        second = Job((directory / "compose.yaml",), {}, directory)
        jobs.append((first, second))
        laid.append((corpus_file, outcome, name, directory))
    results = {}
    for (corpus_file, outcome, name, directory), (before, after) in zip(
        laid, read_pairs(jobs), strict=True
    ):
        if before.config is None or after.config is None:
            unread = before.tool == UNREAD_ORIGINAL
            results[corpus_file] = (UNREAD_ORIGINAL if unread else before.error, [], set())
            continue
        validator().validate(_schema_form(after.config))
        _, data = _service(outcome)
        names = dict(zip(original(outcome).data["services"], data["components"], strict=True))
        found = compare(
            Project(before.config, outcome.paths[0].parent, {}),
            Project(after.config, directory, {f"/srv/{name}": directory}),
            names,
        )
        assert outcome.report is not None
        listed = {(d.service, d.field) for s in outcome.report.services for d in s.differences}
        results[corpus_file] = (before.tool, found, listed)
    return results


def _schema_form(config: dict[str, Any]) -> dict[str, Any]:
    """Return a read project as the Compose schema takes it (docker-compose 1.x adds
    ``version``, which the schema still allows)."""
    return config


def test_every_import_means_what_its_original_meant_or_says_where_not(
    compared: dict[str, tuple[str, list[Difference], set[tuple[str, str]]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    readers = ("docker-compose", "podman-compose")
    outside = {f: r[0] for f, r in compared.items() if r[0] == UNREAD_ORIGINAL}
    unread = {f: r[0] for f, r in compared.items() if r[0] not in (*readers, UNREAD_ORIGINAL)}
    unlisted: dict[str, list[str]] = {}
    disagreeing: set[tuple[str, str, str]] = set()
    for f, (tool, found, listed) in compared.items():
        if tool not in readers:
            continue
        for d in found:
            if (f, d.service, d.field) in AGAINST_THE_SPECIFICATION:
                disagreeing.add((f, d.service, d.field))
            elif (d.service, d.field) not in listed:
                unlisted.setdefault(f, []).append(str(d))
    listed_only = [f for f, r in compared.items() if r[0] in readers and r[1] and f not in unlisted]
    tools = Counter(r[0] for r in compared.values() if r[0] in readers)
    total = len(compared) - len(outside)
    clean = total - len(unlisted) - len(unread)
    with capsys.disabled():
        print(f"\n== meaning kept: {total} importable projects, read by {dict(tools)} ==")
        print(
            f"{clean} of {total} ({clean / total:.1%}) with no unlisted difference: "
            f"{clean - len(listed_only)} identical, {len(listed_only)} with listed differences "
            f"only; {len(unlisted)} with unlisted differences; {len(unread)} not readable after "
            f"rendering; {len(disagreeing)} read against the specification by the tools here"
        )
        for f in sorted(outside):
            print(f"left out, no implementation here reads the original: {f}")
        fields = Counter(d.split(":")[0].split(".", 1)[1] for ds in unlisted.values() for d in ds)
        print("unlisted by field:", dict(fields.most_common()))
    assert disagreeing == set(AGAINST_THE_SPECIFICATION)
    assert clean / total >= 0.95
    assert not unread, json.dumps(unread, indent=1)
    assert not unlisted, json.dumps(unlisted, indent=1, default=str)
