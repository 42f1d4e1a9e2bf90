"""Compose's variable interpolation and its ``.env`` file format, done the way Compose does them.

Interpolation (every string value of a compose file, not its keys):

- ``$VAR`` and ``${VAR}``: the value, or the empty string (and a warning) when unset;
- ``${VAR:-default}`` when unset or empty, ``${VAR-default}`` when unset;
- ``${VAR:?message}`` fails when unset or empty, ``${VAR?message}`` when unset;
- ``${VAR:+other}`` gives ``other`` when set and not empty, ``${VAR+other}`` when set;
- defaults may themselves hold ``${...}`` (evaluated only when used);
- ``$$`` is a literal ``$``; a ``$`` followed by anything else stays as it is.

Env files (``.env``, ``env_file``): ``KEY=VALUE`` lines, an optional ``export`` in front, ``#``
comment lines and `` #`` comments after unquoted values; single quotes are literal, double quotes
understand ``\\n``, ``\\t``, ``\\"``, ``\\\\`` and ``\\$`` and may span lines; unquoted and
double-quoted values are interpolated (the environment first, then the keys above in the file).
A line holding only ``KEY`` takes the value from the environment, or is left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Lookup = Callable[[str], "str | None"]
Missing = Callable[[str], None]

_NAME_START = re.compile(r"[_A-Za-z]")
_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$$"}


class InterpolationError(ValueError):
    """A ``${...}`` that Compose would refuse: malformed, or a required variable unset."""


def _word_end(text: str, start: int) -> int:
    """Given text and where a default word starts, return the index of its closing brace."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise InterpolationError(f"unterminated `${{` in {text!r}")


def _braced(text: str, start: int, lookup: Lookup, missing: Missing) -> tuple[str, int]:
    """Expand the ``${...}`` whose ``${`` is at start; return (value, index after ``}``)."""
    match = _NAME.match(text, start + 2)
    if match is None:
        raise InterpolationError(f"invalid interpolation format in {text!r}: `${{` needs a name")
    name = match.group()
    i = match.end()
    if i >= len(text):
        raise InterpolationError(f"`${{{name}` is never closed: write `${{{name}}}`")
    if text.startswith("}", i):
        value = lookup(name)
        if value is None:
            missing(name)
            return "", i + 1
        return value, i + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
    if operator is None:
        raise InterpolationError(f"invalid interpolation format in {text!r} after `${{{name}`")
    word_start = i + len(operator)
    end = _word_end(text, word_start)
    word = text[word_start:end]
    value = lookup(name)
    empty = value is None or (operator.startswith(":") and value == "")
    kind = operator[-1]
    if kind == "-":
        result = interpolate(word, lookup, missing) if empty else str(value)
    elif kind == "?":
        if empty:
            reason = interpolate(word, lookup, missing) or "it has no value"
            raise InterpolationError(f"required variable {name} is not set: {reason}")
        result = str(value)
    else:
        result = "" if empty else interpolate(word, lookup, missing)
    return result, end + 1


def interpolate(text: str, lookup: Lookup, missing: Missing | None = None) -> str:
    """Given a string and a variable lookup, return it with every ``$`` expression expanded.

    ``missing(name)`` is called for every variable used without a default and unset (Compose
    then uses the empty string). Raise InterpolationError for a malformed ``${`` or a
    required variable (``:?``/``?``) that is unset.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    report = missing or (lambda name: None)
    while i < len(text):
        char = text[i]
        if char != "$":
            j = text.find("$", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            value, i = _braced(text, i, lookup, report)
            out.append(value)
        elif following and _NAME_START.match(following):
            match = _NAME.match(text, i + 1)
            assert match is not None
            found = lookup(match.group())
            if found is None:
                report(match.group())
            out.append(found or "")
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def lookup_in(*layers: Mapping[str, str]) -> Lookup:
    """Return a lookup that tries each mapping in turn (the first one wins)."""

    def find(name: str) -> str | None:
        for layer in layers:
            if name in layer:
                return layer[name]
        return None

    return find


def _quoted(text: str, i: int, quote: str, line: int) -> tuple[str, int]:
    """Read a quoted value whose opening quote is at i; return (raw text, index after it)."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\" and quote == '"':
            j += 2
            continue
        if text[j] == quote:
            return text[i + 1 : j], j + 1
        j += 1
    raise InterpolationError(f"line {line}: the value's {quote} quote is never closed")


def _unescape(raw: str) -> str:
    """Resolve the backslash escapes of a double-quoted env value (``\\$`` stays literal)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw)


def parse_dotenv(text: str, lookup: Lookup, missing: Missing | None = None) -> dict[str, str]:
    """Given the text of an env file and a lookup for the environment, return its variables.

    Raise InterpolationError, naming the line, for an unclosed quote, a line that is no
    ``KEY=VALUE``, or a failing ``${VAR:?...}``.
    """
    values: dict[str, str] = {}
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    here = lookup_in(values)

    def find(name: str) -> str | None:
        found = lookup(name)
        return found if found is not None else here(name)

    i = 0
    line_number, counted = 1, 0  # the line at ``counted``; counted on from there (linear)
    while i < len(text):
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        line_number += text.count("\n", counted, i)
        counted = i
        line = text[i:end].strip()
        if not line or line.startswith("#"):
            i = end + 1
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        separator = min((p for p in (line.find("="), line.find(":")) if p >= 0), default=-1)
        key = (line[:separator] if separator >= 0 else line).strip()
        if not _KEY.match(key):  # the line itself is not shown: it may hold a secret
            raise InterpolationError(f"line {line_number}: expected KEY=VALUE")
        if separator < 0:
            inherited = lookup(key)
            if inherited is not None:
                values[key] = inherited
            i = end + 1
            continue
        start = text.index(line, i) + separator + 1
        while start < len(text) and text[start] in " \t":
            start += 1
        quote = text[start : start + 1]
        try:
            if quote in ("'", '"'):
                raw, after = _quoted(text, start, quote, line_number)
                value = raw if quote == "'" else interpolate(_unescape(raw), find, missing)
                end = text.find("\n", after)
                end = len(text) if end < 0 else end
            else:
                raw = text[start:end]
                comment = re.search(r"\s#", raw)
                raw = (raw[: comment.start()] if comment else raw).strip()
                value = interpolate(raw, find, missing)
        except InterpolationError as exc:
            message = str(exc)
            if not message.startswith("line "):
                message = f"line {line_number}: {message}"
            raise InterpolationError(message) from None
        values[key] = value
        i = end + 1
    return values
