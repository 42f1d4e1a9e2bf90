"""A "remote host" for the end-to-end tests: a real OpenSSH server on 127.0.0.1 whose sessions
see the paths allmende writes as temp directories, so configuration rendered with the real
absolute paths works unchanged over SSH.

``remote_host`` starts sshd in a mount namespace of its own (``unshare --mount``; the network
namespace is the machine's). In that namespace these directories are bind mounts of directories
under one temp directory (``RemoteHost.paths``)::

    /srv  /etc/haproxy  /var/lib/allmende  /run/haproxy  /etc/systemd/system
    /var/lib/haproxy  HAProxy's chroot, where its TLS-terminating listener has its socket
    /etc/containers   holds only the containers.conf and storage.conf of the ``podman`` fixture,
                      so a plain ``podman`` over SSH uses the test storage and its image, and
                      the machine's policy.json
    /usr/local/bin    holds only ``podman-compose``, a link to the one of this virtualenv
    /etc/allmende  /usr/local/lib/allmende  /var/cache/allmende   what backups keep on a host

Everything started over SSH (``haproxy -W -D``, ``podman``, ``podman-compose``, conmon)
inherits the namespace; the machine's own /srv, /etc/haproxy ... are never touched. Missing
mount points (/var/lib/allmende, /run/haproxy) are created empty on the machine.

Every mount of the namespace is private (nothing mounted in there shows outside, nor the other
way round) but /run/netns, which stays shared with the machine's: podman keeps a container's
network namespace there, and podman outside (the ``podman`` fixture, same storage) fails on
every container whose network namespace it cannot see, even in ``podman ps``. So containers
started over SSH can also be looked at with ``podman_env``, and theirs from inside. /run/netns
is made a shared mount on the machine first if it is not one yet, as podman itself does.
Container file systems (overlay) are mounted in the namespace only: ``podman exec``/``cp``
work from both sides, but to see a running container's files from outside, use ``run``.

Use it from a test::

    def test_x(remote_host: RemoteHost) -> None:
        remote_host.ssh("touch /srv/probe")                   # a shell command over SSH
        assert (remote_host.local("/srv/probe")).exists()      # the real file behind it
        remote_host.run(["podman", "ps"])                      # in the namespace, no SSH
        env = {**os.environ, **remote_host.connector_env}      # for allmende's SshConnector:
        # ALLMENDE_KNOWN_HOSTS and ALLMENDE_SSH_KEY; the host is root@127.0.0.1:remote_host.port,
        # in an inventory `address: 127.0.0.1` and `ssh: {remote_host.inventory_ssh}`

At the end of the session every container, pod and unused network of the test storage is
removed with the namespace's podman (also those started outside: the storage is one), every
process left in the namespace (haproxy, conmon ...) is killed, then sshd. Tests should still
stop what they start: the ``podman`` fixture's tests share the storage.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import pytest

# Also run as a script in the new namespace (see the end): no ``tests`` imports at the top.
if TYPE_CHECKING:  # not at run time: conftest.py imports this module
    from tests.end_to_end.conftest import Podman

#: The directory of podman's network namespaces, shared between namespace and machine.
NETNS = "/run/netns"
MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED = 0x1000, 0x4000, 0x40000, 0x100000
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"
#: The directories of the namespace that are temp directories.
MOUNTS = (
    "/srv",
    "/etc/haproxy",
    "/var/lib/allmende",
    "/run/haproxy",
    "/etc/systemd/system",
    "/var/lib/haproxy",
    "/etc/containers",
    "/usr/local/bin",
    "/etc/allmende",
    "/usr/local/lib/allmende",
    "/var/cache/allmende",
)
#: What sshd gives root as PATH (Debian's superuser default path); ``run`` uses it too.
SSH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL = "run `script/bootstrap test` (openssh-server, util-linux)"


@dataclass(frozen=True)
class RemoteHost:
    """A running sshd in its own mount namespace, and what a client needs to reach it."""

    #: sshd listens on 127.0.0.1:port; log in as root.
    port: int
    #: The private key whose public half sshd accepts (ed25519, no passphrase).
    client_key: Path
    #: A known_hosts file holding the host key as ``[127.0.0.1]:port``.
    known_hosts: Path
    #: The temp directory of sshd's files (config, keys, ``sshd.log``) and of ``root/``.
    directory: Path
    #: Each path in MOUNTS as the namespace sees it -> the temp directory behind it.
    paths: Mapping[str, Path]
    #: The environment of the ``podman`` fixture (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF):
    #: the same configuration and storage the namespace's /etc/containers names.
    podman_env: Mapping[str, str]
    #: The process id of sshd: ``nsenter --target pid --mount`` enters the namespace.
    pid: int
    address: str = "127.0.0.1"
    user: str = "root"
    #: The ssh client command line, without the remote command.
    ssh_argv: tuple[str, ...] = field(default=(), repr=False)

    @property
    def inventory_ssh(self) -> str:
        """The ``ssh:`` value of a host file that reaches this host (with address 127.0.0.1)."""
        return f"{{user: {self.user}, port: {self.port}}}"

    @property
    def connector_env(self) -> dict[str, str]:
        """The variables allmende's SSH connector needs to reach this host."""
        return {
            "ALLMENDE_KNOWN_HOSTS": str(self.known_hosts),
            "ALLMENDE_SSH_KEY": str(self.client_key),
        }

    def local(self, path: str) -> Path:
        """Return where the namespace's absolute ``path`` (under one of MOUNTS) really is."""
        pure = PurePosixPath(path)
        for mount, directory in self.paths.items():
            if pure == PurePosixPath(mount) or PurePosixPath(mount) in pure.parents:
                return directory.joinpath(*pure.relative_to(mount).parts)
        raise ValueError(f"{path} is not under one of {', '.join(self.paths)}")

    def empty(self, *mounts: str) -> None:
        """Remove everything a test left in these directories of the namespace (of MOUNTS)."""
        for mount in mounts:
            for child in self.local(mount).iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace, without SSH, as root with the PATH and environment
        an SSH session has (no CONTAINERS_* variables: podman reads /etc/containers)."""
        env = {"PATH": SSH_PATH, "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"}
        return subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", "--", *argv],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def ssh(
        self, command: str, *, input: str | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the shell ``command`` on the host with the ssh client (BatchMode, this host's
        key and known_hosts only)."""
        return subprocess.run(
            [*self.ssh_argv, "--", command],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


class _Mount(NamedTuple):
    id: str
    parent: str
    target: str
    shared: bool


def _mountinfo() -> list[_Mount]:
    """Return the mounts this process sees."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        optional = fields[6 : fields.index("-")]
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        shared = any(tag.startswith("shared:") for tag in optional)
        found.append(_Mount(fields[0], fields[1], target, shared))
    return found


def _mount(source: str | None, target: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    if libc.mount(source.encode() if source else None, target.encode(), None, flags, None):
        number = ctypes.get_errno()
        raise OSError(number, f"mount {source} {target} ({flags:#x}): {os.strerror(number)}")


def _netns(target: str) -> bool:
    return target == NETNS or target.startswith(f"{NETNS}/")


def _share_netns() -> None:
    """Make the machine's /run/netns a shared mount, as podman does before it makes its first
    network namespace (it bind-mounts the directory on itself if need be)."""
    if any(m.target == NETNS and m.shared for m in _mountinfo()):
        return
    Path(NETNS).mkdir(mode=0o755, parents=True, exist_ok=True)
    if not any(m.target == NETNS for m in _mountinfo()):
        _mount(NETNS, NETNS, MS_BIND | MS_REC)
    _mount(None, NETNS, MS_SHARED | MS_REC)


def _enter(binds: dict[str, str], argv: list[str]) -> None:
    """In the new mount namespace (a copy of the machine's): make every mount private but
    /run/netns, bind the temp directories, then become ``argv`` (sshd).

    /run/netns stays shared with the machine so that the network namespaces podman makes in
    here are seen by podman outside too (the ``podman`` fixture uses the same storage), and
    the other way round. Nothing else propagates either way."""
    for mount in _mountinfo():
        if mount.shared and not _netns(mount.target):
            with contextlib.suppress(OSError):  # hidden under another mount: checked below
                _mount(None, mount.target, MS_PRIVATE)
    mounts = _mountinfo()
    targets = {m.id: m.target for m in mounts}
    hidden = {m.parent for m in mounts if targets.get(m.parent) == m.target}
    leaking = [m.target for m in mounts if m.shared and m.id not in hidden and not _netns(m.target)]
    if leaking:
        sys.exit(f"mounts still shared with the machine, refusing to go on: {leaking}")
    for target, source in binds.items():
        _mount(source, target, MS_BIND)
    os.execv(argv[0], argv)


def _mount_ns(pid: int | str) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/mnt").readlink())
    except OSError:
        return None


def _members(namespace: str) -> list[int]:
    """Return the processes in the mount namespace ``namespace``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _mount_ns(entry.name) == namespace:
            found.append(int(entry.name))
    return found


def _kill_all(namespace: str, server: subprocess.Popen[bytes]) -> None:
    """Kill every process of ``namespace`` (TERM, after 3 s KILL), sshd last."""
    if namespace == _mount_ns("self"):
        raise RuntimeError("refusing to kill the processes of the test's own mount namespace")
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        members = [pid for pid in _members(namespace) if pid != server.pid]
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while members and time.monotonic() < deadline:
            members = [pid for pid in _members(namespace) if pid != server.pid]
            time.sleep(0.05)
        if not members:
            break
    from tests.sshd_setup import stop

    stop(server)


def _clean_podman(host: RemoteHost, keep: Collection[str] = ()) -> None:
    """Remove every container (but those named in ``keep``), pod and unused network with the
    namespace's podman (container file systems started in there are mounted in there only)."""
    containers = ["--all"]
    if keep:  # by name: every container that is in no pod (pods go next) and is not kept
        listed = host.run(["podman", "ps", "--all", "--format", "{{.Names}} {{.PodName}}"])
        rows = [line.split() for line in listed.stdout.splitlines()]
        containers = [row[0] for row in rows if len(row) == 1 and row[0] not in keep]
    for argv in (
        ["podman", "rm", "--force", "--time", "0", *containers],
        ["podman", "pod", "rm", "--all", "--force", "--time", "0"],
        ["podman", "network", "prune", "--force"],
    ):
        with contextlib.suppress(subprocess.TimeoutExpired):
            host.run(argv, timeout=120)


def _wait_for(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    from tests.sshd_setup import wait_for

    failed = wait_for(port, server, log)
    if failed is not None:
        pytest.fail(f"sshd did not start:\n{failed}", pytrace=False)


#: With ``started(homes=True)``: root's ``~/.ssh`` is a temp directory too, and sshd reads its
#: ``authorized_keys`` besides the test's own, so allmende may add lines there. (Not all of
#: /root: this virtualenv's python may live there.) Made on the machine if missing, and
#: removed again at the end if still empty.
HOMES = ("/root/.ssh",)


@contextlib.contextmanager
def started(
    directory: Path, podman: Podman, homes: bool = False, keep: Collection[str] = ()
) -> Iterator[RemoteHost]:
    """Start a remote host whose files are under ``directory`` (see the module docstring; with
    ``homes``, ``HOMES`` too); stop it and everything started in it at the end, and every
    container of the test storage but those named in ``keep`` (a test's own that outlive it)."""
    from tests.sshd_setup import SSHD, prepare
    from tests.sshd_setup import known_hosts as trust

    missing = [p for p in ("ssh-keygen", "ssh", "unshare", "nsenter") if not shutil.which(p)]
    if not SSHD.exists():
        missing.append(str(SSHD))
    if missing:
        pytest.fail(f"the remote host needs {', '.join(missing)}: {INSTALL}", pytrace=False)
    mounts = MOUNTS + (HOMES if homes else ())
    paths = {mount: directory / "root" / mount.lstrip("/") for mount in mounts}
    made = [Path(m) for m in HOMES if homes and not Path(m).exists()]
    for mount, local in paths.items():
        local.mkdir(parents=True)
        Path(mount).mkdir(parents=True, exist_ok=True)  # the mount point, empty if new
    for variable, name in (
        ("CONTAINERS_CONF", "containers.conf"),
        ("CONTAINERS_STORAGE_CONF", "storage.conf"),
    ):
        shutil.copyfile(podman.env[variable], paths["/etc/containers"] / name)
    # The machine's image trust policy: `kube play` builds its pause image locally and needs it.
    policy = Path("/etc/containers/policy.json")
    if policy.exists():
        shutil.copyfile(policy, paths["/etc/containers"] / "policy.json")
    (paths["/usr/local/bin"] / "podman-compose").symlink_to(PODMAN_COMPOSE)

    config, port = prepare(directory, ("/root/.ssh/authorized_keys",) if homes else ())
    _share_netns()
    log_path = directory / "sshd.log"
    with log_path.open("wb") as log:
        # unshare without --fork execs python, which execs sshd: the process is sshd itself.
        server = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "unchanged",
                sys.executable,
                __file__,
                json.dumps({mount: str(local) for mount, local in paths.items()}),
                str(SSHD),
                "-D",
                "-e",
                "-f",
                str(config),
            ],
            stderr=log,
        )
    namespace: str | None = None
    host: RemoteHost | None = None
    try:
        _wait_for(port, server, log_path)
        namespace = _mount_ns(server.pid)
        if namespace is None or namespace == _mount_ns("self"):
            pytest.fail("sshd is not in a mount namespace of its own", pytrace=False)
        known_hosts = trust(directory, port)
        ssh_argv = (
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(directory / "client_key"),
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "root@127.0.0.1",
        )
        host = RemoteHost(
            port=port,
            client_key=directory / "client_key",
            known_hosts=known_hosts,
            directory=directory,
            paths=paths,
            podman_env=podman.env,
            pid=server.pid,
            ssh_argv=ssh_argv,
        )
        yield host
    finally:
        if host is not None and server.poll() is None:
            _clean_podman(host, keep)
        if namespace is not None and server.poll() is None:
            _kill_all(namespace, server)
        else:
            server.kill()
            server.wait()
        for point in made:
            with contextlib.suppress(OSError):  # someone put something there meanwhile
                point.rmdir()


@pytest.fixture(scope="session")
def remote_host(tmp_path_factory: pytest.TempPathFactory, podman: Podman) -> Iterator[RemoteHost]:
    """A real sshd on 127.0.0.1 in its own mount namespace; see the module docstring."""
    with started(tmp_path_factory.mktemp("remote"), podman) as host:
        yield host


@pytest.fixture(scope="module")
def remote_pair(
    tmp_path_factory: pytest.TempPathFactory, podman: Podman
) -> Iterator[tuple[RemoteHost, RemoteHost]]:
    """Two remote hosts, each an sshd of its own in a mount namespace of its own (an edge and
    a home server): what one writes the other does not see. The first's ``connector_env``
    reaches both (its key is allowed on the second, its known_hosts knows both). Their podman
    is the one test storage, so that the containers of either can be looked at from the
    machine."""
    with (
        started(tmp_path_factory.mktemp("remote-a"), podman) as first,
        started(tmp_path_factory.mktemp("remote-b"), podman) as second,
    ):
        # One client key and one known_hosts for both, as an admin's laptop has.
        public = first.client_key.with_name("client_key.pub").read_text()
        with (second.directory / "authorized_keys").open("a") as keys:
            keys.write(public)
        with first.known_hosts.open("a") as known:
            known.write(second.known_hosts.read_text())
        yield first, second


if __name__ == "__main__":  # run by unshare in the new namespace: BINDS_JSON SSHD ARGS...
    _enter(json.loads(sys.argv[1]), sys.argv[2:])
