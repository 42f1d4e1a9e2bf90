"""`allow` in a host's file and in allmende.yaml, as in a service's: findings there accepted on
purpose with a reason, and unknown rule ids reported where they are written."""

from __future__ import annotations

from pathlib import Path

import yaml

from allmende.checks.registry import Report, run
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay

HOST = """description: The old server, known by its name only
address: old-rack.nordlicht.example
engine: compose
"""
#: A service on that host that publishes a port.
PUBLISHING = """description: A service publishing a port
host: old-rack
components:
  app: {image: "nginx:1.27.0", ports: {http: 80}, publish: {http: 8088}}
"""


def checked(tmp_path: Path, files: dict[str, str]) -> Report:
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    for name, text in files.items():
        (inventory / name).write_text(text)
    return run(load(inventory, {}))


def collective_with(extra: str) -> str:
    """The base allmende.yaml with the entries of ``extra`` (``allow: [...]``) added to its
    own `allow` list."""
    base = (FIXTURES / "valid" / "nordlicht" / "allmende.yaml").read_text()
    entries = yaml.safe_load(extra)["allow"] if extra else []
    return base + "".join(
        f"  - {{rule: {entry['rule']}, reason: {entry['reason']}}}\n" for entry in entries
    )


def rules(report: Report) -> list[tuple[str, str]]:
    return [(f.rule, f.location.file) for f in report if f.rule != "monitor.present"]


def test_a_host_allows_a_finding_in_its_file(tmp_path: Path) -> None:
    files = {"services/shop.yaml": PUBLISHING}
    found = checked(tmp_path / "a", {"hosts/old-rack.yaml": HOST, **files})
    assert rules(found) == [("ports.bind", "hosts/old-rack.yaml")]
    allow = "allow: [{rule: ports.bind, reason: 127.0.0.1 is all it needs}]\n"
    report = checked(tmp_path / "b", {"hosts/old-rack.yaml": HOST + allow, **files})
    assert rules(report) == []
    assert [(f.rule, f.kind, f.name) for f in report.allowed if f.kind == "host"] == [
        ("ports.bind", "host", "old-rack")
    ]


def test_the_collective_allows_a_finding_in_allmende_yaml(tmp_path: Path) -> None:
    domains = ("domains: [nordlicht.example]", "domains: [nordlicht.example, b\u00fccher.example]")
    other = collective_with("").replace(*domains)
    found = checked(tmp_path / "a", {"allmende.yaml": other})
    assert [str(f) for f in found] == [
        "allmende.yaml:4:30: domains[1]: warning: `b\u00fccher.example` is written in other "
        "letters than a-z (xn--bcher-kva.example) (check the name letter by letter; write it in "
        "a-z if that is what you mean) [dns.lookalike]"
    ]
    allow = "allow:\n  - {rule: dns.lookalike, reason: the library's own name}\n"
    report = checked(tmp_path / "b", {"allmende.yaml": collective_with(allow).replace(*domains)})
    assert list(report) == []
    allowed = [f.rule for f in report.allowed if f.kind == "collective"]
    assert "dns.lookalike" in allowed


def test_an_allow_does_not_reach_into_other_files(tmp_path: Path) -> None:
    allow = "allow: [{rule: ports.bind, reason: only our own hosts}]\n"
    report = checked(
        tmp_path,
        {
            "hosts/old-rack.yaml": HOST,
            "services/shop.yaml": PUBLISHING,
            "allmende.yaml": collective_with(allow),
        },
    )
    assert rules(report) == [("ports.bind", "hosts/old-rack.yaml")]


def test_a_rule_that_keeps_paths_safe_cannot_be_allowed(tmp_path: Path) -> None:
    allow = "allow: [{rule: names.format, reason: the name painted on the case}]\n"
    report = checked(tmp_path, {"hosts/Old_Rack.yaml": HOST + allow})
    assert [str(f) for f in report] == [
        "hosts/Old_Rack.yaml:1:1: error: host name `Old_Rack` is not a valid name (use "
        "lowercase letters, digits and `-`, starting with a letter, at most 63 characters) "
        "[names.format]",
        "hosts/Old_Rack.yaml:4:16: allow[0].rule: error: `names.format` keeps paths safe: it "
        "cannot be allowed (fix what it finds (use lowercase letters, digits and `-`, starting "
        "with a letter, at most 63 characters) and remove this entry) [allow.refused]",
    ]
    assert not [f for f in report.allowed if f.rule == "names.format"]


def test_unknown_rules_in_host_and_collective_allows_are_reported_where_written(
    tmp_path: Path,
) -> None:
    typo = "allow: [{rule: names.fromat, reason: typo}]\n"
    report = checked(
        tmp_path,
        {"hosts/spare.yaml": HOST + typo, "allmende.yaml": collective_with(typo)},
    )
    assert [str(f) for f in report if f.rule == "allow.unknown"] == [
        "allmende.yaml:23:12: allow[1].rule: error: unknown rule `names.fromat` "
        "(did you mean `names.format`?) [allow.unknown]",
        "hosts/spare.yaml:4:16: allow[0].rule: error: unknown rule `names.fromat` "
        "(did you mean `names.format`?) [allow.unknown]",
    ]
