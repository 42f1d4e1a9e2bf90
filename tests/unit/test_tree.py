"""A generated directory (a site, a rendered tree) is written whole or not at all: what is
there stays when a write fails, a directory allmende did not make is never replaced, and what
a killed writer left beside it is cleared by the next."""

from __future__ import annotations

from pathlib import Path

import pytest

from allmende.actions.tree import locked, publish, refuse_foreign, target
from allmende.errors import InternalError, UserError


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_a_tree_replaces_the_previous_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "site"
    publish(out, {"index.html": b"one", "old/page.html": b"gone soon"})
    publish(out, {"index.html": b"two", "run/start.sh": b"#!/bin/sh\n"}, {"run/start.sh": 0o755})
    assert tree(out) == {"index.html": b"two", "run/start.sh": b"#!/bin/sh\n"}
    assert oct((out / "run/start.sh").stat().st_mode & 0o777) == "0o755"
    assert oct((out / "index.html").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # nothing left beside it


@pytest.mark.parametrize("name", ["../escape.html", "/etc/passwd", "a/../../b", ""])
def test_a_path_out_of_the_tree_is_refused_and_the_old_tree_stays(
    tmp_path: Path, name: str
) -> None:
    out = tmp_path / "site"
    publish(out, {"index.html": b"kept"})
    with pytest.raises(InternalError, match="unsafe path"):
        publish(out, {"index.html": b"new", name: b"x"})
    assert tree(out) == {"index.html": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_write_that_fails_halfway_leaves_the_old_tree(tmp_path: Path) -> None:
    out = tmp_path / "site"
    publish(out, {"index.html": b"kept"})
    with pytest.raises(UserError, match=f"cannot write the docs to {out}"):
        publish(out, {"a": b"a file", "a/b": b"under a file"}, what="docs")
    assert tree(out) == {"index.html": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_tree_cannot_go_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    with pytest.raises(UserError, match="cannot write the site to"):
        publish(tmp_path / "file" / "site", {"index.html": b"x"})
    with (
        pytest.raises(UserError, match="cannot write the site to"),
        locked(tmp_path / "file" / "x"),
    ):
        pass


def test_only_an_empty_or_generated_directory_is_replaced(tmp_path: Path) -> None:
    refuse_foreign(tmp_path / "absent", ".allmende-site", "site")
    (tmp_path / "empty").mkdir()
    refuse_foreign(tmp_path / "empty", ".allmende-site", "site")
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / ".allmende-site").write_text("")
    (tmp_path / "ours" / "index.html").write_text("")
    refuse_foreign(tmp_path / "ours", ".allmende-site", "site")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "thesis.tex").write_text("")
    with pytest.raises(UserError, match=r"does not look like a site allmende built .*empty the"):
        refuse_foreign(tmp_path / "theirs", ".allmende-site", "site")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="is not a directory: refusing to replace it with the site"):
        refuse_foreign(tmp_path / "a-file", ".allmende-site", "site")


def test_what_a_killed_writer_left_is_cleared_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "site"
    for left in (".site.new-abc", ".site.old-def"):
        (tmp_path / left / "site").mkdir(parents=True)
    (tmp_path / ".site.new-file").write_text("not ours to remove: a file\n")
    (tmp_path / ".other.new-abc").mkdir()
    with locked(out):
        publish(out, {"index.html": b"x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.new-abc",
        ".site.new-file",
        "site",
    ]


def test_the_target_is_absolute_with_its_links_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert target(tmp_path / "link" / "site") == tmp_path / "real" / "site"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UserError, match="its symbolic links form a loop"):
        target(tmp_path / "loop" / "site")
