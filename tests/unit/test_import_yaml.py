"""The importer's YAML: written so that it reads back to the same data, merged into existing
files without overwriting, and compose files merged as Compose merges them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from allmende.importers.merge import merge
from allmende.importers.overlay import merge_files, merge_tags
from allmende.importers.textmerge import insert
from allmende.importers.yamlout import dump, scalar
from allmende.inventory.yamlpos import parse

texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\x85\u2028\u2029"))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), texts)
keys = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1)
data = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def read(text: str) -> Any:
    document, problems = parse(text.encode(), "test")
    assert not problems, (text, problems)
    return document.data


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, data, min_size=1, max_size=5))
def test_what_is_written_reads_back_the_same(value: dict[str, Any]) -> None:
    assert read(dump(value)) == value


def test_text_is_quoted_only_where_yaml_would_read_something_else() -> None:
    assert [scalar(s) for s in ("wordpress:6.4", "http://a/b", "1000", "yes", "0o17", "1e3")] == [
        "wordpress:6.4",
        "http://a/b",
        '"1000"',
        '"yes"',
        '"0o17"',
        '"1e3"',
    ]
    assert scalar("a: b", flow=True) == '"a: b"'
    assert scalar('say "hi"') == 'say "hi"'
    assert scalar('"quoted"') == "'\"quoted\"'"
    assert scalar("tab\there\x7f") == '"tab\\there\\x7F"'


def test_the_layout_is_the_inventory_s_own() -> None:
    text = dump(
        {
            "description": "Blog",
            "components": {"app": {"ports": {"http": 80}, "depends_on": ["db"], "env": {}}},
            "routes": [{"domain": "a.example", "to": "app.http"}],
            "docs": "one\ntwo\n",
        },
        {("components", "app", "ports"): "inside the container"},
        "Imported by a test.",
    )
    assert text == (
        "# Imported by a test.\n"
        "description: Blog\n"
        "components:\n"
        "  app:\n"
        "    ports: {http: 80}  # inside the container\n"
        "    depends_on: [db]\n"
        "    env: {}\n"
        "routes:\n"
        "  - {domain: a.example, to: app.http}\n"
        "docs: |\n"
        "  one\n"
        "  two\n"
    )


def test_merge_adds_keeps_and_reports() -> None:
    existing = {
        "description": "Ours",
        "components": {"app": {"image": "a:1.1", "depends_on": ["db"]}},
        "routes": [{"domain": "a.example", "to": "app.http"}],
    }
    imported = {
        "description": "imported",
        "components": {"app": {"image": "a:1.2", "depends_on": ["db", "cache"], "env": {"A": "1"}}},
        "routes": [
            {"domain": "a.example", "to": "app.web"},
            {"domain": "b.example", "to": "app.http"},
        ],
    }
    merged = merge(existing, imported)
    assert merged.data == {
        "description": "Ours",
        "components": {"app": {"image": "a:1.1", "depends_on": ["db", "cache"], "env": {"A": "1"}}},
        "routes": [
            {"domain": "a.example", "to": "app.http"},
            {"domain": "b.example", "to": "app.http"},
        ],
    }
    assert merged.conflicts == ["components.app.image: kept `a:1.1` (the import says `a:1.2`)"]


def test_additions_are_written_into_the_text_with_its_comments() -> None:
    text = (
        "# Our wiki\n"
        "description: Wiki  # the one everybody edits\n"
        "components:\n"
        "  app:\n"
        "    image: mediawiki:1.42   # pinned\n"
        "    env: {LANG: C}  # keep C\n"
        "\n"
        "# routes come last\n"
    )
    existing = read(text)
    imported = {"components": {"app": {"env": {"TZ": "UTC"}, "ports": {"http": 80}}}, "docs": "x"}
    merged = merge(existing, imported)
    assert insert(text, merged.added, merged.data, {}) == (
        "# Our wiki\n"
        "description: Wiki  # the one everybody edits\n"
        "components:\n"
        "  app:\n"
        "    image: mediawiki:1.42   # pinned\n"
        "    env: {LANG: C, TZ: UTC}  # keep C\n"
        "    ports: {http: 80}\n"
        "docs: x\n"
        "\n"
        "# routes come last\n"
    )


def test_compose_files_merge_as_compose_merges_them() -> None:
    base = {
        "services": {
            "app": {
                "image": "a:1",
                "command": ["serve"],
                "ports": ["80:80", "443:443"],
                "volumes": ["data:/data", "./conf:/conf"],
                "environment": ["A=1", "B=2"],
                "dns": ["1.1.1.1"],
                "depends_on": ["db"],
            }
        }
    }
    override_text = (
        "services:\n  app:\n    command: [serve, --debug]\n    ports: ['8080:80']\n"
        "    volumes: ['other:/data']\n    environment: {B: three}\n    dns: [8.8.8.8]\n"
        "    depends_on: {cache: {condition: service_healthy}}\n    labels: !reset {}\n"
    )
    override = read(override_text.replace("!reset ", ""))
    merged = merge_files(base, override, merge_tags(override_text))
    assert merged["services"]["app"] == {
        "image": "a:1",
        "command": ["serve", "--debug"],
        "ports": ["80:80", "443:443", "8080:80"],
        "volumes": ["./conf:/conf", "other:/data"],
        "environment": {"A": "1", "B": "three"},
        "dns": ["1.1.1.1", "8.8.8.8"],
        "depends_on": {
            "db": {"condition": "service_started"},
            "cache": {"condition": "service_healthy"},
        },
    }


def test_an_added_list_item_goes_after_the_last_item_of_its_list() -> None:
    text = "routes:\n  - domain: a.example\n    to: app.http\n\n# end\n"
    imported = {"routes": [{"domain": "a.example", "to": "app.http"},
                           {"domain": "b.example", "to": "app.http"}]}  # fmt: skip
    merged = merge(read(text), imported)
    assert insert(text, merged.added, merged.data, {}) == (
        "routes:\n  - domain: a.example\n    to: app.http\n"
        "  - {domain: b.example, to: app.http}\n\n# end\n"
    )


def test_a_flow_line_with_brackets_in_its_quoted_text_is_rewritten_whole() -> None:
    text = "env: {A: \"x}y\", B: 'q{'}  # as the upstream docs say\n"
    merged = merge(read(text), {"env": {"A": "x}y", "B": "q{", "C": "1"}})
    written = insert(text, merged.added, merged.data, {})
    assert written == 'env: {A: "x}y", B: "q{", C: "1"}  # as the upstream docs say\n'


def test_what_cannot_be_written_in_place_is_left_to_a_whole_rewrite() -> None:
    spread = "env: {A: 1,\n  B: 2}\n"  # a flow mapping over two lines
    merged = merge(read(spread), {"env": {"A": 1, "B": 2, "C": 3}})
    assert merged.added == [("env", "C")]
    assert insert(spread, merged.added, merged.data, {}) is None
    assert insert("env: [\n", [("env", "C")], {"env": {"C": 3}}, {}) is None  # not YAML
