"""Compose's interpolation and env files (allmende.importers.interpolate), as Compose does them."""

from __future__ import annotations

import pytest

from allmende.importers.interpolate import (
    InterpolationError,
    interpolate,
    lookup_in,
    parse_dotenv,
)

ENV = {"SET": "value", "EMPTY": "", "PORT": "8080"}


def expand(text: str) -> tuple[str, list[str]]:
    missing: list[str] = []
    return interpolate(text, lookup_in(ENV), missing.append), missing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$SET and ${SET}", "value and value"),
        ("${SET:-default}", "value"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${UNSET:-${PORT}}", "8080"),
        ("${SET:+other}", "other"),
        ("${EMPTY:+other}", ""),
        ("${EMPTY+other}", "other"),
        ("${UNSET+other}", ""),
        ("$$SET costs $$5", "$SET costs $5"),
        ("price: 5$ or $1 or trailing $", "price: 5$ or $1 or trailing $"),
        ("${SET:?never}", "value"),
        ("${EMPTY?only when unset}", ""),
        ("127.0.0.1:${PORT}:80", "127.0.0.1:8080:80"),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert expand(text)[0] == expected


def test_an_unset_variable_is_empty_and_reported() -> None:
    assert expand("a${UNSET}b$ALSO") == ("ab", ["UNSET", "ALSO"])


def test_a_default_is_only_evaluated_when_used() -> None:
    assert expand("${SET:-${REQUIRED:?not needed}}") == ("value", [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${DB:?set DB in .env}", "required variable DB is not set: set DB in .env"),
        ("${EMPTY:?}", "required variable EMPTY is not set: it has no value"),
        ("${UNSET?missing}", "required variable UNSET is not set: missing"),
        ("${}", "invalid interpolation format in '${}': `${` needs a name"),
        ("${TAG", "`${TAG` is never closed: write `${TAG}`"),
        ("${TAG:-x", "unterminated `${` in '${TAG:-x'"),
        ("${A*B}", "invalid interpolation format in '${A*B}' after `${A`"),
    ],
)
def test_what_compose_refuses_is_refused(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        expand(text)
    assert str(caught.value) == message


def test_env_files_read_like_compose_reads_them() -> None:
    text = (
        "# a comment\n"
        "export NAME=allmende\n"
        "PLAIN = spaced value   # a comment\n"
        "HASH=a#b\n"
        "SINGLE='literal ${NAME} \\n'\n"
        'DOUBLE="line\\nbreak ${NAME} \\$NAME"\n'
        'MULTI="one\n'
        'two"\n'
        "REF=${NAME}-${MISSING:-x}\n"
        "INHERITED\n"
        "ABSENT\n"
        "EMPTY=\n"
    )
    values = parse_dotenv(text, lookup_in({"INHERITED": "from the environment"}))
    assert values == {
        "NAME": "allmende",
        "PLAIN": "spaced value",
        "HASH": "a#b",
        "SINGLE": "literal ${NAME} \\n",
        "DOUBLE": "line\nbreak allmende $NAME",
        "MULTI": "one\ntwo",
        "REF": "allmende-x",
        "INHERITED": "from the environment",
        "EMPTY": "",
    }


def test_the_environment_wins_inside_an_env_file() -> None:
    values = parse_dotenv("A=file\nB=${A}\n", lookup_in({"A": "shell"}))
    assert values == {"A": "file", "B": "shell"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('A=1\nB="open\n', "line 2: the value's \" quote is never closed"),
        ("A=1\nnot a key=2\n", "line 2: expected KEY=VALUE"),
        ("A=${B:?needed}\n", "line 1: required variable B is not set: needed"),
    ],
)
def test_a_broken_env_file_names_the_line(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        parse_dotenv(text, lookup_in({}))
    assert str(caught.value) == message
