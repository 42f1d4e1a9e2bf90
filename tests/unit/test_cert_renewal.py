"""Certificates from ACME, the parts that need no CA: which certificates the inventory asks
for, the checks that say when one can never be obtained, when one is due, how long a failed one
waits, and the watcher's renewal task. The CA itself (Pebble), HAProxy and Knot are driven in
tests/end_to_end/test_certs.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from allmende.actions.plan import Seams
from allmende.actions.watch import housekeeping
from allmende.checks.registry import run
from allmende.connectors.base import Connector
from allmende.inventory import certificates
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.operations.certs import renew
from allmende.operations.certs.facts import BACKOFF, BACKOFF_MAX, due, held, next_attempt
from allmende.state import store
from allmende.state.store import CertAttempt
from tests.conftest import own_secrets
from tests.memory import MemoryHost
from tests.ports import free_port

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
ACME = """acme:
  email: infra@nordlicht.example
{extra}"""


def with_acme(inventory: Path, extra: str = "", zone_update: bool = False) -> Inventory:
    """Give the copied base inventory ``acme:`` (with ``extra`` lines under it)."""
    collective = inventory / "allmende.yaml"
    text = collective.read_text()
    start = text.index("acme:")
    end = text.index("backup:")
    collective.write_text(text[:start] + ACME.format(extra=extra) + text[end:])
    if zone_update:
        zone = inventory / "zones" / "nordlicht.example.yaml"
        zone.write_text(zone.read_text() + "update: {server: '127.0.0.1:5353', key: acme-update}\n")
    return load(inventory, {})


Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def build(
    names: tuple[str, ...], days: float, issuer: Signer | None = None, ca: bool = False
) -> Signer:
    """Return a certificate for ``names`` valid ``days`` more from now, and its key:
    self-signed, or signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def issued(names: tuple[str, ...], days: float, self_signed: bool = False) -> bytes:
    """Return the PEM of a certificate for ``names`` valid ``days`` more from ``NOW``."""
    days += (NOW - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    issuer = None if self_signed else build(("Nordlicht CA",), 365, ca=True)
    return build(names, days, issuer)[0].public_bytes(serialization.Encoding.PEM)


def attempt(ok: bool, minutes_ago: float, retry_after: str = "") -> CertAttempt:
    at = (NOW - datetime.timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")
    return CertAttempt(
        0, "wiki.nordlicht.example", "timer", at, at, ok, "", "", "", "", retry_after
    )


# ---------------------------------------------------------------- what the inventory asks for


def test_every_terminated_route_gets_a_certificate_and_passthrough_none(nordlicht: Path) -> None:
    inventory = with_acme(nordlicht)
    found = {c.name: c for c in certificates.certificates(inventory)}
    assert set(found) == {"git.nordlicht.example", "nordlicht.example", "wiki.nordlicht.example"}
    assert "pages.nordlicht.example" not in found  # passthrough: the backend keeps its own
    wiki = found["wiki.nordlicht.example"]
    assert wiki.challenge == "http-01" and wiki.edges == ("gateway",)
    assert wiki.pem == "/etc/haproxy/certs/wiki.nordlicht.example.pem"


def test_a_wildcard_serves_the_names_one_label_below_over_dns01(nordlicht: Path) -> None:
    inventory = with_acme(
        nordlicht,
        "  wildcards: ['*.nordlicht.example']\n  challenges: {nordlicht.example: dns-01}\n",
        zone_update=True,
    )
    found = {c.name: c for c in certificates.certificates(inventory)}
    assert set(found) == {"*.nordlicht.example", "nordlicht.example"}
    wildcard = found["*.nordlicht.example"]
    assert wildcard.covers == ("git.nordlicht.example", "wiki.nordlicht.example")
    assert wildcard.challenge == "dns-01"
    assert wildcard.pem == "/etc/haproxy/certs/_wildcard.nordlicht.example.pem"
    assert found["nordlicht.example"].challenge == "dns-01"
    job = certificates.job(inventory)
    assert job is not None
    [update] = job.updates
    assert (update.zone, update.server, update.port) == ("nordlicht.example", "127.0.0.1", 5353)
    assert update.check == ("ns1.nordlicht.example:53", "ns2.example.net:53")


def test_no_acme_no_job(nordlicht: Path) -> None:
    collective = nordlicht / "allmende.yaml"
    text = collective.read_text()
    collective.write_text(text[: text.index("acme:")] + text[text.index("backup:") :])
    assert certificates.job(load(nordlicht, {})) is None


def test_a_dns01_name_without_zone_updates_is_an_error_with_its_place(nordlicht: Path) -> None:
    inventory = with_acme(nordlicht, "  wildcards: ['*.nordlicht.example']\n")
    [finding] = run(inventory, only=["certs.dns"])
    assert str(finding).startswith("allmende.yaml:10:")
    assert "*.nordlicht.example is checked over dns-01, but zones/nordlicht.example.yaml" in str(
        finding
    )
    assert finding.severity == "error"
    fixed = with_acme(nordlicht, "  wildcards: ['*.nordlicht.example']\n", zone_update=True)
    assert list(run(fixed, only=["certs.dns"])) == []


def test_a_wildcard_or_challenge_no_route_uses_is_a_warning(nordlicht: Path) -> None:
    inventory = with_acme(
        nordlicht,
        "  wildcards: ['*.lab.nordlicht.example']\n"
        "  challenges: {wkii.nordlicht.example: dns-01}\n",
        zone_update=True,
    )
    found = sorted(str(f) for f in run(inventory, only=["certs.unused"]))
    assert len(found) == 2
    assert "*.lab.nordlicht.example covers no route with `tls: terminate`" in found[0]
    assert "wkii.nordlicht.example is no certificate of a route" in found[1]


# ---------------------------------------------------------------- due, and the waits


def test_due_when_missing_a_stand_in_another_name_or_close_to_expiry() -> None:
    name = "wiki.nordlicht.example"
    assert due(name, [held("gateway", None)], 30, NOW) == "gateway has no certificate for it"
    stand_in = held("gateway", issued((name,), 365, self_signed=True))
    assert due(name, [stand_in], 30, NOW) == "gateway serves a self-signed stand-in"
    other = held("gateway", issued(("git.nordlicht.example",), 80))
    assert "does not name wiki.nordlicht.example" in str(due(name, [other], 30, NOW))
    assert "no certificate" in str(due(name, [held("gateway", b"garbage")], 30, NOW))
    fresh = held("gateway", issued((name,), 80))
    assert due(name, [fresh], 30, NOW) is None
    close = held("gateway", issued((name,), 29))
    assert due(name, [close], 30, NOW) is not None
    # One edge of two is enough to make it due.
    assert due(name, [fresh, held("edge2", None)], 30, NOW) == "edge2 has no certificate for it"


def test_a_failure_waits_and_each_further_one_twice_as_long_up_to_a_day() -> None:
    assert next_attempt([]) == (None, "")
    assert next_attempt([attempt(True, 1), attempt(False, 5)]) == (None, "")
    when, why = next_attempt([attempt(False, 0)])
    assert when == NOW + BACKOFF and why == "1 failed attempt in a row"
    when, why = next_attempt([attempt(False, 0), attempt(False, 30), attempt(False, 60)])
    assert when == NOW + 4 * BACKOFF and why == "3 failed attempts in a row"
    weeks = [attempt(False, 0)] + [attempt(False, 60 * 24 * d) for d in range(1, 200)]
    assert next_attempt(weeks) == (NOW + BACKOFF_MAX, "200 failed attempts in a row")


def test_the_cas_retry_after_holds_even_a_forced_renewal() -> None:
    later = (NOW + datetime.timedelta(hours=3)).isoformat()
    limited = [attempt(False, 0, retry_after=later)]
    assert next_attempt(limited) == (NOW + datetime.timedelta(hours=3), "the CA's rate limit")
    assert next_attempt(limited, force=True)[0] == NOW + datetime.timedelta(hours=3)
    assert next_attempt([attempt(False, 0)], force=True) == (None, "")


def test_a_rate_limit_is_not_tried_again_before_the_cas_retry_after() -> None:
    from acme import messages

    from allmende.operations.certs.client import explain, retry_time

    limited = messages.Error(
        typ="urn:ietf:params:acme:error:rateLimited", detail="too many certificates already"
    )
    failed = explain(limited, "https://ca.example/dir", "3600")
    assert str(failed) == "the CA's rate limit: too many certificates already"
    assert failed.kind == "rate_limited" and not failed.transient  # never retried in the run
    assert failed.retry_after is not None
    left = failed.retry_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=59) < left <= datetime.timedelta(hours=1)
    on_date = retry_time("Wed, 02 Dec 2026 07:28:00 GMT", NOW)
    assert on_date == datetime.datetime(2026, 12, 2, 7, 28, tzinfo=datetime.UTC)
    refused = explain(
        messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier", detail="no"), "d"
    )
    assert refused.kind == "rejected" and str(refused).startswith("the CA refuses the name")


# ---------------------------------------------------------------- the watcher renews


def test_the_watcher_has_no_renewal_task_without_acme(nordlicht: Path) -> None:
    collective = nordlicht / "allmende.yaml"
    text = collective.read_text()
    collective.write_text(text[: text.index("acme:")] + text[text.index("backup:") :])
    assert housekeeping(load(nordlicht, {}), {}) == []


@pytest.fixture
def watched(nordlicht: Path, tmp_path: Path) -> tuple[Inventory, dict[str, str]]:
    """The base inventory with its notify channels left out, its own secrets, a CA that does
    not answer on 127.0.0.1, and its own state database."""
    collective = nordlicht / "allmende.yaml"
    text = collective.read_text()
    collective.write_text(text[: text.index("notify:")] + text[text.index("people:") :])
    own_secrets(nordlicht, tmp_path / "age.key")
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key"), "ALLMENDE_STATE": str(tmp_path / "s")}
    directory = f"  directory: https://127.0.0.1:{free_port()}/dir\n"
    return with_acme(nordlicht, directory), env


def only_unreachable_attempt(state: Path, trigger: str) -> None:
    """Assert that the state database at ``state`` holds one attempt, made by ``trigger``:
    wiki's, failed because the CA did not answer."""
    with contextlib.closing(store.open_store(state)) as db:
        [tried] = store.cert_attempts(db)
    assert (tried.certificate, tried.ok) == ("wiki.nordlicht.example", False)
    assert tried.trigger == trigger
    assert tried.detail.startswith("cannot reach the ACME directory https://127.0.0.1:")


def test_the_watchers_task_renews_what_is_due_and_records_it_as_the_watchers(
    watched: tuple[Inventory, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(renew, "PAUSE", 0.01)
    inventory, env = watched
    names = ("git.nordlicht.example", "nordlicht.example", "wiki.nordlicht.example")
    days = (datetime.datetime.now(datetime.UTC) - NOW).days + 80
    files = {f"/etc/haproxy/certs/{n}.pem": (issued((n,), days), 0o600) for n in names}
    del files["/etc/haproxy/certs/wiki.nordlicht.example.pem"]  # lost on the edge: due
    edge = MemoryHost("gateway", files)
    reached: list[str] = []

    def connect(inv: Inventory, host: str, env: Mapping[str, str]) -> Connector:
        reached.append(host)
        return edge

    [task] = housekeeping(inventory, env, Seams(connect=connect))
    assert task.name == "certificates" and task.every == 3600
    asyncio.run(task.run())  # the CA does not answer: the one due fails, the others stay
    assert reached == ["gateway"]
    assert sorted(edge.reads) == sorted(f"/etc/haproxy/certs/{n}.pem" for n in names)
    only_unreachable_attempt(Path(env["ALLMENDE_STATE"]), "watch")
    assert "/etc/haproxy/certs/wiki.nordlicht.example.pem" not in edge.files


def test_the_watcher_trusts_the_private_ca_of_acme_trust(nordlicht: Path, tmp_path: Path) -> None:
    from allmende.inventory.watchspec import Probe
    from allmende.render.watch_plan import plan
    from allmende.watch.probes import tls

    ca = build(("Nordlicht step-ca",), 365, ca=True)
    leaf, key = build(("wiki.nordlicht.example",), 60, ca)
    pem = ca[0].public_bytes(serialization.Encoding.PEM).decode()
    trust = "  trust: |\n" + "".join(f"    {line}\n" for line in pem.splitlines())
    assert plan(with_acme(nordlicht, trust)).trust == pem
    chain = tmp_path / "wiki.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain)

    async def probed(trust: str) -> tuple[str, str]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        probe = Probe(
            "tls/wiki", "tls", "wiki", "gateway", "wiki", 60, 5, 0, "127.0.0.1", port,
            "wiki.nordlicht.example",
        )  # fmt: skip
        async with server:
            outcome = await tls(probe, 14, trust=trust)
        return outcome.state, outcome.detail

    state, detail = asyncio.run(probed(""))
    assert state == "down" and "not valid for wiki.nordlicht.example" in detail
    state, detail = asyncio.run(probed(pem))
    assert state == "up", detail


def test_each_edge_gets_a_renewal_timer_systemd_accepts(nordlicht: Path, tmp_path: Path) -> None:
    from allmende.render import certs
    from tests.unit.test_render_systemd import parse, verify

    files = certs.render(with_acme(nordlicht))
    assert sorted(files) == [
        "gateway/etc/allmende/certs/job.json",
        "gateway/etc/systemd/system/allmende-certs.service",
        "gateway/etc/systemd/system/allmende-certs.timer",
    ]
    timer = parse(files["gateway/etc/systemd/system/allmende-certs.timer"].content.decode())
    assert ("Persistent", "true") in timer["Timer"]
    assert ("OnCalendar", "*-*-* 00,12:00:00") in timer["Timer"]
    service = files["gateway/etc/systemd/system/allmende-certs.service"].content.decode()
    assert " ".join(certs.CERTS_COMMAND) in service
    units = {p: f for p, f in files.items() if "/systemd/" in p}
    verify(units, tmp_path)  # the real systemd-analyze


def test_an_edge_that_renews_gets_debians_acme_installed_when_it_lacks_it() -> None:
    from allmende.connectors.base import Ran
    from allmende.inventory.hostpaths import CERTS_JOB, PROGRAM, WATCH_PLAN
    from allmende.plan.backuptools import install_actions

    ok = Ran(0, b"", b"")
    has = {("python3", "--version"): ok, ("apt-get", "--version"): ok}
    edge = MemoryHost("gateway", programs=has)
    [action] = asyncio.run(install_actions(edge, {PROGRAM: 1, CERTS_JOB: 1}))
    assert action.reason == "certificates need python3-acme, python3-dnspython"
    assert action.commands[-1][-2:] == ("python3-acme", "python3-dnspython")
    [both] = asyncio.run(install_actions(edge, {PROGRAM: 1, CERTS_JOB: 1, WATCH_PLAN: 1}))
    assert both.reason.startswith("certificates and the watcher need python3-acme, ")
    [watcher] = asyncio.run(install_actions(edge, {PROGRAM: 1, WATCH_PLAN: 1}))
    assert watcher.reason.startswith("the watcher needs python3-aiohttp, ")


# ---------------------------------------------------------------- the edge host's own timer


@pytest.fixture
def edge_root(watched: tuple[Inventory, dict[str, str]], tmp_path: Path) -> Path:
    """A directory standing in for the edge ``gateway``'s ``/``, with the job apply writes
    there, an account key, and every certificate but wiki's in place, 80 days left."""
    from allmende.inventory.hostpaths import ACME_ACCOUNT_KEY, CERTS_JOB
    from allmende.operations.certs.client import new_account_key

    inventory, _ = watched
    root = tmp_path / "gateway"
    job = certificates.job(inventory, "gateway")
    assert job is not None
    for path, content in {
        CERTS_JOB: job.to_json().encode(),
        ACME_ACCOUNT_KEY: new_account_key(),
    }.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(content)
    days = (datetime.datetime.now(datetime.UTC) - NOW).days + 80
    for cert in job.certificates:
        if not cert.name.startswith("wiki."):
            pem = root / cert.pem.lstrip("/")
            pem.parent.mkdir(parents=True, exist_ok=True)
            pem.write_bytes(issued((cert.name,), days))
    return root


def test_the_edges_timer_renews_what_is_due_and_records_it_on_the_host(
    edge_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from allmende.actions import certshost

    monkeypatch.setattr(renew, "PAUSE", 0.01)
    said: list[str] = []
    env = {"ALLMENDE_HOST_ROOT": str(edge_root), "ALLMENDE_NOTIFY_TIMEOUT": "5"}
    went = {r.certificate: r.outcome for r in certshost.job(env, said.append)}
    assert went == {
        "git.nordlicht.example": "current",
        "nordlicht.example": "current",
        "wiki.nordlicht.example": "failed",
    }
    assert any(line.startswith("wiki.nordlicht.example: obtaining over") for line in said)
    state = edge_root / "var/lib/allmende/state.sqlite"  # the host's own state database
    only_unreachable_attempt(state, "timer")
    assert not (edge_root / "etc/haproxy/certs/wiki.nordlicht.example.pem").exists()
    # Run again at once: the failed one waits instead of asking the CA again.
    again = {r.certificate: r.outcome for r in certshost.job(env, said.append)}
    assert again["wiki.nordlicht.example"] == "waiting"


def test_the_edges_timer_says_what_is_missing_on_the_host(edge_root: Path) -> None:
    from allmende.actions import certshost
    from allmende.errors import UserError
    from allmende.inventory.hostpaths import ACME_ACCOUNT_KEY, CERTS_JOB

    env = {"ALLMENDE_HOST_ROOT": str(edge_root)}
    key = edge_root / ACME_ACCOUNT_KEY.lstrip("/")
    key.unlink()
    with pytest.raises(
        UserError, match=r"no ACME account key on this host .*`allmende certs renew`"
    ):
        certshost.job(env, print)
    job = edge_root / CERTS_JOB.lstrip("/")
    job.write_text('{"version": 1, "collective": "nordlicht"}')
    with pytest.raises(UserError, match=r"cannot read the certificate job .*job\.json: incomplete"):
        certshost.job(env, print)
    job.unlink()
    with pytest.raises(UserError, match=r"no certificate job on this host .*`acme:` in allmende"):
        certshost.job(env, print)


def test_the_edge_reads_the_tsig_keys_of_its_zone_updates(nordlicht: Path, tmp_path: Path) -> None:
    from allmende.actions.certshost import read_job
    from allmende.inventory.hostpaths import ACME_ACCOUNT_KEY, CERTS_JOB, tsig_key

    inventory = with_acme(
        nordlicht,
        "  wildcards: ['*.nordlicht.example']\n  challenges: {nordlicht.example: dns-01}\n",
        zone_update=True,
    )
    job = certificates.job(inventory, "gateway")
    assert job is not None
    root = tmp_path / "gateway"
    files = {CERTS_JOB: job.to_json().encode(), ACME_ACCOUNT_KEY: b"account key\n"}
    for path, content in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(content)
    assert read_job(str(root)) == (job, b"account key\n", {})  # apply has not put the key yet
    key = root / tsig_key("nordlicht.example").lstrip("/")
    key.parent.mkdir(parents=True)
    key.write_bytes(b'key acme-update { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    assert read_job(str(root))[2] == {"nordlicht.example": key.read_bytes()}
