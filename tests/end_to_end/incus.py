"""A real Incus for the end-to-end tests, with local images and names of their own.

``incus_world`` (one per session) makes sure an Incus daemon answers: it starts
``incusd --group root`` only where none does, and stops only the one it started. Everything the
tests make carries the session's tag (``t`` and five hex digits): the storage pool ``<tag>``
(``dir``), the bridge ``<tag>br`` on a /24 of 10.x.y.0 that no route and no Incus network of
this machine uses, profiles, instances and the two images, imported with their aliases:

* ``<tag>-busybox``: the static busybox as a system container: busybox init, ``udhcpc`` on
  ``eth0`` (so it has a name on the bridge), ``httpd`` on port 80 serving ``/www``;
* ``<tag>-debian``: Debian 12 made by debootstrap (minbase, systemd as init, python3, ifupdown
  with DHCP on ``eth0``). Its root file system is kept as a tarball in ``ALLMENDE_TEST_CACHE``
  (default ``/var/tmp/allmende-test-cache``) and made only when it is missing (about a
  minute, from the mirror apt uses), so one test run makes it once.

At the end of the session every instance, image, profile, network and pool whose name starts
with the tag is deleted, whoever made it (the tests or allmende's apply). Containers reach the
Debian mirror through the bridge's NAT to install packages; tests reach them only through proxy
devices on 127.0.0.1 and ``incus exec``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL = "run `script/bootstrap test` (as root it installs Incus from bookworm-backports)"
#: What the Debian image holds besides minbase.
DEBIAN_PACKAGES = ("systemd-sysv", "python3", "ifupdown", "isc-dhcp-client", "iproute2")
#: Changing how the tarball is made changes its name: an old one is not reused.
DEBIAN_RECIPE = "1"
INTERFACES = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
UDHCPC = """#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr flush dev "$interface"
ip addr add "$ip/${mask:-24}" dev "$interface"
[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
exit 0
"""
INITTAB = """::sysinit:/bin/ip link set lo up
::sysinit:/bin/ip link set eth0 up
::respawn:/bin/udhcpc -f -i eth0 -s /etc/udhcpc.script
::respawn:/bin/httpd -f -p 80 -h /www
"""


@dataclass(frozen=True)
class Incus:
    """The test's names on the machine's Incus, and ways to drive it."""

    tag: str
    pool: str
    network: str
    subnet: str
    busybox: str
    debian: str

    def run(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``incus ARGS``; fail the test with what it said if it fails and ``check``."""
        done = subprocess.run(
            ["incus", *args], input=input, capture_output=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"incus {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}",
                pytrace=False,
            )
        return done

    def query(self, path: str) -> Any:
        """Return what Incus's REST API answers at ``path``."""
        return json.loads(self.run("query", path).stdout)

    def exists(self, instance: str) -> bool:
        """Return whether the instance exists."""
        return self.run("query", f"/1.0/instances/{instance}", check=False).returncode == 0

    def inside(self, instance: str, script: str, timeout: float = 120) -> str:
        """Run a shell script in the instance; return its output."""
        return self.run("exec", instance, "--", "sh", "-c", script, timeout=timeout).stdout.decode()


def _answers() -> bool:
    try:
        done = subprocess.run(["incus", "query", "/1.0"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _daemon(logs: Path) -> Iterator[None]:
    """Make sure an Incus daemon answers; start one only where none does, and stop only it."""
    missing = [p for p in ("incus", "debootstrap", "busybox", "tar") if shutil.which(p) is None]
    if missing or not Path("/usr/libexec/incus/incusd").exists():
        pytest.fail(f"the Incus tests need {', '.join(missing) or 'incusd'}: {INSTALL}", False)
    if _answers():
        yield
        return
    with (logs / "incusd.log").open("wb") as log:
        daemon = subprocess.Popen(
            ["/usr/libexec/incus/incusd", "--group", "root"], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                text = (logs / "incusd.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"incusd did not come up: {text}", pytrace=False)
            time.sleep(0.5)
        yield
    finally:
        if daemon.poll() is None:  # the socket is still this daemon's: no other is shut down
            subprocess.run(
                ["incus", "admin", "shutdown", "--timeout", "60"], check=False, timeout=90
            )
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.terminate()
            daemon.wait(10)


def free_subnet(avoid: Sequence[str] = ()) -> str:
    """Return a 10.x.y.1/24 that no route of this machine, no Incus network and none of
    ``avoid`` covers."""
    used = [ipaddress.ip_interface(a).network for a in avoid] + [
        ipaddress.ip_network(word, strict=False)
        for line in subprocess.run(
            ["ip", "-4", "route"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        for word in line.split()[:1]
        if "/" in word
    ]
    networks = json.loads(
        subprocess.run(
            ["incus", "query", "/1.0/networks?recursion=1"], capture_output=True, check=True
        ).stdout
    )
    for network in networks:
        address = (network.get("config") or {}).get("ipv4.address") or ""
        if "/" in address:
            used.append(ipaddress.ip_interface(address).network)
    chooser = random.Random(secrets.randbits(32))
    while True:
        candidate = ipaddress.ip_network(
            f"10.{chooser.randint(100, 250)}.{chooser.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(other) for other in used):
            return f"{candidate.network_address + 1}/24"


def _metadata(directory: Path, os_name: str, release: str) -> Path:
    meta = directory / "metadata.yaml"
    meta.write_text(
        f"architecture: x86_64\ncreation_date: {int(time.time())}\n"
        f"properties:\n  description: {os_name} {release} for allmende's tests\n"
        f"  os: {os_name}\n  release: '{release}'\n"
    )
    archive = directory / f"{os_name}-meta.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(meta, "metadata.yaml")
    return archive


def _busybox_rootfs(directory: Path) -> Path:
    from tests.end_to_end.conftest import busybox_tree

    root = directory / "busybox"
    busybox_tree(root, "sbin", "www", "proc", "sys", "dev", "tmp", "run", "root", "var")
    (root / "sbin" / "init").symlink_to("../bin/busybox")
    (root / "etc" / "inittab").write_text(INITTAB)
    script = root / "etc" / "udhcpc.script"
    script.write_text(UDHCPC)
    script.chmod(0o755)
    (root / "www" / "index.html").write_text("from the image\n")
    archive = directory / "busybox-rootfs.tar.gz"
    subprocess.run(["tar", "-C", str(root), "-czf", str(archive), "."], check=True)
    return archive


def cache_dir() -> Path:
    """Return the directory the tests keep slow artefacts in between and within runs."""
    path = Path(os.environ.get("ALLMENDE_TEST_CACHE") or "/var/tmp/allmende-test-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def debian_rootfs() -> Path:
    """Return the Debian 12 root file system tarball, made by debootstrap where the cache does
    not hold it yet (one maker at a time: others wait for it)."""
    digest = hashlib.sha256(f"{DEBIAN_RECIPE} {DEBIAN_PACKAGES}".encode()).hexdigest()[:12]
    cache = cache_dir()
    archive = cache / f"incus-debian-bookworm-{digest}.tar.gz"
    with (cache / "incus-debian.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if archive.is_file():
            return archive
        with tempfile.TemporaryDirectory(dir=cache) as work:
            root = Path(work) / "root"
            include = ",".join(DEBIAN_PACKAGES)
            made = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={include}",
                    "bookworm",
                    str(root),
                    _mirror(),
                ],
                capture_output=True,
                timeout=900,
                check=False,
            )
            if made.returncode != 0:
                pytest.fail(f"debootstrap failed: {made.stdout[-2000:]!r}", pytrace=False)
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for child in (root / leftover).glob("*"):
                    if child.is_file():
                        child.unlink()
            (root / "etc" / "network" / "interfaces").write_text(INTERFACES)
            partial = Path(work) / "rootfs.tar.gz"
            subprocess.run(
                [
                    "tar",
                    "-C",
                    str(root),
                    "--use-compress-program=gzip -1",
                    "-cf",
                    str(partial),
                    ".",
                ],
                check=True,
            )
            partial.replace(archive)
    return archive


def _cleanup(incus: Incus) -> None:
    """Delete everything whose name starts with the tag."""
    for instance in incus.query("/1.0/instances"):
        name = instance.rsplit("/", 1)[-1]
        if name.startswith(incus.tag):
            incus.run("delete", "--force", name, check=False)
    for image in incus.query("/1.0/images?recursion=1"):
        if any(a["name"].startswith(incus.tag) for a in image.get("aliases") or []):
            incus.run("image", "delete", image["fingerprint"], check=False)
    for profile in incus.query("/1.0/profiles"):
        name = profile.rsplit("/", 1)[-1]
        if name.startswith(incus.tag):
            incus.run("profile", "delete", name, check=False)
    for network in incus.query("/1.0/networks"):
        name = network.rsplit("/", 1)[-1]
        if name.startswith(incus.tag):
            incus.run("network", "delete", name, check=False)
    for pool in incus.query("/1.0/storage-pools"):
        name = pool.rsplit("/", 1)[-1]
        if name.startswith(incus.tag):
            incus.run("storage", "delete", name, check=False)


@pytest.fixture(scope="session")
def incus_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incus]:
    """The machine's Incus with this session's pool, images and free subnet (see the module
    docstring); everything with the session's tag is deleted at the end."""
    directory = tmp_path_factory.mktemp("incus")
    tag = f"t{secrets.token_hex(3)[:5]}"
    with _daemon(directory):
        incus = Incus(
            tag=tag,
            pool=f"{tag}",
            network=f"{tag}br",
            subnet=free_subnet(),
            busybox=f"{tag}-busybox",
            debian=f"{tag}-debian",
        )
        try:
            incus.run("storage", "create", incus.pool, "dir")
            incus.run(
                "image",
                "import",
                str(_metadata(directory, "busybox", "1")),
                str(_busybox_rootfs(directory)),
                "--alias",
                incus.busybox,
            )
            incus.run(
                "image",
                "import",
                str(_metadata(directory, "debian", "12")),
                str(debian_rootfs()),
                "--alias",
                incus.debian,
            )
            yield incus
        finally:
            _cleanup(incus)
