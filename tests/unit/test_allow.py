"""`allow` in a host's file and in allmende.yaml, as in a service's: findings there accepted on
purpose with a reason, and unknown rule ids reported where they are written."""

from __future__ import annotations

from pathlib import Path

from allmende.checks.registry import Report, run
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay

HOST = """description: The old server, its name painted on the case
address: 192.0.2.20
engine: compose
"""


def checked(tmp_path: Path, files: dict[str, str]) -> Report:
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    for name, text in files.items():
        (inventory / name).write_text(text)
    return run(load(inventory, {}))


def collective_with(extra: str) -> str:
    base = (FIXTURES / "valid" / "nordlicht" / "allmende.yaml").read_text()
    return base + extra


def test_a_host_allows_a_finding_in_its_file(tmp_path: Path) -> None:
    found = checked(tmp_path / "a", {"hosts/Old_Rack.yaml": HOST})
    assert [(f.rule, f.location.file) for f in found] == [("names.format", "hosts/Old_Rack.yaml")]
    allow = "allow: [{rule: names.format, reason: the name painted on the case}]\n"
    report = checked(tmp_path / "b", {"hosts/Old_Rack.yaml": HOST + allow})
    assert list(report) == []
    assert [(f.rule, f.kind, f.name) for f in report.allowed if f.kind == "host"] == [
        ("names.format", "host", "Old_Rack")
    ]


def test_the_collective_allows_a_finding_in_allmende_yaml(tmp_path: Path) -> None:
    person = "  Kim_L: {name: Kim L.}\n"  # appended under `people:`, the file's last key
    found = checked(tmp_path / "a", {"allmende.yaml": collective_with(person)})
    assert [str(f) for f in found] == [
        "allmende.yaml:21:3: people.Kim_L: error: `Kim_L` is not a valid name (use lowercase "
        "letters, digits and `-`, starting with a letter, at most 63 characters) [names.format]"
    ]
    allow = person + "allow:\n  - {rule: names.format, reason: Kim's handle since 1998}\n"
    report = checked(tmp_path / "b", {"allmende.yaml": collective_with(allow)})
    assert list(report) == []
    assert [(f.rule, f.kind) for f in report.allowed if f.kind == "collective"] == [
        ("names.format", "collective")
    ]


def test_an_allow_does_not_reach_into_other_files(tmp_path: Path) -> None:
    allow = "allow: [{rule: names.format, reason: only our own names}]\n"
    report = checked(
        tmp_path,
        {"hosts/Old_Rack.yaml": HOST, "allmende.yaml": collective_with(allow)},
    )
    assert [(f.rule, f.location.file) for f in report] == [("names.format", "hosts/Old_Rack.yaml")]


def test_unknown_rules_in_host_and_collective_allows_are_reported_where_written(
    tmp_path: Path,
) -> None:
    typo = "allow: [{rule: names.fromat, reason: typo}]\n"
    report = checked(
        tmp_path,
        {"hosts/spare.yaml": HOST + typo, "allmende.yaml": collective_with(typo)},
    )
    assert [str(f) for f in report if f.rule == "allow.unknown"] == [
        "allmende.yaml:21:16: allow[0].rule: error: unknown rule `names.fromat` "
        "(did you mean `names.format`?) [allow.unknown]",
        "hosts/spare.yaml:4:16: allow[0].rule: error: unknown rule `names.fromat` "
        "(did you mean `names.format`?) [allow.unknown]",
    ]
