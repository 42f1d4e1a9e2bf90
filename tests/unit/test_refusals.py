"""Plan and apply run the checks: an error finding stops them, `--force` goes on past those of
a chosen few rules, and never past a rule that keeps paths safe (names.format,
volumes.confined), which `allow` cannot accept either."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from allmende.actions.plan import Seams
from allmende.checks.registry import RULES, forceable, run
from allmende.cli.main import main
from allmende.connectors.base import Ran
from allmende.inventory.load import load
from allmende.plan.changes import Action
from tests.conftest import FIXTURES, overlay, own_secrets
from tests.memory import MemoryHost


async def no_actions(*args: object) -> list[Action]:
    return []


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    own_secrets(root, tmp_path / "age.key")
    monkeypatch.setenv("ALLMENDE_AGE_KEY", str(tmp_path / "age.key"))
    return root


@pytest.fixture
def hosts(inventory: Path) -> dict[str, MemoryHost]:
    return {name: MemoryHost(name) for name in load(inventory, {}).hosts}


@pytest.fixture
def seams(hosts: dict[str, MemoryHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seams:
    """Every host in memory, files only; the state database in tmp_path."""
    monkeypatch.setenv("ALLMENDE_STATE", str(tmp_path / "state.sqlite"))
    return Seams(connect=lambda inventory, name, env: hosts[name], actions=no_actions)


def edit(inventory: Path, name: str, old: str, new: str) -> None:
    path = inventory / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_error_finding_stops_plan_and_apply_and_force_passes_a_chosen_few(
    inventory: Path,
    hosts: dict[str, MemoryHost],
    seams: Seams,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edit(inventory, "services/wiki.yaml", "mediawiki:1.42.3", "mediawiki:latest")
    for verb in (["plan"], ["apply", "--yes"]):
        code = main([*verb, str(inventory), "--host", "rack"], seams=seams)
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert err == (
            "services/wiki.yaml:6:12: components.app.image: error: `mediawiki:latest` uses "
            "`latest` (pin a version tag (`docker.io/library/mediawiki:<version>`) or a digest "
            "(`docker.io/library/mediawiki@sha256:...`)) [images.pinned]\n"
            "1 error finding: nothing was planned or applied; fix them (`allmende check -C "
            f"{inventory}` lists every finding); --force goes on past them.\n"
        )
    assert all(not h.files for h in hosts.values())
    code = main(["apply", str(inventory), "--host", "rack", "--yes", "--force"], seams=seams)
    assert code == 0, capsys.readouterr().err
    assert "/srv/wiki/compose.yaml" in hosts["rack"].files


@pytest.mark.parametrize(
    ("file", "old", "new", "rule"),
    [
        (
            "services/wiki.yaml",
            "volumes: {images: /var/www/html/images}",
            "volumes: {images: {path: /var/www/html/images, host: /srv/wiki}}",
            "volumes.confined",
        ),
        (
            "services/wiki.yaml",
            "volumes: {images: /var/www/html/images}",
            "volumes: {secrets: /run/secrets}",
            "volumes.confined",
        ),
        ("services/wiki.yaml", "volumes: {images:", "volumes: {Images:", "names.format"),
    ],
    ids=["whole-directory", "secrets", "uppercase-volume"],
)
def test_a_rule_that_keeps_paths_safe_is_never_forced(
    inventory: Path,
    hosts: dict[str, MemoryHost],
    seams: Seams,
    capsys: pytest.CaptureFixture[str],
    file: str,
    old: str,
    new: str,
    rule: str,
) -> None:
    edit(inventory, file, old, new)
    allow = f"allow: [{{rule: {rule}, reason: we know better}}]\n"
    (inventory / file).write_text((inventory / file).read_text() + allow)
    code = main(["apply", str(inventory), "--host", "rack", "--yes", "--force"], seams=seams)
    err = capsys.readouterr().err
    assert code == 2
    assert f"[{rule}]" in err and "[allow.refused]" in err
    assert "nothing was planned or applied" in err and "--force goes on past" not in err
    assert all(not h.files for h in hosts.values())


def test_a_volume_on_a_service_directory_is_reported_by_check(inventory: Path) -> None:
    edit(
        inventory,
        "services/wiki.yaml",
        "volumes: {images: /var/www/html/images}",
        "volumes: {images: {path: /data, host: /srv/wiki}, all: {path: /all, host: /srv},"
        " pad: {path: /pad, host: /srv/git/secrets/x}, state: {path: /s, host: /var/lib}}",
    )
    found = [str(f) for f in run(load(inventory, {})) if f.rule == "volumes.confined"]
    assert [f.split(": error: ")[1] for f in found] == [
        "volume `images` mounts /srv/wiki: that is the whole directory of `wiki` (/srv/wiki/: "
        "its project file and secrets) (mount a directory of its own: drop the `host:` path "
        "(default /srv/<service>/<volume>) and do not name a volume `secrets`) "
        "[volumes.confined]",
        "volume `all` mounts /srv: that is the whole directory of `database` (/srv/database/: "
        "its project file and secrets) (mount a directory of its own: drop the `host:` path "
        "(default /srv/<service>/<volume>) and do not name a volume `secrets`) "
        "[volumes.confined]",
        "volume `pad` mounts /srv/git/secrets/x: that is the secrets of `git` "
        "(/srv/git/secrets/) (mount a directory of its own: drop the `host:` path (default "
        "/srv/<service>/<volume>) and do not name a volume `secrets`) [volumes.confined]",
        "volume `state` mounts /var/lib: that is /var/lib/allmende/, which allmende writes "
        "(mount a directory of its own: drop the `host:` path (default "
        "/srv/<service>/<volume>) and do not name a volume `secrets`) [volumes.confined]",
    ]


def test_which_rules_force_passes() -> None:
    assert forceable() == ["backups.required", "images.pinned", "ports.bind", "secrets.plaintext"]
    guarded = sorted(r.id for r in RULES.values() if r.guards_paths)
    assert guarded == ["names.format", "volumes.confined"]


def test_a_file_another_inventory_wrote_is_marked_by_plan_and_taken_over_only_with_force(
    inventory: Path,
    hosts: dict[str, MemoryHost],
    seams: Seams,
    capsys: pytest.CaptureFixture[str],
) -> None:
    theirs = (
        b"# Generated by allmende for makerspace from allmende.yaml, services/wiki.yaml.\n"
        b"# Do not edit: change the inventory and render again.\n"
        b"services: {}\n"
    )
    hosts["rack"].files["/srv/wiki/compose.yaml"] = (theirs, 0o644)

    code = main(["plan", "-C", str(inventory), "--host", "rack"], seams=seams)
    out, _ = capsys.readouterr()
    assert code == 3
    assert (
        "Update rack:/srv/wiki/compose.yaml (written by the inventory of makerspace: apply "
        "takes it over only with --force)"
    ) in out

    code = main(["apply", "-C", str(inventory), "--host", "rack", "--yes"], seams=seams)
    out, err = capsys.readouterr()
    assert code == 2
    assert (
        "the plan overwrites files another inventory wrote: rack:/srv/wiki/compose.yaml "
        "(makerspace); nothing was applied: check whose they are, then apply with --force to "
        "take them over"
    ) in err
    assert hosts["rack"].files["/srv/wiki/compose.yaml"][0] == theirs
    assert "/srv/git/compose.yaml" not in hosts["rack"].files

    code = main(["apply", "-C", str(inventory), "--host", "rack", "--yes", "--force"], seams=seams)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "written by the inventory of makerspace" in out
    ours = hosts["rack"].text("/srv/wiki/compose.yaml")
    assert ours.startswith("# Generated by allmende for nordlicht from ")
    # Taken over, it is ours: the next plan marks nothing.
    main(["plan", "-C", str(inventory), "--host", "rack"], seams=seams)
    assert "written by the inventory of" not in capsys.readouterr().out


def test_up_refuses_another_inventorys_file_and_names_the_command_that_takes_it_over(
    inventory: Path,
    hosts: dict[str, MemoryHost],
    seams: Seams,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    theirs = b"# Generated by allmende for makerspace from allmende.yaml.\nservices: {}\n"
    hosts["rack"].files["/srv/wiki/compose.yaml"] = (theirs, 0o644)
    hosts["gateway"].answer(["haproxy", "-c"], Ran(0, b"Configuration file is valid\n", b""))
    site = str(tmp_path / "site")
    argv = ["up", "-C", str(inventory), "--yes", "--no-serve", "--out", site]
    assert main(argv, seams=seams) == 2
    err = capsys.readouterr().err
    assert "Not applied: the plan overwrites files another inventory wrote" in err
    (command,) = re.findall(r"\(`(allmende apply [^`]*)`\)", err)
    assert command == f"allmende apply --force -C {inventory}"
    assert hosts["rack"].files["/srv/wiki/compose.yaml"][0] == theirs

    # The hint, run as it stands (answering the question with --yes).
    assert main([*shlex.split(command)[1:], "--yes"], seams=seams) == 0
    assert (
        hosts["rack"]
        .text("/srv/wiki/compose.yaml")
        .startswith("# Generated by allmende for nordlicht from ")
    )
