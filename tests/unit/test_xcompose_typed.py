"""``xcompose.typed``: a key kept verbatim under ``x-compose`` that says otherwise than a typed
key is reported where it is written; what only adds to the typed keys is not."""

from __future__ import annotations

import textwrap
from pathlib import Path

from allmende.checks.registry import Finding, run
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay

RULE = "xcompose.typed"


def findings(tmp_path: Path, component: str) -> list[Finding]:
    root = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    text = "description: Radio\nhost: rack\ncomponents:\n  app:\n" + textwrap.indent(
        textwrap.dedent(component).lstrip("\n"), "    "
    )
    (root / "services" / "radio.yaml").write_text(text)
    return [f for f in run(load(root, {}), only=[RULE]) if f.name == "radio"]


def test_a_verbatim_healthcheck_that_shadows_the_typed_one_is_reported(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        """
        image: example/radio:1.0
        ports: {http: 8000}
        healthcheck: {http: /status, port: http}
        x-compose:
          healthcheck: {test: [CMD, "true"], start_interval: 1s}
        """,
    )
    [finding] = found
    assert finding.location.file == "services/radio.yaml"
    assert finding.location.line == 9
    assert "x-compose healthcheck.test contradicts the typed key" in finding.message


def test_ports_volumes_environment_and_restart_that_say_otherwise_are_reported(
    tmp_path: Path,
) -> None:
    found = findings(
        tmp_path,
        """
        image: example/radio:1.0
        env: {TZ: UTC}
        ports: {http: 8000}
        publish: {http: 8080}
        volumes: {music: /music}
        restart: unless-stopped
        x-compose:
          environment: {TZ: Europe/Berlin, EXTRA: "1"}
          ports: ["127.0.0.1:8080:8000", "5353:5353/udp"]
          volumes: ["/home/radio/music:/music", "/srv/radio/music:/music:ro"]
          restart: always
        """,
    )
    said = sorted(f.message.split(" contradicts")[0] for f in found)
    assert said == [
        "x-compose environment.TZ",
        "x-compose ports 127.0.0.1:8080:8000",
        "x-compose restart",
        "x-compose volumes /music",
    ]


def test_what_only_adds_to_the_typed_keys_is_fine(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        """
        image: example/radio:1.0
        ports: {http: 8000, stream-udp: 8001}
        publish: {http: 8080}
        healthcheck: {http: /status, port: http}
        x-compose:
          healthcheck: {start_interval: 1s}
          ports: ["8001:8001/udp"]
          volumes: ["/srv/radio/cache:/cache:ro"]
          cap_add: [NET_ADMIN]
        """,
    )
    assert found == []
