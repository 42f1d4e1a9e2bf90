"""Every command names the inventory the same way: ``-C DIR``, the current directory when not
given."""

from __future__ import annotations

from collections.abc import Iterator

import click

from allmende.cli.main import cli

#: The commands that read no inventory: the backup and certificate jobs timers run on a host,
#: from the job files apply wrote there, the freshness a watch host asks a host for, and the
#: JSON Schemas of the files.
WITHOUT_INVENTORY = {"backup job", "backup freshness", "certs job", "schema"}


def commands(
    group: click.Group, ctx: click.Context, prefix: str = ""
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from commands(command, ctx, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_that_reads_an_inventory_takes_dash_c() -> None:
    found = dict(commands(cli, click.Context(cli)))
    assert set(found) >= WITHOUT_INVENTORY
    for name, command in found.items():
        options = [o for p in command.params for o in getattr(p, "opts", [])]
        if name in WITHOUT_INVENTORY:
            assert "-C" not in options, name
        else:
            assert [o for o in options if o in ("-C", "--inventory")] == ["-C", "--inventory"], name
