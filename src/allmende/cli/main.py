"""The command line: parse, call an action, print. Nothing else lives here.

User mistakes (UserError) are printed without a traceback and exit with their code (2);
anything else is a bug and is reported as one.
"""

from __future__ import annotations

import importlib
import keyword
import sys
import traceback
from typing import TYPE_CHECKING

import click

from allmende import version
from allmende.cli.output import setup_logging
from allmende.cli.terminal import echo
from allmende.errors import UserError

if TYPE_CHECKING:
    from allmende.actions.plan import Seams

#: Each module under allmende.cli that holds one command (or group), and that command's name.
COMMANDS = {
    "check": "check",
    "schema": "schema",
    "docs": "docs",
    "graph": "graph",
    "secret": "secret",
    "up": "up",
    "render": "render",
    "import": "importing",
    "plan": "plan",
    "apply": "apply",
    "rollback": "rollback",
    "backup": "backup",
    "certs": "certs",
    "watch": "watch",
    "status": "watch",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        attribute = f"{cmd_name}_" if keyword.iskeyword(cmd_name) else cmd_name
        command = getattr(importlib.import_module(f"allmende.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command


def show_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    """Print the version and stop (looked up only here: ``allmende.version``)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"allmende, version {version()}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=show_version,
    help="Show the version and exit.",
)
@click.option("-v", "--verbose", count=True, help="Say more (twice: debug).")
def cli(verbose: int) -> None:
    """Keep a collective's shared servers as one Git repository of small YAML files."""
    setup_logging(verbose)


def main(argv: list[str] | None = None, seams: Seams | None = None) -> int:
    """Run the command line and return the exit code. ``seams`` replace how plan and apply
    render, reach hosts and find actions (for tests; see ``actions.plan.Seams``)."""
    try:
        result = cli.main(args=argv, prog_name="allmende", standalone_mode=False, obj=seams)
    except UserError as exc:
        echo(str(exc), err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        echo(traceback.format_exc(), err=True)
        echo(
            "allmende: internal error (a bug in allmende, not in your inventory); "
            "please report it with the text above.",
            err=True,
        )
        return 70
    return result if isinstance(result, int) else 0


def run() -> None:
    """Entry point of the `allmende` console script."""
    sys.exit(main())
