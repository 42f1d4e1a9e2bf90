"""The command reference, ``cli.md``: the help of every command, from the command line itself.

With the rest of the generated reference (``allmende.actions.reference``) it makes up
docs/reference/, which `script/reference` writes and a test keeps from drifting.
"""

from __future__ import annotations

import click

from allmende.actions import reference
from allmende.cli.main import cli


def _command_markdown(command: click.Command, path: list[str], out: list[str]) -> None:
    context = click.Context(
        command, info_name=" ".join(path), terminal_width=88, max_content_width=88
    )
    out += [f"## `{' '.join(path)}`", "", "```", command.get_help(context).rstrip(), "```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                _command_markdown(sub, [*path, name], out)


def cli_markdown() -> str:
    """Return the command reference: the help of every command and subcommand."""
    out = ["# Commands", "", "Generated from `allmende --help`; do not edit by hand.", ""]
    _command_markdown(cli, ["allmende"], out)
    return "\n".join(out).rstrip() + "\n"


def files() -> dict[str, str]:
    """Return every generated reference file, the commands' included: relative path -> text."""
    return {**reference.files(), "cli.md": cli_markdown()}
