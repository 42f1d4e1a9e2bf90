"""Say where a YAML syntax error is, and what to do, in the words of someone who wrote it.

libyaml reports where it gave up, which is not always where the mistake is: a key without its
colon (``host rack``) is read as text that goes on until the next line's colon, so the error
names the line after the mistake, and its messages speak of parser states ("while parsing a
block mapping did not find expected key"). Here each kind of error is traced back to the line
that holds the mistake, and the hint says what to write: the indentation of the keys around,
the missing ``: ``, the unclosed bracket or quote. Tabs are named only where there is a tab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from allmende.errors import Location, Problem

_Scanner: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based
    indent: int
    text: str

    @property
    def key_indent(self) -> int:
        """Where its key starts: after the `- ` of a list item."""
        return self.indent + 2 if self.text.startswith("- ") else self.indent


def _lines(text: str) -> list[_Line]:
    out = []
    for index, raw in enumerate(text.splitlines()):
        stripped = raw.lstrip(" ")
        out.append(_Line(index + 1, len(raw) - len(stripped), stripped.rstrip()))
    return out


def _meaningful(line: _Line) -> bool:
    return bool(line.text) and not line.text.startswith("#")


def _key(line: _Line) -> str:
    """Return the key a line starts with (``ports`` of ``ports: {http: 80}``), or its start."""
    text = line.text.removeprefix("- ")
    head = text.split(":", 1)[0] if ":" in text else text.split(" ", 1)[0]
    return head.strip() or text[:20]


def _spaces(count: int) -> str:
    return "no spaces" if count == 0 else "1 space" if count == 1 else f"{count} spaces"


def _levels(lines: list[_Line], number: int) -> list[_Line]:
    """Return the lines that open the levels in force before line ``number``: the line just
    above, then each line above it indented less, innermost first."""
    found: list[_Line] = []
    for line in reversed(lines[: number - 1]):
        if _meaningful(line) and (not found or line.key_indent < found[-1].key_indent):
            found.append(line)
    return found


def _indentation_hint(lines: list[_Line], number: int) -> str:
    """Say how the keys around line ``number`` are indented, the nearest levels first."""
    wrong = lines[number - 1]
    levels = sorted(_levels(lines, number), key=lambda line: abs(line.key_indent - wrong.indent))
    shown = [
        f"{_spaces(line.key_indent)} (as `{_key(line)}` on line {line.number})" for line in levels
    ]
    return "indent it as the key it belongs with: " + " or ".join(shown[:2])


def _tokens(text: str) -> list[yaml.Token]:
    """Return the tokens libyaml scanned before it stopped."""
    found: list[yaml.Token] = []
    try:
        for token in yaml.scan(text, Loader=_Scanner):
            found.append(token)
    except yaml.YAMLError:
        pass
    return found


def _values_not_allowed(text: str, lines: list[_Line], number: int, column: int) -> Problem:
    """A colon libyaml did not expect: find the text it was read as part of."""
    tokens = _tokens(text)
    scalars = [i for i, t in enumerate(tokens) if isinstance(t, yaml.ScalarToken)]
    line = lines[number - 1]
    if scalars:
        index = scalars[-1]
        scalar = tokens[index]
        start = scalar.start_mark.line + 1
        before = tokens[index - 1] if index else None
        after_key = isinstance(before, yaml.ValueToken) and before.start_mark.line + 1 == start
        if start < number and after_key:
            # `key: value` and a line indented deeper: YAML reads it as more of the value.
            above = lines[start - 1]
            return _problem(
                number,
                line.indent + 1,
                f"`{_key(line)}` is indented deeper than `{_key(above)}` on line {start}, so "
                "YAML reads it as more of that value",
                _indentation_hint(lines, number),
            )
        if start < number:
            first = lines[start - 1]
            return _problem(
                start,
                first.indent + 1,
                f"`{first.text}` has no `: ` after its key",
                "write `key: value`, with a space after the colon",
            )
    return _problem(
        number,
        column,
        "a second `: ` on one line",
        'quote a value that holds `: ` (`"a: b"`), or put the key on a line of its own',
    )


def _problem(line: int, column: int, message: str, hint: str, file: str = "") -> Problem:
    return Problem(Location(file, line, column), "", f"invalid YAML: {message}", hint)


def explain(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """Given libyaml's syntax error in ``text`` (the file ``file``), return the Problem at the
    line of the mistake, with what to write instead."""
    found = _explain(exc, text)
    where = Location(file, found.location.line, found.location.column)
    return Problem(where, "", found.message, found.hint)


def _explain(exc: yaml.MarkedYAMLError, text: str) -> Problem:
    lines = _lines(text) or [_Line(1, 0, "")]
    at = exc.problem_mark or exc.context_mark
    number = min(at.line + 1, len(lines)) if at else 1
    column = at.column + 1 if at else 1
    what = str(exc.problem or "")
    context = exc.context_mark
    if "tab" in what:
        return _problem(number, column, "a tab in the indentation", "indent with spaces, not tabs")
    if "could not find expected ':'" in what and context is not None:
        # a key without its colon: libyaml looked for it up to the next line
        start = lines[min(context.line, len(lines) - 1)]
        return _problem(
            context.line + 1,
            context.column + 1,
            f"`{start.text}` has no `: ` after its key",
            "write `key: value`, with a space after the colon; a value on a line of its own "
            "is indented under its key",
        )
    if "mapping values are not allowed" in what:
        return _values_not_allowed(text, lines, number, column)
    if "did not find expected key" in what or "expected <block end>" in what:
        line = lines[number - 1]
        return _problem(
            number,
            line.indent + 1,
            f"`{_key(line)}` is indented by {_spaces(line.indent)}, like none of the keys above it",
            _indentation_hint(lines, number),
        )
    if "did not find expected '-' indicator" in what:
        line = lines[number - 1]
        return _problem(
            number,
            line.indent + 1,
            f"`{_key(line)}` is indented by {_spaces(line.indent)}, like no item of the list "
            "above it",
            _indentation_hint(lines, number) + "; a new item starts with `- `",
        )
    if context is not None and ("flow" in str(exc.context) or "quoted" in str(exc.context)):
        if "flow" in str(exc.context):
            opened, hint = "bracket", "close it, or quote a value that holds `[`, `{` or `,`"
        else:
            opened, hint = "quote", "close it where the text ends"
        return _problem(
            context.line + 1,
            context.column + 1,
            f"the {opened} opened here is not closed ({what})",
            hint,
        )
    tab = "\t" in text.splitlines()[number - 1] if number <= len(text.splitlines()) else False
    words = " ".join(part for part in (exc.context, exc.problem) if part)
    hint = "fix the syntax; indent with spaces, not tabs" if tab else "fix the syntax"
    return _problem(number, column, words, hint)
