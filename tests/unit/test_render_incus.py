"""The decisions of the Incus render target (``render.incus_plan``), one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from allmende.errors import InventoryError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.models import Limits, Snapshots
from allmende.render import incus_plan
from allmende.render.incus import render
from tests.conftest import EXAMPLES


def school(root: Path, service: str, host: str = "", collective: str = "") -> Inventory:
    """Write a one-host Incus inventory with ``service`` as services/app.yaml; load it."""
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text("name: school\n" + collective)
    (root / "hosts" / "box.yaml").write_text(
        "description: The box\nengine: incus\naddress: 192.0.2.10\n" + host
    )
    (root / "services" / "app.yaml").write_text(service)
    return load(root, {})


SYSTEM = "description: An app\nhost: box\ncomponents:\n  web:\n    system: {image: debian/12}\n"


def instance(inventory: Inventory, name: str = "app-web") -> dict[str, object]:
    files = render(inventory)
    found: dict[str, object] = yaml.safe_load(files["box/srv/app/incus.yaml"].content)["instances"][
        name
    ]
    return found


def test_a_system_component_is_a_container_from_its_local_image(tmp_path: Path) -> None:
    body = instance(school(tmp_path, SYSTEM))
    assert body["source"] == {"type": "image", "alias": "debian/12"}
    assert body["profiles"] == ["allmende"]
    config = body["config"]
    assert isinstance(config, dict)
    assert config["boot.autostart"] == "true"
    assert config["user.allmende.service"] == "app"
    assert config["user.allmende.component"] == "web"
    assert json.loads(config["user.allmende.packages"]) == []


def test_published_ports_listen_on_the_hosts_address(tmp_path: Path) -> None:
    service = SYSTEM + "    ports: {http: 80}\n    publish: {http: 8081}\n"
    body = instance(school(tmp_path, service))
    assert body["devices"] == {
        "publish-http": {
            "type": "proxy",
            "listen": "tcp:192.0.2.10:8081",
            "connect": "tcp:127.0.0.1:80",
        }
    }


def test_a_host_named_by_dns_publishes_on_loopback_until_it_says_bind(tmp_path: Path) -> None:
    service = SYSTEM + "    ports: {http: 80}\n    publish: {http: 8081}\n"
    inventory = school(tmp_path, service)
    for bind, listen in ((None, "tcp:127.0.0.1:8081"), ("0.0.0.0", "tcp:0.0.0.0:8081")):
        box = inventory.hosts["box"].model_copy(update={"address": "box.example", "bind": bind})
        hosts = {"box": box}
        planned = incus_plan.plan(Inventory(**{**inventory.__dict__, "hosts": hosts}), "box")
        (made,) = planned.services["app"]
        assert made.devices["publish-http"]["listen"] == listen


def test_secrets_are_files_named_by_environment_variables(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    inventory_dir = tmp_path / "inv"
    service = SYSTEM + "    env: {GREETING: hello}\n    secrets: {TOKEN: app/token}\n"
    school(inventory_dir, service)  # loads before the secret is stored: check reports it
    (inventory_dir / "secrets" / "app").mkdir(parents=True)
    (inventory_dir / "secrets" / "app" / "token.age").write_bytes(b"x")
    body = instance(load(inventory_dir, {}))
    config = body["config"]
    assert isinstance(config, dict)
    assert config["environment.GREETING"] == "hello"
    assert config["environment.TOKEN_FILE"] == "/etc/allmende/secrets/app-token"
    assert body["devices"] == {
        "secrets": {
            "type": "disk",
            "source": "/srv/app/secrets",
            "path": "/etc/allmende/secrets",
            "readonly": "true",
            "shift": "true",
        }
    }


def test_volumes_are_shifted_host_directories(tmp_path: Path) -> None:
    service = SYSTEM + "    volumes: {data: /var/lib/app, media: {path: /m, host: /mnt/big}}\n"
    body = instance(school(tmp_path, service))
    assert body["devices"] == {
        "volume-data": {
            "type": "disk",
            "source": "/srv/app/data",
            "path": "/var/lib/app",
            "shift": "true",
        },
        "volume-media": {"type": "disk", "source": "/mnt/big", "path": "/m", "shift": "true"},
    }


def test_limits() -> None:
    assert incus_plan.limits(Limits(cpus=2, memory="1 GiB")) == {
        "limits.cpu": "2",
        "limits.memory": "1GiB",
    }
    assert incus_plan.limits(Limits(cpus=0.5)) == {
        "limits.cpu": "1",
        "limits.cpu.allowance": "50ms/100ms",
    }
    assert incus_plan.memory("512KB") == "512kB"
    assert incus_plan.limits(None) == {}


@pytest.mark.parametrize(
    ("duration", "expiry"),
    [("2w", "2w"), ("14d", "2w"), ("3d", "3d"), ("36h", "36H"), ("90m", "90M"), ("30s", "1M")],
)
def test_snapshot_expiry_in_incus_units(duration: str, expiry: str) -> None:
    assert incus_plan.expiry(duration) == expiry


def test_snapshot_schedules() -> None:
    assert incus_plan.snapshots(Snapshots(schedule="daily", expiry="1w")) == {
        "snapshots.pattern": incus_plan.SNAPSHOT_PATTERN,
        "snapshots.schedule": "@daily",
        "snapshots.expiry": "1w",
    }
    assert incus_plan.snapshots(Snapshots(schedule="0 3 * * *"))["snapshots.schedule"] == (
        "0 3 * * *"
    )
    assert incus_plan.snapshots(Snapshots()) == {}
    assert incus_plan.snapshots(None) == {}


def test_a_services_snapshots_override_its_hosts(tmp_path: Path) -> None:
    host = "incus: {snapshots: {schedule: daily, expiry: 1w}}\n"
    inventory = school(tmp_path, SYSTEM + "snapshots: {schedule: hourly}\n", host)
    config = instance(inventory)["config"]
    assert isinstance(config, dict)
    assert config["snapshots.schedule"] == "@hourly" and "snapshots.expiry" not in config


def test_an_image_component_is_an_oci_container_from_its_registry(tmp_path: Path) -> None:
    service = "description: An app\nhost: box\ncomponents:\n  web: {image: 'ghcr.io/org/app:1.2'}\n"
    body = instance(school(tmp_path, service))
    assert body["source"] == {
        "type": "image",
        "protocol": "oci",
        "server": "https://ghcr.io",
        "alias": "org/app:1.2",
    }
    assert incus_plan.registry("redis:7.2") == ("https://docker.io", "redis:7.2")
    assert incus_plan.registry("localhost:5000/app:1") == ("https://localhost:5000", "app:1")


def test_names_incus_refuses_are_left_out_with_the_reason(tmp_path: Path) -> None:
    long = "c" * 60
    service = f"description: An app\nhost: box\ncomponents:\n  {long}:\n    system: {{image: x}}\n"
    inventory = school(tmp_path, service)
    planned = incus_plan.plan(inventory, "box")
    assert planned.services["app"] == ()
    assert "at most 63 characters" in planned.skipped[f"app-{long}"]
    assert "# Left out: app-" in render(inventory)["box/srv/app/incus.yaml"].content.decode()


def test_the_preseed_keeps_an_unnamed_network_as_it_is(tmp_path: Path) -> None:
    inventory = school(tmp_path, SYSTEM)
    preseed = yaml.safe_load(render(inventory)["box/etc/allmende/incus/preseed.yaml"].content)
    assert "networks" not in preseed
    assert preseed["storage_pools"] == [{"name": "default", "driver": "dir"}]
    assert preseed["profiles"][0]["devices"]["eth0"]["network"] == "incusbr0"


def test_a_host_without_services_or_containers_gets_no_incus_files(tmp_path: Path) -> None:
    inventory = load(EXAMPLES / "klankschool", {})
    assert incus_plan.incus_hosts(inventory) == ["macpro"]  # not the gateway
    assert not any(p.startswith("gateway/") for p in render(inventory))


def test_the_art_schools_gateway_gets_the_edges_ports_and_its_address() -> None:
    planned = incus_plan.plan(load(EXAMPLES / "klankschool", {}), "macpro")
    gateway = planned.hosts["gateway"]
    assert gateway.devices["edge-https"] == {
        "type": "proxy",
        "listen": "tcp:192.168.1.20:443",
        "connect": "tcp:127.0.0.1:443",
    }
    assert sorted(n for n in gateway.devices if n.startswith("edge-")) == [
        "edge-25",
        "edge-465",
        "edge-587",
        "edge-993",
        "edge-http",
        "edge-https",
    ]
    assert gateway.devices["eth0"]["ipv4.address"] == "10.71.0.2"
    assert gateway.config["limits.memory"] == "512MiB"


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.71.0.0/24", "host address of the subnet"),
        ("10.71.0.1", "IPv4 address with a prefix"),
        ("fd00::1/64", "IPv4 address with a prefix"),
        ("nonsense", "not an address with a prefix"),
    ],
)
def test_a_subnet_must_be_a_bridge_address(tmp_path: Path, subnet: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        school(tmp_path, SYSTEM, f"incus: {{subnet: '{subnet}'}}\n")


def test_a_system_host_must_be_a_container_on_an_incus_host(tmp_path: Path) -> None:
    (tmp_path / "hosts").mkdir()
    (tmp_path / "allmende.yaml").write_text("name: school\n")
    (tmp_path / "hosts" / "box.yaml").write_text("engine: compose\n")
    (tmp_path / "hosts" / "edge.yaml").write_text(
        "kind: container\nparent: box\nsystem: {image: debian/12}\n"
    )
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, {})
    assert str(caught.value.problems[0]) == (
        "hosts/edge.yaml:3:9: system: only a container on an Incus host is made by allmende "
        "(remove `system:`, or make it `kind: container` with a `parent` whose engine is incus)"
    )
