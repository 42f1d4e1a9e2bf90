"""`allmende up examples/demo --yes` on a machine that cannot reach the image registries (as
this one): it says which image cannot be had from which registry, before anything changes.

The demo's host is this machine, under a host root of the test; podman is the test's own
(``podman`` fixture: no images but the test's). The registries cannot be reached from here, so
every pull fails at once with the real podman's error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import EXAMPLES
from tests.end_to_end.conftest import Podman

from allmende.cli.main import main


def test_the_demo_says_which_image_it_cannot_pull_and_changes_nothing(
    podman: Podman,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "host"
    root.mkdir()
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        monkeypatch.setenv(key, podman.env[key])
    monkeypatch.setenv("ALLMENDE_HOST_ROOT", str(root))
    monkeypatch.setenv("ALLMENDE_AGE_KEY", str(EXAMPLES / "demo-age.key"))
    monkeypatch.setenv("ALLMENDE_STATE", str(tmp_path / "state.sqlite"))
    (EXAMPLES / "demo-age.key").chmod(0o600)
    containers = podman.run("ps", "-a", "--format", "{{.Names}}")

    code = main(
        ["up", str(EXAMPLES / "demo"), "--yes", "--no-serve", "--out", str(tmp_path / "site")]
    )

    out, err = capsys.readouterr()
    assert code == 2
    # The plan shows the pulls first, then the apply stops at the first image.
    assert (
        "Then on local: pull docker.io/etherpad/etherpad:2.2.5: not on local; pad needs it" in out
    )
    assert "Then on local: pull docker.io/library/postgres:16.4" in out
    assert "Then on local: pull ghcr.io/requarks/wiki:2.5.304" in out
    assert (
        "Not applied to local: the image docker.io/etherpad/etherpad:2.2.5 cannot be pulled "
        "from docker.io (not on local; pad needs it); nothing on this host was changed"
    ) in err
    assert "registry-1.docker.io" in err  # podman's own words follow
    # Nothing was written to the host, nothing started, no stand-in certificate left.
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == []
    assert podman.run("ps", "-a", "--format", "{{.Names}}") == containers
    # The docs were still built.
    assert (tmp_path / "site" / "index.html").exists()
