"""What a test or benchmark needs to run its own OpenSSH server on 127.0.0.1: keys, a config,
a free port. Used by the integration tests' ``sshd``, the end-to-end ``remote_host`` and
``bench/apply.py``; each starts the server its own way."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.ports import free_port

SSHD = Path("/usr/sbin/sshd")


def keygen(path: Path) -> None:
    """Write a new ed25519 key pair without passphrase at ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def prepare(directory: Path, more_keys: tuple[str, ...] = ()) -> tuple[Path, int]:
    """Write into ``directory`` a host key, a client key (``client_key``) allowed to log in,
    and an ``sshd_config`` listening on a free port of 127.0.0.1 (keys only, root allowed,
    ``StrictModes no`` as the directory is under /tmp, internal SFTP), checked by ``sshd -t``;
    ``more_keys`` are further authorized_keys files sshd reads. Return the config and the
    port."""
    keygen(directory / "host_ed25519")
    keygen(directory / "client_key")
    shutil.copyfile(directory / "client_key.pub", directory / "authorized_keys")
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {directory}/host_ed25519\n"
        f"PidFile {directory}/sshd.pid\n"
        f"AuthorizedKeysFile {' '.join([f'{directory}/authorized_keys', *more_keys])}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True, capture_output=True)
    return config, port


def known_hosts(directory: Path, port: int) -> Path:
    """Add to ``known_hosts`` in ``directory`` its host key on 127.0.0.1:port; return the
    file."""
    public = (directory / "host_ed25519.pub").read_text().strip()
    path = directory / "known_hosts"
    with path.open("a") as entries:
        entries.write(f"[127.0.0.1]:{port} {public}\n")
    return path


def wait_for(port: int, server: subprocess.Popen[bytes], log: Path) -> str | None:
    """Wait up to 5 s until the sshd ``server`` accepts connections on 127.0.0.1:port; return
    None when it does, else what its log says."""
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return None
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                return log.read_text()
            time.sleep(0.02)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop an sshd started with Popen: TERM, then KILL after 5 s."""
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
