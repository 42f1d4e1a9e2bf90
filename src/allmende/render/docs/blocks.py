"""The pages of the documentation site as plain data, written once and rendered twice.

Every page is built as a ``Page`` of ``Section``s holding blocks (facts, tables, steps, code,
prose, ...) whose text is made of inlines (text, code, links). ``html.py`` turns a page into
HTML through Jinja templates and ``markdown.py`` into plain Markdown for wikis, so both formats
always say the same thing. Links name a page by its key (``services/wiki``) and an optional
anchor; each renderer makes them relative to the page they appear on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

# --------------------------------------------------------------------------- inlines


@dataclass(frozen=True)
class Text:
    """Plain text, escaped by each renderer."""

    text: str
    strong: bool = False
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Code:
    """A literal: a name, path, port, command or image."""

    text: str
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Link:
    """A link to a page of the site (``page`` key and ``anchor``) or to an outside ``url``."""

    text: str
    page: str | None = None
    anchor: str = ""
    url: str | None = None
    code: bool = False
    kind: ClassVar[str] = "link"


Inline = Text | Code | Link
Line = tuple[Inline, ...]


def line(*parts: Inline | str | None) -> Line:
    """Given text and inlines (None is skipped), return them as one Line."""
    return tuple(Text(p) if isinstance(p, str) else p for p in parts if p is not None)


def joined(items: Iterable[Line | Inline], separator: str = ", ", empty: str = "") -> Line:
    """Given Lines or inlines, return one Line with ``separator`` between them."""
    result: list[Inline] = []
    for item in items:
        if result:
            result.append(Text(separator))
        result.extend(item if isinstance(item, tuple) else (item,))
    return tuple(result) if result else line(empty) if empty else ()


def plain(value: Line) -> str:
    """Return the text of a Line without any markup (for titles and alt texts)."""
    return "".join(i.text for i in value)


def anchor(text: str) -> str:
    """Return a stable HTML id for a name: lowercase letters, digits and ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Para:
    """A paragraph; ``tone`` is "" or ``note``, ``warn``, ``ok`` for a highlighted box."""

    text: Line
    tone: str = ""
    kind: ClassVar[str] = "para"


@dataclass(frozen=True)
class Facts:
    """Label -> value pairs about one thing (a definition list)."""

    rows: tuple[tuple[str, Line], ...]
    kind: ClassVar[str] = "facts"


@dataclass(frozen=True)
class Table:
    """Rows under a header; ``empty`` is said instead when there are no rows.

    ``ids`` optionally gives each row an anchor (HTML only).
    """

    head: tuple[str, ...]
    rows: tuple[tuple[Line, ...], ...]
    empty: str = ""
    ids: tuple[str, ...] = ()
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Bullets:
    """An unordered list."""

    items: tuple[Line, ...]
    kind: ClassVar[str] = "bullets"


@dataclass(frozen=True)
class Step:
    """One step of a procedure: what to do and, optionally, the commands to type."""

    text: Line
    code: str = ""


@dataclass(frozen=True)
class Steps:
    """An ordered procedure (runbooks, how-tos)."""

    items: tuple[Step, ...]
    kind: ClassVar[str] = "steps"


@dataclass(frozen=True)
class CodeBlock:
    """A block of code or configuration shown verbatim; ``lang`` is a hint such as ``yaml``."""

    text: str
    lang: str = ""
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Prose:
    """Free Markdown text written by users (the ``docs`` key); raw HTML in it is escaped."""

    markdown: str
    kind: ClassVar[str] = "prose"


@dataclass(frozen=True)
class Figure:
    """A picture of the site (``src`` relative to the site root), or a note if there is none."""

    src: str | None
    alt: str
    missing: str = ""
    kind: ClassVar[str] = "figure"


@dataclass(frozen=True)
class Stat:
    """One count on the overview, linking to where the counted things are listed."""

    label: str
    count: int
    link: Link


@dataclass(frozen=True)
class Stats:
    """A row of counts."""

    items: tuple[Stat, ...]
    kind: ClassVar[str] = "stats"


@dataclass(frozen=True)
class Sub:
    """A titled group of blocks inside a section (an h3)."""

    title: str
    blocks: tuple[Block, ...]
    id: str = ""
    kind: ClassVar[str] = "sub"


Block = Para | Facts | Table | Bullets | Steps | CodeBlock | Prose | Figure | Stats | Sub


@dataclass(frozen=True)
class Section:
    """A titled part of a page (an h2) with its own anchor."""

    title: str
    blocks: tuple[Block, ...]
    id: str = ""

    @property
    def anchor(self) -> str:
        return self.id or anchor(self.title)


@dataclass(frozen=True)
class Page:
    """One page: its key (``services/wiki``), title, lead line and sections.

    ``nav`` names the navigation entry the page belongs to (see ``NAV``).
    """

    key: str
    title: str
    lead: Line
    sections: tuple[Section, ...]
    nav: str
    crumbs: tuple[Link, ...] = field(default=())


#: The navigation bar: (entry, label, page key, anchor), in order.
NAV: tuple[tuple[str, str, str, str], ...] = (
    ("index", "Overview", "index", ""),
    ("services", "Services", "index", "services"),
    ("hosts", "Hosts", "index", "hosts"),
    ("ports", "Ports", "ports", ""),
    ("domains", "Domains", "domains", ""),
    ("databases", "Databases", "databases", ""),
    ("people", "People", "people", ""),
    ("onboarding", "Onboarding", "onboarding", ""),
)
