"""Whatever YAML a user writes, the loader either loads it or returns located user errors; and
whatever a hostile one writes (alias bombs, deep nesting, control characters), quickly and in
little memory."""

from __future__ import annotations

import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allmende.errors import InventoryError
from allmende.inventory.load import load
from tests.conftest import BASE

KEYS = [
    "description",
    "host",
    "components",
    "app",
    "image",
    "ports",
    "http",
    "publish",
    "volumes",
    "routes",
    "domain",
    "to",
    "tls",
    "backup",
    "consistency",
    "uses",
    "database",
    "provides",
    "monitor",
    "allow",
    "rule",
    "reason",
    "env",
    "secrets",
    "healthcheck",
    "depends_on",
    "kind",
    "parent",
    "x-extra",
    "<<",
    "replicas",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(KEYS),
    st.sampled_from(["app.http", "rack", "no", "0755"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
raw_text = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(
        st.sampled_from(
            [
                "a:",
                "  - b",
                "c: [",
                "]",
                "d: {e: 1}",
                "&x f",
                "*x",
                "---",
                "\t",
                "? g",
                "!!binary h",
                "<<: *x",
                "'",
                '"',
                "|",
                ">",
            ]
        ),
        max_size=12,
    ).map("\n".join),
)


def _check(files: dict[str, bytes]) -> None:
    root = Path(tempfile.mkdtemp()) / "inventory"
    try:
        shutil.copytree(BASE, root)
        for name, content in files.items():
            (root / name).write_bytes(content)
        try:
            load(root, {})
        except InventoryError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.location.file
                assert problem.message
    finally:
        shutil.rmtree(root.parent)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    st.sampled_from(
        [
            "services/wiki.yaml",
            "hosts/rack.yaml",
            "allmende.yaml",
            "zones/nordlicht.example.yaml",
            "services/new.yaml",
        ]
    ),
    values,
)
def test_random_documents_load_or_give_user_errors(target: str, document: object) -> None:
    _check({target: yaml.safe_dump(document, allow_unicode=True).encode()})


@SETTINGS
@given(st.sampled_from(["services/wiki.yaml", "hosts/gateway.yaml", "allmende.yaml"]), raw_text)
def test_random_text_loads_or_gives_user_errors(target: str, text: str) -> None:
    _check({target: text.encode("utf-8", errors="surrogateescape")})


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@SETTINGS
@given(st.data())
def test_mutations_of_the_examples_load_or_give_user_errors(data: st.DataObject) -> None:
    name = data.draw(
        st.sampled_from(
            ["services/wiki.yaml", "services/git.yaml", "services/database.yaml", "allmende.yaml"]
        )
    )
    document = yaml.safe_load((BASE / name).read_text())
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    parent: object = document
    for part in path[:-1]:
        parent = parent[part]  # type: ignore[index]
    action = data.draw(st.sampled_from(["delete", "replace", "rename"]))
    if action == "delete" or (action == "rename" and isinstance(parent, list)):
        del parent[path[-1]]  # type: ignore[attr-defined]
    elif action == "replace":
        parent[path[-1]] = data.draw(values)  # type: ignore[index]
    else:
        parent[data.draw(st.text(max_size=10))] = parent.pop(path[-1])  # type: ignore[attr-defined]
    _check({name: yaml.safe_dump(document, allow_unicode=True).encode()})


# --------------------------------------------------------------------------- hostile text

#: Characters a hostile change may hide in keys and values: controls, ESC, bidi overrides.
HOSTILE = "\x00\x07\x08\x1b\r\n\t\x7f\x85\u2028\u202e\ufeff"
hostile_text = st.text(alphabet=st.sampled_from(list(HOSTILE) + list("ab:-[]{}&*!|>'\" ")))


def _quoted(text: str) -> str:
    """Return ``text`` as a YAML double-quoted scalar (control characters as escapes)."""
    return '"' + text.encode("unicode_escape").decode().replace('"', '\\"') + '"'


@st.composite
def bombs(draw: st.DrawFn) -> str:
    """A YAML text mixing aliases that fan out, chains of anchors, merges, deep nesting and
    control characters, appended to a valid service file."""
    lines: list[str] = []
    width = draw(st.integers(1, 12))
    lines.append("x-a0: &a0 [" + ",".join([_quoted(draw(hostile_text))] * width) + "]")
    for i in range(1, draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["fan", "chain", "merge"]))
        if kind == "fan":
            lines.append(f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
        elif kind == "chain":
            lines.append(f"x-a{i}: &a{i} [*a{i - 1}]")
        else:
            lines.append(f"x-a{i}: &a{i} {{<<: {{k: *a{i - 1}}}, k{i}: 1}}")
    depth = draw(st.integers(0, 3000))
    opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
    lines.append("x-deep: " + opening * depth + "1" + closing * depth)
    lines.append(f"{_quoted(draw(hostile_text)) or 'k'}: {_quoted(draw(hostile_text))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bombs())
def test_aliases_depth_and_control_characters_stay_small_and_quick(text: str) -> None:
    """No traceback, no run over 10 s or 200 MB, whatever the aliases, depth and characters
    (an alias bomb takes minutes; the bound leaves room for a machine that is busy)."""
    base = (BASE / "services/wiki.yaml").read_text()
    tracemalloc.start()
    started = time.monotonic()
    try:
        _check({"services/wiki.yaml": (base + text).encode()})
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 10.0
    assert peak < 200 * 2**20
