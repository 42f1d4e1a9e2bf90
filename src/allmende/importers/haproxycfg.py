"""Read an HAProxy configuration into its sections, each line split into words, numbered.

Words are split on spaces and tabs; ``"..."`` and ``'...'`` quote, a backslash escapes, and a
``#`` outside quotes starts a comment. Templating that was never rendered cannot be read as
HAProxy: a Jinja ``{{ ... }}`` is read as the word ``template``, a line with ``{% %}`` is left
out, and both are reported. Only what routing
needs is interpreted later (``mode``, ``bind``, ``acl``, ``use_backend``, ``default_backend``,
``server``, ``http-request redirect``); everything else is kept as words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

SECTIONS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "userlist",
        "peers",
        "resolvers",
        "cache",
        "program",
        "http-errors",
        "ring",
        "mailers",
        "acme",
        "crt-store",
        "traces",
        "log-forward",
        "fcgi-app",
    }
)


@dataclass(frozen=True)
class Line:
    """One directive: its line number (1-based) and its words."""

    number: int
    words: tuple[str, ...]


@dataclass
class Section:
    """A section (``frontend web``, ``backend be_wiki``, ...) and its directives."""

    kind: str
    name: str
    line: int
    lines: list[Line] = field(default_factory=list)

    def first(self, keyword: str) -> Line | None:
        """Return the first directive starting with ``keyword``, if any."""
        return next((line for line in self.lines if line.words[0] == keyword), None)


def split(text: str) -> list[str]:
    """Given one line of configuration, return its words (quotes and escapes resolved,
    the comment left out)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    started = False
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and i + 1 < len(text):
                i += 1
                current.append(text[i])
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
            started = True
        elif char == "\\" and i + 1 < len(text):
            i += 1
            current.append(text[i])
            started = True
        elif char == "#" and not started:
            break
        elif char in " \t":
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if started:
        words.append("".join(current))
    return words


def condition(words: Sequence[str]) -> list[list[str | tuple[str, ...]]]:
    """Given the words of a condition (after ``if``), return its alternatives (``||``, ``or``)
    of terms: a word (an ACL's name, ``!name``, ``and``...) or the words inside ``{ }``."""
    alternatives: list[list[str | tuple[str, ...]]] = [[]]
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("||", "or", "OR"):
            alternatives.append([])
        elif word == "{":
            end = list(words).index("}", i) if "}" in words[i:] else len(words)
            alternatives[-1].append(tuple(words[i + 1 : end]))
            i = end
        else:
            alternatives[-1].append(word)
        i += 1
    return alternatives


def parse(text: str) -> tuple[list[Section], list[tuple[int, str]]]:
    """Given a configuration's text, return its sections and (line, message) for every line
    that cannot be read (templating, directives outside any section)."""
    sections: list[Section] = []
    problems: list[tuple[int, str]] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if "{%" in raw or "{#" in raw:
            problems.append((number, "template markup ({% %}) left out: render the template first"))
            continue
        if "{{" in raw:
            problems.append(
                (number, "template markup ({{ }}) read as `template`: render the template first")
            )
            raw = re.sub(r"\{\{.*?\}\}", "template", raw)
        words = split(raw)
        if not words:
            continue
        if words[0] in SECTIONS:
            name = words[1] if len(words) > 1 else ""
            current = Section(words[0], name, number)
            sections.append(current)
            continue
        if current is None:
            problems.append((number, f"`{words[0]}` outside of any section"))
            continue
        current.lines.append(Line(number, tuple(words)))
    return sections, problems
