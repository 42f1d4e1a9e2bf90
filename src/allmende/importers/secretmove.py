"""Values that look secret leave the environment for the secret store, each with its delivery.

Every env value ``looks_secret`` judges secret is moved into the secret store (equal values
share one secret) and named under the component's ``secrets`` with the delivery
``delivery.choose`` picks for it; the note of each says why the value was judged secret and how
it reaches the program now. Where the value was also written out in the component's shell
healthcheck or shell command (``mysqladmin ping -p<password>``, after Compose interpolated
``${MYSQL_ROOT_PASSWORD}``), it is replaced there by a reference to the variable the container
now has (``${MYSQL_ROOT_PASSWORD}``), and the secret is delivered as that variable; where it
cannot be (a command that runs without a shell), it stays and the note says that
``secrets.plaintext`` will report it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from allmende.importers import delivery
from allmende.importers.context import ComponentContext
from allmende.importers.naming import secret_name, unique
from allmende.importers.result import Imported
from allmende.inventory.secretlike import looks_secret
from allmende.inventory.secretnames import flat_name

_SHELLS = frozenset({"sh", "bash", "ash", "dash", "/bin/sh", "/bin/bash", "/bin/ash"})
_SHELLS |= {"/usr/bin/env sh", "/usr/bin/sh", "/usr/bin/bash"}
#: Shorter values are not looked for in commands: they would match by chance.
_SHORTEST = 4


def _shell_line(words: list[str]) -> int | None:
    """Return the index of the shell line in ``[sh, -c, LINE, ...]``, or None."""
    if len(words) >= 3 and words[0] in _SHELLS and words[1] == "-c":
        return 2
    return None


def _places(ctx: ComponentContext) -> Iterator[tuple[str, list[Any], bool]]:
    """Yield (what, a list of words that may hold a written-out secret, escaped): the typed
    command and healthcheck command, and their verbatim copies (``$`` written ``$$`` there)."""
    command = ctx.component.get("command")
    if isinstance(command, list):
        yield "command", command, False
    check = ctx.component.get("healthcheck")
    if isinstance(check, dict) and isinstance(check.get("command"), list):
        yield "healthcheck", check["command"], False
    for key in ("command", "entrypoint"):
        if isinstance(ctx.verbatim.get(key), list):
            yield key, ctx.verbatim[key], True
    kept = ctx.verbatim.get("healthcheck")
    if isinstance(kept, dict) and isinstance(kept.get("test"), list):
        test = kept["test"]
        if test and test[0] == "CMD":
            yield "healthcheck", test[1:], True


def texts(ctx: ComponentContext) -> list[str]:
    """Return every word of the component's commands and healthchecks."""
    found = [str(w) for _, words, _ in _places(ctx) for w in words]
    test = (ctx.verbatim.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        found.append(test)
    return found


def _contexts(value: str) -> re.Pattern[str]:
    """Return where a written-out password sits in a shell line: after ``-p`` (the MySQL
    clients), ``--password``/``--pass`` (with ``=`` or a space), ``-a`` (redis-cli), an
    assignment to a ``*PASS*`` variable, or in a URL between ``user:`` and ``@``."""
    v = re.escape(value)
    return re.compile(
        rf"(?<=\s-p){v}(?=\s|$|['\"])"
        rf"|(?<=--password=){v}|(?<=--password ){v}|(?<=--pass=){v}|(?<=--pass ){v}"
        rf"|(?<=\s-a ){v}(?=\s|$)|(?<=PASS=){v}|(?<=PASSWORD=){v}"
        rf"|(?<=:){v}(?=@)"
    )


def _replace(ctx: ComponentContext, variable: str, value: str) -> tuple[list[str], list[str]]:
    """Replace a written-out secret value in the component's shell lines by a reference to
    its variable, where it sits as a password (``_contexts``); return (where it was replaced,
    where the value stays written out)."""
    done: list[str] = []
    left: list[str] = []
    if len(value) < _SHORTEST:
        return done, left
    where = _contexts(value)
    for what, words, escaped in _places(ctx):
        line = _shell_line([str(w) for w in words])
        reference = ("$${" if escaped else "${") + variable + "}"
        for i, word in enumerate(words):
            if not isinstance(word, str) or value not in word:
                continue
            if i == line and where.search(" " + word):
                words[i] = where.sub(reference, " " + word)[1:]
                done.append(what)
            if value in words[i] and where.search(" " + words[i]):
                left.append(what)
    kept = ctx.verbatim.get("healthcheck")
    test: Any = kept.get("test") if isinstance(kept, dict) else None
    shell = isinstance(test, list) and len(test) == 2 and test[0] == "CMD-SHELL"
    text: str | None = test if isinstance(test, str) else str(test[1]) if shell else None
    if isinstance(kept, dict) and text is not None and where.search(" " + text):
        replaced = where.sub("$${" + variable + "}", " " + text)[1:]
        kept["test"] = replaced if isinstance(test, str) else ["CMD-SHELL", replaced]
        done.append("healthcheck")
    return sorted(set(done)), sorted(set(left))


def move_secrets(out: Imported, contexts: list[ComponentContext]) -> None:
    """Move every secret-looking env value into ``out.secrets`` (see the module's text).

    A component that also mounts compose secrets keeps its ``secrets`` list verbatim, so the
    secrets the renderer mounts for it are added to that list (the list replaces the one the
    renderer writes).
    """
    by_value: dict[str, tuple[str, str, str]] = {}
    for ctx in contexts:
        env: dict[str, str] = ctx.component.get("env", {})
        moved: dict[str, Any] = {}
        mounted: list[str] = []
        for key in list(env):
            value = env[key]
            why = looks_secret(key, value)
            if not why:
                continue
            same = ""
            if value in by_value:
                name, first, owner = by_value[value]
                same = f"; the same value as {first} of {owner}"
            else:
                name = secret_name(out.name, key)
                if name in out.secrets:
                    name = unique(secret_name(out.name, f"{ctx.cname}-{key}"), out.secrets)
                out.secrets[name] = value
                by_value[value] = (name, key, ctx.cname)
            replaced, left = _replace(ctx, key, value)
            how, how_why = delivery.choose(ctx.component.get("image"), key, texts(ctx))
            if replaced:
                how = "env"
                how_why = (
                    f"as the variable itself, which its {' and '.join(replaced)} now refers "
                    "to instead of the written-out value"
                )
            if how == "file":
                moved[key] = name
                mounted.append(flat_name(name))
            else:
                moved[key] = {"secret": name, "as": "env"}
            del env[key]
            ctx.note(
                _env_path(ctx, key),
                "moved",
                f"moved {key} of {ctx.cname} into the secret store as {name} ({why}{same}); "
                f"delivered {how_why}",
            )
            for what in left:
                ctx.note(
                    (what,),
                    "warning",
                    f"the value of {key} is also written out in the {what}, which runs without a "
                    "shell: it stays there, and `secrets.plaintext` reports it",
                )
        if not env:
            ctx.component.pop("env", None)
        if moved:
            ctx.component["secrets"] = moved
            kept = ctx.verbatim.get("secrets")
            if isinstance(kept, list):
                mine = sorted(set(mounted))
                ctx.verbatim["secrets"] = [*kept, *(m for m in mine if m not in kept)]


def _env_path(ctx: ComponentContext, key: str) -> tuple[str | int, ...]:
    given = ctx.compose.get("environment")
    if isinstance(given, dict) and key in given:
        return ("environment", key)
    if isinstance(given, list):
        for i, item in enumerate(given):
            if str(item).partition("=")[0] == key:
                return ("environment", i)
    return ("env_file",) if "env_file" in ctx.compose else ("environment",)
