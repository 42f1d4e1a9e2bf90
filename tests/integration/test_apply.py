"""`allmende apply` against a real sshd on 127.0.0.1 and the local machine.

The inventory is the nordlicht fixture with `rack` reached over SSH (the real sshd) and
`gateway` and `build` as the local machine; both roots are temp directories
(ALLMENDE_REMOTE_ROOT, ALLMENDE_HOST_ROOT). The rendered haproxy.cfg names certificates that
only exist on a real edge, so the tests put a small config the real `haproxy -c` accepts in its
place (or one it rejects). No engine actions are planned here (there is no Docker on the
test machine): the engines, the proxy and rollback are driven for real by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pytest
from tests.conftest import BASE, own_secrets
from tests.integration.conftest import FILES_ONLY, Sshd, write_host

from allmende.actions.plan import Seams
from allmende.cli.main import main
from allmende.inventory.hostpaths import APPLY_LOCK as LOCK
from allmende.inventory.hostpaths import MANIFEST, PROGRAM
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.plan.changes import HIDDEN
from allmende.render.output import Rendered
from allmende.render.targets import render_all
from allmende.state.store import list_applies, open_store

HAPROXY = "/etc/haproxy/haproxy.cfg"
VALID = (
    "global\n    maxconn 100\n"
    "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n"
    "    timeout server 1s\n"
    "frontend web\n    bind 127.0.0.1:18080\n    default_backend app\n"
    "backend app\n    server one 127.0.0.1:18081\n"
)


@dataclass
class Site:
    inventory: Path
    remote: Path
    local: Path
    state: Path
    haproxy: list[str]

    def rendered(self, inventory: Inventory) -> dict[str, Rendered]:
        """Render, with the small haproxy.cfg of the test in place of the edge's."""
        files = render_all(inventory)
        name = "gateway" + HAPROXY
        files[name] = Rendered(self.haproxy[0].encode(), files[name].sources)
        return files

    @property
    def seams(self) -> Seams:
        """Files only: the engines and the proxy are driven for real in
        tests/end_to_end/test_apply_demo.py; these tests are about the files."""
        return replace(FILES_ONLY, render=self.rendered)


@pytest.fixture
def site(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    inventory = tmp_path / "inventory"
    shutil.copytree(BASE, inventory)
    write_host(inventory, "rack", f"{{user: root, port: {sshd.port}}}")
    write_host(inventory, "gateway", None)
    write_host(inventory, "build", None)
    remote, local = tmp_path / "remote", tmp_path / "local"
    remote.mkdir()
    local.mkdir()
    env = {
        "HOME": str(tmp_path),
        "USER": "tester",
        "ALLMENDE_SSH_KEY": str(sshd.client_key),
        "ALLMENDE_KNOWN_HOSTS": str(sshd.known_hosts),
        "ALLMENDE_REMOTE_ROOT": str(remote),
        "ALLMENDE_HOST_ROOT": str(local),
        "ALLMENDE_SSH_TIMEOUT": "5",
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
    }
    own_secrets(inventory, tmp_path / "age.key")
    env["ALLMENDE_AGE_KEY"] = str(tmp_path / "age.key")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = Site(inventory, remote, local, tmp_path / "state.sqlite", [VALID])

    yield result


def apply(capsys: pytest.CaptureFixture[str], site: Site, *args: str) -> tuple[int, str, str]:
    code = main(["apply", str(site.inventory), *args], seams=site.seams)
    out, err = capsys.readouterr()
    return code, out, err


def host_files(root: Path) -> dict[str, bytes]:
    return {
        "/" + str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_apply_writes_both_hosts_then_nothing_then_exactly_the_change(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = apply(capsys, site, "--yes")
    assert code == 0, err
    assert "Create rack:/srv/wiki/compose.yaml" in out
    assert "Applied gateway." in err and "Applied rack." in err
    wanted = render_all(load(site.inventory, {}))
    for name, rendered in wanted.items():
        host, _, rest = name.partition("/")
        root = {"rack": site.remote, "gateway": site.local}.get(host)
        if root is None or rest == HAPROXY[1:]:
            continue
        assert (root / rest).read_bytes() == rendered.content
        assert (root / rest).stat().st_mode & 0o777 == rendered.mode
    assert (site.local / HAPROXY[1:]).read_text() == VALID
    manifest = json.loads((site.remote / MANIFEST[1:]).read_text())
    assert "/srv/wiki/compose.yaml" in manifest["hosts"]["rack"]
    assert "services/wiki.yaml" in manifest["hosts"]["rack"]["/srv/wiki/compose.yaml"]["sources"]
    assert "gateway" in json.loads((site.local / MANIFEST[1:]).read_text())["hosts"]
    assert not list(site.remote.rglob("*.allmende-tmp")) and not (site.remote / LOCK[1:]).exists()

    started = time.monotonic()
    code, out, err = apply(capsys, site)  # no --yes: nothing to ask
    assert (code, out) == (0, ""), err
    assert "Nothing to do." in err
    assert time.monotonic() - started < 3

    before = host_files(site.remote)
    wiki = site.inventory / "services/wiki.yaml"
    wiki.write_text(wiki.read_text().replace("MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Polar"))
    code, out, err = apply(capsys, site, "--yes")
    assert code == 0, err
    assert "Plan: 0 to create, 1 to update, 0 to delete on 3 hosts" in err
    after = host_files(site.remote)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == {"/srv/wiki/compose.yaml", "/srv/wiki/compose.yaml.allmende-prev", MANIFEST}
    assert after["/srv/wiki/compose.yaml.allmende-prev"] == before["/srv/wiki/compose.yaml"]
    assert b"Polar" in after["/srv/wiki/compose.yaml"]

    with open_store(site.state) as db:
        applies = list_applies(db)
    # newest first: the change, the apply that found nothing to do (on every host it read,
    # as the README promises), the first apply
    planned = sorted(p.stem for p in (site.inventory / "hosts").glob("*.yaml"))
    assert [(a.host, a.result, a.who) for a in applies] == [
        ("rack", "ok", "tester"),
        *[(h, "nothing to do", "tester") for h in reversed(planned)],
        ("rack", "ok", "tester"),
        ("gateway", "ok", "tester"),
    ]
    assert applies[0].changes[0]["path"] == "/srv/wiki/compose.yaml"
    assert all(a.changes == [] for a in applies[1 : 1 + len(planned)])


def test_removed_services_are_deleted_and_a_large_delete_needs_force(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply(capsys, site, "--yes", "--host", "rack")[0] == 0
    (site.inventory / "services/wiki.yaml").unlink()
    (site.inventory / "services/git.yaml").unlink()
    code, out, err = apply(capsys, site, "--yes", "--host", "rack")
    assert code == 2
    assert "deletes 9 of the 14 files allmende manages on rack (more than half)" in err
    assert "--force" in err
    assert (site.remote / "srv/wiki/compose.yaml").exists()

    code, out, err = apply(capsys, site, "--yes", "--host", "rack", "--force")
    assert code == 0, err
    assert "Delete rack:/srv/wiki/compose.yaml" in out
    assert not (site.remote / "srv/wiki/compose.yaml").exists()
    assert not (site.remote / "etc/systemd/system/allmende-backup-git.timer").exists()
    assert (site.remote / "srv/wiki/compose.yaml.allmende-prev").exists()
    assert (site.remote / "srv/database/compose.yaml").exists()
    manifest = json.loads((site.remote / MANIFEST[1:]).read_text())["hosts"]["rack"]
    assert "/srv/wiki/compose.yaml" not in manifest and "/srv/database/compose.yaml" in manifest
    assert apply(capsys, site, "--host", "rack")[0] == 0


def test_a_config_haproxy_rejects_replaces_nothing_on_that_host(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply(capsys, site, "--yes", "--host", "gateway")[0] == 0
    pages = site.local / "srv/pages/compose.yaml"
    pages.write_text("edited by hand\n")
    site.haproxy[0] = VALID + "backend broken\n    no-such-keyword here\n"
    code, _, err = apply(capsys, site, "--yes", "--host", "gateway")
    assert code == 2
    assert f"gateway: `haproxy -c -f` rejects the new {HAPROXY}" in err
    assert "no-such-keyword" in err
    assert (site.local / HAPROXY[1:]).read_text() == VALID
    assert pages.read_text() == "edited by hand\n"
    assert not list(site.local.rglob("*.allmende-tmp"))
    with open_store(site.state) as db:
        assert (list_applies(db)[0].result or "").startswith(
            "failed: gateway: `haproxy -c -f` rejects"
        )


def test_a_held_lock_refuses_and_a_stale_one_is_taken_over(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = site.remote / LOCK[1:]
    lock.mkdir(parents=True)
    holder = {"who": "kim", "pid": 4242, "since": time.time() - 60}
    (lock / "holder.json").write_text(json.dumps(holder))
    code, _, err = apply(capsys, site, "--yes", "--host", "rack")
    assert code == 2
    assert "rack: another apply is running there, held by kim (pid 4242) since" in err
    assert not (site.remote / "srv/wiki/compose.yaml").exists()

    holder["since"] = time.time() - 7200
    (lock / "holder.json").write_text(json.dumps(holder))
    code, _, err = apply(capsys, site, "--yes", "--host", "rack")
    assert code == 0, err
    assert (site.remote / "srv/wiki/compose.yaml").exists()
    assert not lock.exists()


def test_a_changed_plan_checksum_is_refused(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = apply(capsys, site, "--yes", "--host", "rack", "--plan-checksum", "00ff00ff")
    assert code == 2
    assert "the plan changed since it was shown" in err
    assert not (site.remote / "srv").exists()


@pytest.mark.parametrize("checksum", ["", "00ff", "not-hex-at-all"])
def test_a_plan_checksum_too_short_to_mean_anything_is_refused(
    site: Site, capsys: pytest.CaptureFixture[str], checksum: str
) -> None:
    code, out, err = apply(capsys, site, "--yes", "--host", "rack", "--plan-checksum", checksum)
    assert code == 2
    assert "give at least 8 hex digits of the checksum" in err
    assert out == ""  # refused before anything was planned
    assert not (site.remote / "srv").exists()


def test_without_yes_a_no_applies_nothing(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("click.confirm", lambda *a, **k: False)
    code, _, err = apply(capsys, site, "--host", "rack")
    assert code == 2 and "Nothing was applied." in err
    assert not (site.remote / "srv").exists()


@pytest.fixture(params=["gateway", "rack"])
def tiny_disk(site: Site, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """Mount a 64 KiB tmpfs as the root of the local host (gateway) or of the SSH host (rack)
    (needs root and CAP_SYS_ADMIN)."""
    host = request.param
    root = site.local if host == "gateway" else site.remote
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield host, root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_full_disk_replaces_nothing(
    site: Site, tiny_disk: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    host, root = tiny_disk
    assert apply(capsys, site, "--yes", "--host", host)[0] == 0
    before = host_files(root)
    filler = root / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"x" * 1024)
            handle.flush()
    site.haproxy[0] = VALID + "# a longer config\n" * 200
    wiki = site.inventory / "services/wiki.yaml"
    wiki.write_text(wiki.read_text().replace("MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Polar"))
    code, _, err = apply(capsys, site, "--yes", "--host", host)
    assert code == 2
    assert f"disk full on {host} (" in err
    assert "nothing was replaced" in err
    filler.unlink()
    live = {p: c for p, c in host_files(root).items() if not p.endswith(".allmende-prev")}
    assert live == before


def test_one_service_then_the_rest(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = apply(capsys, site, "--yes", "--host", "rack", "--service", "wiki")
    assert code == 0, err
    assert (site.remote / "srv/wiki/compose.yaml").exists()
    assert not (site.remote / "srv/git").exists()
    manifest = json.loads((site.remote / MANIFEST[1:]).read_text())["hosts"]["rack"]
    # The service's files, and allmende itself, which its backup timer runs.
    assert all("wiki" in path or path == PROGRAM for path in manifest)
    assert apply(capsys, site, "--yes", "--host", "rack")[0] == 0
    manifest = json.loads((site.remote / MANIFEST[1:]).read_text())["hosts"]["rack"]
    assert len(manifest) == 14
    assert apply(capsys, site, "--yes", "--host", "rack", "--service", "git")[0] == 0
    assert len(json.loads((site.remote / MANIFEST[1:]).read_text())["hosts"]["rack"]) == 14


#: On each host, a file apply writes and the directory it is in, and how it is reached.
LINKED = {
    "rack": ("/srv/wiki/secrets/wiki-db-password", "root@127.0.0.1"),
    "gateway": (HAPROXY, "local, root"),
}
SHADOW = "root:$y$j9T$secret-hash:19000:0:99999:7:::\n"


@pytest.mark.parametrize("host", sorted(LINKED))
def test_a_planted_link_is_never_followed(
    site: Site, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    """A container that mounts /srv/wiki can replace a file allmende writes by a link to
    another file, or a directory by a link to another directory: plan shows none of the
    target, apply copies and writes nothing through the link, and both say which path it is."""
    assert apply(capsys, site, "--yes", "--host", host)[0] == 0
    root = site.remote if host == "rack" else site.local
    outside = root / "elsewhere"
    outside.mkdir()
    (outside / "shadow").write_text(SHADOW)
    path, reached = LINKED[host]
    planted = root / path.lstrip("/")
    planted.unlink()
    planted.symlink_to(outside / "shadow")
    site.haproxy[0] = VALID + "# changed\n"
    wiki = site.inventory / "services/wiki.yaml"
    wiki.write_text(wiki.read_text().replace("MW_SITE_NAME: Nordlicht", "MW_SITE_NAME: Polar"))
    said = f"{path} is a symbolic link: allmende follows no link on a host"

    code = main(["plan", str(site.inventory), "--host", host], seams=site.seams)
    out, err = capsys.readouterr()
    assert code == 2
    assert f"not planned: {host} ({reached}" in err and said in err
    assert "secret-hash" not in out + err
    code, out, err = apply(capsys, site, "--yes", "--host", host)
    assert code == 2 and said in err and "secret-hash" not in out + err
    assert (outside / "shadow").read_text() == SHADOW
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"]
    assert not list(planted.parent.glob("*.allmende-prev"))

    planted.unlink()
    directory = planted.parent
    shutil.rmtree(directory)
    directory.symlink_to(outside)
    code, out, err = apply(capsys, site, "--yes", "--host", host)
    assert code == 2
    assert f"{PurePosixPath(path).parent} is a symbolic link: allmende follows no link" in err
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"]


def test_no_plain_hash_of_a_secret_anywhere_and_a_changed_one_is_seen(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's JSON, the state database and the host's manifest carry the hash of a secret
    file keyed with the host's own key: a dictionary of guesses finds nothing. The state
    database and the manifest are 0600; a changed value is still planned, once."""
    from allmende.inventory.secrets import SecretStore

    env = {"ALLMENDE_AGE_KEY": str(site.inventory.parent / "age.key")}
    value = SecretStore(site.inventory, env).get("wiki/db-password")
    plain = hashlib.sha256(value).hexdigest()
    code = main(["plan", str(site.inventory), "--host", "rack", "--json"], seams=site.seams)
    first = capsys.readouterr().out
    assert code == 3 and plain not in first
    assert '"after": "hmac-sha256:' in first
    code = main(["plan", str(site.inventory), "--host", "rack", "--json"], seams=site.seams)
    again = capsys.readouterr().out
    checksum = json.loads(again)["checksum"]
    assert json.loads(first)["checksum"] == checksum  # no key on the host yet: the same plan
    code, _, err = apply(capsys, site, "--yes", "--host", "rack", "--plan-checksum", checksum)
    assert code == 0, err

    manifest = site.remote / MANIFEST[1:]
    key = site.remote / "var/lib/allmende/hash.key"
    assert manifest.stat().st_mode & 0o777 == 0o600 and key.stat().st_mode & 0o777 == 0o600
    assert site.state.stat().st_mode & 0o777 == 0o600
    assert plain not in manifest.read_text() and plain.encode() not in site.state.read_bytes()
    recorded = json.loads(manifest.read_text())["hosts"]["rack"]
    assert recorded["/srv/wiki/secrets/wiki-db-password"]["hmac"].startswith("hmac-sha256:")
    code, out, err = apply(capsys, site, "--host", "rack")
    assert (code, out) == (0, "") and "Nothing to do." in err

    SecretStore(site.inventory, env).set("wiki/db-password", b"hunter2")
    code = main(["plan", str(site.inventory), "--host", "rack", "--json"], seams=site.seams)
    planned = json.loads(capsys.readouterr().out)
    assert code == 3
    [change] = planned["changes"]
    assert change["path"] == "/srv/wiki/secrets/wiki-db-password"
    assert change["kind"] == "update" and change["diff"] == HIDDEN
    assert hashlib.sha256(b"hunter2").hexdigest() not in json.dumps(planned)
    assert apply(capsys, site, "--yes", "--host", "rack")[0] == 0
    assert (site.remote / "srv/wiki/secrets/wiki-db-password").read_bytes() == b"hunter2"
    code, out, err = apply(capsys, site, "--host", "rack")
    assert (code, out) == (0, "") and "Nothing to do." in err
