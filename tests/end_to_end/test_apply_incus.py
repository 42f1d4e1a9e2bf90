"""`allmende apply` of an art school shaped inventory to a real Incus, on loopback.

The machine is the Incus host ``box`` (local, its files under a temp root standing in for
``/``), with the session's pool, a bridge on a free subnet and a profile of its own. On it:

* ``<tag>-edge``: a Debian container that is a host itself, made by box, HAProxy installed in
  it by its ``packages`` from the Debian mirror; the edge's HTTP port of 127.0.0.1 is passed to
  it; allmende reaches it with ``incus exec`` and starts HAProxy under its systemd;
* ``<tag>-db``: PostgreSQL in a Debian container (installed and enabled by allmende), its data
  in a volume on the host;
* ``<tag>-site``: a busybox container whose ``httpd`` serves a volume of the host;
* ``<tag>-notes``: a Debian container whose setup steps write a page with its environment and
  a systemd unit serving it, and which reads a secret.

The routes are answered through HAProxy on 127.0.0.1, which reaches the services by name on
the bridge. The tests run in order, each on what the one before left: the first two applies
(box makes the edge container; the edge's HAProxy follows), a third that changes nothing, a
change of limits and a new published port applied in place, a rollback to the snapshot taken
before that change, a new image (the instance made anew), the same host planned and changed
over SSH, a service that leaves (its instance deleted), a change Incus refuses, and the
database container's PostgreSQL dumped into a real Borg repository and its rows restored.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.end_to_end.incus import Incus
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.actions import backup, backupinit
from allmende.actions.apply import Outcome, plan_and_apply
from allmende.actions.rollback import rollback, snapshots
from allmende.errors import ApplyFailed
from allmende.inventory.secrets import SecretStore, create_key
from allmende.plan.changes import Action, Plan

NOTES_UNIT = (
    "printf '[Service]\\nExecStart=/usr/bin/python3 -m http.server 8000 --bind 0.0.0.0 "
    "--directory /srv/notes\\n[Install]\\nWantedBy=multi-user.target\\n' "
    "> /etc/systemd/system/notes.service"
)


@dataclass
class School:
    incus: Incus
    inventory: Path
    root: Path
    env: dict[str, str]
    http: int
    tag: str

    def name(self, short: str) -> str:
        return f"{self.tag}-{short}"

    def apply(self) -> tuple[Plan, Outcome]:
        shown: list[Plan] = []
        outcome = plan_and_apply(
            self.inventory, self.env, show=shown.append, confirm=lambda plan: True
        )
        return shown[0], outcome

    def get(self, domain: str, port: int | None = None) -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port or self.http}/", headers={"Host": domain}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as answer:
            body: str = answer.read().decode()
            return body

    def service(self, short: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(
            (self.inventory / "services" / f"{self.name(short)}.yaml").read_text()
        )
        return loaded

    def write_service(self, short: str, data: dict[str, Any]) -> None:
        path = self.inventory / "services" / f"{self.name(short)}.yaml"
        path.write_text(yaml.safe_dump(data))

    def instance(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.incus.query(f"/1.0/instances/{name}")
        return found

    def pid(self, name: str) -> int:
        return int(self.incus.query(f"/1.0/instances/{name}/state")["pid"])


def _write(root: Path, tag: str, incus: Incus, http: int) -> None:
    def put(path: str, data: dict[str, Any]) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))

    edge = f"{tag}-edge"
    put(
        "allmende.yaml",
        {"name": "school", "edge": {"hosts": [edge], "http_port": http, "https_port": free_port()}},
    )
    put(
        "hosts/box.yaml",
        {
            "description": "The old machine in the studio",
            "engine": "incus",
            "incus": {
                "pool": incus.pool,
                "network": incus.network,
                "subnet": incus.subnet,
                "profile": f"{tag}-allmende",
                "snapshots": {"schedule": "daily", "expiry": "1w"},
            },
        },
    )
    put(
        f"hosts/{edge}.yaml",
        {
            "description": "The HAProxy container",
            "kind": "container",
            "parent": "box",
            "engine": "systemd",
            "system": {"image": incus.debian, "packages": ["haproxy"]},
        },
    )
    put(
        f"services/{tag}-db.yaml",
        {
            "description": "PostgreSQL for the school",
            "host": "box",
            "components": {
                "server": {
                    "system": {
                        "image": incus.debian,
                        "packages": ["postgresql"],
                        "services": ["postgresql"],
                    },
                    "ports": {"pg": 5432},
                    "volumes": {"data": "/var/lib/postgresql"},
                }
            },
            "provides": {"database": "postgres", "databases": ["notes"]},
            "backup": {"consistency": "none"},
            "allow": [{"rule": "backups.required", "reason": "a school made for the tests"}],
            "monitor": [],
        },
    )
    put(
        f"services/{tag}-site.yaml",
        {
            "description": "The school's website",
            "host": "box",
            "components": {
                "web": {
                    "system": {"image": incus.busybox},
                    "ports": {"http": 80},
                    "volumes": {"www": "/www"},
                }
            },
            "routes": [{"domain": "site.test", "to": "web.http", "tls": "none"}],
            "backup": {"consistency": "none"},
            "allow": [{"rule": "backups.required", "reason": "a school made for the tests"}],
        },
    )
    put(
        f"services/{tag}-notes.yaml",
        {
            "description": "Shared notes",
            "host": "box",
            "components": {
                "app": {
                    "system": {
                        "image": incus.debian,
                        "setup": [
                            'mkdir -p /srv/notes && echo "notes say $NOTES_GREETING" '
                            "> /srv/notes/index.html",
                            NOTES_UNIT,
                        ],
                        "services": ["notes"],
                    },
                    "env": {"NOTES_GREETING": "hello"},
                    "secrets": {"NOTES_TOKEN": "notes/token"},
                    "ports": {"http": 8000},
                }
            },
            # the role is made by hand in these tests: allmende provisions databases only
            # where its engine can run commands in the containers
            "uses": [{"database": f"{tag}-db/notes", "provision": False}],
            "routes": [{"domain": "notes.test", "to": "app.http", "tls": "none"}],
        },
    )


@pytest.fixture(scope="module")
def school(incus_world: Incus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    directory = tmp_path_factory.mktemp("school")
    inventory, root = directory / "inventory", directory / "root"
    http = free_port()
    _write(inventory, incus_world.tag, incus_world, http)
    key_env = {"ALLMENDE_AGE_KEY": str(directory / "age.key")}
    create_key(inventory, key_env)
    SecretStore(inventory, key_env).set("notes/token", b"value of notes/token")
    page = root / "srv" / f"{incus_world.tag}-site" / "www" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("the art school\n")
    env = {
        "ALLMENDE_HOST_ROOT": str(root),
        "ALLMENDE_STATE": str(directory / "state.sqlite"),
        "ALLMENDE_AGE_KEY": str(directory / "age.key"),
        "ALLMENDE_VERIFY_TIMEOUT": "90",
        "USER": "tester",
    }
    yield School(incus_world, inventory, root, env, http, incus_world.tag)


def doing(plan: Plan) -> list[Action]:
    """Return the plan's actions but its notes (which do nothing)."""
    return [a for a in plan.actions if a.verb != "note"]


def test_the_school_comes_up_and_answers_through_its_haproxy_container(school: School) -> None:
    edge = school.name("edge")
    plan, outcome = school.apply()
    # The edge container does not exist before box's apply makes it.
    assert "apply box first" in plan.failed[edge]
    shown = {(a.verb, a.subject): a.reason for a in plan.actions}
    assert shown[("prepare", "incus")] == "set up its storage pool, bridge and profile"
    assert shown[("prepare", edge)].startswith(f"create {edge}: install haproxy")
    assert shown[("up", school.name("db"))].startswith(
        f"create {school.name('db-server')}: install postgresql, enable postgresql"
    )
    # Its roles are made by hand: allmende says it provisions nothing in Incus containers.
    assert shown[("note", school.name("db"))] == (
        "its databases are not provisioned: engine incus cannot run commands in its containers yet"
    )
    ups = [a.subject for a in plan.actions if a.verb == "up"]
    assert ups.index(school.name("db")) < ups.index(school.name("notes"))  # provider first
    assert outcome.results["box"].ok, outcome.results["box"].error

    plan, outcome = school.apply()
    assert not plan.failed and [a.verb for a in doing(plan)] == ["start-proxy"]
    assert outcome.ok, outcome.results
    # HAProxy in the container reaches each service by its name on the bridge.
    assert school.get("site.test") == "the art school\n"
    assert school.get("notes.test") == "notes say hello\n"
    haproxy = school.incus.inside(edge, "systemctl is-active haproxy")
    assert haproxy.strip() == "active"

    notes = school.name("notes-app")
    token = school.incus.inside(notes, 'cat "$NOTES_TOKEN_FILE"')
    assert token == "value of notes/token"
    db = school.name("db-server")
    assert school.incus.inside(db, "su postgres -c \"psql -Atc 'select 1'\"").strip() == "1"
    assert (school.root / "srv" / school.name("db") / "data" / "15" / "main").is_dir()
    config = school.instance(notes)["config"]
    assert config["snapshots.schedule"] == "@daily" and config["snapshots.expiry"] == "1w"
    assert json.loads(config["user.allmende.services"]) == ["notes"]


def test_a_second_apply_changes_nothing(school: School) -> None:
    pids = {n: school.pid(school.name(n)) for n in ("site-web", "notes-app", "db-server")}
    plan, outcome = school.apply()
    assert plan.empty, [a.shown() for a in plan.actions]
    assert outcome.status == "nothing to do"
    assert {n: school.pid(school.name(n)) for n in pids} == pids


def test_limits_and_a_new_published_port_are_applied_in_place(school: School) -> None:
    web = school.name("site-web")
    school.incus.inside(web, "echo before > /root/mark")
    pid = school.pid(web)
    published = free_port()
    site = school.service("site")
    site["components"]["web"]["resources"] = {"memory": "256MiB"}
    site["components"]["web"]["publish"] = {"http": published}
    school.write_service("site", site)

    plan, outcome = school.apply()
    (action,) = doing(plan)
    assert action.reason == (f"change {web} in place: limits.memory set, device publish-http added")
    assert action.commands[0][:3] == ("sh", "-c", action.commands[0][2])
    assert "snapshot create" in action.commands[0][2]
    assert outcome.ok, outcome.results
    assert school.pid(web) == pid  # not restarted
    assert school.instance(web)["config"]["limits.memory"] == "256MiB"
    assert school.get("site.test", published) == "the art school\n"
    taken = [s.name for s in snapshots(school.inventory, school.env, school.name("site"))]
    assert any(name.startswith("before-apply-") for name in taken)


def test_a_rollback_brings_back_a_file_changed_after_the_snapshot(school: School) -> None:
    web = school.name("site-web")
    school.incus.inside(web, "echo after > /root/mark")
    found = snapshots(school.inventory, school.env, school.name("site"))
    before = next(s.name for s in found if s.name.startswith("before-apply-"))
    asked: list[dict[str, str]] = []
    rolled = rollback(
        school.inventory,
        school.env,
        school.name("site"),
        before,
        lambda host, chosen: asked.append(dict(chosen)) or True,
    )
    assert rolled is not None and asked == [{"web": before}]
    assert school.incus.inside(web, "cat /root/mark") == "before\n"
    # The snapshot holds the configuration as it was too; the rollback kept the moment before.
    assert "limits.memory" not in school.instance(web)["config"]
    names = [s.name for s in snapshots(school.inventory, school.env, school.name("site"))]
    assert rolled.kept in names
    # The inventory still wants the change: the next apply makes it again, in place.
    plan, outcome = school.apply()
    assert [a.verb for a in doing(plan)] == ["up"] and outcome.ok, outcome.results


def test_a_new_image_makes_the_instance_anew_with_its_data_kept(school: School) -> None:
    web = school.name("site-web")
    fingerprint = school.incus.query(f"/1.0/images/aliases/{school.incus.busybox}")["target"]
    school.incus.run("image", "alias", "create", f"{school.incus.busybox}-next", fingerprint)
    pid = school.pid(web)
    site = school.service("site")
    site["components"]["web"]["system"]["image"] = f"{school.incus.busybox}-next"
    school.write_service("site", site)

    plan, outcome = school.apply()
    (action,) = doing(plan)
    assert action.reason.startswith(f"make {web} anew: its image changes")
    assert outcome.ok, outcome.results
    assert school.pid(web) != pid
    kept = school.instance(f"{web}-previous")
    assert kept["status"] == "Stopped" and kept["config"]["boot.autostart"] == "false"
    assert school.incus.inside(web, "cat /root/mark 2>/dev/null || echo gone") == "gone\n"
    assert school.get("site.test") == "the art school\n"  # its volume, kept
    plan, _ = school.apply()
    assert plan.empty, [a.shown() for a in plan.actions]


def test_the_school_is_planned_and_changed_over_ssh_alike(
    school: School, remote_host: RemoteHost
) -> None:
    # The same machine, reached over SSH (as a remote Incus host is): the same files, the same
    # instances, so nothing to do; then a change applied through SSH.
    box = yaml.safe_load((school.inventory / "hosts" / "box.yaml").read_text())
    box.update({"address": "127.0.0.1", "ssh": {"user": "root", "port": remote_host.port}})
    (school.inventory / "hosts" / "box.yaml").write_text(yaml.safe_dump(box))
    local = dict(school.env)
    school.env.pop("ALLMENDE_HOST_ROOT")
    school.env.update({"ALLMENDE_REMOTE_ROOT": str(school.root), **remote_host.connector_env})
    try:
        plan, _ = school.apply()
        assert plan.empty and not plan.failed, [a.shown() for a in plan.actions]
        web = school.name("site-web")
        site = school.service("site")
        site["components"]["web"]["resources"] = {"memory": "320MiB"}
        school.write_service("site", site)
        plan, outcome = school.apply()
        assert [a.reason for a in doing(plan)] == [
            f"change {web} in place: limits.memory 256MiB -> 320MiB"
        ]
        assert outcome.ok, outcome.results
        assert school.instance(web)["config"]["limits.memory"] == "320MiB"
    finally:
        del box["address"], box["ssh"]
        (school.inventory / "hosts" / "box.yaml").write_text(yaml.safe_dump(box))
        school.env.clear()
        school.env.update(local)


def test_a_service_that_leaves_the_inventory_is_deleted(school: School) -> None:
    notes = school.name("notes")
    (school.inventory / "services" / f"{notes}.yaml").unlink()
    plan, outcome = school.apply()
    assert sorted((a.host, a.verb, a.subject, a.reason) for a in doing(plan)) == [
        ("box", "down", notes, "removed from the inventory"),
        (school.name("edge"), "reload-proxy", "haproxy", "its configuration changes"),
    ]
    assert outcome.ok, outcome.results
    assert not school.incus.exists(f"{notes}-app")
    assert school.get("site.test") == "the art school\n"


def test_a_change_incus_refuses_leaves_the_instance_untouched_and_says_why(
    school: School,
) -> None:
    web = school.name("site-web")
    before = school.instance(web)
    pid = school.pid(web)
    site = school.service("site")
    old_port = site["components"]["web"]["publish"]["http"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        site["components"]["web"]["publish"] = {"http": busy}
        site["components"]["web"]["resources"] = {"memory": "384MiB"}
        school.write_service("site", site)
        _, outcome = school.apply()
    error = outcome.results["box"].error
    assert isinstance(error, ApplyFailed) and error.rolled_back and not error.problems
    assert f"incus query -X PUT --wait /1.0/instances/{web}" in str(error)
    assert 'Failed to start device "publish-http"' in str(error)
    after = school.instance(web)
    assert after["config"]["limits.memory"] == before["config"]["limits.memory"] == "320MiB"
    assert after["devices"] == before["devices"]
    assert school.pid(web) == pid and after["status"] == "Running"
    assert school.get("site.test", old_port) == "the art school\n"
    assert school.get("site.test") == "the art school\n"


def test_the_database_container_is_dumped_and_its_rows_come_back(school: School) -> None:
    db, server = school.name("db"), school.name("db-server")

    def sql(statement: str, database: str = "notes") -> str:
        command = f'runuser -u postgres -- psql -Atq -d {database} -c "{statement}"'
        return school.incus.inside(server, command).strip()

    sql("create database notes", "postgres")
    sql("create table pads (id int primary key, body text)")
    sql("insert into pads select n, 'pad ' || n from generate_series(1, 500) as n")
    collective = yaml.safe_load((school.inventory / "allmende.yaml").read_text())
    repositories = school.root.parent / "repos"
    collective["backup"] = {"repository": f"{repositories}/{{service}}"}
    (school.inventory / "allmende.yaml").write_text(yaml.safe_dump(collective))
    provider = school.service("db")
    provider["backup"] = {"consistency": "dump"}
    school.write_service("db", provider)
    context = backup.prepare(school.inventory, school.env, [db])
    for made in backupinit.init(context, lambda _: None):
        assert not made.error, made.error

    [outcome] = backup.run(context, lambda _: None)
    assert outcome.ok, outcome.message
    assert outcome.value.rows == {"notes": {"public.pads": 500}}
    sql("drop table pads")
    done = backup.restore_service(context, db, lambda _: None, in_place=True)
    assert done.databases == ["notes"]
    assert sql("select count(*), max(body) from pads") == "500|pad 99"
