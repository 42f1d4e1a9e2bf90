"""Each convention rule: a case it passes and a case it finds, with the message users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from allmende.checks import load_rules
from allmende.checks.registry import RULES, Finding, run
from allmende.cli.main import main
from allmende.inventory.load import load
from tests.conftest import FIXTURES, overlay


def findings(tmp_path: Path, rule: str, files: dict[str, str]) -> list[Finding]:
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    for name, text in files.items():
        (inventory / name).parent.mkdir(parents=True, exist_ok=True)
        (inventory / name).write_text(text)
    return list(run(load(inventory, {}), only=[rule]))


def messages(found: list[Finding]) -> list[str]:
    return [str(f) for f in found]


SIMPLE = """description: {name}
host: {host}
components:
  app:
    image: {image}
    ports: {{http: 80}}
{extra}"""


def service(
    name: str = "pad",
    host: str = "rack",
    image: str = "etherpad:2.2.6",
    extra: str = "monitor: [{tcp: 'rack:9001'}]\n",
) -> str:
    return SIMPLE.format(name=name, host=host, image=image, extra=extra)


def test_the_base_fixture_is_clean_under_every_rule(tmp_path: Path) -> None:
    report = run(load(overlay(FIXTURES / "empty-overlay", tmp_path / "i"), {}))
    assert list(report) == []
    assert [f.rule for f in report.allowed] == ["dns.zonefile", "volumes.under_srv"]


def test_every_rule_has_a_reason_and_a_fix() -> None:
    load_rules()
    assert len(RULES) >= 11
    for rule in RULES.values():
        assert rule.reason.endswith(".") and rule.fix


def test_names_format(tmp_path: Path) -> None:
    assert findings(tmp_path / "a", "names.format", {"services/pad.yaml": service()}) == []
    found = findings(tmp_path / "b", "names.format", {"services/Pad_Server.yaml": service()})
    assert messages(found) == [
        "services/Pad_Server.yaml:1:1: error: service name `Pad_Server` is not a valid name "
        "(use lowercase letters, digits and `-`, starting with a letter, at most 63 characters) "
        "[names.format]"
    ]


def test_names_by_function(tmp_path: Path) -> None:
    assert findings(tmp_path / "a", "names.by_function", {"services/blog.yaml": service()}) == []
    found = findings(tmp_path / "b", "names.by_function", {"services/wordpress.yaml": service()})
    assert len(found) == 1
    assert found[0].message == "`wordpress` is named after its software"
    assert "e.g. `blog`" in found[0].fix
    found = findings(tmp_path / "c", "names.by_function", {"services/gitea-ci.yaml": service()})
    assert "e.g. `ci`" in found[0].fix


def test_ports_unique_on_a_host(tmp_path: Path) -> None:
    clash = service(extra="monitor: [{tcp: 'rack:1'}]\n").replace(
        "ports: {http: 80}", "ports: {http: 80}\n    publish: {http: 8081}"
    )
    fine = clash.replace("8081", "8090")
    assert findings(tmp_path / "a", "ports.unique", {"services/pad.yaml": fine}) == []
    found = findings(tmp_path / "b", "ports.unique", {"services/pad.yaml": clash})
    assert messages(found) == [
        "services/pad.yaml:7:21: components.app.publish.http: error: tcp port 8081 on host `rack` "
        "is also used by wiki/app.http (services/wiki.yaml:10:21) (pick a free port; the port "
        "registry in the docs lists the used ones) [ports.unique]",
        "services/wiki.yaml:10:21: components.app.publish.http: error: tcp port 8081 on host "
        "`rack` is also used by pad/app.http (services/pad.yaml:7:21) (pick a free port; the port "
        "registry in the docs lists the used ones) [ports.unique]",
    ]


def test_ports_unique_on_the_edge(tmp_path: Path) -> None:
    mail = service(
        name="mail",
        extra="expose:\n  - {port: 2222, to: app.http}\n  - {port: 443, to: app.http}\n",
    )
    found = findings(tmp_path, "ports.unique", {"services/mail.yaml": mail})
    assert sorted((f.service, f.keypath, f.message) for f in found) == [
        (
            "git",
            "expose[0].port",
            "tcp port 2222 on host `gateway` is also used by mail (expose "
            "app.http) (services/mail.yaml:8:12)",
        ),
        (
            "mail",
            "expose[0].port",
            "tcp port 2222 on host `gateway` is also used by git (expose "
            "app.ssh) (services/git.yaml:21:12)",
        ),
        (
            "mail",
            "expose[1].port",
            "tcp port 443 on host `gateway` is also used by the proxy "
            "(HTTP and HTTPS routes) (on every edge host)",
        ),
    ]


def test_routes_unique(tmp_path: Path) -> None:
    same = service(extra="routes:\n  - {domain: wiki.nordlicht.example, to: app.http}\n")
    other_path = same.replace("wiki.nordlicht.example,", "wiki.nordlicht.example, path: /pad,")
    assert findings(tmp_path / "a", "routes.unique", {"services/pad.yaml": other_path}) == []
    found = findings(tmp_path / "b", "routes.unique", {"services/pad.yaml": same})
    assert [f.message for f in found] == [
        "wiki.nordlicht.example/ is also routed by services/wiki.yaml:16:5",
        "wiki.nordlicht.example/ is also routed by services/pad.yaml:8:5",
    ]


def test_routes_unique_refuses_passthrough_next_to_termination(tmp_path: Path) -> None:
    mixed = service(
        extra="routes:\n  - {domain: pages.nordlicht.example, path: /x, to: app.http}\n"
    )
    found = findings(tmp_path, "routes.unique", {"services/pad.yaml": mixed})
    assert [f.message for f in found] == [
        "pages.nordlicht.example is terminated here and passed through at services/pages.yaml:9:5"
    ] or [f.keypath for f in found] == ["routes[0].tls"]


def test_images_pinned(tmp_path: Path) -> None:
    fixed = ("etherpad:2.2.6", "ghcr.io/x/y@sha256:" + "a" * 64, "registry:5000/a/b:1.0")
    fixed += (
        "nginx:1.27-alpine",
        "x/app:sha-4f8703e",
        "x/contrib:2024-02-10",
        "alpine@sha256:" + "b" * 64,
    )
    for image in fixed:
        found = findings(
            tmp_path / image.replace("/", "_")[:20],
            "images.pinned",
            {"services/pad.yaml": service(image=image)},
        )
        assert found == [], image
    for image, said in (
        ("etherpad", "has no tag"),
        ("etherpad:latest", "uses `latest`"),
        ("registry:5000/etherpad", "has no tag"),
        ("alpine:alpine", "uses the moving tag `alpine`: it names no full version"),
        ("x/app:release", "uses the moving tag `release`: it names no full version"),
        ("x/app:stable", "uses the moving tag `stable`: it names no full version"),
        ("postgres:11", "uses the moving tag `11`: it names no full version"),
        ("wordpress:27-apache", "uses the moving tag `27-apache`: it names no full version"),
    ):
        found = findings(
            tmp_path / said.replace(" ", "")[:5] / image.replace("/", "_"),
            "images.pinned",
            {"services/pad.yaml": service(image=image)},
        )
        assert [f.message for f in found] == [f"`{image}` {said}"]


def test_images_built_only_where_compose_runs(tmp_path: Path) -> None:
    built = service().replace("ports: {http: 80}", "ports: {http: 80}\n    build: src")
    files = {"services/pad.yaml": built, "files/pad/src/Dockerfile": "FROM scratch\n"}
    assert findings(tmp_path / "a", "images.built", files) == []
    swarm = {**files, "hosts/cluster.yaml": "address: 192.0.2.40\nengine: swarm\n"}
    swarm["services/pad.yaml"] = built.replace("host: rack", "host: cluster")
    found = findings(tmp_path / "b", "images.built", swarm)
    assert [(f.keypath, f.message) for f in found] == [
        ("components.app.build", "`cluster` runs swarm, which builds no image")
    ]


def test_volumes_under_srv(tmp_path: Path) -> None:
    good = (
        service(extra="volumes: {}\n")
        .replace("ports: {http: 80}", "ports: {http: 80}\n    volumes: {data: /data}")
        .replace("volumes: {}\n", "")
    )
    bad = good.replace("{data: /data}", "{data: {path: /data, host: /home/pad}}")
    assert findings(tmp_path / "a", "volumes.under_srv", {"services/pad.yaml": good}) == []
    found = findings(tmp_path / "b", "volumes.under_srv", {"services/pad.yaml": bad})
    assert [f.message for f in found] == ["volume `data` lives at /home/pad, outside /srv/pad/"]


def test_backups_required(tmp_path: Path) -> None:
    with_data = service().replace("ports: {http: 80}", "ports: {http: 80}\n    volumes: {data: /d}")
    # The collective's `backup:` has a repository: a service that says nothing is backed up.
    assert findings(tmp_path / "a", "backups.required", {"services/pad.yaml": with_data}) == []
    opted_out = with_data + "backup: {consistency: none}\n"
    found = findings(tmp_path / "b", "backups.required", {"services/pad.yaml": opted_out})
    assert [f.message for f in found] == [
        "`pad` holds volumes but opted out of backups (`consistency: none`)"
    ]
    allowed = opted_out + "allow: [{rule: backups.required, reason: scratch data}]\n"
    assert findings(tmp_path / "c", "backups.required", {"services/pad.yaml": allowed}) == []
    base = (FIXTURES / "valid" / "nordlicht" / "allmende.yaml").read_text()
    nowhere = base.replace(
        "  repository: ssh://borg@vault.nordlicht.example/srv/borg/{service}\n", ""
    )
    found = findings(
        tmp_path / "d",
        "backups.required",
        {"services/pad.yaml": with_data, "allmende.yaml": nowhere},
    )
    assert "`pad` holds volumes but no backup repository applies to it" in [
        f.message for f in found
    ]


def test_routes_tls(tmp_path: Path) -> None:
    plain = service(extra="routes:\n  - {domain: pad.nordlicht.example, to: app.http, tls: none}\n")
    found = findings(tmp_path, "routes.tls", {"services/pad.yaml": plain})
    assert [f.message for f in found] == ["pad.nordlicht.example/ is served without TLS"]
    assert (
        findings(
            tmp_path / "b", "routes.tls", {"services/pad.yaml": plain.replace(", tls: none", "")}
        )
        == []
    )


def test_routes_dns(tmp_path: Path) -> None:
    foreign = service(extra="routes:\n  - {domain: pad.example.org, to: app.http}\n")
    found = findings(tmp_path / "a", "routes.dns", {"services/pad.yaml": foreign})
    assert [f.message for f in found] == [
        "pad.example.org is not under a domain the collective manages"
    ]
    clash = foreign.replace("pad.example.org", "pad.nordlicht.example")
    zone = (FIXTURES / "valid/nordlicht/zones/nordlicht.example.yaml").read_text()
    zone += '  - {name: pad, type: CNAME, value: "elsewhere.example.net."}\n'
    found = findings(
        tmp_path / "b",
        "routes.dns",
        {"services/pad.yaml": clash, "zones/nordlicht.example.yaml": zone},
    )
    assert [f.message for f in found] == [
        "pad.nordlicht.example also has a CNAME record in zones/nordlicht.example.yaml:10:5"
    ]


@pytest.mark.parametrize(
    ("env", "found"),
    [
        ("DB_PASSWORD: hunter2", True),
        ("SECRET_KEY: 'x8Jk2mQp9vLr4tWz7yBn3cFd6gHs1aE5'", True),
        ("GITHUB: ghp_abcdefghijklmnopqrstuvwxyz0123456789", True),
        ("OPAQUE: Zq8Xv2Lm9Kp4Rt7Wn3Bc6Fd1Gh5Js0AyE", True),
        ("DATABASE_URL: 'postgres://wiki:s3cret@database/wiki'", True),
        ("DATABASE_URL: 'postgres://wiki@database/wiki'", False),
        ("SMTP_PWD: s3cr3t-mail", True),
        ("CACHE_URL: 'redis://:s3cret@cache:6379/0'", True),
        ("AUTH_HEADER: 'Bearer eyJhbGciOiJIUzI1NiJ9.e30'", True),
        ("UPSTREAM_AUTH: 'Basic dXNlcjpwYXNzd29yZA=='", True),
        ("CACHE_URL: 'redis://cache:6379/0'", False),
        ("PWD: /srv/app", False),
        ("DB_PASSWORD_FILE: /run/secrets/db", False),
        ("DB_PASSWORD: ''", False),
        ("SITE_NAME: Nordlicht", False),
        ("ALLOWED_HOSTS: wiki.nordlicht.example", False),
    ],
)
def test_secrets_plaintext(tmp_path: Path, env: str, found: bool) -> None:
    text = service().replace("ports: {http: 80}", f"ports: {{http: 80}}\n    env: {{{env}}}")
    result = findings(tmp_path, "secrets.plaintext", {"services/pad.yaml": text})
    assert bool(result) == found
    if found:
        assert "allmende secret set pad/" in result[0].fix


def test_monitor_present(tmp_path: Path) -> None:
    found = findings(tmp_path / "a", "monitor.present", {"services/pad.yaml": service(extra="")})
    assert [f.message for f in found] == ["nothing watches `pad`"]
    assert findings(tmp_path / "b", "monitor.present", {"services/pad.yaml": service()}) == []


def test_allow_keeps_a_finding_aside_and_unknown_rules_are_errors(tmp_path: Path) -> None:
    allowed = service(
        name="wordpress", extra="allow: [{rule: names.by_function, reason: legacy}]\n"
    )
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "i")
    (inventory / "services/wordpress.yaml").write_text(allowed + "monitor: [{tcp: 'a:1'}]\n")
    report = run(load(inventory, {}))
    assert [f.rule for f in report.allowed if f.service == "wordpress"] == ["names.by_function"]
    (inventory / "services/wordpress.yaml").write_text(
        allowed.replace("names.by_function", "names.by_functoin") + "monitor: [{tcp: 'a:1'}]\n"
    )
    report = run(load(inventory, {}))
    assert [(f.rule, f.fix) for f in report if f.rule == "allow.unknown"] == [
        ("allow.unknown", "did you mean `names.by_function`?")
    ]


def test_check_refuses_a_rule_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "i")
    assert main(["check", str(inventory), "--rule", "ports.unique"]) == 0
    capsys.readouterr()
    assert main(["check", str(inventory), "--rule", "ports.unique", "--rule", "ports.uniqe"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "unknown rule `ports.uniqe` (did you mean `ports.unique`?)\n"
    assert captured.out == ""
    assert main(["check", str(inventory), "--json", "--rule", "backup"]) == 2
    assert capsys.readouterr().err.startswith("unknown rule `backup` (known rule names: ")


def test_secrets_plaintext_in_commands_and_in_what_is_kept_verbatim(tmp_path: Path) -> None:
    text = (
        service().replace(
            "ports: {http: 80}",
            """ports: {http: 80}
    command: [etherpad, --password=hunter2-pad]
    healthcheck: {command: [curl, -f, 'http://admin:s3cret@localhost/']}
    x-compose:
      labels: {app.admin_token: Zq8Xv2Lm9Kp4Rt7Wn3Bc6Fd1Gh5Js0AyE, app.role: pad}
      environment: [DB_PASSWORD=hunter2, SITE=pad, '-not-an-assignment']
      entrypoint: [/entry.sh, --password=hunter2]
      extra_hosts: ['upstream=http://u:s3cret@10.0.0.1/']
      devices: [{source: /dev/null, target: 'postgres://wiki:s3cret@db/wiki'}]
      stop_signal: SIGTERM""",
        )
        + "x-compose:\n  x-backup-url: 'https://u:s3cret@vault.example/'\n  x-name: pad\n"
    )
    found = findings(tmp_path, "secrets.plaintext", {"services/pad.yaml": text})
    located = {(f.keypath, f.message.split(":")[0]) for f in found}
    assert located == {
        ("components.app.command", "plaintext secret in a command"),
        ("components.app.healthcheck.command", "plaintext secret in a command"),
        ("components.app.x-compose.labels.app.admin_token", "plaintext secret kept verbatim"),
        ("components.app.x-compose.environment[0]", "plaintext secret kept verbatim"),
        ("components.app.x-compose.entrypoint", "plaintext secret kept verbatim"),
        ("components.app.x-compose.extra_hosts[0]", "plaintext secret kept verbatim"),
        ("components.app.x-compose.devices[0].target", "plaintext secret kept verbatim"),
        ("x-compose.x-backup-url", "plaintext secret kept verbatim"),
    }
    assert all(f.location.line for f in found)  # each where it is written


def test_secrets_stored_names_each_secret_missing_from_the_store(tmp_path: Path) -> None:
    text = service().replace(
        "ports: {http: 80}", "ports: {http: 80}\n    secrets: {DB_PASSWORD: pad/db-password}"
    )
    found = findings(tmp_path, "secrets.stored", {"services/pad.yaml": text})
    assert [(f.message, f.fix) for f in found] == [
        (
            "secret `pad/db-password` is not stored in secrets/",
            f"run `allmende secret set pad/db-password -C {tmp_path / 'inventory'}`",
        )
    ]
