"""The art school's rendered Incus files are accepted by a real Incus.

Its preseed is applied with the test's names (pool, bridge, profile) and a free subnet for the
bridge, twice (the second run brings what exists to it). Then every instance definition of
``examples/klankschool`` (its nine services and the HAProxy container) is created as an empty,
stopped instance (``source: none``, the way ``incus create --empty`` does) on that profile:
Incus checks every configuration key and device then. Only what belongs to this machine is
changed: the names, the gateway's reserved address moved into the free subnet, and the host
directories the disk devices mount made under a temp directory standing in for ``/`` (Incus
wants them to exist), as the engine does with ``ALLMENDE_HOST_ROOT``.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import yaml
from tests.conftest import EXAMPLES
from tests.end_to_end.incus import Incus, free_subnet

from allmende.inventory.load import load
from allmende.render.incus import render


def test_the_art_schools_preseed_and_every_instance_are_accepted_by_incus(
    incus_world: Incus, tmp_path: Path
) -> None:
    incus = incus_world
    files = render(load(EXAMPLES / "klankschool", {}))
    preseed = yaml.safe_load(files["macpro/etc/allmende/incus/preseed.yaml"].content)
    network, profile, subnet = f"{incus.tag}k", f"{incus.tag}-school", free_subnet([incus.subnet])
    preseed["storage_pools"][0]["name"] = incus.pool
    preseed["networks"][0]["name"] = network
    preseed["networks"][0]["config"]["ipv4.address"] = subnet
    preseed["profiles"][0]["name"] = profile
    devices = preseed["profiles"][0]["devices"]
    devices["root"]["pool"], devices["eth0"]["network"] = incus.pool, network
    made: dict[str, dict[str, object]] = {}
    try:
        for _ in range(2):  # the second run brings what exists to it
            incus.run("admin", "init", "--preseed", input=yaml.safe_dump(preseed).encode())
        assert incus.query(f"/1.0/profiles/{profile}")["devices"] == devices
        assert incus.query(f"/1.0/networks/{network}")["config"]["ipv4.address"] == subnet

        reserved = str(ipaddress.ip_interface(subnet).ip + 1)
        for path, rendered in sorted(files.items()):
            if path.endswith("preseed.yaml"):
                continue
            for name, body in yaml.safe_load(rendered.content)["instances"].items():
                test_name = f"{incus.tag}-{name}"[:63]
                empty = {**body, "name": test_name, "source": {"type": "none"}}
                empty["profiles"] = [profile]
                empty["devices"] = {k: dict(v) for k, v in empty["devices"].items()}
                for device in empty["devices"].values():
                    if device["type"] == "disk":
                        device["source"] = str(tmp_path / device["source"].lstrip("/"))
                        Path(device["source"]).mkdir(parents=True, exist_ok=True)
                    if device["type"] == "nic":
                        device.update({"network": network, "ipv4.address": reserved})
                incus.run(
                    "query", "-X", "POST", "--wait", "/1.0/instances", "--data", json.dumps(empty)
                )
                made[test_name] = empty
        assert len(made) == 10  # nine services, one container that is a host
        for test_name, body in made.items():
            stored = incus.query(f"/1.0/instances/{test_name}")
            assert stored["status"] == "Stopped"
            config = body["config"]
            assert isinstance(config, dict)
            assert {k: stored["config"].get(k) for k in config} == config
            assert stored["devices"] == body["devices"]
    finally:
        for test_name in made:
            incus.run("delete", "--force", test_name, check=False)
        incus.run("profile", "delete", profile, check=False)
        incus.run("network", "delete", network, check=False)
