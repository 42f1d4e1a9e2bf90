"""Meaning kept at the edge: every HAProxy config of the corpus imported into an inventory that
has what it was written for (``mirror``: a service publishing each backend's port on a host at
its server's address) and an edge host, the edge rendered back by ``allmende.render.haproxy``,
and both configs compared by what they route (``haproxy_meaning``): for each way in (port,
Host or server name, path), the same servers with the same TLS mode. Every difference must rest
on a line of the original that the import listed; the test fails on any other, and prints the
figure. The rendered config passes the real ``haproxy -c``; so does every original the real
HAProxy can read as collected (some need certificates, resolvable names or a newer HAProxy).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from haproxy_meaning import REDIRECT, Routing, Way, read
from test_import_corpus import CORPUS, World, haproxy_files, materialise, mirror, world

from allmende.actions.importing import Options, import_haproxy
from allmende.inventory.load import load
from allmende.render.haproxy import render

__all__ = ["world"]  # the session fixture, shared with test_import_corpus

EDGE = "edge-host"
#: The edge's address: none of the corpus's servers, so no backend is taken for the edge itself.
EDGE_ADDRESS = "192.0.2.254"
#: Why the real HAProxy 2.6 cannot read an original as collected: templating never rendered,
#: files of its deployment the corpus lacks (Lua, DH parameters), a newer or older HAProxy.
UNREADABLE = re.compile(
    r"'\{\{'|'\{%'|Lua file|DH parameters|unknown keyword|not supported anymore|expects"
    r"|invalid address: 'mptcp@|use-service|virt@acme|track-sc number exceeding"
)
_NOTED = re.compile(r"^\S+:(\d+):\d+: ")


@dataclass
class Compared:
    """One config: the original's and the rendered config's routing, and the lines noted."""

    corpus_file: str
    original: Routing
    rendered: Routing
    noted: set[int]
    rendered_text: str
    certs_list: str
    placed: bool

    def differences(self) -> list[tuple[Way, str, str, set[int]]]:
        """Return (way, original says, rendered says, the original's lines that say it): its
        server lines where only the servers differ, else the rule and binds that take it (for
        a way the original does not have: those of the same name on any port)."""
        out = []
        original, rendered = self.original, self.rendered
        for way in sorted(set(original.ways) | set(rendered.ways), key=str):
            mine, theirs = original.resolve(way), rendered.resolve(way)
            said = original.ways[mine] if mine else None
            done = rendered.ways[theirs] if theirs else None
            if said == done or (way.name == "*" and said is not None and said.tls == REDIRECT):
                continue  # a catch-all redirect to HTTPS is compared on the names routed
            if mine is None:
                lines = {n for w, ls in original.lines.items() if w.name == way.name for n in ls}
            elif done is not None and done.servers and said is not None and said.tls == done.tls:
                lines = original.servers[mine]
            else:
                lines = original.lines[mine]
            out.append((way, str(said or "nothing"), str(done or "nothing"), lines))
        return out

    def unlisted(self) -> list[str]:
        return [
            f"{self.corpus_file[8:]} {way}: original {said}; rendered {done}"
            for way, said, done, lines in self.differences()
            if not lines & self.noted
        ]


def with_edge(inventory: Path) -> None:
    config = inventory / "allmende.yaml"
    config.write_text(config.read_text() + f"edge:\n  hosts: [{EDGE}]\n")
    (inventory / "hosts").mkdir(exist_ok=True)
    (inventory / "hosts" / f"{EDGE}.yaml").write_text(f"address: '{EDGE_ADDRESS}'\n")


def compared(world: World) -> Iterator[Compared]:
    tree = materialise(world.root / "haproxy-meaning")
    for corpus_file in haproxy_files():
        config = tree[corpus_file]
        name = "m-" + corpus_file.replace("/", "__")
        inventory = mirror(world, name, config.read_text())
        with_edge(inventory)
        report = import_haproxy(config, Options(into=inventory, environ=world.key_env))
        noted = {int(m.group(1)) for ln in report.lines if (m := _NOTED.match(ln))}
        files = render(load(inventory, world.key_env))
        text = files[f"{EDGE}/etc/haproxy/haproxy.cfg"].content.decode()
        certs = files[f"{EDGE}/etc/haproxy/certs.list"].content.decode()
        placed = any(s.data.get("routes") or s.data.get("expose") for s in report.services)
        original = read(config.read_text())
        yield Compared(corpus_file, original, read(text), noted, text, certs, placed)


@pytest.fixture(scope="module")
def comparisons(world: World) -> list[Compared]:
    return list(compared(world))


def haproxy_check(
    text: str, directory: Path, certs_list: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the real ``haproxy -c`` on a config whose certificates (one self-signed stand-in
    for every line of ``certs_list``) and error page are written under ``directory``."""
    directory.mkdir(parents=True)
    pem = directory / "stand-in.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(pem), "-out", str(directory / "cert.pem"), "-days", "2",
         "-subj", "/CN=stand-in"],
        check=True, capture_output=True,
    )  # fmt: skip
    pem.write_text((directory / "cert.pem").read_text() + pem.read_text())
    certs = directory / "certs.list"
    certs.write_text(
        "".join(
            f"{pem} {line.split(maxsplit=1)[1]}\n" if " " in line else f"{pem}\n"
            for line in certs_list.splitlines()
            if line.strip() and not line.startswith("#")
        )
    )
    errors = directory / "allmende-503.http"
    errors.write_text("HTTP/1.1 503 Service Unavailable\r\n\r\n")
    text = re.sub(r"crt-list \S+", f"crt-list {certs}", text)
    text = re.sub(r"\bcrt (?!-)\S+", f"crt {pem}", text)  # the original's certificates
    text = re.sub(r"errorfile 503 \S+", f"errorfile 503 {errors}", text)
    text = re.sub(r"^\s*(user|group|chroot|stats socket) .*$", "", text, flags=re.M)
    config = directory / "haproxy.cfg"
    config.write_text(text)
    return subprocess.run(
        [haproxy(), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )


def haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail("haproxy is not installed: script/bootstrap installs it")
    return found


def test_every_rendered_edge_passes_haproxy_check(
    comparisons: list[Compared], tmp_path: Path
) -> None:
    for number, case in enumerate(comparisons):
        done = haproxy_check(case.rendered_text, tmp_path / str(number), case.certs_list)
        assert done.returncode == 0, f"{case.corpus_file}: {done.stdout}{done.stderr}"


def test_every_original_haproxy_reads_routes_the_same_or_the_import_lists_it(
    comparisons: list[Compared], tmp_path: Path
) -> None:
    valid = 0
    for case in comparisons:
        original = tmp_path / "originals" / case.corpus_file.replace("/", "__")
        done = haproxy_check((CORPUS / case.corpus_file).read_text(), original)
        valid += done.returncode == 0
        alerts = [ln for ln in done.stderr.splitlines() if "[ALERT]" in ln and "parsing [" in ln]
        unexplained = [ln for ln in alerts if not UNREADABLE.search(ln)]
        assert not unexplained, f"{case.corpus_file}: {unexplained}"
    same = [c for c in comparisons if not c.differences()]
    empty = [c for c in same if not c.original.ways]
    listed = [c for c in comparisons if c.differences() and not c.unlisted()]
    unlisted = [line for c in comparisons for line in c.unlisted()]
    print(
        f"\n{len(comparisons)} HAProxy configs ({valid} pass `haproxy -c` as collected): "
        f"{len(same)} route the same ({len(empty)} of them route nothing), "
        f"{len(listed)} differ only in listed ways, "
        f"{len(comparisons) - len(same) - len(listed)} with unlisted differences"
    )
    for case in comparisons:
        for way, said, done, lines in case.differences():
            print(f"  {case.corpus_file[8:]} {way}: {said} | {done} (lines {sorted(lines)})")
    assert not unlisted, "\n".join(unlisted)


def test_the_comparison_sees_routes_in_every_config_it_compares(
    comparisons: list[Compared],
) -> None:
    """The meaning reader is no empty comparison: every config that binds a port and has a
    server routes something, and so does every rendered edge the import gave a route."""
    for case in comparisons:
        text = (CORPUS / case.corpus_file).read_text()
        binds = re.search(r"^\s*bind\s+\S*:\d+", text, re.M)
        serves = binds and re.search(r"^\s*(server|listen)\s", text, re.M)
        assert bool(case.original.ways) == bool(serves), case.corpus_file
        assert bool(case.rendered.ways) == case.placed, case.corpus_file


def test_the_routing_reader_follows_binds_redirects_and_sockets() -> None:
    """What the comparison rests on, on a config whose routing is known: TLS per bind, a
    redirect on plain connections only, an SNI frontend handing over to a terminating one on a
    unix socket, the first matching rule winning, backup servers kept apart."""
    routing = read(
        "defaults\n  mode http\n"
        "frontend web\n  bind :80\n  bind :8443 ssl crt x.pem\n"
        "  http-request redirect scheme https if !{ ssl_fc } { hdr(host) -i a.test }\n"
        "  acl api path_beg /api/\n"
        "  use_backend one if { hdr(host) -i a.test } api\n"
        "  use_backend two if { hdr(host) -i a.test }\n"
        "  use_backend one if { hdr(host) -i a.test }\n"
        "  use_backend one if { hdr(host) -i b.test }\n  use_backend one if { src 10.0.0.0/8 }\n"
        "frontend sni\n  mode tcp\n  bind :443\n"
        "  use_backend hand if { req.ssl_sni -i c.test }\n  default_backend raw\n"
        "frontend inner\n  bind unix@/run/t.sock ssl crt x.pem\n"
        "  use_backend two if { hdr(host) -i c.test }\n"
        "backend one\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80 backup\n"
        "backend two\n  server c [fd00::1]:81\n"
        "backend hand\n  mode tcp\n  server t unix@/run/t.sock send-proxy-v2\n"
        "backend raw\n  mode tcp\n  server r 10.0.0.9:443 send-proxy\n"
    )
    said = {str(way): str(destination) for way, destination in routing.ways.items()}
    assert said == {
        ":80 a.test/api": "redirect to https -> (no server)",
        ":80 a.test": "redirect to https -> (no server)",
        ":80 b.test": "none -> 10.0.0.1:80, 10.0.0.2:80 backup (roundrobin)",
        ":80 ?12": "none -> 10.0.0.1:80, 10.0.0.2:80 backup (roundrobin)",
        ":8443 a.test/api": "terminate -> 10.0.0.1:80, 10.0.0.2:80 backup (roundrobin)",
        ":8443 a.test": "terminate -> fd00::1:81",
        ":8443 b.test": "terminate -> 10.0.0.1:80, 10.0.0.2:80 backup (roundrobin)",
        ":8443 ?12": "terminate -> 10.0.0.1:80, 10.0.0.2:80 backup (roundrobin)",
        ":443 c.test": "terminate -> fd00::1:81",
        ":443 *": "passthrough -> 10.0.0.9:443 send-proxy",
    }
