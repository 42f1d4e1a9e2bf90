"""`allmende import haproxy`: frontends, ACLs and backends become routes and exposed ports of
the services whose address and published port match; what matches nothing is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from allmende.actions.importing import Options, import_haproxy
from allmende.cli.main import cli
from allmende.importers.haproxycfg import parse, split
from allmende.inventory.load import load

SERVICES = {
    "wiki": "components:\n  app:\n    image: mediawiki:1.42\n    ports: {http: 80}\n"
    "    publish: {http: 8081}\n",
    "mail": "components:\n  server:\n    image: example/mail:1.0\n"
    "    ports: {smtp: 25, imaps: 993}\n    publish: {smtp: 2525, imaps: 9993}\n",
    "pages": "components:\n  pages:\n    image: example/pages:1.0\n    ports: {https: 443}\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "inventory"
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text("name: test\n")
    (root / "hosts" / "box.yaml").write_text("address: 10.0.0.5\n")
    for name, text in SERVICES.items():
        (root / "services" / f"{name}.yaml").write_text(f"description: {name}\nhost: box\n{text}")
    return root


def run(root: Path, config: str, dry_run: bool = False) -> tuple[dict[str, Any], list[str]]:
    path = root.parent / "haproxy.cfg"
    path.write_text(textwrap.dedent(config))
    report = import_haproxy(path, Options(into=root, environ={}, dry_run=dry_run))
    services = {s.name: s.data for s in report.services}
    lines = [line.replace(str(path), "haproxy.cfg") for line in report.lines]
    return services, lines


def test_words_and_sections() -> None:
    assert split("acl a hdr(host) -i \"x y\" 'z' # comment") == [
        "acl",
        "a",
        "hdr(host)",
        "-i",
        "x y",
        "z",
    ]
    sections, problems = parse(
        "global\n  daemon\nfrontend web\n  bind :80\n  bind {{ ip }}:443 ssl\n"
    )
    assert [(s.kind, s.name, s.line) for s in sections] == [
        ("global", "", 1),
        ("frontend", "web", 3),
    ]
    assert sections[1].lines[1].words == ("bind", "template:443", "ssl")
    assert problems == [
        (5, "template markup ({{ }}) read as `template`: render the template first")
    ]


def test_http_routes_by_host_and_path(root: Path) -> None:
    services, lines = run(
        root,
        """
        defaults
            mode http
        frontend http
            bind :80
            http-request redirect scheme https unless { path_beg /.well-known/acme-challenge/ }
            use_backend be_wiki if { hdr(host) -i wiki.example.org }
        frontend https
            bind :443 ssl crt /etc/haproxy/certs/
            acl wiki hdr(host) -i wiki.example.org wiki.example.org:443
            acl api path_beg /api
            acl docs hdr_dom(host) -i docs.example.org
            use_backend be_wiki if wiki api || docs
            use_backend be_wiki if wiki
            use_backend be_wiki if { path_beg /.well-known/acme-challenge/ }
        backend be_wiki
            server w1 10.0.0.5:8081 check
        """,
    )
    assert services == {
        "wiki": {
            "routes": [
                {"domain": "wiki.example.org", "path": "/api", "to": "app.http"},
                {"domain": "docs.example.org", "to": "app.http"},
                {"domain": "wiki.example.org", "to": "app.http"},
            ]
        }
    }
    assert lines == ["haproxy.cfg:15:1: ACME challenges: the edge answers them itself"]
    assert [r.domain for r in load(root, {}).services["wiki"].routes] == [
        "wiki.example.org",
        "docs.example.org",
        "wiki.example.org",
    ]


def test_sni_passthrough_and_raw_tcp_ports(root: Path) -> None:
    services, lines = run(
        root,
        """
        frontend tls
            mode tcp
            bind :443
            tcp-request content accept if { req.ssl_hello_type 1 }
            use_backend be_pages if { req.ssl_sni -i pages.example.org }
        listen smtp
            mode tcp
            bind :25
            server s1 10.0.0.5:2525
        frontend imaps
            mode tcp
            bind :993
            default_backend be_imaps
        backend be_imaps
            mode tcp
            server s1 10.0.0.5:9993
        backend be_pages
            mode tcp
            server p pages:443
        """,
    )
    assert services == {
        "mail": {
            "expose": [
                {"port": 25, "protocol": "tcp", "to": "server.smtp"},
                {"port": 993, "protocol": "tcp", "to": "server.imaps"},
            ]
        },
        "pages": {
            "routes": [{"domain": "pages.example.org", "to": "pages.https", "tls": "passthrough"}]
        },
    }
    assert lines == []


def test_what_cannot_be_placed_is_reported_with_its_line(root: Path) -> None:
    services, lines = run(
        root,
        """
        frontend web
            mode http
            bind :80
            acl admin src 192.168.0.0/16
            use_backend be_admin if admin
            use_backend be_old if { hdr(host) -i old.example.org }
            use_backend be_gone if !{ hdr(host) -i x.example.org }
            default_backend be_old
        backend be_old
            server o1 10.0.0.5:8080
        """,
    )
    assert services == {}
    assert lines == [
        "haproxy.cfg:6:1: use_backend be_admin: the condition is not on host, path or server name",
        "haproxy.cfg:8:1: use_backend be_gone: the condition is not on host, path or server name",
        "haproxy.cfg:9:1: default_backend be_old: a catch-all for any domain, which routes "
        "cannot say",
        "haproxy.cfg:11:1: backend be_old -> 10.0.0.5:8080 matches no published port in services/",
    ]


def test_dry_run_shows_the_merge_and_writes_nothing(root: Path) -> None:
    before = (root / "services" / "wiki.yaml").read_text()
    config = "frontend f\n  mode http\n  bind :443 ssl crt x\n"
    config += "  use_backend b if { hdr(host) -i wiki.example.org }\n"
    config += "backend b\n  server s 10.0.0.5:8081\n"
    path = root.parent / "haproxy.cfg"
    path.write_text(config)
    report = import_haproxy(path, Options(into=root, environ={}, dry_run=True))
    assert (root / "services" / "wiki.yaml").read_text() == before
    assert (
        report.changes[0]
        .diff()
        .endswith("+routes:\n+  - {domain: wiki.example.org, to: app.http}\n")
    )


def test_a_service_written_as_yml_is_merged_into_that_file(root: Path) -> None:
    (root / "services" / "wiki.yaml").rename(root / "services" / "wiki.yml")
    config = "frontend f\n  mode http\n  bind :80\n"
    config += "  use_backend b if { hdr(host) -i wiki.example.org }\n"
    config += "backend b\n  server s 10.0.0.5:8081\n"
    run(root, config)
    assert not (root / "services" / "wiki.yaml").exists()
    assert "tls: none" in (root / "services" / "wiki.yml").read_text()


def test_what_the_inventory_cannot_say_is_listed_by_line(root: Path) -> None:
    _, lines = run(
        root,
        """
        defaults
          mode http
          errorfile 503 /etc/haproxy/errors/503.http
        frontend web
          bind :80
          acl wiki hdr(host) -i wiki.example.org
          http-response set-header X-Frame-Options DENY
          use_backend wiki if wiki
        backend wiki
          server a 10.0.0.5:8081 check inter 2s send-proxy
          server b 10.0.0.6:8081 check
          server c 10.0.0.7:8081 check backup
        listen stats
          bind :8404
          stats enable
        """,
        dry_run=True,
    )
    assert lines == [
        "haproxy.cfg:4:1: the inventory cannot say `errorfile 503 /etc/haproxy/errors/503.http`",
        "haproxy.cfg:8:1: the inventory cannot say `http-response set-header X-Frame-Options DENY`",
        "haproxy.cfg:12:1: backend wiki: servers differ in the PROXY protocol; the inventory "
        "says one for the port (v1)",
        "haproxy.cfg:13:1: backend wiki: servers differ in the PROXY protocol; the inventory "
        "says one for the port (v1)",
        "haproxy.cfg:16:1: the inventory cannot say `stats enable`",
    ]


def test_servers_outside_backups_balance_and_proxy_protocol_become_the_ports_edge(
    root: Path,
) -> None:
    config = """
        defaults
          mode http
        frontend web
          bind :80 accept-proxy
          use_backend wiki if { hdr(host) -i wiki.example.org }
          use_backend mail if { hdr(host) -i mail.example.org }
        backend wiki
          balance leastconn
          server spare 10.0.0.9:8081 check backup send-proxy-v2
          server a 10.0.0.5:8081 check inter 2s send-proxy-v2
          server b nas.lan:8081 check send-proxy-v2
          server c [fd00::7]:80 send-proxy-v2 maxconn 10
          server d 10.0.0.5:9993 send-proxy-v2
          server e unix@/run/x.sock send-proxy-v2
        backend mail
          balance uri
          server a 10.0.0.5:2525 weight 10
          server b 10.0.0.8:2525 weight 20
          server c 10.0.0.9:2525 disabled
        """
    services, lines = run(root, config)
    assert services["wiki"]["components"] == {
        "app": {
            "edge": {
                "http": {
                    "servers": [
                        {"address": "10.0.0.9:8081", "backup": True},
                        "nas.lan:8081",
                        "[fd00::7]:80",
                    ],
                    "balance": "leastconn",
                    "proxy_protocol": "v2",
                }
            }
        }
    }
    assert services["mail"]["components"] == {
        "server": {
            "edge": {
                "smtp": {"servers": [{"address": "10.0.0.8:2525", "weight": 20}], "weight": 10}
            }
        }
    }
    assert lines == [
        "haproxy.cfg:5:1: the edge reads the PROXY protocol here: name the load balancers that "
        "send it in allmende.yaml, `edge: {accept_proxy: [<address>]}`",
        "haproxy.cfg:13:1: the inventory cannot say the server's maxconn",
        "haproxy.cfg:14:1: backend wiki: server 10.0.0.5:9993 is kept out: it is another "
        "component of the inventory",
        "haproxy.cfg:15:1: backend wiki: server unix@/run/x.sock is kept out: backend wiki -> "
        "unix@/run/x.sock is a socket, not a service",
        "haproxy.cfg:17:1: the inventory cannot say `balance uri`",
        "haproxy.cfg:20:1: backend mail: server 10.0.0.9:2525 is disabled: left out",
    ]
    wiki = load(root, {}).services["wiki"].components["app"].edge["http"]
    assert [(s.address, s.backup) for s in wiki.servers] == [
        ("10.0.0.9:8081", True),
        ("nas.lan:8081", False),
        ("[fd00::7]:80", False),
    ]
    # imported again: the inventory already says it all, the file stays as it is
    before = (root / "services" / "wiki.yaml").read_text()
    assert "proxy_protocol: v2" in before
    run(root, config)
    assert (root / "services" / "wiki.yaml").read_text() == before
    # an edge that reads the PROXY protocol says the bind's accept-proxy
    with (root / "allmende.yaml").open("a") as collective:
        collective.write("edge: {hosts: [box], accept_proxy: [10.0.0.1]}\n")
    _, lines = run(root, config)
    assert not [line for line in lines if "accept_proxy" in line]


def test_nothing_to_write_is_said_only_when_the_inventory_says_all_of_it(root: Path) -> None:
    config = root.parent / "haproxy.cfg"
    config.write_text("frontend web\n  bind :80\n  http-request deny\n")
    said = CliRunner().invoke(cli, ["import", "haproxy", str(config), "--into", str(root)])
    assert "the inventory cannot say `http-request deny`" in said.output
    assert "nothing written: the lines above say what the inventory does not say" in said.output
    assert "already says all of it" not in said.output


def test_plain_http_served_beside_tls_is_kept_and_another_port_reported(root: Path) -> None:
    """A frontend that serves a name on a plain and a TLS port without redirecting keeps
    serving plain HTTP; TLS terminated behind an SNI frontend on a unix socket is terminated;
    a port the edge does not route on is reported on its bind line."""
    services, lines = run(
        root,
        """
        defaults
            mode http
        frontend web
            bind *:80
            bind *:8443 ssl crt /etc/haproxy/site.pem
            use_backend be_wiki if { hdr(host) -i wiki.example.org }
        frontend sni
            mode tcp
            bind :443
            use_backend be_terminate if { req.ssl_sni -i docs.example.org }
        backend be_terminate
            mode tcp
            server t /run/terminate.sock send-proxy-v2
        frontend terminate
            bind /run/terminate.sock accept-proxy ssl crt /etc/haproxy/site.pem
            use_backend be_wiki if { hdr(host) -i docs.example.org }
        backend be_wiki
            server w1 10.0.0.5:8081
        """,
    )
    assert services["wiki"]["routes"] == [
        {"domain": "wiki.example.org", "to": "app.http", "redirect_https": False},
        {"domain": "docs.example.org", "to": "app.http"},
    ]
    assert "haproxy.cfg:6:1: frontend web routes on port 8443; the edge routes on its " in (
        "\n".join(lines)
    )
