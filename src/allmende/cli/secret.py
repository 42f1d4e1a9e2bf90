"""`allmende secret ...`: keep secret values encrypted with age in the inventory's secrets/.

Thin: parse, call allmende.actions.secret, print. Failures are SecretError (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from allmende.actions import secret as action
from allmende.actions.secret import RECIPIENTS
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo
from allmende.errors import SecretError

COMMENT_HELP = f"Whose key it is, written above it in {RECIPIENTS}."


def _stdin_is_terminal() -> bool:
    """Return whether a person types on stdin (then the value is asked for without echo)."""
    return sys.stdin.isatty()


def _read_value(name: str, from_file: Path | None) -> bytes:
    """Return the value to store: from from_file, typed at a hidden prompt, or piped in."""
    if from_file is not None:
        return action.read_file(from_file)
    if _stdin_is_terminal():
        typed: str = click.prompt(
            f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True
        )
        return typed.encode()
    return click.get_binary_stream("stdin").read()


@click.group()
def secret() -> None:
    """Keep secret values encrypted with age in the inventory's secrets/ directory.

    Your private key stays outside the inventory: $ALLMENDE_AGE_KEY, else
    $XDG_CONFIG_HOME/allmende/age.key, else ~/.config/allmende/age.key.
    """


@secret.command()
@inventory_option()
@click.option("--comment", default="", help=COMMENT_HELP)
def init(inventory: Path, comment: str) -> None:
    """Create your private key and add it as a recipient."""
    key = action.init(inventory, comment)
    echo(f"Created your private age key at {key.path}.")
    echo("Keep a copy of it somewhere safe: without it you cannot decrypt the secrets.")
    echo(f"Public key {key.public_key} added to {RECIPIENTS}.")


@secret.command(name="set")
@click.argument("name")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the value from this file instead of stdin.",
)
@inventory_option()
def set_(name: str, from_file: Path | None, inventory: Path) -> None:
    """Store the value of secret NAME, encrypted to every recipient.

    The value is asked for without echo, or read from stdin when piped, exactly as given: use
    `printf %s VALUE | allmende secret set NAME` to store it without a trailing newline.
    """
    stored = action.set_value(inventory, name, lambda: _read_value(name, from_file))
    plural = "" if stored.recipients == 1 else "s"
    echo(f"Stored {name}, encrypted to {stored.recipients} recipient{plural}.")
    if stored.not_yours is not None:
        echo(
            f"warning: your key {stored.not_yours} is not a recipient (not in {RECIPIENTS}): "
            f"you cannot read {name} back, nor plan or apply what uses it",
            err=True,
        )


@secret.command()
@click.argument("name")
@inventory_option()
def get(name: str, inventory: Path) -> None:
    """Print the value of secret NAME exactly as stored."""
    value = action.store(inventory).get(name)
    stdout = click.get_binary_stream("stdout")
    try:
        stdout.write(value)
        stdout.flush()
    except OSError as err:
        raise SecretError(f"cannot write the value of {name}: {err.strerror}") from None


@secret.command(name="list")
@inventory_option()
def list_(inventory: Path) -> None:
    """List the names of the stored secrets (needs no key)."""
    for name in action.store(inventory).names():
        echo(name)


@secret.command()
@click.argument("name")
@inventory_option()
def rm(name: str, inventory: Path) -> None:
    """Delete secret NAME.

    Its encrypted value stays in the Git history: change the secret itself if it leaked.
    """
    action.store(inventory).remove(name)
    echo(f"Removed {name}.")


@secret.group()
def recipient() -> None:
    """Manage whose keys the secrets are encrypted to."""


@recipient.command(name="add")
@click.argument("key")
@click.option("--comment", default="", help=COMMENT_HELP)
@inventory_option()
def recipient_add(key: str, comment: str, inventory: Path) -> None:
    """Add the age public KEY (age1...) of a member to the recipients.

    Secrets set from now on are encrypted to it too; those stored before stay readable only by
    the earlier recipients until they are set again.
    """
    if action.add_recipient(inventory, key, comment):
        echo(f"Added {key.strip().lower()} to {RECIPIENTS}.")
        echo("Secrets stored before stay readable only by the earlier recipients until set again.")
    else:
        echo(f"{key.strip().lower()} is already in {RECIPIENTS}.")
