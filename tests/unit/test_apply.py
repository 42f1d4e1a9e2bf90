"""The pure parts of apply: modes, the manifest after an apply, and the delete guard."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from allmende.actions.apply import refuse_large_deletes
from allmende.actions.plan import Prepared
from allmende.apply.files import new_manifest
from allmende.apply.lock import describe
from allmende.connectors.base import temp_beside, write_error
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Change, Plan
from allmende.plan.digest import HostKey
from allmende.plan.observe import file_mode
from allmende.render.output import Rendered

KEY = HostKey(b"k" * 32)


def test_files_under_a_secrets_directory_are_written_0600() -> None:
    rendered = Rendered(b"x", ("services/wiki.yaml",), 0o644)
    assert file_mode("/srv/wiki/secrets/db-password", rendered) == 0o600
    assert file_mode("/srv/wiki/compose.yaml", rendered) == 0o644
    assert file_mode("/srv/wiki/secrets", rendered) == 0o644


def test_the_temp_file_sits_beside_its_target() -> None:
    assert temp_beside("/etc/haproxy/haproxy.cfg") == "/etc/haproxy/.haproxy.cfg.allmende-tmp"


def test_the_manifest_keeps_other_hosts_and_in_scope_other_files() -> None:
    old = json.dumps(
        {
            "version": 1,
            "hosts": {
                "rack": {"/srv/a": {"sha256": "1", "sources": []}, "/srv/b": {"sha256": "2"}},
                "other": {"/srv/c": {"sha256": "3", "sources": []}},
            },
        }
    ).encode()
    wanted = {"/srv/d": Rendered(b"d", ("services/d.yaml",))}
    scoped = json.loads(new_manifest(old, "rack", wanted, ["/srv/a"], scoped=True, key=KEY))
    assert sorted(scoped["hosts"]["rack"]) == ["/srv/b", "/srv/d"]
    assert scoped["hosts"]["rack"]["/srv/d"]["sources"] == ["services/d.yaml"]
    assert "/srv/c" in scoped["hosts"]["other"]
    whole = json.loads(new_manifest(old, "rack", wanted, [], scoped=False, key=KEY))
    assert sorted(whole["hosts"]["rack"]) == ["/srv/d"]
    assert json.loads(new_manifest(None, "rack", {}, [], False, KEY)) == {
        "version": 1,
        "hosts": {"rack": {}},
    }


def prepared(deletes: int, kept: int) -> Prepared:
    changes = tuple(Change("delete", "rack", f"/srv/s{i}/compose.yaml", "") for i in range(deletes))
    wanted = {"rack": {f"/srv/k{i}": Rendered(b"", ()) for i in range(kept)}}
    return Prepared(Path(), Inventory.__new__(Inventory), wanted, Plan(changes, ("rack",)), False)


def test_large_deletes_are_refused() -> None:
    refuse_large_deletes(prepared(3, 3))
    with pytest.raises(UserError, match="deletes 4 of the 7 files allmende manages on rack"):
        refuse_large_deletes(prepared(4, 3))
    with pytest.raises(UserError, match="deletes 11 files \\(more than 10\\)"):
        refuse_large_deletes(prepared(11, 100))


def test_write_errors_say_what_they_mean() -> None:
    full = write_error("rack", "root@h:22", "writing", "/srv/a", errno.ENOSPC, "x")
    assert str(full).startswith("disk full on rack (root@h:22)") and "nothing was replaced" in str(
        full
    )
    denied = write_error("rack", "root@h:22", "writing", "/srv/a", errno.EACCES, "x")
    assert "permission denied while writing /srv/a" in str(denied)


def test_a_lock_holder_is_described() -> None:
    text, since = describe(b'{"who": "kim", "pid": 1, "since": 0}')
    assert (text, since) == ("kim (pid 1) since 1970-01-01 00:00:00 UTC", 0.0)
    assert describe(b"garbage") == ("an unknown apply", None)
    assert describe(None) == ("an unknown apply", None)
