"""What a newcomer meets in the first hour, run as they run it: the `allmende` program, from a
directory other than the inventory's, naming the inventory with `-C`.

Every hint that names a command is taken from the output as printed and run as it stands,
from the same directory, and must succeed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import FIXTURES, overlay, own_secrets

PROGRAM = Path(sys.executable).parent / "allmende"
HINTED = re.compile(r"`(allmende [^`]*)`")


class Newcomer:
    """Someone at a shell in ``where``, with their own age key and state database."""

    def __init__(self, where: Path, env: dict[str, str]) -> None:
        self.where = where
        self.env = env

    def run(self, line: str, value: str | None = None) -> subprocess.CompletedProcess[str]:
        words = shlex.split(line)
        assert words[0] == "allmende", line
        return subprocess.run(
            [str(PROGRAM), *words[1:]],
            cwd=self.where,
            env=self.env,
            input=value if value is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def newcomer(tmp_path: Path) -> Newcomer:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "NO_COLOR": "1",
    }
    return Newcomer(elsewhere, env)


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """The base inventory with secrets of a key of the test, one of them not stored: as a
    clone looks before its member stored every secret."""
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    own_secrets(inventory, tmp_path / "age.key")
    (inventory / "secrets" / "wiki" / "db-password.age").unlink()
    return inventory


def hints(output: str) -> list[str]:
    return HINTED.findall(output)


def test_docs_and_graph_work_on_a_fresh_clone_and_check_says_which_secret_is_missing(
    newcomer: Newcomer, fresh_clone: Path
) -> None:
    relative = os.path.relpath(fresh_clone, newcomer.where)
    docs = newcomer.run(f"allmende docs -C {relative} --out site")
    assert docs.returncode == 0, docs.stderr
    assert (newcomer.where / "site" / "index.html").exists()
    graph = newcomer.run(f"allmende graph -C {relative} --format dot")
    assert graph.returncode == 0, graph.stderr
    assert "wiki" in graph.stdout

    check = newcomer.run(f"allmende check -C {relative}")
    assert check.returncode == 1
    assert (
        "services/wiki.yaml:8:31: components.app.secrets.MW_DB_PASSWORD: error: secret "
        "`wiki/db-password` is not stored in secrets/ (run `allmende secret set "
        f"wiki/db-password -C {relative}`) [secrets.stored]"
    ) in check.stdout
    plan = newcomer.run(f"allmende plan -C {relative}")
    assert plan.returncode == 2
    assert "[secrets.stored]" in plan.stderr
    assert "nothing was planned or applied" in plan.stderr
    # The refusal's hint lists every finding, typed for here.
    (listing,) = hints(plan.stderr.splitlines()[-1])
    assert listing == f"allmende check -C {relative}"
    assert newcomer.run(listing).stdout == check.stdout

    # Every command the check names, run as printed, from here.
    commands = sorted(set(hints(check.stdout)))
    assert commands == [f"allmende secret set wiki/db-password -C {relative}"]
    for command in commands:
        done = newcomer.run(command, value="s3cret")
        assert done.returncode == 0, done.stderr
    again = newcomer.run(f"allmende check -C {relative}")
    assert "secrets.stored" not in again.stdout
    assert "databases.passwords" not in again.stdout


def test_a_plaintext_password_names_the_command_that_stores_it(
    newcomer: Newcomer, fresh_clone: Path
) -> None:
    wiki = fresh_clone / "services" / "wiki.yaml"
    wiki.write_text(
        wiki.read_text().replace("env: {", "env: {MW_ADMIN_PASSWORD: correct-horse-battery, ")
    )
    check = newcomer.run(f"allmende check -C {fresh_clone}")
    (line,) = [line for line in check.stdout.splitlines() if "[secrets.plaintext]" in line]
    command = hints(line)[0]
    assert command == f"allmende secret set wiki/mw-admin-password -C {fresh_clone}"
    assert newcomer.run(command, value="correct-horse-battery").returncode == 0
    shown = newcomer.run(f"allmende secret get wiki/mw-admin-password -C {fresh_clone}")
    assert shown.stdout == "correct-horse-battery"


def test_the_secret_store_names_its_commands_for_here(
    newcomer: Newcomer, fresh_clone: Path, tmp_path: Path
) -> None:
    missing = newcomer.run(f"allmende secret get nothing/here -C {fresh_clone}")
    assert missing.returncode == 2
    (listing,) = hints(missing.stderr)
    assert listing == f"allmende secret list -C {fresh_clone}"
    listed = newcomer.run(listing)
    assert listed.returncode == 0 and "git/db-password" in listed.stdout

    (fresh_clone / "secrets" / "recipients.txt").unlink()
    refused = newcomer.run(f"allmende secret set pad/token -C {fresh_clone}", value="x")
    assert refused.returncode == 2
    init, _ = hints(refused.stderr)
    assert init == f"allmende secret init -C {fresh_clone}"
    newcomer.env["ALLMENDE_AGE_KEY"] = str(tmp_path / "second.key")
    assert newcomer.run(init).returncode == 0
    assert (
        newcomer.run(f"allmende secret set pad/token -C {fresh_clone}", value="x").returncode == 0
    )


def test_every_command_names_the_inventory_the_same_way_and_the_old_spellings_still_work(
    newcomer: Newcomer, fresh_clone: Path
) -> None:
    compose = newcomer.where / "project"
    compose.mkdir()
    (compose / "compose.yaml").write_text("services:\n  web:\n    image: nginx:1.27.3\n")
    for line in (
        f"allmende check -C {fresh_clone}",
        f"allmende check --inventory {fresh_clone}",
        f"allmende check {fresh_clone}",  # the older spelling
        f"allmende secret list -C {fresh_clone}",
        f"allmende secret list --inventory {fresh_clone}",
        f"allmende import compose project --host rack --dry-run -C {fresh_clone}",
        f"allmende import compose project --host rack --dry-run --into {fresh_clone}",
        f"allmende render -C {fresh_clone} --out rendered",
    ):
        done = newcomer.run(line)
        assert done.returncode in (0, 1), (line, done.stderr)
        assert "Usage" not in done.stderr
    twice = newcomer.run(f"allmende check -C {fresh_clone} {newcomer.where}")
    assert twice.returncode == 2
    assert "the inventory is named twice" in twice.stderr
    here = newcomer.run("allmende check")
    assert here.returncode == 2
    assert "allmende.yaml: missing: this is not an inventory" in here.stderr
    shutil.rmtree(newcomer.where / "rendered")


README = Path(__file__).parents[2] / "README.md"


def shown_in_readme(command: str) -> list[str]:
    """The lines the README shows under ``$ command`` in its block."""
    text = README.read_text()
    start = text.index(f"$ {command}\n") + len(command) + 3
    return text[start : text.index("```", start)].splitlines()


def test_the_readme_shows_both_kinds_of_check_output_as_they_look(
    newcomer: Newcomer, tmp_path: Path
) -> None:
    # Load problems: one file with several mistakes beside a component without its image.
    overlay(FIXTURES / "invalid" / "several-mistakes", newcomer.where / "inv")
    problems = newcomer.run("allmende check -C inv")
    assert problems.returncode == 2
    assert (problems.stdout + problems.stderr).splitlines() == shown_in_readme(
        "allmende check -C inv"
    )
    # Rule findings, each hint typed for where the user stands.
    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inv")
    own_secrets(inventory, tmp_path / "age.key")
    (inventory / "secrets" / "wiki" / "db-password.age").unlink()
    wiki = inventory / "services" / "wiki.yaml"
    wiki.write_text(wiki.read_text().replace("mediawiki:1.42.3", "mediawiki:latest"))
    findings = newcomer.run("allmende check -C ../inv")
    assert findings.returncode == 1
    assert (findings.stdout + findings.stderr).splitlines() == shown_in_readme(
        "allmende check -C ../inv"
    )
