"""The Incus engine's judgement: what differs between a definition and what Incus answered,
and the commands (with their undo) that bring one to the other."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from allmende.engines import engine
from allmende.engines.base import Running, Site
from allmende.engines.incus import HOSTS, Incus
from allmende.engines.incus.judge import definitions, judge, kept_name
from allmende.errors import UserError
from allmende.inventory.hostpaths import INCUS_PRESEED, incus_host_file

INCUS = engine("incus")
assert isinstance(INCUS, Incus)
SITE = Site("box", "docker", "/stage")


def body(**config: str) -> dict[str, Any]:
    """A definition as render writes it: a system container with a volume."""
    return {
        "name": "wiki-app",
        "type": "container",
        "source": {"type": "image", "alias": "debian/12"},
        "description": "app: The wiki",
        "profiles": ["allmende"],
        "config": {
            "boot.autostart": "true",
            "user.allmende.service": "wiki",
            "user.allmende.component": "app",
            "user.allmende.image": "debian/12",
            "user.allmende.packages": '["nginx"]',
            "user.allmende.setup": '["nginx -t"]',
            "user.allmende.services": '["nginx"]',
            **config,
        },
        "devices": {
            "volume-data": {"type": "disk", "source": "/srv/wiki/data", "path": "/var/www"}
        },
    }


def found(wanted: dict[str, Any], status: str = "Running", **changes: Any) -> dict[str, Any]:
    """What Incus answers for an instance made from ``wanted`` (at the staged root), with
    Incus's own keys, changed by ``changes``."""
    config = {**wanted["config"], "volatile.uuid": "u-1", "image.os": "debian"}
    devices = {
        n: {**d, "source": "/stage" + d["source"]} if d.get("type") == "disk" else d
        for n, d in wanted["devices"].items()
    }
    answer = {
        "name": wanted["name"],
        "status": status,
        "config": config,
        "devices": devices,
        "profiles": wanted["profiles"],
        "description": wanted["description"],
    }
    answer.update(changes)
    return answer


def words(command: tuple[str, ...]) -> str:
    return " ".join(command)


def test_nothing_differs_nothing_to_do() -> None:
    wanted = body()
    step = judge(wanted, found(wanted), SITE.real).step
    assert step.commands == () and step.what == ""


def test_a_missing_instance_is_created_started_and_provisioned() -> None:
    judged = judge(body(), None, SITE.real)
    commands = [words(c) for c in judged.step.commands]
    assert commands[0] == "mkdir -p /stage/srv/wiki/data"
    posted = json.loads(judged.step.commands[1][-1])
    assert judged.step.commands[1][:6] == (
        "incus",
        "query",
        "-X",
        "POST",
        "--wait",
        "/1.0/instances",
    )
    assert posted["devices"]["volume-data"]["source"] == "/stage/srv/wiki/data"
    # What runs inside is recorded only once it ran.
    assert "user.allmende.packages" not in posted["config"]
    assert posted["config"]["user.allmende.image"] == "debian/12"
    assert commands[2] == "incus start wiki-app"
    assert judged.step.commands[3][:5] == ("incus", "exec", "wiki-app", "--", "sh")  # wait
    assert judged.step.commands[4][-1] == "nginx"  # install
    assert commands[5] == "incus exec wiki-app -- sh -c nginx -t"
    assert judged.step.commands[6][-1] == "nginx"  # enable
    assert commands[7].startswith("incus config set wiki-app user.allmende.packages=")
    assert judged.step.what == "create wiki-app: install nginx, run 1 setup step, enable nginx"
    assert judged.step.undo[0][:3] == ("sh", "-c", judged.step.undo[0][2])
    assert judged.step.undo[0][-1] == "wiki-app"


def test_a_change_is_one_put_keeping_incus_own_keys_and_undone_by_another() -> None:
    wanted = body(**{"limits.memory": "1GiB"})
    have = found(body())
    judged = judge(wanted, have, SITE.real)
    assert judged.step.what == "change wiki-app in place: limits.memory set"
    (put,) = judged.step.commands
    assert put[:6] == ("incus", "query", "-X", "PUT", "--wait", "/1.0/instances/wiki-app")
    sent = json.loads(put[-1])
    assert sent["config"]["limits.memory"] == "1GiB"
    assert sent["config"]["volatile.uuid"] == "u-1" and sent["config"]["image.os"] == "debian"
    (back,) = judged.step.undo
    assert json.loads(back[-1])["config"] == have["config"]


def test_a_changed_device_is_plugged_again_on_undo() -> None:
    wanted = body()
    wanted["devices"]["publish-http"] = {
        "type": "proxy",
        "listen": "tcp:0.0.0.0:81",
        "connect": "tcp:127.0.0.1:80",
    }
    have = found(body())
    have["devices"]["publish-http"] = {
        "type": "proxy",
        "listen": "tcp:0.0.0.0:80",
        "connect": "tcp:127.0.0.1:80",
    }
    judged = judge(wanted, have, SITE.real)
    assert judged.step.what == "change wiki-app in place: device publish-http changed"
    unplugged, plugged = (json.loads(c[-1]) for c in judged.step.undo)
    assert "publish-http" not in unplugged["devices"]
    assert plugged["devices"]["publish-http"]["listen"] == "tcp:0.0.0.0:80"


def test_a_new_environment_restarts_the_instance() -> None:
    judged = judge(body(**{"environment.A": "2"}), found(body(**{"environment.A": "1"})), SITE.real)
    assert judged.step.what == (
        "change wiki-app in place: environment.A 1 -> 2; restart it (its environment changes)"
    )
    assert judged.step.commands[-1] == ("incus", "restart", "wiki-app")


def test_new_packages_setup_steps_and_services_run_and_gone_services_stop() -> None:
    wanted = body(
        **{
            "user.allmende.packages": '["nginx", "curl"]',
            "user.allmende.setup": '["nginx -t", "touch /ok"]',
            "user.allmende.services": '["nginx", "cron"]',
        }
    )
    have = found(body(**{"user.allmende.services": '["nginx", "old"]'}))
    judged = judge(wanted, have, SITE.real)
    assert judged.step.what == (
        "in wiki-app: install curl, run 1 setup step, enable cron, disable old"
    )
    assert judged.changes
    commands = judged.step.commands
    assert commands[1][-1] == "curl" and words(commands[2]).endswith("sh -c touch /ok")
    assert commands[3][-1] == "cron" and commands[4][-1] == "old"
    assert commands[-1][:4] == ("incus", "config", "set", "wiki-app")


def test_a_stopped_instance_is_started() -> None:
    wanted = body()
    judged = judge(wanted, found(wanted, "Stopped"), SITE.real)
    assert judged.step.what == "start wiki-app (it is stopped)"
    assert judged.step.commands == (("incus", "start", "wiki-app"),)
    assert judged.step.undo == (("incus", "stop", "wiki-app"),)
    assert not judged.changes  # no snapshot for a start


def test_an_instance_made_by_hand_is_adopted_without_running_its_setup_again() -> None:
    wanted = body()
    have = found(wanted)
    have["config"] = {"volatile.uuid": "u-1"}
    judged = judge(wanted, have, SITE.real)
    assert judged.step.what.startswith("adopt wiki-app in place: ")
    assert "in wiki-app: install nginx, enable nginx" in judged.step.what
    assert not any("nginx -t" in c for c in judged.step.commands)


def test_a_new_image_makes_the_instance_anew_and_keeps_the_old_aside() -> None:
    wanted = body(**{"user.allmende.image": "debian/13"})
    wanted["source"]["alias"] = "debian/13"
    judged = judge(wanted, found(body()), SITE.real)
    assert judged.step.what == (
        "make wiki-app anew: its image changes (debian/12 -> debian/13); data in volumes is "
        "kept, the old instance is kept stopped as wiki-app-previous"
    )
    commands = [words(c) for c in judged.step.commands]
    assert commands[1:4] == [
        "incus stop wiki-app",
        "incus rename wiki-app wiki-app-previous",
        "incus config set wiki-app-previous boot.autostart=false",
    ]
    assert judged.step.undo[1][-2:] == ("wiki-app", "wiki-app-previous")
    assert kept_name("x" * 63) == "x" * 54 + "-previous"


def test_a_changed_instance_gets_a_snapshot_first() -> None:
    wiki = body(**{"limits.memory": "1GiB"})
    project = yaml.safe_dump({"instances": {"wiki-app": wiki}}).encode()
    running = Running({"app": "running"}, observed={"wiki-app": found(body())})
    step = INCUS.converge(SITE, "wiki", project, running)
    assert step is not None
    snapshot = step.commands[0]
    assert snapshot[:2] == ("sh", "-c") and "incus snapshot create" in snapshot[2]
    assert snapshot[-2:] == ("wiki-app", "before-apply")
    # A new instance has nothing to keep.
    created = INCUS.converge(SITE, "wiki", project, Running())
    assert created is not None and "snapshot" not in created.commands[0][2]


def test_a_component_gone_from_the_service_is_set_aside() -> None:
    wiki = body()
    project = yaml.safe_dump({"instances": {"wiki-app": wiki}}).encode()
    old = found(body(), name="wiki-old")
    old["config"]["user.allmende.component"] = "old"
    running = Running(
        {"app": "running", "old": "running"}, observed={"wiki-app": found(wiki), "wiki-old": old}
    )
    step = INCUS.converge(SITE, "wiki", project, running)
    assert step is not None
    assert step.what == (
        "set wiki-old aside: its component left the service; it is kept stopped as "
        "wiki-old-previous"
    )


def test_oci_instances_are_refused_where_incus_cannot_run_them() -> None:
    oci = {
        **body(),
        "source": {
            "type": "image",
            "protocol": "oci",
            "server": "https://docker.io",
            "alias": "nginx:1.27",
        },
    }
    project = yaml.safe_dump({"instances": {"wiki-app": oci}}).encode()
    with pytest.raises(UserError, match="lacks the API extension instance_oci"):
        INCUS.converge(SITE, "wiki", project, Running())
    able = Site("box", "docker", "/stage", features=frozenset({"instance_oci"}))
    assert INCUS.converge(able, "wiki", project, Running()) is not None


def test_a_file_allmende_did_not_render_is_refused() -> None:
    with pytest.raises(UserError, match="not an instance definition allmende rendered"):
        definitions(b"instances: [1, 2]\n", "box:/srv/wiki/incus.yaml")


def test_what_runs_is_read_per_service_and_component() -> None:
    wiki = found(body())
    kept = found(body(), "Stopped", name="wiki-app-previous")
    hand = {"name": "other", "status": "Running", "config": {}}
    parsed = INCUS.parse(SITE, json.dumps([wiki, kept, hand]).encode())
    assert parsed["wiki"].states == {"app": "running"}
    assert set(parsed["wiki"].observed) == {"wiki-app", "wiki-app-previous", "other"}
    assert set(parsed[HOSTS].observed) == {"wiki-app", "wiki-app-previous", "other"}
    with pytest.raises(ValueError, match="not a list"):
        INCUS.parse(SITE, b"{}")


def test_the_preseed_runs_when_it_changes_and_undoes_only_an_update() -> None:
    wanted = {INCUS_PRESEED: b"profiles: []\n"}
    ((verb, subject, step),) = INCUS.prepare(SITE, wanted, {INCUS_PRESEED: "create"}, None)
    assert (verb, subject, step.what) == (
        "prepare",
        "incus",
        "set up its storage pool, bridge and profile",
    )
    assert step.commands[0][-1] == "/stage/etc/allmende/incus/preseed.yaml" and not step.undo
    ((_, _, step),) = INCUS.prepare(SITE, wanted, {INCUS_PRESEED: "update"}, None)
    assert step.undo == step.commands
    assert INCUS.prepare(SITE, wanted, {}, None) == []


def test_containers_that_are_hosts_are_made_and_set_aside_when_they_leave() -> None:
    edge = {**body(), "name": "edge"}
    edge["config"] = {k: v for k, v in edge["config"].items() if k != "user.allmende.service"}
    wanted = {incus_host_file("edge"): yaml.safe_dump({"instances": {"edge": edge}}).encode()}
    ((verb, subject, step),) = INCUS.prepare(SITE, wanted, {}, {HOSTS: Running()})
    assert (verb, subject) == ("prepare", "edge") and step.what.startswith("create edge")
    gone = {incus_host_file("old"): "delete"}
    running = {HOSTS: Running(observed={"old": found(body(), name="old")})}
    ((verb, subject, step),) = INCUS.prepare(SITE, {}, gone, running)
    assert (verb, subject) == ("down", "old") and step.what.startswith("set old aside")


def test_engine_files_and_commands() -> None:
    assert INCUS.owns("/etc/allmende/incus/preseed.yaml")
    assert not INCUS.owns("/srv/wiki/incus.yaml")
    assert INCUS.project("wiki") == "/srv/wiki/incus.yaml"
    assert INCUS.observe(SITE) == ("incus", "query", "/1.0/instances?recursion=1")
    assert INCUS.down(SITE, "wiki")[0][-1] == "wiki"
    assert INCUS.up(SITE, "wiki")[0][-1] == "wiki"
