"""Apply across hosts: backends before the edge that routes to them, what left only after it,
one group standing or falling together, holds for hosts that cannot be read.

Nordlicht's inventory on in-memory hosts that play docker compose and an HAProxy master (the
real programs are driven by the end-to-end tests): every command any host runs goes into one
log, in the order the hosts ran them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from allmende import onhost
from allmende.actions.apply import Outcome, plan_and_apply
from allmende.actions.plan import Seams
from allmende.connectors.base import Connector, Ran
from allmende.errors import ApplyFailed
from allmende.inventory.load import load
from allmende.plan.changes import Plan
from allmende.plan.hold import backends_differ, sections
from allmende.plan.order import dependencies, groups, levels
from tests.conftest import BASE, own_secrets
from tests.memory import MemoryHost

#: Every command run, as (host, command), in order.
Log = list[tuple[str, tuple[str, ...]]]


class Host(MemoryHost):
    """A host of the fleet: docker compose whose projects run healthy once up (unless the
    service is in ``broken``), and an HAProxy master when ``proxy``."""

    def __init__(self, name: str, log: Log, proxy: bool = False) -> None:
        super().__init__(name)
        self.log = log
        self.up: set[str] = set()
        self.broken: set[str] = set()
        self.reloads = 0
        self.proxy = proxy
        #: Where each server (backend/server) of the running HAProxy sends, set at run time.
        self.servers: dict[str, tuple[str, int]] = {}
        #: Servers set in maintenance (True) or ready (False) at run time, until a reload.
        self.paused: dict[str, bool] = {}
        self.answer(["docker", "compose", "version"], Ran(0, b"v2", b""))
        self.answer(["docker", "compose"], self.compose)
        self.answer(["docker", "ps"], self.ps)
        self.answer(["docker", "image"], Ran(0, b"sha256:1", b""))
        self.answer(["test", "-d"], Ran(1, b"", b""))
        self.answer(["haproxy", "-c"], Ran(0, b"Configuration file is valid\n", b""))
        self.answer(["python3"], self.python)
        self.answer(["haproxy", "-W"], self.start)
        self.answer(["openssl"], Ran(0, b"", b""))

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        self.log.append((self.host, tuple(argv)))
        return await super()._spawn(argv, input, timeout, env)

    def compose(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        project = command[command.index("-p") + 1]
        if "up" in command:
            if project in self.broken:
                return Ran(1, b"", f"Error: {project} does not start".encode())
            self.up.add(project)
        elif "down" in command:
            self.up.discard(project)
        return Ran(0, b"", b"")

    def ps(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        rows = [
            {
                "Labels": {"org.allmende.service": s, "org.allmende.component": c},
                "State": "running",
                "Status": "Up 3 seconds (healthy)",
                "Names": [f"{s}_{c}_1"],
                # the host picks the ports of a version beside
                "Ports": [
                    {"host_ip": "192.0.2.10", "container_port": p, "host_port": 40000 + p}
                    for p in (22, 80, 443, 3000)
                ]
                if s.endswith("-allmende-next")
                else [],
            }
            for s in sorted(self.up)
            for c in ("app", "server", "web")
        ]
        return Ran(0, json.dumps(rows).encode(), b"")

    def start(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        self.proxy = True
        self.servers = dict(self.configured)
        return Ran(0, b"", b"")

    @property
    def configured(self) -> dict[str, tuple[str, int]]:
        """The servers as the configuration file has them."""
        text = self.files.get("/etc/haproxy/haproxy.cfg", (b"", 0))[0].decode()
        found, backend = {}, ""
        for line in text.splitlines():
            if line.startswith("backend "):
                backend = line.split()[1]
            elif line.strip().startswith("server ") and backend:
                name, address = line.split()[1:3]
                host, _, port = address.rpartition(":")
                if port.isdigit():
                    found[f"{backend}/{name}"] = (host, int(port))
        return found

    def python(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        said = command[-1]
        if len(command) > 3 and command[3] == onhost.source("tcp_wait"):
            return Ran(0, b"", b"")
        if not self.proxy:
            return Ran(3, b"", b"nothing listens")
        if said.startswith("@1 show servers state "):
            backend = said.split()[-1]
            rows = "".join(
                f"3 {backend} 1 {name.split('/')[1]} {addr} 2 0 1 1 5 6 3 4 6 0 0 0 - {port} "
                "- 0 0 - - 0\n"
                "- 0 0 - - 0\n"
                for name, (addr, port) in self.servers.items()
                if name.startswith(backend + "/")
            )
            return Ran(0, f"1\n{STATE_COLUMNS}\n{rows}\n".encode(), b"")
        if said.startswith("@1 set server ") and said.split()[4] == "state":
            words = said.split()
            self.paused[words[3]] = words[5] == "maint"
            return Ran(0, b"", b"")
        if said.startswith("@1 set server "):
            words = said.split()
            self.servers[words[3]] = (words[5], int(words[7]))
            return Ran(0, b"IP changed from '1' to '2', port changed from '3' to '4'\n", b"")
        if said == "reload":
            self.reloads += 1
            self.servers = dict(self.configured)
            self.paused = {}
            return Ran(0, b"", b"")
        if said == "show proc":
            worker = 100 + self.reloads
            text = (
                "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
                f"1               master          {self.reloads} [failed: 0]   0d00h00m01s  2.6\n"
                "# workers\n"
                f"{worker}             worker          0               0d00h00m01s  2.6\n"
            )
            return Ran(0, text.encode(), b"")
        return Ran(0, b"", b"")


STATE_COLUMNS = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port"
)


class Fleet:
    """Nordlicht's hosts in memory, one log; ``down`` hosts cannot be reached."""

    def __init__(self) -> None:
        self.log: Log = []
        self.hosts = {
            "rack": Host("rack", self.log),
            "gateway": Host("gateway", self.log, proxy=True),
            "build": Host("build", self.log),
        }

    def connect(self, inventory: object, name: str, env: Mapping[str, str]) -> Connector:
        return self.hosts[name]

    def index(self, host: str, *words: str) -> int:
        """Return where in the log ``host`` first ran a command holding all ``words``."""
        for i, (name, command) in enumerate(self.log):
            if name == host and all(w in command for w in words):
                return i
        raise AssertionError(f"{host} never ran {words}")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """Nordlicht without monitors: nothing is probed over the network."""
    root = tmp_path / "inventory"
    shutil.copytree(BASE, root)
    for path in (root / "services").glob("*.yaml"):
        path.write_text(without(path.read_text(), "monitor") + "monitor: []\n")
    own_secrets(root, tmp_path / "age.key")
    return root


def without(text: str, *keys: str) -> str:
    """Return a YAML file's text without the top-level ``keys`` and what is under them."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line[:1] not in (" ", "-", "\n", ""):
            skipping = line.split(":", 1)[0] in keys
        if not skipping:
            kept.append(line)
    return "".join(kept)


def apply(
    root: Path, fleet: Fleet, tmp_path: Path, host: str | None = None
) -> tuple[Plan, Outcome]:
    shown: list[Plan] = []
    outcome = plan_and_apply(
        root,
        {
            "USER": "tester",
            "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
            "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
        },
        show=shown.append,
        confirm=lambda plan: True,
        seams=Seams(connect=fleet.connect),
        host=host,
    )
    return shown[0], outcome


def applied(inventory: Path, tmp_path: Path) -> Fleet:
    """Apply Nordlicht to a new fleet; return the fleet."""
    fleet = Fleet()
    assert apply(inventory, fleet, tmp_path)[1].ok
    return fleet


def edit(inventory: Path, service: str, old: str, new: str) -> None:
    """Change ``old`` to ``new`` in a service's file (``old`` must be there)."""
    path = inventory / "services" / f"{service}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def applied_then_wiki_moved(inventory: Path, tmp_path: Path) -> Fleet:
    """Apply Nordlicht to a new fleet, forget its log, and move wiki's published port."""
    fleet = applied(inventory, tmp_path)
    fleet.log.clear()
    edit(inventory, "wiki", "publish: {http: 8081}", "publish: {http: 8091}")
    return fleet


def applied_start_first(inventory: Path, tmp_path: Path) -> Fleet:
    """Make wiki start-first, apply Nordlicht to a new fleet; return the fleet."""
    wiki = inventory / "services" / "wiki.yaml"
    wiki.write_text(wiki.read_text() + "update: start-first\n")
    fleet = Fleet()
    assert apply(inventory, fleet, tmp_path)[1].ok
    return fleet


def wiki_fails_once(rack: Host) -> None:
    """Make the first `up` of the project ``wiki`` itself on ``rack`` fail (a copy beside it,
    ``wiki-allmende-next``, starts)."""
    calls = {"n": 0}

    def flaky(command: tuple[str, ...], input: bytes | None) -> Ran:
        if "-p" in command and command[command.index("-p") + 1] == "wiki" and "up" in command:
            calls["n"] += 1
            if calls["n"] == 1:
                return Ran(1, b"", b"Error: wiki does not start")
        return Host.compose(rack, command, input)

    rack.answer(["docker", "compose", "-p"], flaky)


def test_dependencies_put_backends_before_the_edge_and_join_them_in_one_group(
    inventory: Path,
) -> None:
    model = load(inventory, {})
    depends = dependencies(model)
    # the edge routes to wiki and git on rack (pages runs on the edge itself); build is a
    # vm on rack
    assert depends["gateway"] == {"rack"}
    assert depends["build"] == {"rack"}
    assert depends["rack"] == frozenset()
    assert levels(["gateway", "rack", "build"], depends) == [["rack"], ["build", "gateway"]]
    assert groups(["gateway", "rack", "build"], depends) == [["build", "gateway", "rack"]]
    assert groups(["gateway", "build"], depends) == [["build"], ["gateway"]]


def test_levels_meet_a_cycle_together() -> None:
    assert levels(["a", "b", "c"], {"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"], ["c"]]


def test_the_first_apply_brings_the_backends_up_before_the_edge_starts(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = Fleet()
    fleet.hosts["gateway"].proxy = False  # no HAProxy yet: apply starts it
    _plan, outcome = apply(inventory, fleet, tmp_path)
    assert outcome.ok, outcome.results
    started = fleet.index("gateway", "haproxy", "-W")
    for service in ("database", "git", "wiki"):
        assert fleet.index("rack", "-p", service, "up") < started, service


def test_a_backend_that_fails_leaves_the_edge_unchanged_and_says_the_first_error(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_then_wiki_moved(inventory, tmp_path)
    fleet.hosts["rack"].broken.add("wiki")
    gateway_files = dict(fleet.hosts["gateway"].files)
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert {c.host for c in plan.changes} == {"rack", "gateway"}
    rack, gateway = outcome.results["rack"].error, outcome.results["gateway"].error
    assert isinstance(rack, ApplyFailed) and rack.rolled_back
    assert "wiki does not start" in str(rack.cause)
    # the edge never reloaded onto the port nobody serves, and has its files as before
    assert isinstance(gateway, ApplyFailed) and not gateway.rolled_back
    assert (
        str(gateway.cause) == "gateway: not applied: it goes together with rack, whose apply failed"
    )
    assert fleet.hosts["gateway"].reloads == 1  # the first apply's
    assert fleet.hosts["gateway"].files == gateway_files
    # the rollback brought wiki up again on its previous files
    assert b"8081" in fleet.hosts["rack"].files["/srv/wiki/compose.yaml"][0]


def test_an_unreachable_backend_holds_back_the_edge_change_that_depends_on_it(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied(inventory, tmp_path)
    before = fleet.hosts["gateway"].files["/etc/haproxy/haproxy.cfg"]
    fleet.log.clear()
    edit(inventory, "wiki", "publish: {http: 8081}", "publish: {http: 8091}")
    edit(inventory, "pages", "description:", "description: Now")
    fleet.hosts["rack"].down = True
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert "rack" in plan.failed
    [held] = plan.held
    assert held.host == "gateway" and held.what == "HAProxy: /etc/haproxy/haproxy.cfg"
    assert "changes how the edge reaches services on rack, which could not be read" in (held.reason)
    assert fleet.hosts["gateway"].files["/etc/haproxy/haproxy.cfg"] == before
    assert fleet.hosts["gateway"].reloads == 1
    assert not outcome.ok  # a host was not planned


def test_an_edge_change_that_does_not_touch_the_unreachable_host_goes_ahead(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied(inventory, tmp_path)
    edit(inventory, "pages", "publish: {https: 8443}", "publish: {https: 8444}")
    fleet.hosts["rack"].down = True
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert plan.held == ()
    assert outcome.results["gateway"].ok
    assert b"198.51.100.7:8444" in fleet.hosts["gateway"].files["/etc/haproxy/haproxy.cfg"][0]


def test_a_lock_held_on_the_edge_leaves_the_whole_group_unapplied(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied(inventory, tmp_path)
    holder = json.dumps({"who": "sam", "pid": 1, "since": 4e9, "from": "elsewhere"}).encode()
    fleet.hosts["gateway"].dirs.add("/var/lib/allmende/apply.lock")
    fleet.hosts["gateway"].files["/var/lib/allmende/apply.lock/holder.json"] = (holder, 0o644)
    edit(inventory, "wiki", "publish: {http: 8081}", "publish: {http: 8091}")
    rack_files = dict(fleet.hosts["rack"].files)
    _, outcome = apply(inventory, fleet, tmp_path)
    assert "another apply is running there, held by sam" in str(outcome.results["gateway"].error)
    assert "not applied: it goes together with gateway" in str(outcome.results["rack"].error)
    assert fleet.hosts["rack"].files == rack_files


def test_sections_compare_backends_by_their_lines() -> None:
    old = (
        "global\n    daemon\n\nbackend wiki_app_http from http\n    # a note\n"
        "    server app 1.2.3.4:8081 check\n"
    )
    new = old.replace("8081", "8082")
    assert sections(old)["backend wiki_app_http from http"] == ["server app 1.2.3.4:8081 check"]
    assert backends_differ(old, new, {"wiki_app_http"})
    assert not backends_differ(old, new, {"git_app_http"})
    assert not backends_differ(old, old.replace("# a note", "# another"), {"wiki_app_http"})


def test_a_service_that_may_run_twice_moves_port_with_the_edge_sending_to_a_copy(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_start_first(inventory, tmp_path)
    gateway = fleet.hosts["gateway"]
    assert gateway.servers["wiki_app_http/app"] == ("192.0.2.10", 8081)
    fleet.log.clear()
    edit(inventory, "wiki", "publish: {http: 8081}", "publish: {http: 8091}")
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert outcome.ok, outcome.results
    [replace] = [a for a in plan.actions if a.subject == "wiki"]
    assert replace.verb == "replace"
    beside = fleet.index("rack", "-p", "wiki-allmende-next", "up")
    to_copy = fleet.index("gateway", "@1 set server wiki_app_http/app addr 192.0.2.10 port 40080")
    recreate = fleet.index("rack", "-p", "wiki", "--force-recreate")
    back = fleet.index("gateway", "@1 set server wiki_app_http/app addr 192.0.2.10 port 8091")
    reload = fleet.index("gateway", "reload")
    retired = fleet.index("rack", "-p", "wiki-allmende-next", "down")
    assert beside < to_copy < recreate < back < reload < retired
    assert gateway.servers["wiki_app_http/app"] == ("192.0.2.10", 8091)
    rack = fleet.hosts["rack"]
    assert rack.up >= {"wiki"} and "wiki-allmende-next" not in rack.up
    assert "/srv/wiki/.allmende-next.compose.yaml" not in rack.files


def test_a_copy_whose_original_fails_is_taken_away_and_the_edge_pointed_back(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_start_first(inventory, tmp_path)
    edit(inventory, "wiki", "MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Polar")
    rack, gateway = fleet.hosts["rack"], fleet.hosts["gateway"]
    wiki_fails_once(rack)
    _, outcome = apply(inventory, fleet, tmp_path)
    error = outcome.results["rack"].error
    assert isinstance(error, ApplyFailed) and error.rolled_back and not error.problems, error
    assert "wiki does not start" in str(error.cause)
    assert gateway.servers["wiki_app_http/app"] == ("192.0.2.10", 8081)
    assert "wiki-allmende-next" not in rack.up and "wiki" in rack.up
    assert b"Nordlicht" in rack.files["/srv/wiki/compose.yaml"][0]


def test_a_port_move_reloads_the_edge_once_the_backend_is_up_in_maintenance_meanwhile(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_then_wiki_moved(inventory, tmp_path)
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert outcome.ok, outcome.results
    [up] = [a for a in plan.actions if a.subject == "wiki"]
    assert up.verb == "up" and "stop-first" in up.reason
    paused = fleet.index("gateway", "@1 set server wiki_app_http/app state maint")
    recreate = fleet.index("rack", "-p", "wiki", "--force-recreate")
    moved = fleet.index("gateway", "@1 set server wiki_app_http/app addr 192.0.2.10 port 8091")
    ready = fleet.index("gateway", "@1 set server wiki_app_http/app state ready")
    reload = fleet.index("gateway", "reload")
    assert paused < recreate < moved < ready < reload
    assert fleet.hosts["gateway"].paused == {}
    assert b"192.0.2.10:8091" in fleet.hosts["gateway"].files["/etc/haproxy/haproxy.cfg"][0]


def test_a_service_in_maintenance_whose_new_version_fails_is_made_ready_on_its_old_port(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied(inventory, tmp_path)
    edit(inventory, "wiki", "MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Polar")
    rack, gateway = fleet.hosts["rack"], fleet.hosts["gateway"]
    wiki_fails_once(rack)
    _, outcome = apply(inventory, fleet, tmp_path)
    error = outcome.results["rack"].error
    assert isinstance(error, ApplyFailed) and error.rolled_back and not error.problems, error
    assert gateway.paused == {"wiki_app_http/app": False}
    assert gateway.servers["wiki_app_http/app"] == ("192.0.2.10", 8081)
    assert "wiki" in rack.up


def test_a_backend_applied_alone_moves_the_edge_servers_at_run_time_and_leaves_its_files(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_then_wiki_moved(inventory, tmp_path)
    gateway = fleet.hosts["gateway"]
    files = dict(gateway.files)
    plan, outcome = apply(inventory, fleet, tmp_path, host="rack")
    assert outcome.ok, outcome.results
    assert {c.host for c in plan.changes} == {"rack"}
    # the edge sends to the new port now, its monitors pass through it; its files wait for
    # the edge's own apply
    assert gateway.servers["wiki_app_http/app"] == ("192.0.2.10", 8091)
    assert gateway.paused == {"wiki_app_http/app": False}
    assert gateway.files == files


def test_a_backend_applied_alone_goes_ahead_when_its_edge_cannot_be_reached(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_then_wiki_moved(inventory, tmp_path)
    fleet.hosts["gateway"].down = True
    _plan, outcome = apply(inventory, fleet, tmp_path, host="rack")
    assert outcome.ok, outcome.results
    assert b"8091" in fleet.hosts["rack"].files["/srv/wiki/compose.yaml"][0]


def test_a_start_first_service_whose_edge_cannot_be_read_is_replaced_stop_first(
    inventory: Path, tmp_path: Path
) -> None:
    fleet = applied_start_first(inventory, tmp_path)
    fleet.log.clear()
    edit(inventory, "wiki", "MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Nordlicht2")
    fleet.hosts["gateway"].down = True
    plan, outcome = apply(inventory, fleet, tmp_path, host="rack")
    [up] = [a for a in plan.actions if a.subject == "wiki"]
    assert up.verb == "up"
    assert "stop-first: its edge gateway is not part of this plan" in up.reason
    assert outcome.results["rack"].ok
    with pytest.raises(AssertionError):  # no copy was started beside it
        fleet.index("rack", "-p", "wiki-allmende-next", "up")


def test_a_service_whose_database_host_cannot_be_read_is_held_back(
    inventory: Path, tmp_path: Path
) -> None:
    edit(inventory, "database", "host: rack", "host: build")
    fleet = applied(inventory, tmp_path)
    wiki_compose = fleet.hosts["rack"].files["/srv/wiki/compose.yaml"]
    edit(inventory, "wiki", "MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Nordlicht2")
    edit(inventory, "pages", "publish: {https: 8443}", "publish: {https: 8444}")
    fleet.hosts["build"].down = True
    plan, outcome = apply(inventory, fleet, tmp_path)
    assert [(h.host, h.what) for h in plan.held] == [("rack", "wiki")]
    assert plan.held[0].reason.startswith("it uses a database on build, which could not be read")
    assert fleet.hosts["rack"].files["/srv/wiki/compose.yaml"] == wiki_compose
    assert outcome.results["gateway"].ok  # what does not depend on build goes ahead
    assert b"198.51.100.7:8444" in fleet.hosts["gateway"].files["/etc/haproxy/haproxy.cfg"][0]
    assert not outcome.ok  # build was not planned
